"""Fixtures for every test directory: a world-readable work directory, the daemon users.

Test tooling. ``tests/support`` (on the path: pyproject's ``pythonpath``) holds
what modules need at import time; fixtures shared by several directories are
here, those of one directory in its own conftest.py.
"""

from __future__ import annotations

import base64
import hashlib
import os
import random
import secrets
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest
from asn1crypto import csr as asn1csr
from asn1crypto import keys as asn1keys
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from hypothesis import settings

from signer_core.roots import Root
from signerctl.demo.ca import Users, system_users
from tests.support.crl import pem
from tests.support.examples import examples
from tests.support.openpgp import mpi, packet
from tests.support.weak_keys import next_prime, openssl_prime, roca_prime, rsa_from_primes
from tests.support.x509 import World, csr_pem, csr_pem_of, der_of, spkac_block

# A property test that names no count draws the default share of hypothesis's 100.
settings.register_profile("suite", max_examples=examples(100))
settings.load_profile("suite")


def pytest_report_header(config):
    import cryptography
    import gnupg

    return (
        f"environment: python {sys.version.split()[0]} at {sys.executable}, "
        f"cryptography {cryptography.__version__}, python-gnupg {gnupg.__version__}, "
        f"uid {os.geteuid()}, property tests' share of examples {examples(1000) / 1000:g}"
    )


