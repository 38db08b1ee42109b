"""Hostile Sign X.509 requests, table-driven: each goes through the whole of
``plan_certificate`` and must be refused with the code of the check that
fires. Weak keys are made deliberately (real primes from ``openssl prime``)."""

from __future__ import annotations

import dataclasses
import importlib.util
from datetime import timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from signer_core.refusal import Refusal
from signer_core.x509 import keychecks
from signer_core.x509.issue import (
    SignRequest,
    new_serial,
    plan_certificate,
    sign_certificate,
)
from signer_core.x509.request import parse_request
from tests.support.weak_keys import next_prime, openssl_prime, rsa_from_primes
from tests.support.x509 import BASE_REQUEST, NOW, World, csr_pem, der_of, spkac_block, spkac_line


def test_every_hostile_request_is_refused_with_its_code(refusal_world, hostile_requests):
    seen = set()
    for name, change, code in hostile_requests:
        fields = {**BASE_REQUEST, "payload1": csr_pem(refusal_world.rsa_key), **change}
        try:
            plan_certificate(refusal_world.cfg, refusal_world.store, SignRequest(**fields), NOW)
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
# of plan_certificate. Beside the hostile_requests table (tests/conftest.py),
# which tests/system/test_refusals.py replays over the link.
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


def outcome(refusal_world, change: dict) -> str:
    """The refusal code of the base request with ``change``, or "issued"."""
    fields = {**BASE_REQUEST, "payload1": csr_pem(refusal_world.rsa_key), **change}
    try:
        plan_certificate(refusal_world.cfg, refusal_world.store, SignRequest(**fields), NOW)
    except Refusal as exc:
        assert exc.payload2().startswith(f"ERR {exc.code}: ".encode())
        return exc.code
    return "issued"


@pytest.mark.parametrize("change,code", [c[1:] for c in NAME_CASES], ids=[c[0] for c in NAME_CASES])
def test_name_rules_refuse_with_their_codes(refusal_world, change, code):
    assert outcome(refusal_world, change) == code


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
def test_name_rules_keep_consistent_requests(refusal_world, change):
    assert outcome(refusal_world, change) == "issued"


def test_name_rules_are_profile_data_the_configuration_sets(tmp_path):
    """Overrides of server_names and email_names; profile 4 (disabled in the
    refusal_world fixture) keeps its built-in email_names."""
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


def test_base_request_is_accepted(refusal_world):
    req = SignRequest(**{**BASE_REQUEST, "payload1": csr_pem(refusal_world.rsa_key)})
    cert = sign_certificate(
        plan_certificate(refusal_world.cfg, refusal_world.store, req, NOW), new_serial()
    )
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


def test_prime_and_huge_moduli(refusal_world):
    prime = openssl_prime(2048)
    for n, code in ((prime, "bad-key"), ((1 << 8200) + 1, "unsupported-key")):
        key = rsa.RSAPublicNumbers(65537, n).public_key()
        with pytest.raises(Refusal) as exc:
            keychecks.check_public_key(key, refusal_world.cfg.x509)
        assert exc.value.code == code


def test_unreadable_blocklist_fails_closed(refusal_world):
    cfg = dataclasses.replace(
        refusal_world.cfg.x509, blocklist_file=refusal_world.dir / "missing.txt"
    )
    with pytest.raises(Refusal) as exc:
        keychecks.check_public_key(refusal_world.ec_key.public_key(), cfg)
    assert exc.value.code == "blocklist-unavailable"
    (refusal_world.dir / "bad-list.txt").write_text("not a digest\n")
    cfg = dataclasses.replace(
        refusal_world.cfg.x509, blocklist_file=refusal_world.dir / "bad-list.txt"
    )
    with pytest.raises(Refusal) as exc:
        keychecks.check_public_key(refusal_world.ec_key.public_key(), cfg)
    assert exc.value.code == "blocklist-unavailable"


def test_ed25519_accepted_when_enabled(refusal_world):
    cfg = dataclasses.replace(
        refusal_world.cfg, x509=dataclasses.replace(refusal_world.cfg.x509, allow_ed25519=True)
    )
    key = ed25519.Ed25519PrivateKey.generate()
    req = SignRequest(**{**BASE_REQUEST, "payload1": csr_pem(key)})
    cert = sign_certificate(plan_certificate(cfg, refusal_world.store, req, NOW), new_serial())
    ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert ku.digital_signature and not ku.key_encipherment and not ku.key_agreement


