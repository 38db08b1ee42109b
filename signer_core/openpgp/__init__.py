"""OpenPGP certification: packet bounds before gpg, gpg itself, the certification."""
