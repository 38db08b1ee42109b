"""signer_core.x509.subject: slash-form and SPKAC subjects, their policy order,
examples and properties."""

from __future__ import annotations

import itertools

import pytest
from conftest_x509 import BASE_TOML, NOW, World, csr_pem, spkac_block
from cryptography.x509.oid import NameOID
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from signer_core.config import ConfigError, load_config
from signer_core.refusal import Refusal
from signer_core.x509.issue import SignRequest, plan_certificate
from signer_core.x509.subject import (
    _ATTRIBUTE_TABLE,
    MAX_SUBJECT_BYTES,
    POLICY_ORDER,
    parse_spkac_subject,
    parse_subject,
    policy_order,
)

LONG_NAMES = {
    "CN": "commonName",
    "O": "organizationName",
    "OU": "organizationalUnitName",
    "L": "localityName",
    "ST": "stateOrProvinceName",
    "C": "countryName",
    "emailAddress": "emailAddress",
}
OIDS = {
    "CN": NameOID.COMMON_NAME,
    "O": NameOID.ORGANIZATION_NAME,
    "OU": NameOID.ORGANIZATIONAL_UNIT_NAME,
    "L": NameOID.LOCALITY_NAME,
    "ST": NameOID.STATE_OR_PROVINCE_NAME,
    "C": NameOID.COUNTRY_NAME,
    "emailAddress": NameOID.EMAIL_ADDRESS,
}
BOUNDS = {"CN": 64, "O": 64, "OU": 64, "L": 128, "ST": 128, "emailAddress": 255}


def attrs(name):
    return [(a.oid, a.value) for a in name]


def test_long_and_short_names_in_order():
    name = parse_subject(
        b"/C=DE/stateOrProvinceName=Bayern/L=M\\xc3\\xBCnchen"
        b"/organizationName=Ex/OU=a/organizationalUnitName=b"
        b"/commonName=www.example.org/emailAddress=x@example.org"
    )
    assert attrs(name) == [
        (NameOID.COUNTRY_NAME, "DE"),
        (NameOID.STATE_OR_PROVINCE_NAME, "Bayern"),
        (NameOID.LOCALITY_NAME, "M\u00fcnchen"),
        (NameOID.ORGANIZATION_NAME, "Ex"),
        (NameOID.ORGANIZATIONAL_UNIT_NAME, "a"),
        (NameOID.ORGANIZATIONAL_UNIT_NAME, "b"),
        (NameOID.COMMON_NAME, "www.example.org"),
        (NameOID.EMAIL_ADDRESS, "x@example.org"),
    ]
    assert [len(rdn) for rdn in name.rdns] == [1] * 8


def test_escaped_comma_stays_one_attribute():
    name = parse_subject(b"/CN=Doe\\x2c John,O=Evil/OU=x+y")
    assert attrs(name) == [
        (NameOID.COMMON_NAME, "Doe, John,O=Evil"),
        (NameOID.ORGANIZATIONAL_UNIT_NAME, "x+y"),
    ]
    assert name.rfc4514_string() == "OU=x\\+y,CN=Doe\\, John\\,O=Evil"


@pytest.mark.parametrize(
    "payload,why",
    [
        (b"", "start"),
        (b"CN=x", "start"),
        (b"/", "no '='"),
        (b"/CN", "no '='"),
        (b"/CN=", "empty"),
        (b"/CN=   ", "empty"),
        (b"/CN= x", "space"),
        (b"/CN=x ", "space"),
        (b"/XX=a", "unknown"),
        (b"/cn=a", "unknown"),
        (b"/2.5.4.3=a", "unknown"),
        (b"/UID=a", "unknown"),
        (b"/CN=a//CN=b", "no '='"),
        (b"/CN=a\\x2fCN=b", "forbidden"),
        (b"/CN=a\\x00", "forbidden"),
        (b"/CN=a\tb", "forbidden"),
        (b"/CN=a\\x0d\\x0aO=b", "forbidden"),
        (b"/CN=a#b", "forbidden"),
        (b'/CN=a"b', "forbidden"),
        (b"/CN=a'b", "forbidden"),
        (b"/CN=a\\x5cb", "forbidden"),
        (b"/CN=a\\x7f", "forbidden"),
        (b"/CN=a\\xc2\\x85", "forbidden"),
        (b"/CN=a\\xe2\\x80\\xae", "forbidden"),
        (b"/CN=a\\b", "escape"),
        (b"/CN=a\\x4", "escape"),
        (b"/CN=a\\xzz", "escape"),
        (b"/CN=a\\", "escape"),
        (b"/CN=\\xff", "UTF-8"),
        (b"/CN=\\xc3", "UTF-8"),
        (b"/CN=\\xed\\xa0\\x80", "UTF-8"),
        (b"/C=DEU", "longer"),
        (b"/C=de", "two"),
        (b"/C=D1", "two"),
        (b"/emailAddress=not-an-address", "e-mail"),
        (b"/emailAddress=a@b", "e-mail"),
        (b"/emailAddress=\\xc3\\xa4@example.org", "e-mail"),
        (b"/CN=" + b"a" * 65, "longer"),
        (b"/O=" + b"a" * 65, "longer"),
        (b"/L=" + b"a" * 129, "longer"),
        (b"/CN=" + "\u00e4".encode() * 33, "bytes"),
        (b"/O=" + "\u00e4".encode() * 65, "longer"),
        (b"/OU=a" * 17, "more than"),
        (b"/CN=" + b"a" * MAX_SUBJECT_BYTES, "longer than 2048"),
    ],
)
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
    name = parse_spkac_subject(
        [
            b"commonName = Alice A",
            b"0.OU=a",
            b"1.OU = b ",
            b"countryName=DE",
            b"emailAddress = a@example.org",
        ]
    )
    assert attrs(name) == [
        (NameOID.COMMON_NAME, "Alice A"),
        (NameOID.ORGANIZATIONAL_UNIT_NAME, "a"),
        (NameOID.ORGANIZATIONAL_UNIT_NAME, "b"),
        (NameOID.COUNTRY_NAME, "DE"),
        (NameOID.EMAIL_ADDRESS, "a@example.org"),
    ]


