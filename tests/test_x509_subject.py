"""signer_core.subject: slash-form and SPKAC subjects, examples and properties."""

from __future__ import annotations

import pytest
from cryptography.x509.oid import NameOID
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from signer_core.refusal import Refusal
from signer_core.subject import MAX_SUBJECT_BYTES, parse_spkac_subject, parse_subject

LONG_NAMES = {"CN": "commonName", "O": "organizationName", "OU": "organizationalUnitName",
              "L": "localityName", "ST": "stateOrProvinceName", "C": "countryName",
              "emailAddress": "emailAddress"}
OIDS = {"CN": NameOID.COMMON_NAME, "O": NameOID.ORGANIZATION_NAME,
        "OU": NameOID.ORGANIZATIONAL_UNIT_NAME, "L": NameOID.LOCALITY_NAME,
        "ST": NameOID.STATE_OR_PROVINCE_NAME, "C": NameOID.COUNTRY_NAME,
        "emailAddress": NameOID.EMAIL_ADDRESS}
BOUNDS = {"CN": 64, "O": 64, "OU": 64, "L": 128, "ST": 128, "emailAddress": 255}


def attrs(name):
    return [(a.oid, a.value) for a in name]


def test_long_and_short_names_in_order():
    name = parse_subject(b"/C=DE/stateOrProvinceName=Bayern/L=M\\xc3\\xBCnchen"
                         b"/organizationName=Ex/OU=a/organizationalUnitName=b"
                         b"/commonName=www.example.org/emailAddress=x@example.org")
    assert attrs(name) == [
        (NameOID.COUNTRY_NAME, "DE"), (NameOID.STATE_OR_PROVINCE_NAME, "Bayern"),
        (NameOID.LOCALITY_NAME, "M\u00fcnchen"), (NameOID.ORGANIZATION_NAME, "Ex"),
        (NameOID.ORGANIZATIONAL_UNIT_NAME, "a"), (NameOID.ORGANIZATIONAL_UNIT_NAME, "b"),
        (NameOID.COMMON_NAME, "www.example.org"), (NameOID.EMAIL_ADDRESS, "x@example.org")]
    assert [len(rdn) for rdn in name.rdns] == [1] * 8


def test_escaped_comma_stays_one_attribute():
    name = parse_subject(b"/CN=Doe\\x2c John,O=Evil/OU=x+y")
    assert attrs(name) == [(NameOID.COMMON_NAME, "Doe, John,O=Evil"),
                           (NameOID.ORGANIZATIONAL_UNIT_NAME, "x+y")]
    assert name.rfc4514_string() == "OU=x\\+y,CN=Doe\\, John\\,O=Evil"


@pytest.mark.parametrize("payload,why", [
    (b"", "start"), (b"CN=x", "start"), (b"/", "no '='"), (b"/CN", "no '='"),
    (b"/CN=", "empty"), (b"/CN=   ", "empty"), (b"/CN= x", "space"), (b"/CN=x ", "space"),
    (b"/XX=a", "unknown"), (b"/cn=a", "unknown"), (b"/2.5.4.3=a", "unknown"),
    (b"/UID=a", "unknown"), (b"/CN=a//CN=b", "no '='"),
    (b"/CN=a\\x2fCN=b", "forbidden"), (b"/CN=a\\x00", "forbidden"), (b"/CN=a\tb", "forbidden"),
    (b"/CN=a\\x0d\\x0aO=b", "forbidden"), (b"/CN=a#b", "forbidden"), (b'/CN=a"b', "forbidden"),
    (b"/CN=a'b", "forbidden"), (b"/CN=a\\x5cb", "forbidden"), (b"/CN=a\\x7f", "forbidden"),
    (b"/CN=a\\xc2\\x85", "forbidden"), (b"/CN=a\\xe2\\x80\\xae", "forbidden"),
    (b"/CN=a\\b", "escape"), (b"/CN=a\\x4", "escape"), (b"/CN=a\\xzz", "escape"), (b"/CN=a\\", "escape"),
    (b"/CN=\\xff", "UTF-8"), (b"/CN=\\xc3", "UTF-8"), (b"/CN=\\xed\\xa0\\x80", "UTF-8"),
    (b"/C=DEU", "longer"), (b"/C=de", "two"), (b"/C=D1", "two"),
    (b"/emailAddress=not-an-address", "e-mail"), (b"/emailAddress=a@b", "e-mail"),
    (b"/emailAddress=\\xc3\\xa4@example.org", "e-mail"),
    (b"/CN=" + b"a" * 65, "longer"), (b"/O=" + b"a" * 65, "longer"),
    (b"/L=" + b"a" * 129, "longer"), (b"/CN=" + "\u00e4".encode() * 33, "bytes"),
    (b"/O=" + "\u00e4".encode() * 65, "longer"),
    (b"/OU=a" * 17, "more than"), (b"/CN=" + b"a" * MAX_SUBJECT_BYTES, "longer than 2048"),
])
def test_refusals(payload, why):
    with pytest.raises(Refusal) as exc:
        parse_subject(payload)
    assert exc.value.code == "bad-subject"
    assert why in exc.value.text