@pytest.fixture
def world_dir():
    """A fresh directory the daemon users can reach (pytest's tmp_path is 0700 under root)."""
    path = Path(tempfile.mkdtemp(prefix="signer-test-", dir="/tmp"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def users() -> Users:
    return system_users() if os.geteuid() == 0 else Users()


# -- the hostile Sign X.509 requests (tests/signer_core/x509 and tests/system) --------

REFUSAL_TOML = """allow_ed25519 = false
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


@pytest.fixture(scope="module")
def refusal_world(tmp_path_factory):
    """A World whose configuration has what the refusal table needs (a blocklist...)."""
    w = World(tmp_path_factory.mktemp("x509refusals"), extra_toml=REFUSAL_TOML)
    w.blocked_key = ec.generate_private_key(ec.SECP256R1())
    spki = w.blocked_key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    (w.dir / "blocked.txt").write_text(
        f"# compromised keys\n{'0' * 64}\n{hashlib.sha256(spki).hexdigest().upper()}\n"
    )
    return w


@pytest.fixture(scope="module")
def weak(refusal_world):
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


def _other_key_csr(world) -> bytes:
    """A CSR carrying world.rsa_key's public key but signed by another key."""
    other = rsa.generate_private_key(65537, 2048)
    req = asn1csr.CertificationRequest.load(der_of(csr_pem(other)))
    info = req["certification_request_info"]
    info["subject_pk_info"] = asn1keys.PublicKeyInfo.load(
        world.rsa_key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return csr_pem_of(
        asn1csr.CertificationRequest(
            {
                "certification_request_info": info,
                "signature_algorithm": req["signature_algorithm"],
                "signature": req["signature"],
            }
        ).dump(force=True)
    )


def _tampered_spkac(world, how: str) -> bytes:
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


@pytest.fixture(scope="module")
def hostile_requests(refusal_world, weak):
    """(name, changes to BASE_REQUEST, expected code) of every hostile Sign X.509 request
    of the table: tests/signer_core/x509 plans them, tests/system sends them."""
    world = refusal_world
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
        (
            "truncated CSR",
            {"payload1": csr_pem_of(der_of(csr_pem(world.rsa_key))[:-20])},
            "bad-csr",
        ),
        ("oversized request", {"payload1": csr_pem(world.rsa_key) + b" " * 70000}, "bad-csr"),
        ("CSR signed by another key", {"payload1": _other_key_csr(world)}, "bad-csr-signature"),
        (
            "SPKAC challenge altered",
            {"spkac": True, "payload1": _tampered_spkac(world, "challenge")},
            "bad-csr-signature",
        ),
        ("SPKAC not base64", {"spkac": True, "payload1": b"CN = a\nSPKAC=@@@@\n"}, "bad-spkac"),
        ("SPKAC not DER", {"spkac": True, "payload1": b"CN = a\nSPKAC=MAMCAQE=\n"}, "bad-spkac"),
        ("SPKAC in BER", {"spkac": True, "payload1": _tampered_spkac(world, "ber")}, "bad-spkac"),
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


# -- an OpenPGP key that costs gpg minutes (tests/signer_core/openpgp and tests/system) --

BOMB_CREATED = 1_700_000_000


def _rsa_bomb(modulus_bits: int, exponent_bits: int, signatures: int) -> bytes:
    """An RSA key whose user ID carries ``signatures`` bogus self-signatures.

    The digest's first two bytes are right, so gpg verifies each one in full
    (about 4 s each at 16384/16384 bits here); none verifies.
    """
    n = secrets.randbits(modulus_bits) | 1 << (modulus_bits - 1) | 1
    e = secrets.randbits(exponent_bits) | 1 << (exponent_bits - 1) | 1
    body = bytes([4]) + BOMB_CREATED.to_bytes(4, "big") + bytes([1]) + mpi(_raw(n)) + mpi(_raw(e))
    fpr = hashlib.sha1(b"\x99" + len(body).to_bytes(2, "big") + body).digest()
    uid = b"Mallory <mallory@example.org>"
    sigs = []
    for i in range(signatures):
        hashed = (
            bytes([5, 2]) + (BOMB_CREATED + 10 + i).to_bytes(4, "big") + bytes([22, 33, 4]) + fpr
        )
        head = bytes([4, 0x13, 1, 8]) + len(hashed).to_bytes(2, "big") + hashed
        material = (
            b"\x99"
            + len(body).to_bytes(2, "big")
            + body
            + b"\xb4"
            + len(uid).to_bytes(4, "big")
            + uid
            + head
            + b"\x04\xff"
            + len(head).to_bytes(4, "big")
        )
        unhashed = bytes([9, 16]) + fpr[-8:]
        digest_start = hashlib.sha256(material).digest()[:2]
        sigs.append(
            packet(
                2,
                head
                + len(unhashed).to_bytes(2, "big")
                + unhashed
                + digest_start
                + mpi(_raw(secrets.randbelow(n))),
            )
        )
    return packet(6, body) + packet(13, uid) + b"".join(sigs)


def _raw(value: int) -> bytes:
    return value.to_bytes((value.bit_length() + 7) // 8, "big")


@pytest.fixture(scope="session")
def rsa_bomb():
    """``rsa_bomb(modulus_bits, exponent_bits, signatures)``: see _rsa_bomb."""
    return _rsa_bomb


# -- a CA directory of ``openssl ca``, as the old signer kept it ---------------------
# (tests/signerctl/migrate: the old CA and exports; tests/signer_core/x509: subject order)

OPENSSL_CA_CNF = """
[ca]
default_ca = old
[old]
dir = {dir}
database = $dir/index.txt
new_certs_dir = $dir/newcerts
certificate = $dir/cacert.pem
private_key = $dir/private/cakey.pem
serial = $dir/serial
crlnumber = $dir/crlnumber
default_md = sha256
default_days = 365
default_crl_days = 30
unique_subject = no
policy = policy
{settings}
[policy]
{policy}
"""


@dataclass(frozen=True)
class OpenSSLCA:
    dir: Path
    root: Root

    def run(self, *args: str, check: bool = True) -> str:
        """``openssl ca`` on this directory's configuration; its output."""
        done = subprocess.run(
            ["openssl", "ca", "-config", str(self.dir / "openssl.cnf"), "-batch", *args],
            capture_output=True,
            text=True,
            cwd=self.dir,
            check=False,
        )
        assert done.returncode == 0 or not check, done.stderr
        return done.stdout + done.stderr

    def sign(self, csr: bytes, subject: str, name: str) -> x509.Certificate:
        """The certificate ``openssl ca`` issues for ``csr`` with ``subject`` (slash form)."""
        (self.dir / f"{name}.csr").write_bytes(csr)
        out = self.dir / f"{name}.pem"
        self.run(
            "-in",
            str(self.dir / f"{name}.csr"),
            "-subj",
            subject,
            "-utf8",
            "-notext",
            "-out",
            str(out),
        )
        return x509.load_pem_x509_certificate(out.read_bytes())


def _openssl_ca(
    directory: Path, root: Root, settings: str, policy: str, fresh: bool = True
) -> OpenSSLCA:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "private").mkdir(exist_ok=True)
    (directory / "newcerts").mkdir(exist_ok=True)
    (directory / "cacert.pem").write_bytes(pem(root.certificate))
    (directory / "private" / "cakey.pem").write_bytes(
        root.private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    cnf = OPENSSL_CA_CNF.format(dir=directory, settings=settings, policy=policy)
    (directory / "openssl.cnf").write_text(cnf)
    if fresh:
        (directory / "index.txt").write_text("")
        (directory / "index.txt.attr").write_text("unique_subject = no\n")
        (directory / "serial").write_text("1000\n")
        (directory / "crlnumber").write_text("01\n")
    return OpenSSLCA(directory, root)


@pytest.fixture(scope="session")
def openssl_ca():
    """``openssl_ca(directory, root, settings, policy, fresh=True)``: an ``openssl ca``
    directory for ``root`` whose [old] section ends with ``settings`` and whose policy
    section is ``policy``; ``fresh`` starts an empty index (serial 1000, CRL number 1),
    otherwise the configuration and root files are written beside what is there."""
    return _openssl_ca
