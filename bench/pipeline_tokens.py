"""bench_pipeline's token roots: an RSA-4096 and a P-256 key in a SoftHSM2 token.

``--token`` adds them beside the file roots of the same types, so that a
token's cost is measured in the same run as a key file's. Root 2 and root 3
of the demo configuration get the token's keys; their certificates are
self-signed by the token itself.
"""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.hazmat.primitives import serialization

from signer_core.tokens.keys import TokenKey, open_token_key
from signer_core.tokens.pkcs11 import TokenSession
from signer_core.tokens.uri import parse_uri
from signerctl.demo.ca import Users, _ca_certificate, _name
from spool.safeio import commit_file
from tests.support.softhsm import SoftToken

# label: (root id, key kind, object label in the token)
TOKEN_ROOTS = {"RSA-4096 token": (2, "rsa4096", "rsa"), "P-256 token": (3, "p256", "ec")}


class BenchToken:
    """The token, its PIN file, and the key sessions this process signs its raw figures with."""

    def __init__(self, directory: Path, users: Users) -> None:
        self.token = SoftToken.create(directory / "hsm", "bench")
        os.environ.update(self.token.environment())  # for this process and the daemons
        for rid, kind, label in TOKEN_ROOTS.values():
            self.token.generate(kind, label, rid)
        uid, gid = users.signer_uid, users.signer_gid
        self.pin = self.token.write_pin(
            directory / "lib" / "token.pin",
            None,
            -1 if uid is None else uid,
            -1 if gid is None else gid,
        )
        self.keys: dict[str, TokenKey] = {}
        for name, (rid, _, label) in TOKEN_ROOTS.items():
            uri = parse_uri(self.token.uri(label))
            session = TokenSession(name, uri, self.token.module, self.pin, users.signer_uid)
            key = self.keys[name] = open_token_key(session)
            subject = _name(f"Bench {name} root")
            cert = _ca_certificate(key, subject, key, subject, 3650, None)
            pem = cert.public_bytes(serialization.Encoding.PEM)
            commit_file(directory / "certs", f"root{rid}.crt", pem, 0o644)
        if users.signer_uid is not None and users.signer_gid is not None:
            self.token.give_to(users.signer_uid, users.signer_gid)

    def configure(self, config: Path) -> None:
        """Point roots 2 and 3 of the demo configuration at the token's keys."""
        text = config.read_text()
        for rid, _, label in TOKEN_ROOTS.values():
            file_key = f'key = "keys/root{rid}.key"'
            assert file_key in text, f"the demo configuration has no root {rid}"
            text = text.replace(
                file_key,
                f'key = "{self.token.uri(label)}"\nmodule = "{self.token.module}"\n'
                f'pin_file = "{self.pin}"',
            )
        commit_file(config.parent, config.name, text.encode(), 0o644)
