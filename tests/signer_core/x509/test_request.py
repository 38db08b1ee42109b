"""signer_core.x509.request under mutation: damaged CSRs and SPKACs give a key or a
Refusal, never another exception; a damaged signed part never verifies."""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import given, settings
from hypothesis import strategies as st

from signer_core.refusal import Refusal
from signer_core.x509.request import MAX_REQUEST_BYTES, parse_request
from spool.header import is_spkac
from tests.support.examples import examples
from tests.support.x509 import csr_pem, spkac_line

KEY = ec.generate_private_key(ec.SECP256R1())
PEM = csr_pem(KEY)
CSR_DER = base64.b64decode(b"".join(ln for ln in PEM.splitlines() if not ln.startswith(b"-")))
CODES = {"bad-csr", "bad-csr-signature", "bad-spkac", "bad-subject"}
# Phrases of the libraries' own error texts, which refusals never carry.
LIBRARY_PHRASES = ("ParseError", "Tag {", "asn1", "ASN.1", "invalid literal", "kind:", "Error")


@pytest.fixture(scope="module")
def spkac_der(tmp_path_factory):
    line = spkac_line(KEY, tmp_path_factory.mktemp("spkac"))
    return base64.b64decode(line.strip().split(b"=", 1)[1])


def mutate(data: bytes, edits: list[tuple[int, int]], cut: int | None) -> bytes:
    out = bytearray(data)
    for pos, value in edits:
        out[pos % len(out)] = value
    return bytes(out[:cut] if cut is not None else out)


def outcome(payload: bytes, spkac: bool) -> str:
    try:
        parsed = parse_request(payload, spkac)
    except Refusal as exc:
        assert exc.code in CODES, exc
        assert_our_words(exc.text)
        return exc.code
    # A mutation can never make another key prove possession.
    assert isinstance(parsed.public_key, ec.EllipticCurvePublicKey)
    assert parsed.public_key.public_numbers() == KEY.public_key().public_numbers()
    return "ok"


def assert_our_words(text: str) -> None:
    assert 0 < len(text) <= 200, text
    assert not any(phrase in text for phrase in LIBRARY_PHRASES), text


EDITS = st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), max_size=4)
CUT = st.one_of(st.none(), st.integers(0, 600))


@given(EDITS, CUT)
@settings(max_examples=examples(400), deadline=None)
def test_mutated_csr(edits, cut):
    der = mutate(CSR_DER, edits, cut)
    assert outcome(der, False) in CODES | {"ok"}
    pem = (
        b"-----BEGIN CERTIFICATE REQUEST-----\n"
        + base64.encodebytes(der)
        + b"-----END CERTIFICATE REQUEST-----\n"
    )
    result = outcome(pem, False)
    if der == CSR_DER:
        assert result == "ok"


@given(edits=EDITS, cut=CUT)
@settings(max_examples=examples(400), deadline=None)
def test_mutated_spkac(spkac_der, edits, cut):
    der = mutate(spkac_der, edits, cut)
    payload = b"CN = x\nSPKAC=" + base64.b64encode(der) + b"\n"
    result = outcome(payload, True)
    if der == spkac_der:
        assert result == "ok"


@given(st.binary(max_size=2000))
@settings(max_examples=examples(300), deadline=None)
def test_arbitrary_bytes(payload):
    outcome(payload, is_spkac(payload))


@pytest.mark.parametrize(
    ("payload", "text"),
    [
        (b"garbage", "payload 1 is not a PKCS#10 request: the request starts with tag 0x67"),
        (CSR_DER[:17], "payload 1 is not a PKCS#10 request: the element at byte 0 needs"),
        (CSR_DER + b"\0", f"1 byte after the end of the request at byte {len(CSR_DER)}"),
        (b"\x30\x03\x02\x01\x01", "the request at byte 0 has 1 element, not 3"),
        (b"\x30\x82", "payload 1 is not a PKCS#10 request: DER ends inside a length at byte 1"),
        (b"-----BEGIN CERTIFICATE-----\n", "PEM line but no PEM CERTIFICATE REQUEST block"),
        (
            b"-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n",
            "the request starts with tag 0x00, not a SEQUENCE",
        ),
        (b"SPKAC=AAAA\n", "the SPKAC cannot be decoded: the SPKAC starts with tag 0x00"),
    ],
    ids=["garbage", "cut", "trailing", "short", "length", "label", "pem", "spkac"],
)
def test_refusals_say_what_and_where_in_our_words(payload, text, caplog):
    """A garbage CSR once gave ``ParseError { kind: UnexpectedTag { actual: Tag { value``."""
    with pytest.raises(Refusal) as refused:
        parse_request(payload, False)
    assert refused.value.code in {"bad-csr", "bad-spkac"}
    assert text in refused.value.text
    assert_our_words(refused.value.text)


def test_library_text_goes_to_the_log_only(caplog):
    caplog.set_level("INFO", logger="signer_core.x509.request")
    with pytest.raises(Refusal):
        parse_request(b"\x30\x03\x02\x01\x01", False)
    assert "PKCS#10 request not parsed" in caplog.text


def test_size_limit():
    with pytest.raises(Refusal) as exc:
        parse_request(PEM + b"\n" * MAX_REQUEST_BYTES, False)
    assert exc.value.code == "bad-csr"


@pytest.mark.parametrize(
    "payload",
    [
        b"SPKAC=x" + b" " * (65536 - 8) + b"y",
        b"SPKAC=" + b" \t" * 32765,
        b" " * 65000 + b"SPKAC = y",
    ],
)
@pytest.mark.timing
def test_spkac_lines_are_read_in_linear_time(payload):
    """The old line pattern backtracked: 70 to 96 s for the first of these."""
    import time

    started = time.perf_counter()
    with pytest.raises(Refusal) as refused:
        parse_request(payload, True)
    assert refused.value.code == "bad-spkac"
    assert time.perf_counter() - started < 0.5