def test_upper_bounds_accepted():
    for short, bound in BOUNDS.items():
        if short == "emailAddress":
            value = "a" * 64 + "@" + ".".join(["b" * 60] * 3) + ".org"
            assert len(value) <= bound
        elif short == "CN":
            value = "\u00e4" * (bound // 2)
        else:
            value = "\u00e4" * bound
        name = parse_subject(f"/{short}={value}".encode())
        assert attrs(name) == [(OIDS[short], value)]


def test_spkac_lines():
    name = parse_spkac_subject([b"commonName = Alice A", b"0.OU=a", b"1.OU = b ",
                                b"countryName=DE", b"emailAddress = a@example.org"])
    assert attrs(name) == [(NameOID.COMMON_NAME, "Alice A"),
                           (NameOID.ORGANIZATIONAL_UNIT_NAME, "a"),
                           (NameOID.ORGANIZATIONAL_UNIT_NAME, "b"),
                           (NameOID.COUNTRY_NAME, "DE"), (NameOID.EMAIL_ADDRESS, "a@example.org")]


@pytest.mark.parametrize("lines", [
    [], [b"commonName"], [b"x.CN = a"], [b"1234.CN = a"], [b"CN = "], [b"foo = a"],
    [b"CN = a#b"], [b"CN = \xff"], [b"CN = a\x00"], [b"C = Germany"], [b"CN = a\\x41"],
])
def test_spkac_refusals(lines):
    with pytest.raises(Refusal) as exc:
        parse_spkac_subject(lines)
    assert exc.value.code == "bad-subject"


# -- properties ---------------------------------------------------------------

SAFE = ("abcxyzABCXYZ0129 .,-_+=:;()&!?@%*~<>[]{}|^`$"
        "\u00e4\u00f6\u00fc\u00df\u00e9\u00a0\u0416\u4e2d\u00bd\U0001f600")
FRAGMENTS = ["/", "=", "CN", "O", "C", "OU", "emailAddress", "commonName", "\\x", "\\X", "\\",
             "41", "2f", "c3", "a4", "ff", "00", "0a", "#", "'", '"', " ", "DE", "a", "@", ".",
             "\u00e4", "\t", "\n", "N."]


def value_for(short):
    if short == "C":
        return st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZ", min_size=2, max_size=2)
    if short == "emailAddress":
        return st.builds(lambda a, b: f"{a}@{b}.example.org",
                         st.text("abc.xyz019+_", min_size=1, max_size=10).filter(
                             lambda s: not s.startswith(".") and not s.endswith(".") and ".." not in s),
                         st.text("abcxyz019", min_size=1, max_size=10))
    return st.text(SAFE, min_size=1, max_size=BOUNDS[short]).filter(
        lambda v: v.strip() and v == v.strip(" ")
        and (short != "CN" or len(v.encode()) <= BOUNDS["CN"]))


@st.composite
def subjects(draw):
    count = draw(st.integers(1, 6))
    out = []
    for _ in range(count):
        short = draw(st.sampled_from(sorted(OIDS)))
        label = draw(st.sampled_from([short, LONG_NAMES[short]]))
        out.append((short, label, draw(value_for(short))))
    return out


def escape(value: str, mask: list[bool]) -> bytes:
    out = b""
    for i, byte in enumerate(value.encode()):
        if byte >= 0x80 or mask[i % len(mask)]:
            out += (b"\\x%02x" if i % 2 else b"\\X%02X").replace(b"X", b"x", 1) % byte
        else:
            out += bytes([byte])
    return out


@given(subjects(), st.lists(st.booleans(), min_size=1, max_size=8))
@settings(max_examples=200, deadline=None)
def test_round_trip(items, mask):
    payload = b"".join(b"/" + label.encode() + b"=" + escape(value, mask)
                       for _, label, value in items)
    assume(len(payload) <= MAX_SUBJECT_BYTES)
    name = parse_subject(payload)
    assert attrs(name) == [(OIDS[short], value) for short, _, value in items]
    lines = [f"{i}.{label} = {value}".encode() for i, (_, label, value) in enumerate(items)]
    assert attrs(parse_spkac_subject(lines)) == attrs(name)


@given(st.one_of(st.binary(max_size=300),
                 st.lists(st.sampled_from(FRAGMENTS), max_size=40).map(lambda x: "".join(x).encode())))
@settings(max_examples=500, deadline=None)
def test_anything_gives_a_name_or_a_refusal(payload):
    try:
        name = parse_subject(payload)
    except Refusal as exc:
        assert exc.code == "bad-subject"
    else:
        assert len(name) >= 1
    try:
        parse_spkac_subject(payload.split(b"\n"))
    except Refusal as exc:
        assert exc.code == "bad-subject"
