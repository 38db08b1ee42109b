"""The operator's command, signerctl, and everything only it runs; never imported by a daemon."""
