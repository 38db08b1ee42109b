"""End to end through the link: revocation with CRL deltas, CRL refresh, OpenPGP certification.

The web side is the client library and ``signer-client``; the answer is applied
the way the deployed client does (real ``xdelta patch``), then checked with
``openssl crl -verify`` here again, independently of the client's own check.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import subprocess
import time

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from signer_core.openpgp.packets import walk
from signer_core.x509.compat import crl_last_update
from signerctl.demo.ca import gpg_workdir
from spool.header import Action, RequestHeader, System
from tests.support.crl import crl_number, serials
from tests.support.openpgp import assert_clean, gen_key, gpg, user_ids
from webhost.client import WebClient


@pytest.fixture
def issue(appliance, world_dir, write_csr):
    """``issue(name)``: a server certificate for ``name``.example.org, as PEM and parsed."""

    def issue(name: str) -> tuple[bytes, x509.Certificate]:
        write_csr(world_dir / f"{name}.csr")
        done = appliance.sign(
            world_dir / f"{name}.csr",
            subject=f"/CN={name}.example.org",
            san=f"DNS:{name}.example.org",
        )
        assert done.returncode == 0, done.stderr
        return done.stdout, x509.load_pem_x509_certificate(done.stdout)

    return issue


def openssl_verify(crl_path, root_cert) -> None:
    subprocess.run(
        [
            "openssl",
            "crl",
            "-inform",
            "DER",
            "-in",
            str(crl_path),
            "-noout",
            "-CAfile",
            str(root_cert),
        ],
        check=True,
        capture_output=True,
    )


def load_crl(path) -> x509.CertificateRevocationList:
    return x509.load_der_x509_crl(path.read_bytes())


def test_revoke_then_delta_then_refresh(appliance, world_dir, issue):
    crl_path, root_cert = world_dir / "revoke-root0.crl", appliance.root_cert(0)
    pem1, cert1 = issue("one")
    pem2, cert2 = issue("two")
    with WebClient(appliance.link) as client:
        first = client.revoke(0, pem1, crl_path, root_cert)  # holds no CRL: whole PEM
        assert first.ok and first.payload1.startswith(b"-----BEGIN X509 CRL-----")
        held = crl_path.read_bytes()
        second = client.revoke(0, pem2, crl_path, root_cert)  # holds the last one: a delta
        assert second.ok and not second.payload1.startswith(b"-----BEGIN")
        assert len(second.payload1) < len(crl_path.read_bytes()) + 200
    patched = world_dir / "patched.crl"
    (world_dir / "held.crl").write_bytes(held)
    (world_dir / "delta").write_bytes(second.payload1)
    subprocess.run(
        ["xdelta", "patch", str(world_dir / "delta"), str(world_dir / "held.crl"), str(patched)],
        check=False,
        capture_output=True,
    )
    assert patched.read_bytes() == crl_path.read_bytes()
    openssl_verify(crl_path, root_cert)
    crl = load_crl(crl_path)
    assert set(serials(crl)) == {cert1.serial_number, cert2.serial_number}
    before = crl
    time.sleep(1.1)  # thisUpdate has a resolution of one second
    refreshed = appliance.client(
        "refresh-crl", "--root", "0", "--crl", str(crl_path), "--root-cert", str(root_cert)
    )
    assert refreshed.returncode == 0, refreshed.stderr
    after = load_crl(crl_path)
    openssl_verify(crl_path, root_cert)
    assert crl_number(after) == crl_number(before) + 1
    assert crl_last_update(after) > crl_last_update(before)
    assert set(serials(after)) == set(serials(before))
    appliance.assert_alive()


def test_client_out_of_sync_gets_whole_crl(appliance, world_dir, issue):
    pem, cert = issue("lost")
    crl_path = world_dir / "unknown.crl"
    crl_path.write_bytes(b"a CRL the appliance never issued")
    with WebClient(appliance.link) as client:
        response = client.revoke(0, pem, crl_path, appliance.root_cert(0))
    assert response.ok and response.payload1.startswith(b"-----BEGIN X509 CRL-----")
    openssl_verify(crl_path, appliance.root_cert(0))
    assert cert.serial_number in serials(load_crl(crl_path))


def foreign_certificate(root_cert) -> bytes:
    """Names root 0 as its issuer, but signed by another key."""
    key = ec.generate_private_key(ec.SECP256R1())
    issuer = x509.load_pem_x509_certificate(root_cert.read_bytes()).subject
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "forged.example.org")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(12345)
        .not_valid_before(dt.datetime(2025, 1, 1))
        .not_valid_after(dt.datetime(2030, 1, 1))
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM)


EMPTY_SHA1 = hashlib.sha1(b"").hexdigest().encode()


@pytest.mark.parametrize(
    "root, payload1, payload3, code",
    [
        (0, "foreign", EMPTY_SHA1, "bad-cert-signature"),
        (
            0,
            b"-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n",
            EMPTY_SHA1,
            "bad-certificate",
        ),
        (0, b"", b"not-hex-at-all", "bad-crl-hash"),
        (7, b"", EMPTY_SHA1, "unknown-root"),
    ],
)
def test_hostile_revocations_are_refused(appliance, root, payload1, payload3, code):
    if payload1 == "foreign":
        payload1 = foreign_certificate(appliance.root_cert(0))
    header = RequestHeader(action=Action.REVOKE, system=System.X509, root=root, days=365)
    with WebClient(appliance.link) as client:
        response = client.exchange(header, payload1, b"", payload3)
    assert not response.ok
    assert response.payload2.startswith(f"ERR {code}:".encode()), response.payload2
    appliance.assert_alive()


def test_openpgp_key_is_certified_by_the_ca(appliance, world_dir):
    user_home = world_dir / "user-gnupg"
    user_home.mkdir(mode=0o700)
    fpr = gen_key(user_home, "Alice <alice@example.org>")
    gpg(user_home, "--quick-add-uid", fpr, "Alice Work <alice@work.example>")
    (world_dir / "alice.asc").write_bytes(gpg(user_home, "--armor", "--export", fpr))
    done = appliance.client("sign-openpgp", "--key", str(world_dir / "alice.asc"), "--days", "30")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(b"-----BEGIN PGP PUBLIC KEY BLOCK-----")
    ca_fpr = (appliance.directory / "keys" / "openpgp.fpr").read_text().strip()
    checker = world_dir / "checker-gnupg"
    checker.mkdir(mode=0o700)
    gpg(checker, "--import", data=done.stdout)
    uids = user_ids(checker, done.stdout)
    assert {u.text for u in uids} == {
        "Alice <alice@example.org>",
        "Alice Work <alice@work.example>",
    }
    for uid in uids:
        ca_sigs = [s for s in uid.sigs if s.keyid == ca_fpr[-16:]]
        assert len(ca_sigs) == 1, uid
        sig = ca_sigs[0]
        assert sig.sigclass == 0x12  # the demo CA's default certification level 2
        assert sig.digest_algo == 8  # SHA-256
        assert sig.hashed[26] == "policy: http://www.cacert.org/cps.php"
        assert sig.expires_after == 30 * 86400
        assert abs(sig.created - time.time()) < 300
    appliance.assert_alive()


def test_openpgp_secret_key_is_refused(appliance, world_dir):
    user_home = world_dir / "user-gnupg"
    user_home.mkdir(mode=0o700)
    fpr = gen_key(user_home, "Bob <bob@example.org>")
    (world_dir / "bob.key").write_bytes(
        gpg(
            user_home,
            "--pinentry-mode",
            "loopback",
            "--passphrase",
            "",
            "--export-secret-keys",
            fpr,
        )
    )
    done = appliance.client("sign-openpgp", "--key", str(world_dir / "bob.key"))
    assert done.returncode == 1
    assert "ERR openpgp-secret-key:" in done.stderr.decode()
    appliance.assert_alive()


def _export(home, fpr) -> bytes:
    return gpg(home, "--export", fpr)


def _hostile_key(kind: str, home) -> bytes:
    if kind == "too-large":
        return b"\x99" + b"\0" * (1 << 20)
    if kind == "no-key":
        return b""
    if kind == "multiple-keys":
        return b"".join(_export(home, gen_key(home, f"Twin{i} <t{i}@example.org>")) for i in (1, 2))
    if kind == "key-revoked":
        fpr = gen_key(home, "Revoked <r@example.org>")
        rev = (home / "openpgp-revocs.d" / f"{fpr}.rev").read_text()
        gpg(home, "--import", data=rev.replace(":-----BEGIN", "-----BEGIN").encode())
        return _export(home, fpr)
    if kind == "key-expired":
        return _export(
            home,
            gen_key(home, "Old <old@example.org>", expire="1d", at=int(time.time()) - 30 * 86400),
        )
    if kind == "weak-key":
        return _export(home, gen_key(home, "Weak <w@example.org>", algo="rsa1024"))
    if kind == "no-uid":
        fpr = gen_key(home, "Nouid <n@example.org>")
        return b"".join(p.raw for p in walk(_export(home, fpr)) if p.tag not in (13, 2))
    raise AssertionError(kind)


@pytest.mark.parametrize(
    "kind",
    ["too-large", "no-key", "multiple-keys", "key-revoked", "key-expired", "weak-key", "no-uid"],
)
def test_openpgp_refusals_leave_no_home_behind(appliance, world_dir, kind):
    home = world_dir / "user-gnupg"
    home.mkdir(mode=0o700)
    key = _hostile_key(kind, home)
    with WebClient(appliance.link) as client:
        response = client.sign_openpgp(key, 30)
    assert response.payload1 == b""
    assert response.payload2.startswith(f"ERR openpgp-{kind}:".encode()), response.payload2
    workdir = gpg_workdir(appliance.directory)
    # Only the signer's CA home (with its agent) is left there: no request's home.
    assert workdir.is_dir() and [(p / "pid").is_file() for p in workdir.iterdir()] == [True]
    assert_clean(workdir)
    appliance.assert_alive()
