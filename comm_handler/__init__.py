"""Untrusted side of the appliance: signer-comm, the v1 serial link and the spool's incoming side."""
