"""signer_core.roots: loading root keys and certificates, and refusing the absent ones."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from signer_core.config import load_config
from signer_core.refusal import Refusal
from signer_core.roots import RootStore
from signer_core.x509.issue import (
    SignRequest,
    new_serial,
    plan_certificate,
    sign_certificate,
)
from tests.support.x509 import BASE_TOML, NOW, csr_pem, make_root, root_toml, write_root


@pytest.fixture(scope="module")
def keys():
    return [ec.generate_private_key(ec.SECP256R1()) for _ in range(3)]


def test_installed_missing_and_broken_roots(tmp_path, keys):
    k0, k1, k2 = keys
    write_root(tmp_path, 0, k0, make_root(k0, "ok"), b"pw")  # with passphrase
    write_root(tmp_path, 1, k1, make_root(k2, "other key"))  # key/cert mismatch
    write_root(tmp_path, 3, k0, make_root(k0, "wrong pass"), b"right")
    (tmp_path / "root3.pass").write_text("wrong\n")
    write_root(tmp_path, 4, k0, make_root(k0, "corrupt"))
    (tmp_path / "root4.crt").write_text(
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
    )
    write_root(tmp_path, 5, k2, make_root(k2, "no SKI", ski=False))
    write_root(tmp_path, 6, k0, leaf_cert(k0))
    toml = (
        BASE_TOML
        + root_toml(0, password=True)
        + root_toml(1)
        + root_toml(2)
        + root_toml(3, password=True)
        + root_toml(4)
        + root_toml(5)
        + root_toml(6)
    )
    (tmp_path / "signer.toml").write_text(toml)
    cfg = load_config(tmp_path / "signer.toml")
    store = RootStore.load(cfg.x509)
    assert sorted(store.roots) == [0, 5]
    assert sorted(store.missing) == [1, 2, 3, 4, 6]
    assert "not a CA" in store.missing[6]
    assert "does not match" in store.missing[1]
    assert "missing" in store.missing[2] and "root2.crt" in store.missing[2]
    assert "cannot load" in store.missing[3] and "cannot load" in store.missing[4]
    root = store.get(0)
    assert root.id == 0 and root.config is cfg.x509.roots[0]
    assert root.certificate.subject.rfc4514_string() == "CN=ok,O=Test CA"
    assert "private_key" not in repr(root)
    for rid, code in (
        (1, "root-not-installed"),
        (2, "root-not-installed"),
        (4, "root-not-installed"),
        (7, "unknown-root"),
    ):
        with pytest.raises(Refusal) as exc:
            store.get(rid)
        assert exc.value.code == code and str(rid) in exc.value.text

    # A root certificate without a SKI: the AKI is derived from its public key.
    req = SignRequest(5, 5, 0, 90, False, csr_pem(k0), b"DNS:a.example.org", b"/CN=a.example.org")
    cert = sign_certificate(plan_certificate(cfg, store, req, NOW), new_serial())
    aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    assert aki.key_identifier == x509.SubjectKeyIdentifier.from_public_key(k2.public_key()).digest


def leaf_cert(key) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, "not a CA")])
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(NOW - timedelta(days=1))
        .not_valid_after(NOW + timedelta(days=9))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), True)
        .sign(key, hashes.SHA256())
    )


def test_store_is_read_only(tmp_path, keys):
    (tmp_path / "signer.toml").write_text(BASE_TOML)
    store = RootStore.load(load_config(tmp_path / "signer.toml").x509)
    with pytest.raises(TypeError):
        store.roots[0] = None  # type: ignore[index]
    with pytest.raises(dataclasses.FrozenInstanceError):
        store.roots = {}  # type: ignore[misc]