@pytest.fixture(scope="module")
def weak_world(tmp_path_factory):
    return World(tmp_path_factory.mktemp("x509weak"), extra_toml="allow_weak_digests = true\n")


@pytest.mark.filterwarnings("ignore:.*signatures are deprecated")
@pytest.mark.parametrize("md,name", [(1, "md5"), (2, "sha1"), (3, "ripemd160")])
def test_weak_digests_when_allowed(weak_world, md, name):
    """Allowed for a test CA: signed if this cryptography can, else refused clearly."""
    req = SignRequest(**{**BASE_REQUEST, "md": md, "payload1": csr_pem(weak_world.rsa_key)})
    try:
        plan = plan_certificate(weak_world.cfg, weak_world.store, req, NOW)
    except Refusal as exc:
        assert exc.code == "unsupported-digest"
        return
    assert name != "ripemd160"
    cert = sign_certificate(plan, new_serial())
    assert cert.signature_hash_algorithm.name == name


def test_spkac_variants(refusal_world):
    """SPKAC with CRLF line ends, spaces around '=', and an MD5 signature (old keygen)."""
    line = spkac_line(refusal_world.rsa_key, refusal_world.dir, digest="md5")
    payload = b"CN = Alice\r\n1.OU = x\r\n" + line.replace(b"SPKAC=", b"SPKAC = ").replace(
        b"\n", b"\r\n"
    )
    parsed = parse_request(payload, spkac=True)
    assert parsed.spkac_subject_lines == (b"CN = Alice", b"1.OU = x")
    assert parsed.public_key.public_numbers() == refusal_world.rsa_key.public_key().public_numbers()


def test_payload_decides_the_format_not_the_flag(refusal_world):
    spk = spkac_block(refusal_world.spkac["ec"], ["CN = Alice"])
    for payload, lines in ((csr_pem(refusal_world.ec_key), None), (spk, (b"CN = Alice",))):
        for flag in (False, True):
            parsed = parse_request(payload, flag)
            assert parsed.spkac_subject_lines == lines
            assert (
                parsed.public_key.public_numbers()
                == refusal_world.ec_key.public_key().public_numbers()
            )


def test_der_and_labelled_pem_csrs(refusal_world):
    pem = csr_pem(refusal_world.ec_key)
    for payload in (
        der_of(pem),
        b"junk before\n" + pem + b"junk after",
        pem.replace(b"CERTIFICATE REQUEST", b"NEW CERTIFICATE REQUEST"),
    ):
        parsed = parse_request(payload, spkac=False)
        assert parsed.spkac_subject_lines is None
        assert (
            parsed.public_key.public_numbers() == refusal_world.ec_key.public_key().public_numbers()
        )


def test_root_expiry_refusal(refusal_world):
    req = SignRequest(**{**BASE_REQUEST, "payload1": csr_pem(refusal_world.rsa_key)})
    with pytest.raises(Refusal) as exc:
        plan_certificate(
            refusal_world.cfg, refusal_world.store, req, NOW + timedelta(days=365 * 30)
        )
    assert exc.value.code == "root-expired"


def test_badkeys_only_check_when_installed(refusal_world):
    """A modulus of sparse primes (polynomial structure): only badkeys' rsapoly
    knows it. With badkeys installed it is refused; without, it passes, which is
    the documented difference between the two environments."""
    p = next_prime((3 << 1022) + (1 << 900) + (1 << 450))
    q = next_prime((3 << 1022) + (1 << 800) + (1 << 333))
    req = SignRequest(**{**BASE_REQUEST, "payload1": csr_pem(rsa_from_primes(p, q))})
    if importlib.util.find_spec("badkeys") is not None:
        with pytest.raises(Refusal) as exc:
            plan_certificate(refusal_world.cfg, refusal_world.store, req, NOW)
        assert exc.value.code == "bad-key" and "rsapoly" in exc.value.text
    else:
        assert (
            plan_certificate(refusal_world.cfg, refusal_world.store, req, NOW).public_key.key_size
            == 2048
        )
