"""signer_core.tokens: keys in a SoftHSM2 token sign certificates and CRLs, and stay there.

The keys are real token keys (RSA-4096 and P-256 in SoftHSM2); what they
sign is checked with the public key read back from the token, and with the
cryptography builders of the release installed (38 on Debian 12, current on PyPI).
"""

from __future__ import annotations

import copy
import datetime as dt
import os

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID

from signer_core.crl.encode import build_crl, encode_entry
from signer_core.refusal import Refusal
from signer_core.tokens.keys import TokenECPrivateKey, TokenRSAPrivateKey, open_token_key
from signer_core.tokens.pkcs11 import TokenError, TokenSession
from signer_core.tokens.uri import parse_uri
from signer_core.x509.compat import verify_signature
from tests.support import softhsm
from tests.support.x509 import make_root

pytestmark = pytest.mark.skipif(not softhsm.available(), reason="softhsm2 or PyKCS11 missing")
NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)


@pytest.fixture(scope="module")
def token(tmp_path_factory):
    directory = tmp_path_factory.mktemp("token")
    token = softhsm.keyed_token(directory / "hsm")
    with softhsm.in_environment(token):
        yield token


@pytest.fixture(scope="module")
def pin_file(token):
    return token.write_pin(token.directory / "pin")


def _session(token, label, pin_file, module=None) -> TokenSession:
    return TokenSession("root 9", parse_uri(token.uri(label)), module or token.module, pin_file)


@pytest.fixture
def opened(token, pin_file):
    """``opened(label)``: the token key ``label``, its session closed after the test."""
    sessions = []

    def open_(label):
        sessions.append(_session(token, label, pin_file))
        return open_token_key(sessions[-1])

    yield open_
    for session in sessions:
        session.close()


def _spki(key) -> bytes:
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def test_public_keys_read_back(opened):
    rsa_key, ec_key = opened("rsa"), opened("ec")
    assert isinstance(rsa_key, TokenRSAPrivateKey) and isinstance(rsa_key, rsa.RSAPrivateKey)
    assert rsa_key.key_size == 4096 and rsa_key.public_key().public_numbers().e == 65537
    assert isinstance(ec_key, TokenECPrivateKey) and isinstance(ec_key, ec.EllipticCurvePrivateKey)
    assert isinstance(ec_key.curve, ec.SECP256R1) and ec_key.key_size == 256


def test_keys_are_sensitive_and_not_extractable(token, opened):
    for label in ("rsa", "ec"):
        assert token.attributes(label) == {
            "CKA_SENSITIVE": True,
            "CKA_EXTRACTABLE": False,
            "CKA_ALWAYS_SENSITIVE": True,
            "CKA_NEVER_EXTRACTABLE": True,
        }
        key = opened(label)
        with pytest.raises(TypeError, match="cannot be exported"):
            key.private_numbers()
        with pytest.raises(TypeError, match="cannot be exported"):
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        assert copy.copy(key) is key and copy.deepcopy(key) is key


@pytest.mark.parametrize("label", ["rsa", "ec"])
@pytest.mark.parametrize("digest", [hashes.SHA256, hashes.SHA384, hashes.SHA512])
def test_certificate_builder_signs_with_the_token(opened, label, digest):
    key = opened(label)
    root = make_root(key, f"token {label}")  # SHA-256, by cryptography's builder
    verify_signature(root, key.public_key())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "leaf")])
    leaf = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(root.subject)
        .public_key(ec.generate_private_key(ec.SECP256R1()).public_key())
        .serial_number(7)
        .not_valid_before(NOW)
        .not_valid_after(NOW + dt.timedelta(days=1))
        .sign(key, digest())
    )
    assert isinstance(leaf.signature_hash_algorithm, digest)
    verify_signature(leaf, root.public_key())


@pytest.mark.parametrize("label", ["rsa", "ec"])
def test_crls_signed_with_the_token(opened, label):
    key = opened(label)
    root = make_root(key, f"token {label}")
    entries = [encode_entry(n, NOW, x509.ReasonFlags.key_compromise) for n in (3, 5)]
    for digest in ("sha1", "sha224", "sha256", "sha384", "sha512"):
        der = build_crl(root, key, digest, 1, NOW, NOW + dt.timedelta(days=7), entries)
        crl = x509.load_der_x509_crl(der)
        verify_signature(crl, key.public_key())
        assert crl.signature_hash_algorithm.name == digest
    built = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(root.subject)
        .last_update(NOW)
        .next_update(NOW + dt.timedelta(days=7))
        .sign(key, hashes.SHA256())
    )
    verify_signature(built, key.public_key())


