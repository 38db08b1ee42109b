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

import dataclasses
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest_x509 import NOW, World, csr_pem
from cryptography import x509

from signer_core.x509.issue import SignRequest, new_serial, plan_certificate, sign_certificate

OPENSSL = shutil.which("openssl")
pytestmark = pytest.mark.skipif(OPENSSL is None, reason="the openssl tool is not installed")

# The old CA's configuration, cut down to what decides the subject.
CA_CONFIG = """\
[ ca ]
default_ca = old_ca

[ old_ca ]
dir = {dir}
database = $dir/index.txt
serial = $dir/serial
new_certs_dir = $dir/newcerts
certificate = $dir/root.crt
private_key = $dir/root.key
default_md = sha256
default_days = 365
policy = policy_old_ca
preserve = no
email_in_dn = yes
string_mask = utf8only
unique_subject = no
copy_extensions = none

[ policy_old_ca ]
countryName = optional
stateOrProvinceName = optional
localityName = optional
organizationName = optional
organizationalUnitName = optional
commonName = optional
emailAddress = optional
"""

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


@dataclasses.dataclass
class OldCA:
    dir: Path

    def sign(self, csr: bytes, subject: str, name: str) -> x509.Certificate:
        (self.dir / f"{name}.csr").write_bytes(csr)
        out = self.dir / f"{name}.pem"
        subprocess.run(
            [
                OPENSSL,
                "ca",
                "-batch",
                "-config",
                str(self.dir / "ca.cnf"),
                "-in",
                str(self.dir / f"{name}.csr"),
                "-subj",
                subject,
                "-utf8",
                "-out",
                str(out),
                "-notext",
            ],
            check=True,
            capture_output=True,
        )
        return x509.load_pem_x509_certificate(out.read_bytes())


@pytest.fixture(scope="module")
def old_ca(tmp_path_factory) -> OldCA:
    d = tmp_path_factory.mktemp("oldca")
    (d / "newcerts").mkdir()
    (d / "index.txt").write_text("")
    (d / "serial").write_text("01\n")
    (d / "ca.cnf").write_text(CA_CONFIG.format(dir=d))
    subprocess.run(
        [
            OPENSSL,
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            str(d / "root.key"),
            "-out",
            str(d / "root.crt"),
            "-subj",
            "/O=Old CA/CN=Old root",
            "-days",
            "30",
        ],
        check=True,
        capture_output=True,
    )
    return OldCA(d)


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> World:
    return World(tmp_path_factory.mktemp("policy"))


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
