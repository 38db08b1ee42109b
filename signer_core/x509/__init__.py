"""X.509 issuance: requests, names, key checks, profiles, the certificate builder."""
