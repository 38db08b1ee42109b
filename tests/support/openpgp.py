"""Test helpers for the OpenPGP tests: real gpg, hand-made packets and key blocks.

Test tooling, imported by name where needed at import time (parametrize
arguments, module constants of the packet walker tests). Keys are made with the system's gpg; what gpg cannot make
(an expired user ID, a primary key of an unaccepted algorithm) is made here
packet by packet, signed with the ``cryptography`` package.
"""

from __future__ import annotations

import base64
import hashlib
import math
import os
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa, x25519
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from hypothesis import HealthCheck, settings

from signer_core.openpgp import keyblock
from signer_core.openpgp.packets import walk
from signer_core.refusal import Refusal
from tests.support.examples import examples

GPG = ("gpg", "--batch", "--no-tty", "--no-greeting")


def gpg(home: Path, *args: str, data: bytes | None = None, check: bool = True) -> bytes:
    proc = subprocess.run(
        [*GPG, "--homedir", str(home), *args],
        input=data or b"",
        capture_output=True,
        timeout=120,
        check=False,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"gpg {args} failed: {proc.stderr.decode(errors='replace')}")
    return proc.stdout


class Homes:
    """Short-path GnuPG homes for the tests, removed with their agents at the end."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="tpgp", dir="/tmp"))
        self.count = 0

    def new(self, s2k_fast: bool = True) -> Path:
        self.count += 1
        home = self.root / f"h{self.count}"
        home.mkdir(mode=0o700)
        if s2k_fast:
            (home / "gpg-agent.conf").write_text("s2k-count 65536\n")
        return home

    def close(self) -> None:
        for home in self.root.iterdir():
            subprocess.run(
                ["gpgconf", "--homedir", str(home), "--kill", "all"],
                capture_output=True,
                check=False,
            )
        shutil.rmtree(self.root, ignore_errors=True)


def fingerprint(home: Path, uid: str, secret: bool = False) -> str:
    out = gpg(
        home, "--with-colons", "--list-secret-keys" if secret else "--list-keys", uid
    ).decode()
    return next(line.split(":")[9] for line in out.splitlines() if line.startswith("fpr:"))


def gen_key(
    home: Path,
    uid: str,
    algo: str = "ed25519",
    expire: str = "never",
    passphrase: str = "",
    at: int | None = None,
    usage: str = "default",
) -> str:
    faked = ["--faked-system-time", f"{at}!"] if at else []
    gpg(
        home,
        *faked,
        "--pinentry-mode",
        "loopback",
        "--passphrase",
        passphrase,
        "--quick-gen-key",
        uid,
        algo,
        usage,
        expire,
    )
    return fingerprint(home, uid)


def assert_clean(workdir: Path) -> None:
    """No request home in ``workdir`` and nothing running for one (CA homes: a ``pid`` file)."""
    ca_homes = [os.fsencode(f"{p} ") for p in workdir.iterdir() if (p / "pid").is_file()]
    assert [p.name for p in workdir.iterdir() if not (p / "pid").is_file()] == []
    deadline = time.monotonic() + 3
    while True:
        found = subprocess.run(["pgrep", "-af", re.escape(str(workdir))], capture_output=True)
        left = [x for x in found.stdout.splitlines() if not any(h in x + b" " for h in ca_homes)]
        if not left:
            return
        assert time.monotonic() < deadline, f"left running: {left!r}"
        time.sleep(0.05)


# --- hand-made packets -------------------------------------------------------


def packet(tag: int, body: bytes) -> bytes:
    """A new-format packet with the shortest length encoding."""
    n = len(body)
    if n < 192:
        head = bytes([n])
    elif n < 8384:
        head = bytes([((n - 192) >> 8) + 192, (n - 192) & 0xFF])
    else:
        head = b"\xff" + n.to_bytes(4, "big")
    return bytes([0xC0 | tag]) + head + body


def mpi(value: bytes) -> bytes:
    n = int.from_bytes(value, "big")
    return n.bit_length().to_bytes(2, "big") + n.to_bytes((n.bit_length() + 7) // 8, "big")


def _sub(kind: int, value: bytes) -> bytes:
    return bytes([len(value) + 1, kind]) + value


@dataclass(frozen=True)
class Ed25519Key:
    """A gpg-made Ed25519 primary key, taken apart so tests can sign with it."""

    public_body: bytes
    seed: bytes = field(repr=False)

    @property
    def fpr(self) -> bytes:
        return hashlib.sha1(
            b"\x99" + len(self.public_body).to_bytes(2, "big") + self.public_body
        ).digest()

    @classmethod
    def from_secret_export(cls, data: bytes) -> Ed25519Key:
        body = walk(data)[0].body  # unprotected tag-5 packet
        oid_len = body[6]
        point = 7 + oid_len
        pub_end = point + 2 + (int.from_bytes(body[point : point + 2], "big") + 7) // 8
        assert body[pub_end] == 0, "secret key must be unprotected"
        secret = body[pub_end + 1 :]
        size = (int.from_bytes(secret[:2], "big") + 7) // 8
        return cls(body[:pub_end], secret[2 : 2 + size].rjust(32, b"\0"))

    def uid_with_self_sig(self, uid: bytes, created: int, expires_after: int = 0) -> bytes:
        """A user ID packet and its 0x13 self-signature, optionally expiring."""
        hashed = _sub(2, created.to_bytes(4, "big")) + _sub(33, b"\x04" + self.fpr)
        if expires_after:
            hashed += _sub(3, expires_after.to_bytes(4, "big"))
        head = bytes([4, 0x13, 22, 8]) + len(hashed).to_bytes(2, "big") + hashed
        material = (
            b"\x99"
            + len(self.public_body).to_bytes(2, "big")
            + self.public_body
            + b"\xb4"
            + len(uid).to_bytes(4, "big")
            + uid
            + head
            + b"\x04\xff"
            + len(head).to_bytes(4, "big")
        )
        digest = hashlib.sha256(material).digest()
        sig = Ed25519PrivateKey.from_private_bytes(self.seed).sign(digest)
        unhashed = _sub(16, self.fpr[-8:])
        body = (
            head
            + len(unhashed).to_bytes(2, "big")
            + unhashed
            + digest[:2]
            + mpi(sig[:32])
            + mpi(sig[32:])
        )
        return packet(13, uid) + packet(2, body)


# --- gpg --list-packets, parsed -------------------------------------------------

_SUBPKT = re.compile(r"^(critical )?(hashed )?subpkt (\d+) len \d+ \((.*)\)$")
_EXPIRES = re.compile(r"^sig expires after (?:(\d+)y)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?$")


@dataclass
class Signature:
    keyid: str = ""
    sigclass: int = -1
    created: int = 0
    digest_algo: int = -1
    hashed: dict[int, str] = field(default_factory=dict)  # subpacket type -> gpg's rendering
    unhashed: dict[int, str] = field(default_factory=dict)

    @property
    def expires_after(self) -> int:
        expires = _EXPIRES.match(self.hashed[3])
        assert expires is not None, f"gpg's expiry {self.hashed[3]!r} is not understood"
        y, d, h, m = (int(g or 0) for g in expires.groups())
        return (((y * 365 + d) * 24 + h) * 60 + m) * 60


@dataclass
class UserId:
    text: str
    sigs: list[Signature] = field(default_factory=list)


def user_ids(home: Path, key: bytes) -> list[UserId]:
    """The user IDs of ``key`` with the signatures that follow each, from ``gpg --list-packets``."""
    out = gpg(home, "--list-packets", data=key).decode("utf-8", "replace")
    uids: list[UserId] = []
    sig: Signature | None = None
    in_uid = False
    for raw in out.splitlines():
        line = raw.strip()
        if line.startswith("# off="):
            tag = int(_field(r"tag=(\d+)", line))
            in_uid = in_uid and tag == 2 or tag == 13
            sig = None
        elif line.startswith(":user ID packet:"):
            uids.append(UserId(line.split(":", 2)[2].strip().strip('"')))
        elif line.startswith(":signature packet:") and in_uid:
            sig = Signature(keyid=_field(r"keyid ([0-9A-F]+)", line))
            uids[-1].sigs.append(sig)
        elif sig is not None:
            _signature_line(sig, line)
    return uids


def _field(pattern: str, line: str) -> str:
    """Group 1 of ``pattern`` in a line of ``gpg --list-packets``, which must hold it."""
    found = re.search(pattern, line)
    assert found is not None, f"no {pattern!r} in gpg's {line!r}"
    return found.group(1)


def _signature_line(sig: Signature, line: str) -> None:
    if line.startswith("version "):
        sig.created = int(_field(r"created (\d+)", line))
        sig.sigclass = int(_field(r"sigclass 0x([0-9a-f]+)", line), 16)
    elif line.startswith("digest algo "):
        sig.digest_algo = int(_field(r"digest algo (\d+)", line))
    elif m := _SUBPKT.match(line):
        (sig.hashed if m.group(2) else sig.unhashed)[int(m.group(3))] = m.group(4)


def colon_sigs(home: Path, fpr: str) -> list[list[str]]:
    """``--check-sigs`` colon records of ``fpr`` in ``home`` (sig validity in field 2)."""
    out = gpg(home, "--with-colons", "--check-sigs", fpr).decode("utf-8", "replace")
    return [line.split(":") for line in out.splitlines()]


# --- hand-made key blocks for the packet walker tests (needed at import time) ------

CREATED = 1_700_000_000
ED25519_OID = bytes.fromhex("2b06010401da470f01")
FUZZ = settings(
    max_examples=examples(400), deadline=2000, suppress_health_check=[HealthCheck.too_slow]
)


def make_key(seed: bytes = b"\x07" * 32) -> Ed25519Key:
    public = (
        Ed25519PrivateKey.from_private_bytes(seed)
        .public_key()
        .public_bytes(Encoding.Raw, PublicFormat.Raw)
    )
    body = (
        bytes([4])
        + CREATED.to_bytes(4, "big")
        + bytes([22, len(ED25519_OID)])
        + ED25519_OID
        + mpi(b"\x40" + public)
    )
    return Ed25519Key(body, seed)


KEY = make_key()
UID_BLOCK = KEY.uid_with_self_sig(b"Alice <alice@example.org>", CREATED + 10)
VALID = packet(6, KEY.public_body) + UID_BLOCK


def armour(
    data: bytes, label: str = "PUBLIC KEY BLOCK", headers: str = "Comment: test\n", crc: bool = True
) -> bytes:
    b64 = base64.b64encode(data).decode()
    lines = [b64[i : i + 64] for i in range(0, len(b64), 64)]
    tail = ["=AAAA"] if crc else []
    text = "\n".join(
        [f"-----BEGIN PGP {label}-----", headers, *lines, *tail, f"-----END PGP {label}-----", ""]
    )
    return text.encode()


def code(data: bytes, **kw) -> str:
    with pytest.raises(Refusal) as info:
        keyblock.summarise(data, **kw)
    return info.value.code


def key_body(algo: int, fields: bytes, version: int = 4, *, created: int = CREATED) -> bytes:
    return bytes([version]) + created.to_bytes(4, "big") + bytes([algo]) + fields


CA = make_key(b"\x09" * 32)
CA_KEYID = CA.fpr[-8:].hex().upper()


def certification(sigclass: int, issuer_in: str, issuer: bytes = CA.fpr) -> bytes:
    sub16 = bytes([9, 16]) + issuer[-8:]
    sub33 = bytes([22, 33, 4]) + issuer
    hashed = (
        bytes([5, 2]) + CREATED.to_bytes(4, "big") + (sub33 if issuer_in == "hashed33" else b"")
    )
    unhashed = sub16 if issuer_in == "unhashed16" else b""
    body = bytes([4, sigclass, 22, 8]) + len(hashed).to_bytes(2, "big") + hashed
    return packet(
        2, body + len(unhashed).to_bytes(2, "big") + unhashed + b"\0\0" + mpi(b"\1") + mpi(b"\1")
    )


# --- taking gpg's keys apart (the CA-key tests) ------------------------------------


def read_mpis(data: bytes, count: int) -> list[int]:
    values, pos = [], 0
    for _ in range(count):
        end = pos + 2 + (int.from_bytes(data[pos : pos + 2], "big") + 7) // 8
        values.append(int.from_bytes(data[pos + 2 : end], "big"))
        pos = end
    return values


def key_pairs(home: Path, fpr: str) -> list[tuple[bytes, bytes]]:
    """(public body, unprotected secret fields) of the primary key and each subkey."""
    public = [p for p in walk(gpg(home, "--export", fpr)) if p.tag in (6, 14)]
    secret = [
        p
        for p in walk(
            gpg(
                home, "--pinentry-mode", "loopback", "--passphrase", "", "--export-secret-keys", fpr
            )
        )
        if p.tag in (5, 7)
    ]
    assert len(public) == len(secret)
    pairs = []
    for pub, sec in zip(public, secret, strict=True):
        assert sec.body.startswith(pub.body) and sec.body[len(pub.body)] == 0  # S2K usage: none
        pairs.append((pub.body, sec.body[len(pub.body) + 1 :]))
    return pairs


def rebuilt(public_body: bytes, secret: bytes, curve: ec.EllipticCurve | None = None) -> object:
    """The cryptography private key of a gpg key, from its secret values alone."""
    algorithm = public_body[5]
    if algorithm == 1:
        d, p, q, _u = read_mpis(secret, 4)
        e = pow(d, -1, math.lcm(p - 1, q - 1))
        numbers = rsa.RSAPrivateNumbers(
            p,
            q,
            d,
            rsa.rsa_crt_dmp1(d, p),
            rsa.rsa_crt_dmq1(d, q),
            rsa.rsa_crt_iqmp(p, q),
            rsa.RSAPublicNumbers(e, p * q),
        )
        return numbers.private_key()
    [value] = read_mpis(secret, 1)
    if algorithm == 19:
        assert curve is not None, "rebuilding an ECDSA key needs its curve"
        return ec.derive_private_key(value, curve)
    if algorithm == 22:
        return ed25519.Ed25519PrivateKey.from_private_bytes(value.to_bytes(32, "big"))
    assert algorithm == 18  # cv25519: gpg stores the native little-endian scalar reversed
    return x25519.X25519PrivateKey.from_private_bytes(value.to_bytes(32, "big")[::-1])
