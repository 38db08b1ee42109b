"""The spool shared by both daemons: record format, states as directories, atomic moves. No policy, no crypto."""
