"""Root keys held in a PKCS#11 token: the URI that names one, the session, the key objects."""
