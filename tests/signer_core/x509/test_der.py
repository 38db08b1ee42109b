"""signer_core.x509.der: the first structural fault of a DER blob, in our words,
with its byte offset; bounded on hostile nesting; PEM blocks to DER."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from signer_core.x509.der import CERTIFICATE, CRL, CSR, MAX_DEPTH, fault, from_pem
from tests.support.examples import examples


@pytest.mark.parametrize(
    ("data", "text"),
    [
        (b"", "DER ends at byte 0, where an element should start"),
        (b"\x30", "DER ends inside a length at byte 1"),
        (b"\x30\x84\x00", "DER ends inside a length at byte 1"),
        (b"\x30\x80\x00\x00", "indefinite length at byte 1, which DER forbids"),
        (b"\x30\x81\x05" + bytes(5), "a length not in its shortest form at byte 1"),
        (b"\x30\x85" + bytes(5), "a length of 5 bytes at byte 1"),
        (b"\x30\x05\x30\x09" + bytes(3), "the element at byte 2 needs 9 bytes, only 3 remain"),
        (b"\x30\x02\x1f\x00", "multi-byte tag at byte 2"),
        (b"\x30\x00\x00", "1 byte after the end of the certificate at byte 2"),
        (b"\x30\x02\x02\x00", "the certificate at byte 0 has 1 element, not 3"),
        (
            b"\x30\x06\x30\x00\x30\x00\x04\x00",
            "the signature at byte 6 is an OCTET STRING, not a BIT STRING",
        ),
        (b"\x30\x06\x30\x00\x30\x00\x03\x00", "its DER structure is sound"),
    ],
)
def test_faults(data, text):
    assert text in fault(data, CERTIFICATE)


def test_names_the_field_of_a_request():
    short = _tlv(0x30, b"\x02\x01\x00\x30\x00\x30\x00")  # no attributes
    data = _tlv(0x30, short + b"\x30\x00\x03\x00")
    assert "certificationRequestInfo at byte 2 has 3 elements, not 4" in fault(data, CSR)
    swapped = _tlv(0x30, b"\x02\x01\x00\x30\x00\x31\x00\xa0\x00")  # a SET for the key
    data = _tlv(0x30, swapped + b"\x30\x00\x03\x00")
    assert "subjectPublicKeyInfo at byte 9 is a SET, not a SEQUENCE" in fault(data, CSR)


def test_nesting_is_bounded():
    nested = b""
    for _ in range(MAX_DEPTH + 5):
        nested = _tlv(0x30, nested)
    assert f"nested more than {MAX_DEPTH} deep" in fault(nested, CRL)


def _tlv(tag: int, body: bytes) -> bytes:
    n = len(body)
    length = bytes([n]) if n < 128 else bytes([0x82]) + n.to_bytes(2, "big")
    return bytes([tag]) + length + body


@given(st.binary(max_size=300))
@settings(max_examples=examples(300), deadline=None)
def test_any_bytes_give_a_short_sentence(data):
    text = fault(data, CSR)
    assert 0 < len(text) <= 120


def test_from_pem():
    body = b"-----BEGIN X509 CRL-----\nMAA=\n-----END X509 CRL-----\n"
    assert from_pem(b"junk\n" + body, ("X509 CRL",)) == b"\x30\x00"
    with pytest.raises(ValueError, match="no PEM X509 CRL block"):
        from_pem(b"MAA=", ("X509 CRL",))
    with pytest.raises(ValueError, match="not base64"):
        from_pem(body.replace(b"MAA=", b"MA=A"), ("X509 CRL",))