@pytest.mark.parametrize(
    "lines",
    [
        [],
        [b"commonName"],
        [b"x.CN = a"],
        [b"1234.CN = a"],
        [b"CN = "],
        [b"foo = a"],
        [b"CN = a#b"],
        [b"CN = \xff"],
        [b"CN = a\x00"],
        [b"C = Germany"],
        [b"CN = a\\x41"],
    ],
)
def test_spkac_refusals(lines):
    with pytest.raises(Refusal) as exc:
        parse_spkac_subject(lines)
    assert exc.value.code == "bad-subject"


# -- policy order -------------------------------------------------------------

# The old CA's `openssl ca` policy section, written out here by hand.
POLICY = [
    NameOID.COUNTRY_NAME,
    NameOID.STATE_OR_PROVINCE_NAME,
    NameOID.LOCALITY_NAME,
    NameOID.ORGANIZATION_NAME,
    NameOID.ORGANIZATIONAL_UNIT_NAME,
    NameOID.COMMON_NAME,
    NameOID.EMAIL_ADDRESS,
]
ONE_EACH = [
    "/C=DE",
    "/ST=Bayern",
    "/L=Town",
    "/O=Ex",
    "/OU=Unit",
    "/CN=Jane",
    "/emailAddress=jane@example.org",
]


def test_policy_covers_every_accepted_attribute():
    assert list(POLICY_ORDER) == POLICY
    assert {oid for _, oid, _ in _ATTRIBUTE_TABLE} == set(POLICY)


def test_every_permutation_gives_policy_order():
    expected = attrs(parse_subject("".join(ONE_EACH).encode()))
    assert [oid for oid, _ in expected] == POLICY
    for perm in itertools.permutations(ONE_EACH):
        name = policy_order(parse_subject("".join(perm).encode()))
        assert attrs(name) == expected, perm
        assert [len(rdn) for rdn in name.rdns] == [1] * len(POLICY)


def test_repeated_attributes_keep_the_order_sent():
    name = policy_order(
        parse_subject(
            b"/OU=b/CN=x/OU=a/emailAddress=z@example.org/OU=c/emailAddress=y@example.org/C=DE"
        )
    )
    assert attrs(name) == [
        (NameOID.COUNTRY_NAME, "DE"),
        (NameOID.ORGANIZATIONAL_UNIT_NAME, "b"),
        (NameOID.ORGANIZATIONAL_UNIT_NAME, "a"),
        (NameOID.ORGANIZATIONAL_UNIT_NAME, "c"),
        (NameOID.COMMON_NAME, "x"),
        (NameOID.EMAIL_ADDRESS, "z@example.org"),
        (NameOID.EMAIL_ADDRESS, "y@example.org"),
    ]
    assert name.rfc4514_string() == (
        "1.2.840.113549.1.9.1=y@example.org,"
        "1.2.840.113549.1.9.1=z@example.org,CN=x,OU=c,OU=a,OU=b,C=DE"
    )


def test_spkac_subject_in_policy_order():
    name = policy_order(parse_spkac_subject([b"CN = Alice", b"0.OU = 2", b"1.OU = 1", b"C = DE"]))
    assert attrs(name) == [
        (NameOID.COUNTRY_NAME, "DE"),
        (NameOID.ORGANIZATIONAL_UNIT_NAME, "2"),
        (NameOID.ORGANIZATIONAL_UNIT_NAME, "1"),
        (NameOID.COMMON_NAME, "Alice"),
    ]


