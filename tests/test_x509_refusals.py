"""Hostile Sign X.509 requests, table-driven: each goes through the whole of
``plan_certificate`` and must be refused with the code of the check that
fires. Weak keys are made deliberately (real primes from ``openssl prime``)."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import importlib.util
import random
import subprocess
from datetime import timedelta

import pytest
from asn1crypto import csr as asn1csr
from asn1crypto import keys as asn1keys
from conftest_x509 import NOW, World, csr_pem, spkac_block, spkac_line
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa

from signer_core.refusal import Refusal
from signer_core.x509 import keychecks
from signer_core.x509.issue import (
    SignRequest,
    new_serial,
    plan_certificate,
    sign_certificate,
)
from signer_core.x509.request import parse_request

EXTRA = """allow_ed25519 = false
blocklist_file = "blocked.txt"
[x509.profiles.4]
enabled = false
[x509.profiles.20]
name = "encipher only"
enabled = true
key_usage = ["key_encipherment"]
extended_key_usage = []
san_source = "payload"
"""


# -- deliberately weak RSA keys ------------------------------------------------


def openssl_prime(bits: int) -> int:
    out = subprocess.run(
        ["openssl", "prime", "-generate", "-bits", str(bits)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return int(out.strip())


def is_probable_prime(n: int, rounds: int = 20) -> bool:
    if n < 2 or any(n % p == 0 for p in (2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37)):
        return n in (2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37)
    d, s = n - 1, 0
    while d % 2 == 0:
        d, s = d // 2, s + 1
    rng = random.Random(n)
    for _ in range(rounds):
        x = pow(rng.randrange(2, n - 1), d, n)
        if x in (1, n - 1):
            continue
        for _ in range(s - 1):
            x = pow(x, 2, n)
            if x == n - 1:
                break
        else:
            return False
    return True


def next_prime(n: int) -> int:
    n += 1 + n % 2
    while not is_probable_prime(n):
        n += 2
    return n


def rsa_from_primes(p: int, q: int, e: int = 65537) -> rsa.RSAPrivateKey:
    d = pow(e, -1, (p - 1) * (q - 1))
    pub = rsa.RSAPublicNumbers(e, p * q)
    return rsa.RSAPrivateNumbers(
        p, q, d, rsa.rsa_crt_dmp1(d, p), rsa.rsa_crt_dmq1(d, q), rsa.rsa_crt_iqmp(p, q), pub
    ).private_key()


ROCA_M = 0x924CBA6AE99DFA084537FACC54948DF0C23DA044D8CABE0EDD75BC6


def roca_prime(bits: int, rng: random.Random) -> int:
    """A prime of the structure of the vulnerable Infineon library: k*M + 65537^a mod M."""
    low, high = (3 << (bits - 2)) // ROCA_M + 1, (1 << bits) // ROCA_M - 1
    while True:  # p in [0.75, 1) * 2**bits, so that n = p*q has exactly 2*bits bits
        p = rng.randrange(low, high) * ROCA_M + pow(65537, rng.getrandbits(60), ROCA_M)
        if p % 65537 != 1 and is_probable_prime(p):
            return p


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    w = World(tmp_path_factory.mktemp("x509refusals"), extra_toml=EXTRA)
    w.blocked_key = ec.generate_private_key(ec.SECP256R1())
    spki = w.blocked_key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    (w.dir / "blocked.txt").write_text(
        f"# compromised keys\n{'0' * 64}\n{hashlib.sha256(spki).hexdigest().upper()}\n"
    )
    return w


@pytest.fixture(scope="module")
def weak(world):
    """Requests from deliberately weak keys, built once."""
    rng = random.Random(1)
    p = openssl_prime(1024)
    keys = {
        "rsa1024": rsa.generate_private_key(65537, 1024),
        "rsa-e3": rsa.generate_private_key(3, 2048),
        "small-factor": rsa_from_primes(10007, openssl_prime(2040)),
        "close-primes": rsa_from_primes(p, next_prime(p + 2**20)),
        "roca": rsa_from_primes(roca_prime(1024, rng), roca_prime(1024, rng)),
        "p224": ec.generate_private_key(ec.SECP224R1()),
        "ed25519": ed25519.Ed25519PrivateKey.generate(),
        "ed448": ed448.Ed448PrivateKey.generate(),
        "dsa": dsa.generate_private_key(2048),
    }
    return {
        name: csr_pem(k, algo=hashes.SHA256() if name == "dsa" else None)
        for name, k in keys.items()
    }


def other_key_csr(world) -> bytes:
    """A CSR carrying world.rsa_key's public key but signed by another key."""
    other = rsa.generate_private_key(65537, 2048)
    req = asn1csr.CertificationRequest.load(_der(csr_pem(other)))
    info = req["certification_request_info"]
    info["subject_pk_info"] = asn1keys.PublicKeyInfo.load(
        world.rsa_key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return _pem(
        asn1csr.CertificationRequest(
            {
                "certification_request_info": info,
                "signature_algorithm": req["signature_algorithm"],
                "signature": req["signature"],
            }
        ).dump(force=True)
    )


def _der(pem: bytes) -> bytes:
    body = b"".join(ln for ln in pem.splitlines() if not ln.startswith(b"-----"))
    return base64.b64decode(body)


def _pem(der: bytes) -> bytes:
    b64 = base64.encodebytes(der).replace(b"\n", b"")
    lines = [b64[i : i + 64] for i in range(0, len(b64), 64)]
    return (
        b"-----BEGIN CERTIFICATE REQUEST-----\n"
        + b"\n".join(lines)
        + b"\n-----END CERTIFICATE REQUEST-----\n"
    )


def tampered_spkac(world, how: str) -> bytes:
    line = world.spkac["rsa"].strip()
    der = bytearray(base64.b64decode(line.split(b"=", 1)[1]))
    if how == "challenge":  # the challenge string is the last thing signed
        idx = der.index(b"chal")
        der[idx] ^= 0x01
    elif how == "ber":  # same content, non-minimal outer length
        der = (
            bytearray(b"\x30\x83" + len(der[4:]).to_bytes(3, "big") + der[4:])
            if der[1] == 0x82
            else der
        )
    return b"CN = x\nSPKAC=" + base64.b64encode(bytes(der)) + b"\n"


# (name, changes to the base request, expected code)
def cases(world, weak):
    spk = spkac_block(world.spkac["rsa"], ["CN = Alice"])
    return [
        ("unconfigured root", {"root": 9}, "unknown-root"),
        ("root without files", {"root": 2}, "root-not-installed"),
        ("unknown profile", {"profile": 12}, "unknown-profile"),
        ("disabled profile", {"profile": 4}, "profile-disabled"),
        ("undefined digest id", {"md": 4}, "unknown-digest"),
        ("digest id 255", {"md": 255}, "unknown-digest"),
        ("md5", {"md": 1}, "weak-digest"),
        ("sha1", {"md": 2}, "weak-digest"),
        ("ripemd160", {"md": 3}, "weak-digest"),
        ("zero days", {"days": 0}, "bad-days"),
        ("negative days", {"days": -1}, "bad-days"),
        ("days above 16 bits", {"days": 70000}, "bad-days"),
        ("garbage request", {"payload1": b"hello"}, "bad-csr"),
        ("empty request", {"payload1": b""}, "bad-csr"),
        (
            "PEM with junk",
            {
                "payload1": b"-----BEGIN CERTIFICATE REQUEST-----\n!!!\n"
                b"-----END CERTIFICATE REQUEST-----\n"
            },
            "bad-csr",
        ),
        ("truncated CSR", {"payload1": _pem(_der(csr_pem(world.rsa_key))[:-20])}, "bad-csr"),
        ("oversized request", {"payload1": csr_pem(world.rsa_key) + b" " * 70000}, "bad-csr"),
        ("CSR signed by another key", {"payload1": other_key_csr(world)}, "bad-csr-signature"),
        (
            "SPKAC challenge altered",
            {"spkac": True, "payload1": tampered_spkac(world, "challenge")},
            "bad-csr-signature",
        ),
        ("SPKAC not base64", {"spkac": True, "payload1": b"CN = a\nSPKAC=@@@@\n"}, "bad-spkac"),
        ("SPKAC not DER", {"spkac": True, "payload1": b"CN = a\nSPKAC=MAMCAQE=\n"}, "bad-spkac"),
        ("SPKAC in BER", {"spkac": True, "payload1": tampered_spkac(world, "ber")}, "bad-spkac"),
        ("two SPKAC lines", {"spkac": True, "payload1": spk + world.spkac["ec"]}, "bad-spkac"),
        ("SPKAC with 40 lines", {"spkac": True, "payload1": b"OU = a\n" * 40 + spk}, "bad-spkac"),
        (
            "SPKAC subject unknown attribute",
            {"spkac": True, "payload1": b"UID = x\n" + spk},
            "bad-subject",
        ),
        ("RSA 1024", {"payload1": weak["rsa1024"]}, "weak-key"),
        ("RSA exponent 3", {"payload1": weak["rsa-e3"]}, "bad-exponent"),
        ("RSA small factor", {"payload1": weak["small-factor"]}, "small-factor"),
        ("RSA close primes", {"payload1": weak["close-primes"]}, "close-primes"),
        ("RSA ROCA", {"payload1": weak["roca"]}, "roca-key"),
        ("EC P-224", {"payload1": weak["p224"]}, "unsupported-key"),
        ("Ed25519 not enabled", {"payload1": weak["ed25519"]}, "unsupported-key"),
        ("Ed448", {"payload1": weak["ed448"]}, "unsupported-key"),
        ("DSA", {"payload1": weak["dsa"]}, "unsupported-key"),
        ("blocklisted key", {"payload1": csr_pem(world.blocked_key)}, "key-blocklisted"),
        (
            "no key usage left for EC",
            {"profile": 20, "payload1": csr_pem(world.ec_key)},
            "unsupported-key",
        ),
        ("injected '/' in subject", {"payload3": b"/CN=a\\x2fCN=evil.example.com"}, "bad-subject"),
        ("injected CR LF in subject", {"payload3": b"/CN=a\\x0d\\x0aO=x"}, "bad-subject"),
        ("bad escape", {"payload3": b"/CN=a\\x4g"}, "bad-subject"),
        ("unknown attribute", {"payload3": b"/CN=a/serialNumber=1"}, "bad-subject"),
        ("empty subject value", {"payload3": b"/CN="}, "bad-subject"),
        ("oversized subject", {"payload3": b"/OU=" + b"x" * 3000}, "bad-subject"),
        ("escaped ',' separator in SAN", {"payload2": b"DNS:a.org\\x2cDNS:evil.com"}, "bad-san"),
        ("space separator in SAN", {"payload2": b"DNS:a.org DNS:evil.com"}, "bad-san"),
        ("SAN type dirName", {"payload2": b"dirName:sect"}, "bad-san"),
        ("oversized SAN", {"payload2": b"DNS:a.org," * 2000 + b"DNS:b.org"}, "bad-san"),
        ("SAN on a sub-CA", {"profile": 11, "payload2": b"DNS:a.example.org"}, "bad-san"),
        (
            "e-mail subject on a sub-CA",
            {"profile": 11, "payload2": b"", "payload3": b"/CN=CA/emailAddress=ca@example.org"},
            "bad-san",
        ),
        ("server without SAN", {"profile": 5, "payload2": b""}, "bad-san"),
        ("XMPP server without XMPP", {"profile": 7}, "bad-san"),
    ]


BASE = {
    "root": 0,
    "profile": 5,
    "md": 0,
    "days": 365,
    "spkac": False,
    "payload2": b"DNS:www.example.org",
    "payload3": b"/CN=www.example.org",
}


def test_every_hostile_request_is_refused_with_its_code(world, weak):
    seen = set()
    for name, change, code in cases(world, weak):
        fields = {**BASE, "payload1": csr_pem(world.rsa_key), **change}
        try:
            plan_certificate(world.cfg, world.store, SignRequest(**fields), NOW)
        except Refusal as exc:
            assert exc.code == code, f"{name}: {exc}"
            assert exc.payload2().startswith(f"ERR {code}: ".encode())
        else:
            pytest.fail(f"{name}: accepted")
        seen.add(code)
    assert seen == {
        "unknown-root",
        "root-not-installed",
        "unknown-profile",
        "profile-disabled",
        "unknown-digest",
        "weak-digest",
        "bad-days",
        "bad-csr",
        "bad-csr-signature",
        "bad-spkac",
        "bad-subject",
        "bad-san",
        "weak-key",
        "bad-exponent",
        "small-factor",
        "close-primes",
        "roca-key",
        "unsupported-key",
        "key-blocklisted",
    }


# (name, changes to the base request, expected code): the name rules of the
# profiles (server_names, email_names) and of the SAN parser, through the whole
# of plan_certificate. Beside the table above, which test_e2e_refusals replays.
PERSON = {"profile": 0, "payload3": b"/CN=Alice/emailAddress=alice@example.org"}
NAME_CASES = [
    ("server CN not among the SANs", {"payload3": b"/CN=other.example.org"}, "cn-not-in-san"),
    ("server CN a person's name", {"profile": 6, "payload3": b"/CN=Alice"}, "cn-not-in-san"),
    (
        "second CN not among the SANs",
        {"payload3": b"/CN=www.example.org/CN=evil.example.com"},
        "cn-not-in-san",
    ),
    (
        "server CN only a subdomain of a SAN",
        {"payload3": b"/CN=a.www.example.org"},
        "cn-not-in-san",
    ),
    (
        "server CN matching no wildcard",
        {"payload2": b"DNS:*.example.org", "payload3": b"/CN=www.example.org"},
        "cn-not-in-san",
    ),
    (
        "server CN an e-mail SAN",
        {"payload2": b"DNS:www.example.org,email:a@example.org", "payload3": b"/CN=a@example.org"},
        "cn-not-in-san",
    ),
    (
        "XMPP CN differs in case",
        {
            "profile": 7,
            "payload3": b"/CN=Chat@example.org",
            "payload2": b"otherName:1.3.6.1.5.5.7.8.5;UTF8:chat@example.org",
        },
        "cn-not-in-san",
    ),
    (
        "IP CN not in canonical text",
        {"payload2": b"IP:2001:db8::1", "payload3": b"/CN=2001:0db8::1"},
        "cn-not-in-san",
    ),
    (
        "wildcard in the machine profile",
        {"profile": 3, "payload2": b"DNS:*.example.org", "payload3": b"/CN=machine"},
        "wildcard-not-allowed",
    ),
    (
        "wildcard in a client profile",
        {**PERSON, "payload2": b"DNS:*.example.org"},
        "wildcard-not-allowed",
    ),
    (
        "wildcard in the OCSP profile",
        {"profile": 8, "payload2": b"DNS:*.example.org"},
        "wildcard-not-allowed",
    ),
    ("IP SAN in a client profile", {**PERSON, "payload2": b"IP:192.0.2.1"}, "ip-not-allowed"),
    (
        "IPv6 SAN in code signing",
        {**PERSON, "profile": 2, "payload2": b"IP:2001:db8::1"},
        "ip-not-allowed",
    ),
    (
        "IP literal as a DNS name",
        {"payload2": b"DNS:10.0.0.1", "payload3": b"/CN=10.0.0.1"},
        "dns-ip-literal",
    ),
    (
        "invalid punycode",
        {"payload2": b"DNS:xn--a.example", "payload3": b"/CN=xn--a.example"},
        "bad-idna",
    ),
    ("IPv6 zone id", {"payload2": b"IP:fe80::1%eth0", "payload3": b"/CN=fe80::1"}, "bad-san"),
]


def outcome(world, change: dict) -> str:
    """The refusal code of the base request with ``change``, or "issued"."""
    fields = {**BASE, "payload1": csr_pem(world.rsa_key), **change}
    try:
        plan_certificate(world.cfg, world.store, SignRequest(**fields), NOW)
    except Refusal as exc:
        assert exc.payload2().startswith(f"ERR {exc.code}: ".encode())
        return exc.code
    return "issued"


@pytest.mark.parametrize("change,code", [c[1:] for c in NAME_CASES], ids=[c[0] for c in NAME_CASES])
def test_name_rules_refuse_with_their_codes(world, change, code):
    assert outcome(world, change) == code


@pytest.mark.parametrize(
    "change",
    [
        {"payload3": b"/CN=WWW.Example.ORG"},
        {"payload2": b"DNS:*.example.org", "payload3": b"/CN=*.example.org"},
        {
            "payload2": b"DNS:www.example.org,DNS:*.example.org,IP:192.0.2.1",
            "payload3": b"/CN=192.0.2.1",
        },
        {"payload2": b"IP:2001:db8::1", "payload3": b"/CN=2001:db8::1"},
        {"payload2": b"DNS:xn--bcher-kva.example", "payload3": b"/CN=xn--bcher-kva.example"},
        {"payload2": b"DNS:www.example.org", "payload3": b"/O=Example/OU=no CN at all"},
        {"profile": 6, "payload3": b"/CN=www.example.org/O=Example e.V."},
        {
            "profile": 7,
            "payload2": b"DNS:example.org,otherName:1.3.6.1.5.5.7.8.5;UTF8:chat@example.org",
            "payload3": b"/CN=chat@example.org",
        },
        {
            "profile": 3,
            "payload2": b"DNS:m1.example.org,IP:192.0.2.1",
            "payload3": b"/CN=machine 1",
        },
        {"profile": 0, "payload2": b"email:bob@example.org", "payload3": b"/CN=Bob"},
    ],
)
def test_name_rules_keep_consistent_requests(world, change):
    assert outcome(world, change) == "issued"


def test_name_rules_are_profile_data_the_configuration_sets(tmp_path):
    """Overrides of server_names and email_names; profile 4 (disabled in the
    module's world) keeps its built-in email_names."""
    w = World(
        tmp_path,
        extra_toml="""[x509.profiles.3]
server_names = true
[x509.profiles.5]
server_names = false
[x509.profiles.8]
email_names = true
""",
    )
    assert (
        outcome(
            w, {"profile": 3, "payload2": b"DNS:*.example.org", "payload3": b"/CN=*.example.org"}
        )
        == "issued"
    )
    assert (
        outcome(w, {"profile": 3, "payload2": b"DNS:*.example.org", "payload3": b"/CN=machine"})
        == "cn-not-in-san"
    )
    assert outcome(w, {"payload3": b"/CN=other.example.org"}) == "issued"
    assert outcome(w, {"payload2": b"DNS:*.example.org"}) == "wildcard-not-allowed"
    assert outcome(w, {"profile": 8, "payload2": b"IP:192.0.2.1"}) == "ip-not-allowed"
    assert outcome(w, {**PERSON, "profile": 4, "payload2": b"IP:192.0.2.1"}) == "ip-not-allowed"


def test_base_request_is_accepted(world):
    req = SignRequest(**{**BASE, "payload1": csr_pem(world.rsa_key)})
    cert = sign_certificate(plan_certificate(world.cfg, world.store, req, NOW), new_serial())
    assert cert.subject.rfc4514_string() == "CN=www.example.org"


def test_weak_keys_detected_by_own_code(weak):
    """The fingerprints themselves, independent of the badkeys package."""
    n = {
        k: x509.load_pem_x509_csr(v).public_key().public_numbers().n
        for k, v in weak.items()
        if k in ("roca", "close-primes", "small-factor")
    }
    assert keychecks.is_roca(n["roca"])
    assert not keychecks.is_roca(n["close-primes"])
    p, q = keychecks.fermat_factor(n["close-primes"], 100)
    assert p * q == n["close-primes"] and p != 1
    assert keychecks.fermat_factor(n["roca"], 100) is None
    assert n["small-factor"] % 10007 == 0


def test_prime_and_huge_moduli(world):
    prime = openssl_prime(2048)
    for n, code in ((prime, "bad-key"), ((1 << 8200) + 1, "unsupported-key")):
        key = rsa.RSAPublicNumbers(65537, n).public_key()
        with pytest.raises(Refusal) as exc:
            keychecks.check_public_key(key, world.cfg.x509)
        assert exc.value.code == code


def test_unreadable_blocklist_fails_closed(world):
    cfg = dataclasses.replace(world.cfg.x509, blocklist_file=world.dir / "missing.txt")
    with pytest.raises(Refusal) as exc:
        keychecks.check_public_key(world.ec_key.public_key(), cfg)
    assert exc.value.code == "blocklist-unavailable"
    (world.dir / "bad-list.txt").write_text("not a digest\n")
    cfg = dataclasses.replace(world.cfg.x509, blocklist_file=world.dir / "bad-list.txt")
    with pytest.raises(Refusal) as exc:
        keychecks.check_public_key(world.ec_key.public_key(), cfg)
    assert exc.value.code == "blocklist-unavailable"


def test_ed25519_accepted_when_enabled(world):
    cfg = dataclasses.replace(
        world.cfg, x509=dataclasses.replace(world.cfg.x509, allow_ed25519=True)
    )
    key = ed25519.Ed25519PrivateKey.generate()
    req = SignRequest(**{**BASE, "payload1": csr_pem(key)})
    cert = sign_certificate(plan_certificate(cfg, world.store, req, NOW), new_serial())
    ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert ku.digital_signature and not ku.key_encipherment and not ku.key_agreement


@pytest.fixture(scope="module")
def weak_world(tmp_path_factory):
    return World(tmp_path_factory.mktemp("x509weak"), extra_toml="allow_weak_digests = true\n")


@pytest.mark.filterwarnings("ignore:.*signatures are deprecated")
@pytest.mark.parametrize("md,name", [(1, "md5"), (2, "sha1"), (3, "ripemd160")])
def test_weak_digests_when_allowed(weak_world, md, name):
    """Allowed for a test CA: signed if this cryptography can, else refused clearly."""
    req = SignRequest(**{**BASE, "md": md, "payload1": csr_pem(weak_world.rsa_key)})
    try:
        plan = plan_certificate(weak_world.cfg, weak_world.store, req, NOW)
    except Refusal as exc:
        assert exc.code == "unsupported-digest"
        return
    assert name != "ripemd160"
    cert = sign_certificate(plan, new_serial())
    assert cert.signature_hash_algorithm.name == name


def test_spkac_variants(world):
    """SPKAC with CRLF line ends, spaces around '=', and an MD5 signature (old keygen)."""
    line = spkac_line(world.rsa_key, world.dir, digest="md5")
    payload = b"CN = Alice\r\n1.OU = x\r\n" + line.replace(b"SPKAC=", b"SPKAC = ").replace(
        b"\n", b"\r\n"
    )
    parsed = parse_request(payload, spkac=True)
    assert parsed.spkac_subject_lines == (b"CN = Alice", b"1.OU = x")
    assert parsed.public_key.public_numbers() == world.rsa_key.public_key().public_numbers()


def test_payload_decides_the_format_not_the_flag(world):
    spk = spkac_block(world.spkac["ec"], ["CN = Alice"])
    for payload, lines in ((csr_pem(world.ec_key), None), (spk, (b"CN = Alice",))):
        for flag in (False, True):
            parsed = parse_request(payload, flag)
            assert parsed.spkac_subject_lines == lines
            assert parsed.public_key.public_numbers() == world.ec_key.public_key().public_numbers()


def test_der_and_labelled_pem_csrs(world):
    pem = csr_pem(world.ec_key)
    for payload in (
        _der(pem),
        b"junk before\n" + pem + b"junk after",
        pem.replace(b"CERTIFICATE REQUEST", b"NEW CERTIFICATE REQUEST"),
    ):
        parsed = parse_request(payload, spkac=False)
        assert parsed.spkac_subject_lines is None
        assert parsed.public_key.public_numbers() == world.ec_key.public_key().public_numbers()


def test_root_expiry_refusal(world):
    req = SignRequest(**{**BASE, "payload1": csr_pem(world.rsa_key)})
    with pytest.raises(Refusal) as exc:
        plan_certificate(world.cfg, world.store, req, NOW + timedelta(days=365 * 30))
    assert exc.value.code == "root-expired"


def test_badkeys_only_check_when_installed(world):
    """A modulus of sparse primes (polynomial structure): only badkeys' rsapoly
    knows it. With badkeys installed it is refused; without, it passes, which is
    the documented difference between the two environments."""
    p = next_prime((3 << 1022) + (1 << 900) + (1 << 450))
    q = next_prime((3 << 1022) + (1 << 800) + (1 << 333))
    req = SignRequest(**{**BASE, "payload1": csr_pem(rsa_from_primes(p, q))})
    if importlib.util.find_spec("badkeys") is not None:
        with pytest.raises(Refusal) as exc:
            plan_certificate(world.cfg, world.store, req, NOW)
        assert exc.value.code == "bad-key" and "rsapoly" in exc.value.text
    else:
        assert plan_certificate(world.cfg, world.store, req, NOW).public_key.key_size == 2048
