"""signer_core.x509.subject: slash-form and SPKAC subjects and their policy order, by
example (the properties are in test_subject_properties.py)."""

from __future__ import annotations

import itertools

import pytest
from cryptography.x509.oid import NameOID

from signer_core.config import load_config
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
from spool.settings import ConfigError
from tests.support.x509 import (
    BASE_TOML,
    BOUNDS,
    NOW,
    OIDS,
    POLICY,
    World,
    attrs,
    csr_pem,
    spkac_block,
)


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
