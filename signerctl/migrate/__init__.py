"""Migration from an OpenSSL ``ca`` directory and an old GnuPG home (signerctl import-*)."""
