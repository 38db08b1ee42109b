"""Issuance of every profile, from PKCS#10 and SPKAC, by RSA, EC and Ed25519
roots: each certificate is parsed back and every field is asserted against
an expectation written here independently of the code, then cross-checked
with the real ``openssl verify``."""

from __future__ import annotations

import ipaddress
import subprocess
from datetime import timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import ExtensionOID, NameOID

from signer_core.x509.compat import not_after, not_before
from signer_core.x509.issue import (
    SignRequest,
    new_serial,
    plan_certificate,
    sign_certificate,
)
from tests.support.x509 import NOW, PAYLOAD3, csr_pem, spkac_block

DS, KE, KA, KCS, CRL = (
    "digital_signature",
    "key_encipherment",
    "key_agreement",
    "key_cert_sign",
    "crl_sign",
)
CLIENT = [
    "1.3.6.1.5.5.7.3.4",
    "1.3.6.1.5.5.7.3.2",
    "1.3.6.1.4.1.311.10.3.4",
    "1.3.6.1.4.1.311.10.3.3",
    "2.16.840.1.113730.4.1",
]
CODE = [
    "1.3.6.1.5.5.7.3.4",
    "1.3.6.1.5.5.7.3.2",
    "1.3.6.1.5.5.7.3.3",
    "1.3.6.1.4.1.311.2.1.21",
    "1.3.6.1.4.1.311.2.1.22",
    "1.3.6.1.4.1.311.10.3.4",
    "1.3.6.1.4.1.311.10.3.3",
    "2.16.840.1.113730.4.1",
]
SERVER = [
    "1.3.6.1.5.5.7.3.2",
    "1.3.6.1.5.5.7.3.1",
    "2.16.840.1.113730.4.1",
    "1.3.6.1.4.1.311.10.3.3",
]
# profile -> (keyUsage bits, EKU OIDs, SAN gets the subject's e-mail)
EXPECTED = {
    0: ({DS, KE, KA}, CLIENT, True),
    1: ({DS, KE, KA}, CLIENT, True),
    2: ({DS, KE, KA}, CODE, True),
    3: ({DS, KE}, ["1.3.6.1.5.5.7.3.2"], False),
    4: ({DS, KE}, ["1.3.6.1.5.5.7.3.2", "1.3.6.1.4.1.311.20.2.2"], True),
    5: ({DS, KE, KA}, SERVER, False),
    6: ({DS, KE, KA}, SERVER, False),
    7: ({DS, KE, KA}, SERVER, False),
    8: ({DS}, ["1.3.6.1.5.5.7.3.9"], False),
    9: ({DS}, ["1.3.6.1.5.5.7.3.8"], False),
    10: ({DS, KE}, ["1.3.6.1.5.5.7.3.2"], False),
    11: ({KCS, CRL}, [], False),
}
# The subject as signed: PAYLOAD3 and SPKAC_LINES send it CN first, the
# default [x509] subject_order = "policy" puts it in the old CA's order.
SUBJECT = [
    ("C", NameOID.COUNTRY_NAME, "DE"),
    ("O", NameOID.ORGANIZATION_NAME, "Example e.V."),
    ("OU", NameOID.ORGANIZATIONAL_UNIT_NAME, "Unit 1"),
    ("OU", NameOID.ORGANIZATIONAL_UNIT_NAME, "Unit 2"),
    ("CN", NameOID.COMMON_NAME, "Alice Ex\u00e4mple, Jr."),
    ("emailAddress", NameOID.EMAIL_ADDRESS, "alice@example.org"),
]
SPKAC_LINES = [
    "commonName = Alice Ex\u00e4mple, Jr.",
    "emailAddress = alice@example.org",
    "O = Example e.V.",
    "0.OU = Unit 1",
    "1.OU = Unit 2",
    "C = DE",
]
XMPP_DER = b"\x0c\x0bexample.org"
SERVERS = (5, 6, 7)  # wildcards allowed, and the commonName must be among the SANs
SERVER_CN = "www.example.org"


def payload2(profile: int) -> bytes:
    if profile == 11:
        return b""
    if profile in (0, 1, 2, 4):
        return b"email:alice@example.org,email:bob@example.org"
    wildcard = b"DNS:*.example.net," if profile in SERVERS else b""
    return (
        b"DNS:www.example.org," + wildcard + b"IP:192.0.2.1,"
        b"otherName:1.3.6.1.5.5.7.8.5;UTF8:example.org"
    )


