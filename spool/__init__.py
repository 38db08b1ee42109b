"""The spool shared by both daemons: record format, states as directories, atomic moves.

Shared by both sides of the trust boundary; no policy, no crypto. What the
signer reads from it is hostile (see spool.queue and spool.safeio).
"""
