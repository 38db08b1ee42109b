"""What the ceremony steps refuse, each with one sentence of ours and exit code 2, and
nothing written: no file replaced, no audit record.

Real keys and certificates made here for each case; the refusals are read from
signerctl's own answer, the files and the audit chain from disk.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from tests.support.x509 import csr_pem


def certificate(
    subject_key,
    issuer_key,
    issuer: x509.Name,
    *,
    start: dt.datetime | None = None,
    days: int = 365,
    ca: bool = True,
) -> bytes:
    """A certificate for ``subject_key`` signed by ``issuer_key`` in ``issuer``'s name, PEM."""
    start = start or dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "candidate")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer)
        .public_key(subject_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), True)
        .sign(issuer_key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM)


@pytest.fixture
def root2_key(world, ceremony):
    """Root 2's key, made by ``root generate``."""
    ceremony("generate", "--root", "2", "--type", "p256")
    return serialization.load_pem_private_key((world.dir / "root2.key").read_bytes(), None)


def test_generate_never_replaces_a_key(world, refused):
    before = (world.dir / "root0.key").read_bytes()
    err = refused("generate", "--root", "0", "--type", "p256")
    assert "root 0 has a key already" in err and "never replaces" in err
    assert (world.dir / "root0.key").read_bytes() == before


def test_generate_for_a_root_not_configured(refused):
    assert "root 7 is not in the configuration" in refused("generate", "--root", "7")


def test_csr_needs_the_key_first(refused, tmp_path):
    err = refused("csr", "--root", "2", "--subject", "/CN=x", "--out", tmp_path / "x.csr")
    assert "root 2 has no key" in err and "signerctl root generate --root 2" in err
    assert not (tmp_path / "x.csr").exists()


def test_csr_with_a_subject_that_is_not_one(root2_key, refused, tmp_path):
    err = refused("csr", "--root", "2", "--subject", "CN=x", "--out", tmp_path / "x.csr")
    assert "is not a subject" in err


@pytest.mark.parametrize(
    "case, words",
    [
        ("another key", "is not for root 2's key"),
        ("not signed by its issuer", "names root 0 as its issuer, but root 0's key did not sign"),
        ("expired", "expired on"),
        ("not yet valid", "is not valid yet"),
        ("not a CA", "is not a CA certificate"),
    ],
)
def test_install_refuses(case, words, world, root2_key, refused, tmp_path):
    root0_key, root0 = world.root_keys[0], world.root_certs[0].subject
    made = {
        "another key": lambda: certificate(
            ec.generate_private_key(ec.SECP256R1()), root0_key, root0
        ),
        "not signed by its issuer": lambda: certificate(
            root2_key, rsa.generate_private_key(65537, 2048), root0
        ),
        "expired": lambda: certificate(
            root2_key, root0_key, root0, start=dt.datetime(2025, 1, 1, tzinfo=dt.UTC), days=30
        ),
        "not yet valid": lambda: certificate(
            root2_key, root0_key, root0, start=dt.datetime.now(dt.UTC) + dt.timedelta(days=2)
        ),
        "not a CA": lambda: certificate(root2_key, root0_key, root0, ca=False),
    }[case]()
    (tmp_path / "candidate.crt").write_bytes(made)
    err = refused("install", "--root", "2", "--cert", tmp_path / "candidate.crt")
    assert words in err
    assert not (world.dir / "root2.crt").exists()


def test_install_accepts_an_issuer_that_is_not_a_configured_root(
    world, root2_key, ceremony, tmp_path
):
    outside = rsa.generate_private_key(65537, 2048)
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "another CA")])
    (tmp_path / "candidate.crt").write_bytes(certificate(root2_key, outside, name))
    installed = ceremony("install", "--root", "2", "--cert", tmp_path / "candidate.crt")
    assert installed["issuer_root"] is None
    assert (world.dir / "root2.crt").read_bytes() == (tmp_path / "candidate.crt").read_bytes()


def test_install_of_a_file_that_holds_no_certificate(root2_key, refused, tmp_path):
    (tmp_path / "junk.crt").write_bytes(b"not a certificate\n")
    assert "holds no PEM certificate" in refused(
        "install", "--root", "2", "--cert", tmp_path / "junk.crt"
    )


def _csr(tmp_path: Path, key=None) -> Path:
    (tmp_path / "sub.csr").write_bytes(csr_pem(key or ec.generate_private_key(ec.SECP256R1())))
    return tmp_path / "sub.csr"


@pytest.mark.parametrize(
    "args, words",
    [
        (("--days", "4000"), "allows 1 to 3653 days"),
        (("--permitted-dns", "exa mple.org"), "is not a DNS name"),
    ],
)
def test_sign_subroot_refuses_options(args, words, refused, tmp_path):
    err = refused(
        "sign-subroot", "--root", "0", "--csr", _csr(tmp_path), "--out", tmp_path / "o", *args
    )
    assert words in err
    assert not (tmp_path / "o").exists()


def test_sign_subroot_refuses_a_weak_key_and_a_bad_csr(refused, tmp_path):
    weak = _csr(tmp_path, rsa.generate_private_key(65537, 1024))
    err = refused("sign-subroot", "--root", "0", "--csr", weak, "--out", tmp_path / "o")
    assert "RSA key of 1024 bits" in err
    (tmp_path / "bad.csr").write_bytes(b"-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n")
    err = refused("sign-subroot", "--root", "0", "--csr", tmp_path / "bad.csr", "--out", "o")
    assert "holds no certificate signing request" in err


def test_sign_subroot_by_a_root_without_a_key(refused, tmp_path):
    err = refused("sign-subroot", "--root", "2", "--csr", _csr(tmp_path), "--out", tmp_path / "o")
    assert err.startswith("signerctl: root 2 cannot sign: file missing")


def test_a_subroot_with_path_length_0_signs_no_ca(world, ceremony, refused, tmp_path):
    ceremony("generate", "--root", "2", "--type", "p256")
    ceremony("csr", "--root", "2", "--subject", "/CN=sub", "--out", tmp_path / "2.csr")
    ceremony(
        "sign-subroot", "--root", "0", "--csr", tmp_path / "2.csr", "--out", tmp_path / "2.crt"
    )
    ceremony("install", "--root", "2", "--cert", tmp_path / "2.crt")
    err = refused("sign-subroot", "--root", "2", "--csr", _csr(tmp_path), "--out", tmp_path / "o")
    assert "root 2's certificate has path length 0: it may sign no CA" in err


def test_a_database_path_that_is_a_link_is_refused(world, refused, tmp_path):
    # The signer user owns the database's directory: a link there must not lead root's
    # chown or chmod to another file.
    target = tmp_path / "elsewhere"
    (world.dir / "ca.sqlite").symlink_to(target)
    assert "is a symbolic link: refused" in refused("generate", "--root", "2")
    assert not target.exists() and not (world.dir / "root2.key").exists()