def expected_sans(profile: int) -> list[x509.GeneralName]:
    if profile in (0, 1, 2, 4):  # subject e-mail first, duplicate dropped
        return [x509.RFC822Name("alice@example.org"), x509.RFC822Name("bob@example.org")]
    # payload 2, then the subject's e-mail (RFC 5280 4.1.2.6)
    wildcard = [x509.DNSName("*.example.net")] if profile in SERVERS else []
    return [
        x509.DNSName("www.example.org"),
        *wildcard,
        x509.IPAddress(ipaddress.ip_address("192.0.2.1")),
        x509.OtherName(x509.ObjectIdentifier("1.3.6.1.5.5.7.8.5"), XMPP_DER),
        x509.RFC822Name("alice@example.org"),
    ]


def subject_for(profile):
    """The test subject; a sub-CA (no SAN, so no e-mail allowed) goes without
    e-mail, a server's commonName is its host name."""
    attrs = [a for a in SUBJECT if profile != 11 or a[0] != "emailAddress"]
    if profile in SERVERS:
        attrs = [("CN", a[1], SERVER_CN) if a[0] == "CN" else a for a in attrs]
    return attrs


def issue(world, root, profile, fmt, key_kind, days=365, md=0, p2=None):
    key = world.rsa_key if key_kind == "rsa" else world.ec_key
    if fmt == "pkcs10":
        p1 = csr_pem(key)
        p3 = (
            PAYLOAD3 if profile != 11 else PAYLOAD3.replace(b"/emailAddress=alice@example.org", b"")
        )
        if profile in SERVERS:
            p3 = p3.replace(b"/CN=Alice Ex\\xC3\\xa4mple\\x2c Jr.", f"/CN={SERVER_CN}".encode())
    else:
        lines = [ln for ln in SPKAC_LINES if profile != 11 or "emailAddress" not in ln]
        if profile in SERVERS:
            lines = [
                f"commonName = {SERVER_CN}" if ln.startswith("commonName") else ln for ln in lines
            ]
        p1, p3 = spkac_block(world.spkac[key_kind], lines), b"/CN=ignored"
    req = SignRequest(
        root, profile, md, days, fmt == "spkac", p1, payload2(profile) if p2 is None else p2, p3
    )
    serial = new_serial()
    cert = sign_certificate(plan_certificate(world.cfg, world.store, req, NOW), serial)
    return cert, serial, key


def verify_with_root(world, root, cert):
    pub = world.root_certs[root].public_key()
    if isinstance(pub, rsa.RSAPublicKey):
        pub.verify(
            cert.signature,
            cert.tbs_certificate_bytes,
            padding.PKCS1v15(),
            cert.signature_hash_algorithm,
        )
    elif isinstance(pub, ec.EllipticCurvePublicKey):
        pub.verify(
            cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(cert.signature_hash_algorithm)
        )
    else:
        pub.verify(cert.signature, cert.tbs_certificate_bytes)


