"""Issuance rules beyond the profile table: validity capped by the root, no empty SAN
extension, the subject from payload 3 and never from the CSR, the CSR's extensions
ignored, serial numbers, and the pre-issuance check of a plan."""

from __future__ import annotations

from datetime import timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import ExtensionOID, NameOID

from signer_core.refusal import Refusal
from signer_core.x509.compat import not_after
from signer_core.x509.issue import (
    SignRequest,
    new_serial,
    plan_certificate,
    sign_certificate,
)
from tests.support.x509 import NOW, PAYLOAD3, World, csr_pem


def test_validity_capped_by_root(tmp_path):
    from signer_core.roots import RootStore
    from tests.support.x509 import make_root, write_root

    w = World(tmp_path)
    key = w.root_keys[1]
    end = NOW + timedelta(days=100, hours=3)
    write_root(tmp_path, 1, key, make_root(key, "short root", end=end))
    store = RootStore.load(w.cfg.x509)
    req = SignRequest(1, 0, 0, 365, False, csr_pem(w.ec_key), b"", PAYLOAD3)
    cert = sign_certificate(plan_certificate(w.cfg, store, req, NOW), new_serial())
    assert not_after(cert) == end
    with pytest.raises(Refusal) as exc:
        plan_certificate(w.cfg, store, req, end + timedelta(seconds=1))
    assert exc.value.code == "root-expired"
    with pytest.raises(Refusal) as exc:
        plan_certificate(w.cfg, store, req, NOW - timedelta(days=400))
    assert exc.value.code == "root-not-yet-valid"


def test_no_san_extension_without_names(world):
    req = SignRequest(0, 3, 0, 365, False, csr_pem(world.rsa_key), b"", b"/CN=machine 1")
    cert = sign_certificate(plan_certificate(world.cfg, world.store, req, NOW), new_serial())
    with pytest.raises(x509.ExtensionNotFound):
        cert.extensions.get_extension_for_oid(ExtensionOID.SUBJECT_ALTERNATIVE_NAME)


def test_subject_from_payload3_not_csr(world):
    req = SignRequest(
        0, 0, 0, 365, False, csr_pem(world.rsa_key, cn="evil.example.com"), b"", b"/CN=Bob"
    )
    cert = sign_certificate(plan_certificate(world.cfg, world.store, req, NOW), new_serial())
    assert cert.subject.rfc4514_string() == "CN=Bob"


def test_csr_extensions_are_ignored(world):
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "evil")]))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("evil.example.com")]), False)
        .sign(world.ec_key, hashes.SHA256())
    )
    req = SignRequest(
        0,
        5,
        0,
        365,
        False,
        csr.public_bytes(serialization.Encoding.PEM),
        b"DNS:good.example.org",
        b"/CN=good.example.org",
    )
    cert = sign_certificate(plan_certificate(world.cfg, world.store, req, NOW), new_serial())
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    assert list(cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value) == [
        x509.DNSName("good.example.org")
    ]


def test_new_serial():
    serials = {new_serial() for _ in range(1000)}
    assert len(serials) == 1000
    for s in serials:
        assert 2**126 <= s < 2**127
        der_len = (s.bit_length() + 8) // 8  # with the sign bit
        assert der_len <= 20


def test_pre_issuance_check_catches_a_wrong_plan(world):
    import dataclasses

    from signer_core.x509.issue import check_certificate

    req = SignRequest(
        0, 5, 0, 365, False, csr_pem(world.rsa_key), b"DNS:a.example.org", b"/CN=a.example.org"
    )
    plan = plan_certificate(world.cfg, world.store, req, NOW)
    cert = sign_certificate(plan, 12345)
    for change in (
        {"not_after": plan.not_after + timedelta(days=1)},
        {"profile": dataclasses.replace(plan.profile, eku_critical=True)},
        {"profile": dataclasses.replace(plan.profile, max_days=300)},
        {"sans": ()},
        {"root": world.store.get(1)},
    ):
        with pytest.raises(Refusal) as exc:
            check_certificate(cert, dataclasses.replace(plan, **change), 12345)
        assert exc.value.code == "pre-issuance-check"
    with pytest.raises(Refusal):
        check_certificate(cert, plan, 12346)
    check_certificate(cert, plan, 12345)