def test_only_pkcs1_v15_and_ecdsa(opened):
    rsa_key, ec_key = opened("rsa"), opened("ec")
    pss = padding.PSS(padding.MGF1(hashes.SHA256()), 32)
    with pytest.raises(Exception, match="PKCS#1 v1.5 only"):
        rsa_key.sign(b"data", pss, hashes.SHA256())
    with pytest.raises(TypeError, match="only signs"):
        rsa_key.decrypt(b"x", padding.PKCS1v15())
    with pytest.raises(TypeError, match="only signs"):
        ec_key.exchange(ec.ECDH(), ec_key.public_key())


def test_token_removed_then_back_without_a_restart(tmp_path):
    token = softhsm.keyed_token(tmp_path / "hsm")
    pin = token.write_pin(tmp_path / "pin")
    with softhsm.in_environment(token):
        session = _session(token, "ec", pin)
        key = open_token_key(session)
        try:
            key.sign(b"before", ec.ECDSA(hashes.SHA256()))
            token.remove()
            for _ in range(2):  # each request tries once, and is refused
                with pytest.raises(Refusal) as refused:
                    key.sign(b"while away", ec.ECDSA(hashes.SHA256()))
                assert refused.value.code == "root-unavailable"
                assert refused.value.text.startswith("root 9's token key cannot sign now: ")
                assert "CKR_" not in refused.value.text
            token.put_back()
            signature = key.sign(b"after", ec.ECDSA(hashes.SHA256()))
            key.public_key().verify(signature, b"after", ec.ECDSA(hashes.SHA256()))
        finally:
            session.close()


def test_a_closed_session_is_opened_again(token, pin_file, opened):
    key = opened("rsa")
    key.token._session.closeSession()  # as a token reset would
    signature = key.sign(b"data", padding.PKCS1v15(), hashes.SHA256())
    key.public_key().verify(signature, b"data", padding.PKCS1v15(), hashes.SHA256())


def test_faults_at_opening_have_our_sentences(token, pin_file, tmp_path):
    def reason(session) -> str:
        with pytest.raises(TokenError) as failed:
            try:
                open_token_key(session)
            finally:
                session.close()
        assert "CKR_" not in str(failed.value)
        return str(failed.value)

    wrong = token.write_pin(tmp_path / "wrong", "000000")
    assert reason(_session(token, "rsa", wrong)) == "the token refused the PIN"
    assert "does not exist" in reason(_session(token, "rsa", pin_file, tmp_path / "none.so"))
    assert "no private key" in reason(_session(token, "nothing", pin_file))
    other = softhsm.SoftToken(token.directory, label="absent")
    assert reason(_session(other, "rsa", pin_file)) == "no token labelled 'absent' is present"
    loose = token.write_pin(tmp_path / "loose")
    loose.chmod(0o640)
    assert "readable by others than the signer user (mode 0640" in reason(
        _session(token, "rsa", loose)
    )
    if os.geteuid() == 0:
        foreign = token.write_pin(tmp_path / "foreign", uid=65534)
        assert "does not belong to the signer user" in reason(_session(token, "rsa", foreign))
    assert "does not exist" in reason(_session(token, "rsa", tmp_path / "no-pin"))


def test_a_refused_pin_is_not_given_again(token, pin_file, tmp_path):
    pin = token.write_pin(tmp_path / "pin")
    session = _session(token, "rsa", pin)
    try:
        key = open_token_key(session)
        pin.write_text("000000\n")  # the next login will be refused
        key.token._session.closeSession()
        with pytest.raises(Refusal, match="refused the PIN$"):
            key.sign(b"x", padding.PKCS1v15(), hashes.SHA256())
        pin.write_text(token.pin + "\n")
        with pytest.raises(Refusal, match="not tried again before a restart"):
            key.sign(b"x", padding.PKCS1v15(), hashes.SHA256())
    finally:
        session.close()