def openssl_verify(world, root, cert, tmp_path):
    (tmp_path / "c.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return subprocess.run(
        [
            "openssl",
            "verify",
            "-attime",
            str(int((NOW + timedelta(hours=1)).timestamp())),
            "-CAfile",
            str(world.dir / f"root{root}.crt"),
            str(tmp_path / "c.pem"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )


@pytest.mark.parametrize("profile", range(12))
@pytest.mark.parametrize(
    "fmt,key_kind", [("pkcs10", "rsa"), ("pkcs10", "ec"), ("spkac", "rsa"), ("spkac", "ec")]
)
@pytest.mark.parametrize("root", [0, 1])
def test_profile(world, root, profile, fmt, key_kind, tmp_path):
    cert, serial, key = issue(world, root, profile, fmt, key_kind)
    root_cert = world.root_certs[root]
    assert cert.version == x509.Version.v3
    assert cert.serial_number == serial
    assert cert.issuer == root_cert.subject
    assert [(a.oid, a.value) for a in cert.subject] == [
        (oid, v) for _, oid, v in subject_for(profile)
    ]
    assert all(len(rdn) == 1 for rdn in cert.subject.rdns)
    assert not_before(cert) == NOW
    assert not_after(cert) == NOW + timedelta(days=365)
    assert cert.public_key().public_numbers() == key.public_key().public_numbers()
    assert isinstance(cert.signature_hash_algorithm, hashes.SHA256 if root == 0 else hashes.SHA384)
    verify_with_root(world, root, cert)
    result = openssl_verify(world, root, cert, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr

    ku_bits, eku, email_san = EXPECTED[profile]
    ku_bits = ku_bits - ({KE} if key_kind == "ec" else {KA})  # RFC 5480, RFC 3279
    ext = {e.oid: e for e in cert.extensions}
    expected_oids = {
        ExtensionOID.BASIC_CONSTRAINTS,
        ExtensionOID.KEY_USAGE,
        ExtensionOID.SUBJECT_KEY_IDENTIFIER,
        ExtensionOID.AUTHORITY_KEY_IDENTIFIER,
        ExtensionOID.AUTHORITY_INFORMATION_ACCESS,
        ExtensionOID.CRL_DISTRIBUTION_POINTS,
        ExtensionOID.CERTIFICATE_POLICIES,
    }
    expected_oids |= {ExtensionOID.EXTENDED_KEY_USAGE} if eku else set()
    expected_oids |= {ExtensionOID.OCSP_NO_CHECK} if profile == 8 else set()
    expected_oids |= {ExtensionOID.SUBJECT_ALTERNATIVE_NAME} if profile != 11 else set()
    assert set(ext) == expected_oids
    assert len(cert.extensions) == len(expected_oids)

    bc = ext[ExtensionOID.BASIC_CONSTRAINTS]
    assert bc.critical
    assert (bc.value.ca, bc.value.path_length) == ((True, 0) if profile == 11 else (False, None))

    ku = ext[ExtensionOID.KEY_USAGE]
    assert ku.critical
    for bit in (DS, "content_commitment", KE, "data_encipherment", KA, KCS, CRL):
        assert getattr(ku.value, bit) == (bit in ku_bits), bit
    if eku:
        e = ext[ExtensionOID.EXTENDED_KEY_USAGE]
        assert [o.dotted_string for o in e.value] == eku
        assert e.critical == (profile == 9)

    ski = ext[ExtensionOID.SUBJECT_KEY_IDENTIFIER]
    spk = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert not ski.critical
    assert ski.value.digest == x509.SubjectKeyIdentifier.from_public_key(key.public_key()).digest
    aki = ext[ExtensionOID.AUTHORITY_KEY_IDENTIFIER]
    root_ski = root_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert not aki.critical and aki.value.key_identifier == root_ski.digest
    assert aki.value.authority_cert_issuer is None
    assert len(spk) > 0

    aia = ext[ExtensionOID.AUTHORITY_INFORMATION_ACCESS]
    assert not aia.critical
    assert [(d.access_method.dotted_string, d.access_location.value) for d in aia.value] == [
        ("1.3.6.1.5.5.7.48.1", "http://ocsp.cacert.org/")
    ]
    crl = ext[ExtensionOID.CRL_DISTRIBUTION_POINTS]
    assert not crl.critical
    assert [[n.value for n in dp.full_name] for dp in crl.value] == [
        [f"http://crl.example.org/root{root}.crl"]
    ]
    pol = ext[ExtensionOID.CERTIFICATE_POLICIES]
    assert not pol.critical
    assert [(p.policy_identifier.dotted_string, p.policy_qualifiers) for p in pol.value] == [
        ("1.3.6.1.4.1.18506.4.4", ["http://www.cacert.org/cps.php"])
    ]
    if profile == 8:
        assert not ext[ExtensionOID.OCSP_NO_CHECK].critical
    if profile != 11:
        san = ext[ExtensionOID.SUBJECT_ALTERNATIVE_NAME]
        assert not san.critical
        assert list(san.value) == expected_sans(profile)
        assert email_san == (san.value[0] == x509.RFC822Name("alice@example.org"))


def test_ed25519_root_signs_without_digest(world):
    cert, _, _ = issue(world, 3, 5, "pkcs10", "ec", md=9)
    assert cert.signature_hash_algorithm is None
    assert cert.signature_algorithm_oid.dotted_string == "1.3.101.112"
    verify_with_root(world, 3, cert)


@pytest.mark.parametrize(
    "md,algo", [(0, hashes.SHA256), (8, hashes.SHA256), (9, hashes.SHA384), (10, hashes.SHA512)]
)
def test_digest_ids(world, md, algo):
    cert, _, _ = issue(world, 0, 0, "pkcs10", "rsa", md=md)
    assert isinstance(cert.signature_hash_algorithm, algo)
    verify_with_root(world, 0, cert)


def test_validity_capped_by_profile(world):
    cert, _, _ = issue(world, 0, 5, "pkcs10", "rsa", days=5000)
    assert not_after(cert) - not_before(cert) == timedelta(days=730)
