"""Revocations, CRL encoding and the xdelta answer."""
