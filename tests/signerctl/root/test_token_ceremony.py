"""A whole key ceremony with the new root's key in a PKCS#11 token (SoftHSM2).

Generate root 7's key in the token, write its CSR, sign it as a subroot by
root 0 (a key file), install it; a real signer then puts root 7 in service
and issues a leaf that openssl verifies up the chain leaf -> root 7 -> root 0.
The key's attributes are read back from the token by a process of its own.
"""

from __future__ import annotations

import os
import pwd
import sqlite3
import subprocess
from contextlib import closing

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from signer_core.config import load_config
from signer_core.daemon import build_context
from signer_core.dispatch import dispatch
from signer_core.store.audit import AuditLog
from signer_core.x509.keychecks import spki_sha256
from spool.entry import new_id
from spool.header import Action, RequestHeader, System
from spool.record import Request
from tests.support import softhsm
from tests.support.x509 import World, csr_pem

pytestmark = pytest.mark.skipif(not softhsm.available(), reason="softhsm2 is not installed")


@pytest.fixture
def token_world(tmp_path, signerctl):
    token = softhsm.SoftToken.create(tmp_path / "hsm")
    # As root the ceremony runs for the signer user: the PIN file must be that user's.
    signer = pwd.getpwnam("_signer") if os.geteuid() == 0 else None
    pin = token.write_pin(tmp_path / "pin", uid=signer.pw_uid if signer else -1)
    with softhsm.in_environment(token):
        (tmp_path / "ca").mkdir()
        world = World(tmp_path / "ca", extra_toml=softhsm.token_root_toml(7, token, "r7", pin))
        yield world, token


def run(signerctl, world, *args) -> dict:
    code, out, err = signerctl(
        "--config", str(world.dir / "signer.toml"), "--json", "root", *map(str, args)
    )
    assert code == 0, err
    assert isinstance(out, dict)
    return out


def test_a_token_key_ceremony_then_a_leaf_under_it(token_world, signerctl, tmp_path):
    world, token = token_world
    generated = run(signerctl, world, "generate", "--root", "7", "--type", "p256")
    assert generated["key"] == token.uri("r7") and generated["sensitive"] is True
    assert generated["extractable"] is False
    # Read back by a process of its own, straight from the token.
    assert token.attributes("r7") == {
        "CKA_SENSITIVE": True,
        "CKA_EXTRACTABLE": False,
        "CKA_ALWAYS_SENSITIVE": True,
        "CKA_NEVER_EXTRACTABLE": True,
    }
    code, _, err = signerctl(
        "--config", str(world.dir / "signer.toml"), "root", "generate", "--root", "7"
    )
    assert code == 2 and "has a key already" in err  # never a second key under the URI

    run(
        signerctl,
        world,
        "csr",
        "--root",
        "7",
        "--subject",
        "/O=Test CA/CN=token subroot",
        "--out",
        tmp_path / "7.csr",
    )
    request = x509.load_pem_x509_csr((tmp_path / "7.csr").read_bytes())
    assert request.is_signature_valid  # signed inside the token
    assert spki_sha256(request.public_key()) == generated["key_sha256"]
    run(
        signerctl,
        world,
        "sign-subroot",
        "--root",
        "0",
        "--csr",
        tmp_path / "7.csr",
        "--out",
        tmp_path / "7.crt",
    )
    installed = run(signerctl, world, "install", "--root", "7", "--cert", tmp_path / "7.crt")
    assert installed["issuer_root"] == 0

    # The signer reads the PIN as its own user; here it runs in this process, as us.
    os.chown(world.dir.parent / "pin", os.geteuid(), -1)
    ctx = build_context(load_config(world.dir / "signer.toml"))
    try:
        assert 7 in ctx.roots.roots, ctx.roots.missing
        header = RequestHeader(
            action=Action.SIGN, system=System.X509, root=7, profile=5, md=0, days=365
        ).to_bytes()
        csr = csr_pem(ec.generate_private_key(ec.SECP256R1()))
        payloads = (csr, b"DNS:www.example.org", b"/CN=www.example.org")
        result = dispatch(ctx, Request(new_id(), 0.0, header, payloads, True))
        assert result is not None and result.payload2 == b"", result
    finally:
        ctx.roots.close()
        ctx.db.close()
    (tmp_path / "leaf.pem").write_bytes(result.payload1)
    verified = subprocess.run(
        ["openssl", "verify", "-CAfile", str(world.dir / "root0.crt")]
        + ["-untrusted", str(world.dir / "root7.crt"), str(tmp_path / "leaf.pem")],
        capture_output=True,
        text=True,
    )
    assert verified.returncode == 0 and verified.stdout.strip().endswith(": OK"), verified

    with closing(sqlite3.connect(world.dir / "ca.sqlite")) as conn:
        audit = AuditLog(conn)
        assert audit.verify().ok
        steps = [r.event for r in audit.records() if r.event.startswith("ceremony-")]
        assert steps == [
            "ceremony-generate",
            "ceremony-csr",
            "ceremony-sign-subroot",
            "ceremony-install",
        ]