def test_subject_order_setting(tmp_path):
    config = tmp_path / "signer.toml"
    config.write_text(BASE_TOML)
    assert load_config(config).x509.subject_order == "policy"
    for value in ('"as-sent"', '"policy"'):
        config.write_text(BASE_TOML + f"subject_order = {value}\n")
        assert load_config(config).x509.subject_order == value.strip('"')
    for value in ('"Policy"', '"as_sent"', '""', "1", "true"):
        config.write_text(BASE_TOML + f"subject_order = {value}\n")
        with pytest.raises(ConfigError, match=r"^x509\.subject_order: "):
            load_config(config)


@pytest.fixture(scope="module")
def worlds(tmp_path_factory):
    return {
        order: World(tmp_path_factory.mktemp(order), f'subject_order = "{order}"\n')
        for order in ("policy", "as-sent")
    }


@pytest.mark.parametrize("spkac", [False, True])
def test_plan_applies_the_setting(worlds, spkac):
    sent = [
        (NameOID.COMMON_NAME, "Jane"),
        (NameOID.ORGANIZATIONAL_UNIT_NAME, "b"),
        (NameOID.ORGANIZATIONAL_UNIT_NAME, "a"),
        (NameOID.COUNTRY_NAME, "DE"),
    ]
    for order, expected in (("as-sent", sent), ("policy", [sent[3], sent[1], sent[2], sent[0]])):
        w = worlds[order]
        if spkac:
            p1 = spkac_block(w.spkac["rsa"], ["CN = Jane", "0.OU = b", "1.OU = a", "C = DE"])
            p3 = b"/CN=ignored"
        else:
            p1, p3 = csr_pem(w.rsa_key), b"/CN=Jane/OU=b/OU=a/C=DE"
        plan = plan_certificate(w.cfg, w.store, SignRequest(0, 3, 0, 365, spkac, p1, b"", p3), NOW)
        assert attrs(plan.subject) == expected, order


# -- properties ---------------------------------------------------------------

SAFE = (
    "abcxyzABCXYZ0129 .,-_+=:;()&!?@%*~<>[]{}|^`$"
    "\u00e4\u00f6\u00fc\u00df\u00e9\u00a0\u0416\u4e2d\u00bd\U0001f600"
)
FRAGMENTS = [
    "/",
    "=",
    "CN",
    "O",
    "C",
    "OU",
    "emailAddress",
    "commonName",
    "\\x",
    "\\X",
    "\\",
    "41",
    "2f",
    "c3",
    "a4",
    "ff",
    "00",
    "0a",
    "#",
    "'",
    '"',
    " ",
    "DE",
    "a",
    "@",
    ".",
    "\u00e4",
    "\t",
    "\n",
    "N.",
]


def value_for(short):
    if short == "C":
        return st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZ", min_size=2, max_size=2)
    if short == "emailAddress":
        return st.builds(
            lambda a, b: f"{a}@{b}.example.org",
            st.text("abc.xyz019+_", min_size=1, max_size=10).filter(
                lambda s: not s.startswith(".") and not s.endswith(".") and ".." not in s
            ),
            st.text("abcxyz019", min_size=1, max_size=10),
        )
    return st.text(SAFE, min_size=1, max_size=BOUNDS[short]).filter(
        lambda v: (
            v.strip() and v == v.strip(" ") and (short != "CN" or len(v.encode()) <= BOUNDS["CN"])
        )
    )


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
    payload = b"".join(
        b"/" + label.encode() + b"=" + escape(value, mask) for _, label, value in items
    )
    assume(len(payload) <= MAX_SUBJECT_BYTES)
    name = parse_subject(payload)
    assert attrs(name) == [(OIDS[short], value) for short, _, value in items]
    lines = [f"{i}.{label} = {value}".encode() for i, (_, label, value) in enumerate(items)]
    assert attrs(parse_spkac_subject(lines)) == attrs(name)


@given(
    st.one_of(
        st.binary(max_size=300),
        st.lists(st.sampled_from(FRAGMENTS), max_size=40).map(lambda x: "".join(x).encode()),
    )
)
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


POSITION = {oid: i for i, oid in enumerate(POLICY)}


@given(subjects())
@settings(max_examples=300, deadline=None)
def test_policy_order_is_a_stable_sort(items):
    payload = b"".join(
        b"/" + label.encode() + b"=" + escape(value, [False]) for _, label, value in items
    )
    assume(len(payload) <= MAX_SUBJECT_BYTES)
    before = attrs(parse_subject(payload))
    after = attrs(policy_order(parse_subject(payload)))
    assert sorted(after, key=repr) == sorted(before, key=repr)  # a permutation
    assert [POSITION[oid] for oid, _ in after] == sorted(POSITION[oid] for oid, _ in before)
    for oid in POLICY:  # stable
        assert [v for o, v in after if o == oid] == [v for o, v in before if o == oid]
