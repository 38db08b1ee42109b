"""The transparency log's pure parts: RFC 9162 tree hashing and proofs, and C2SP signed checkpoints."""
