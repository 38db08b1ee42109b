"""signerctl root: the key ceremonies (generate, csr, sign-subroot, install), with a transcript."""
