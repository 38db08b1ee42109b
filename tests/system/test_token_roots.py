"""Roots whose keys are in a SoftHSM2 token, through the link, both daemons under their users.

A certificate and a CRL signed by an RSA-4096 and by a P-256 token key are
checked with ``openssl verify`` and ``openssl crl -verify``; a wrong PIN, a
missing module, a key that is not the certificate's and a token removed
while serving each refuse only their root, with their reason, while the file
root keeps signing; the token put back serves again without a restart.
"""

from __future__ import annotations

import os
import subprocess

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from signer_core.tokens.keys import open_token_key
from signer_core.tokens.pkcs11 import TokenSession
from signer_core.tokens.uri import parse_uri
from tests.support import softhsm
from tests.support.x509 import make_root

pytestmark = pytest.mark.skipif(not softhsm.available(), reason="softhsm2 or PyKCS11 missing")


def _root_certificate(token, label, pin, path) -> None:
    session = TokenSession("setup", parse_uri(token.uri(label)), token.module, pin)
    try:
        cert = make_root(open_token_key(session), f"token {label}")
    finally:
        session.close()
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def _toml(rid, token, label, pin, cert, module=None) -> str:
    return (
        f'\n[x509.roots.{rid}]\nname = "token root {rid}"\nkey = "{token.uri(label)}"\n'
        f'module = "{module or token.module}"\npin_file = "{pin}"\ncertificate = "{cert}"\n'
        f'crl_url = "http://crl.example.org/root{rid}.crl"\n'
    )


def _openssl_verify(cert_pem: bytes, root_cert, path) -> None:
    path.write_bytes(cert_pem)
    done = subprocess.run(
        ["openssl", "verify", "-CAfile", str(root_cert), str(path)],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0 and done.stdout.strip() == f"{path}: OK", done


def _openssl_crl_verify(crl_path, root_cert) -> None:
    done = subprocess.run(
        ["openssl", "crl", "-inform", "DER", "-in", str(crl_path), "-noout", "-verify"]
        + ["-CAfile", str(root_cert)],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0 and "verify OK" in done.stderr, done


def test_token_roots_through_the_link(
    world_dir, users, appliance_with, write_csr, ctl_json, monkeypatch
):
    hsm = world_dir / "hsm"
    token = softhsm.keyed_token(hsm / "token")
    uid = -1 if users.signer_uid is None else users.signer_uid
    gid = -1 if users.signer_gid is None else users.signer_gid
    pin = token.write_pin(hsm / "pin")
    certs = {12: hsm / "root12.crt", 13: hsm / "root13.crt", 14: hsm / "root14.crt"}
    with softhsm.in_environment(token):
        _root_certificate(token, "rsa", pin, certs[13])
        _root_certificate(token, "ec", pin, certs[14])
    certs[12] = certs[15] = certs[13]
    certs[16] = certs[14]  # for the RSA key: not its certificate
    os.chown(pin, uid, gid)  # the signer user's, only now: ours for the certificates
    wrong = token.write_pin(hsm / "wrong", "000000", uid=uid, gid=gid)
    token.give_to(uid, gid)
    os.chmod(hsm, 0o755)
    # Root 12 first: its wrong PIN is the first the token sees (a second login on
    # a token the signer is logged in to is compared with the first PIN instead).
    extra = (
        _toml(12, token, "rsa", wrong, certs[12])
        + _toml(13, token, "rsa", pin, certs[13])
        + _toml(14, token, "ec", pin, certs[14])
        + _toml(15, token, "rsa", pin, certs[15], module=hsm / "no-such-module.so")
        + _toml(16, token, "rsa", pin, certs[16])
    )
    monkeypatch.setenv("SOFTHSM2_CONF", str(token.conf))
    with appliance_with(extra) as appliance:
        csr = world_dir / "request.csr"
        write_csr(csr)

        # Signed by the token keys, checked by openssl.
        for rid in (13, 14):
            done = appliance.sign(csr, root=str(rid))
            assert done.returncode == 0, done.stderr
            _openssl_verify(done.stdout, certs[rid], world_dir / f"leaf{rid}.pem")
            crl_path = world_dir / f"root{rid}.crl"
            done = appliance.client(
                *("refresh-crl", "--root", str(rid), "--crl", str(crl_path)),
                *("--root-cert", str(certs[rid])),
            )
            assert done.returncode == 0, done.stderr
            _openssl_crl_verify(crl_path, certs[rid])
            revoke = appliance.client(
                *("revoke", "--root", str(rid), "--cert", str(world_dir / f"leaf{rid}.pem")),
                *("--crl", str(crl_path), "--root-cert", str(certs[rid])),
            )
            assert revoke.returncode == 0, revoke.stderr
            _openssl_crl_verify(crl_path, certs[rid])
            revoked = x509.load_der_x509_crl(crl_path.read_bytes())
            leaf = x509.load_pem_x509_certificate((world_dir / f"leaf{rid}.pem").read_bytes())
            assert revoked.get_revoked_certificate_by_serial_number(leaf.serial_number)

        # The keys stay in the token: sensitive, never extractable.
        for label in ("rsa", "ec"):
            flags = token.attributes(label)
            assert flags["CKA_SENSITIVE"] and not flags["CKA_EXTRACTABLE"], flags

        # Each fault refuses its own root, with its reason; the others sign on.
        records = ctl_json(appliance, "audit", "show", "--kind", "root-missing")
        reasons = {r["details"]["root"]: r["details"]["reason"] for r in records}
        reasons = {rid: why for rid, why in reasons.items() if rid >= 12}  # not the demo's
        uri = token.uri("rsa")
        assert reasons == {
            12: f"token key {uri}: the token refused the PIN",
            15: f"token key {uri}: the PKCS#11 module {hsm / 'no-such-module.so'} does not exist",
            16: f"token key {uri}: the token's key does not match the certificate",
        }
        # signerctl status says the same, root by root, from the signer's last start.
        said = {r["root"]: r["at_last_start"] for r in ctl_json(appliance, "status")["roots"]}
        assert {rid: said[rid] for rid in reasons} == {
            rid: f"not in service: {why}" for rid, why in reasons.items()
        }
        assert said[13] == said[14] == "in service"
        for rid in (12, 15, 16):
            done = appliance.sign(csr, root=str(rid))
            assert done.returncode == 1 and f"ERR root-not-installed: root {rid}" in (
                done.stderr.decode()
            )

        # The token pulled out while serving: its roots refuse, root 0 signs on.
        token.remove()
        for rid in (13, 14):
            done = appliance.sign(csr, root=str(rid))
            assert done.returncode == 1
            assert f"ERR root-unavailable: root {rid}'s token key cannot sign now" in (
                done.stderr.decode()
            )
        assert appliance.sign(csr, root="0").returncode == 0
        token.put_back()  # and back: no restart
        for rid in (14, 13):
            done = appliance.sign(csr, root=str(rid))
            assert done.returncode == 0, done.stderr
            _openssl_verify(done.stdout, certs[rid], world_dir / f"again{rid}.pem")
        appliance.assert_alive()
