"""Subject attribute order against the real ``openssl ca`` of the old CA pipeline.

The old CA signed with ``openssl ca`` and a policy section that lists every
attribute the web side sends as ``optional``; it writes the subject in policy
order. Here a minimal ``openssl ca`` with that policy signs the same subjects
(sent CN first, in slash form) as the appliance, and the two subjects must be
the same RDNs in the same order, and so the same RFC 4514 string.

String types (PrintableString, UTF8String, IA5String) are not compared: they
are how each value is encoded, chosen by ``openssl`` from ``string_mask`` and
its table and by cryptography from its defaults per OID, so they may
legitimately differ between the two; what relying parties map is the DN
string, made of the OIDs, the values and their order.
"""

from __future__ import annotations

import shutil

import pytest
from cryptography import x509

from signer_core.x509.issue import SignRequest, new_serial, plan_certificate, sign_certificate
from tests.support.crl import make_root
from tests.support.x509 import NOW, World, csr_pem

OPENSSL = shutil.which("openssl")
pytestmark = pytest.mark.skipif(OPENSSL is None, reason="the openssl tool is not installed")

# The old CA's configuration, cut down to what decides the subject.
SUBJECT_SETTINGS = (
    "preserve = no\nemail_in_dn = yes\nstring_mask = utf8only\ncopy_extensions = none"
)
SUBJECT_POLICY = "\n".join(
    f"{name} = optional"
    for name in (
        "countryName",
        "stateOrProvinceName",
        "localityName",
        "organizationName",
        "organizationalUnitName",
        "commonName",
        "emailAddress",
    )
)

# (subject as the web side sends it, profile, payload 2)
CASES = [
    (
        "/CN=Jane Doe/emailAddress=jane@example.org/O=Example Org/OU=Unit A/OU=Unit B"
        "/L=Town/ST=State/C=DE",
        1,
        b"",
    ),
    (
        "/CN=www.example.org/O=Example Org/OU=Web/L=M\u00fcnchen/ST=Bayern/C=DE",
        6,
        b"DNS:www.example.org",
    ),
    ("/CN=solo.example.org", 6, b"DNS:solo.example.org"),
    (
        "/OU=Second/CN=Bob/emailAddress=bob@example.org/OU=First/C=AT/emailAddress=b2@example.org",
        1,
        b"",
    ),
    ("/commonName=Long Names/organizationName=Example Org/countryName=CH", 1, b""),
]
# Sent names -> OID, written here independently of signer_core.x509.subject.
SENT_OIDS = {
    "CN": "2.5.4.3",
    "commonName": "2.5.4.3",
    "O": "2.5.4.10",
    "organizationName": "2.5.4.10",
    "OU": "2.5.4.11",
    "L": "2.5.4.7",
    "ST": "2.5.4.8",
    "C": "2.5.4.6",
    "countryName": "2.5.4.6",
    "emailAddress": "1.2.840.113549.1.9.1",
}


@pytest.fixture(scope="module")
def old_ca(tmp_path_factory, openssl_ca):
    return openssl_ca(
        tmp_path_factory.mktemp("oldca"),
        make_root("ec", 0, "Old root"),
        SUBJECT_SETTINGS,
        SUBJECT_POLICY,
    )


@pytest.fixture(scope="module")
def as_sent_world(tmp_path_factory) -> World:
    return World(tmp_path_factory.mktemp("as-sent"), 'subject_order = "as-sent"\n')


def payload3(subject: str) -> bytes:
    """The slash form as the web side sends it: bytes above ASCII as ``\\xNN``."""
    return "".join(
        c if c.isascii() else "".join(f"\\x{b:02x}" for b in c.encode()) for c in subject
    ).encode()


def sent(subject: str) -> list[tuple[str, str]]:
    return [(SENT_OIDS[n], v) for n, v in (p.split("=", 1) for p in subject[1:].split("/"))]


def rdns(name: x509.Name) -> list[tuple[str, str]]:
    assert all(len(rdn) == 1 for rdn in name.rdns)
    return [(a.oid.dotted_string, str(a.value)) for a in name]


def appliance(w: World, subject: str, profile: int, p2: bytes) -> x509.Certificate:
    req = SignRequest(0, profile, 0, 365, False, csr_pem(w.ec_key), p2, payload3(subject))
    plan = plan_certificate(w.cfg, w.store, req, NOW)
    cert = sign_certificate(plan, new_serial())
    assert cert.subject == plan.subject
    return cert


@pytest.mark.parametrize("i", range(len(CASES)))
def test_policy_order_is_the_old_cas(old_ca, world, i):
    subject, profile, p2 = CASES[i]
    assert world.cfg.x509.subject_order == "policy"  # the default, from TOML
    old = old_ca.sign(csr_pem(world.ec_key), subject, f"case{i}").subject
    new = appliance(world, subject, profile, p2).subject
    assert rdns(new) == rdns(old)
    assert new.rfc4514_string() == old.rfc4514_string()
    assert sorted(rdns(new)) == sorted(sent(subject))


@pytest.mark.parametrize("i", range(len(CASES)))
def test_as_sent_keeps_the_order_sent(as_sent_world, i):
    subject, profile, p2 = CASES[i]
    assert rdns(appliance(as_sent_world, subject, profile, p2).subject) == sent(subject)


def test_cases_tell_the_orders_apart(old_ca, world):
    """Guard for the test itself: most cases are not sent in policy order."""
    changed = [
        i
        for i, (subject, _, _) in enumerate(CASES)
        if rdns(old_ca.sign(csr_pem(world.ec_key), subject, f"guard{i}").subject) != sent(subject)
    ]
    assert changed == [0, 1, 3, 4]
