"""Trusted side of the appliance: policy, keys, X.509 and OpenPGP signing, CRLs, the CA database."""
