"""What gpg made of a request: the certified key read back from its keyring, checked, armoured.

Trusted side. It reads the legacy keyring file gpg wrote in a request's
private home (the CA's public key block, then the user's key with gpg's new
certifications) with our own packet code, never with another gpg run. It
trusts gpg to have signed what it was asked to (the CA key never left the
CA's agent); what the user sent is still hostile, so the only CA
certifications counted are packets that were not in the request (``sent``),
and each must be exactly what was asked: a v4 certification of the
configured class by the CA key, made during this request, with the asked
expiry, policy URL and digest. The result is armoured as gpg's export would
(no header lines, a CRC-24 line), without gpg's own keyring trust packets.

Refusal codes: openpgp-key-revoked, -key-expired, -no-valid-uid (gpg would
not sign: its fixed English sentences, LC_ALL=C, never a line quoting the
user's text), -import-failed (gpg did not find the key), -certify-failed.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass

from signer_core.openpgp.keyblock import issuers, key_packets, signature_subpackets
from signer_core.openpgp.packets import (
    TAG_PUBLIC_KEY,
    TAG_PUBLIC_SUBKEY,
    TAG_SIGNATURE,
    TAG_TRUST,
    TAG_USER_ATTRIBUTE,
    TAG_USER_ID,
    Packet,
    walk,
)
from signer_core.refusal import Refusal

DIGEST_IDS = {"SHA256": 8, "SHA384": 9, "SHA512": 10}
_DAY = 86400
_SUB_CREATED, _SUB_EXPIRES, _SUB_POLICY = 2, 3, 26
_GPG_FAILURE = re.compile(r"^gpg: [a-z ]+ failed: [A-Za-z ]+$")
_REVOKED = "gpg: Key is revoked.  Unable to sign."
_EXPIRED = "This key has expired!  Unable to sign."
_NOTHING = re.compile(r"^Nothing to sign with key [0-9A-F]{8,16}$")
_NOT_FOUND = re.compile(r'^gpg: key "[0-9A-F]{40}" not found')


@dataclass(frozen=True)
class Asked:
    """What each new certification must be."""

    keyid: str  # the CA key's 16-hex-digit key ID
    level: int  # 0 to 3: signature class 0x10 + level
    days: int
    policy_url: str
    digest: str  # SHA256, SHA384, SHA512
    started: int  # no certification made before this (Unix time)


def certified_key(
    keyring: bytes, fingerprint: str, sent: set[bytes], asked: Asked, stdout: str, stderr: str
) -> bytes:
    """The user's key block (``fingerprint``) of ``keyring``, checked and armoured.

    ``sent``: the raw packets of the request; ``stdout``/``stderr``: gpg's.
    """
    block = _user_block(walk(keyring), fingerprint)
    if block is None:
        raise Refusal("openpgp-import-failed", "gpg did not read the key that was inspected")
    certified = _count_certified(block, sent, asked)
    if certified == 0:
        _refuse_unsigned(stdout, stderr)
    return armour(b"".join(p.raw for p in block if p.tag != TAG_TRUST))


def _user_block(packets: list[Packet], fingerprint: str) -> list[Packet] | None:
    """The packets of the key block whose primary key is ``fingerprint``."""
    start = None
    for i, p in enumerate(packets):
        if p.tag != TAG_PUBLIC_KEY:
            continue
        if start is not None:
            return packets[start:i]
        if key_packets([p])[0].fingerprint == fingerprint:
            start = i
    return None if start is None else packets[start:]


def _count_certified(block: list[Packet], sent: set[bytes], asked: Asked) -> int:
    """How many user IDs carry a new CA certification; refuse one that is not as asked."""
    certified = 0
    on_uid = done = False
    for p in block:
        if p.tag in (TAG_USER_ID, TAG_USER_ATTRIBUTE, TAG_PUBLIC_SUBKEY):
            on_uid, done = p.tag == TAG_USER_ID, False
            continue
        if p.tag != TAG_SIGNATURE or p.raw in sent or not _by_ca(p.body, asked.keyid):
            continue
        if not on_uid or done:
            raise Refusal("openpgp-certify-failed", "gpg made an unexpected CA signature")
        if (failure := _not_as_asked(p.body, asked)) is not None:
            raise Refusal("openpgp-certify-failed", f"a new certification {failure}")
        certified += 1
        done = True
    return certified


def _by_ca(body: bytes, keyid: str) -> bool:
    return len(body) > 1 and body[0] == 4 and keyid in issuers(body)


def _not_as_asked(body: bytes, asked: Asked) -> str | None:
    """Why a v4 CA signature is not the certification asked for; None if it is."""
    if len(body) < 4 or body[1] != 0x10 + asked.level:
        return "has the wrong signature class"
    if body[3] != DIGEST_IDS[asked.digest]:
        return "has the wrong digest"
    hashed = {kind: value for is_hashed, kind, value in signature_subpackets(body) if is_hashed}
    created = int.from_bytes(hashed.get(_SUB_CREATED, b""), "big")
    if created < asked.started:
        return "is not fresh"
    if int.from_bytes(hashed.get(_SUB_EXPIRES, b""), "big") != asked.days * _DAY:
        return "has the wrong expiry"
    if hashed.get(_SUB_POLICY) != asked.policy_url.encode("ascii"):
        return "has the wrong policy URL"
    return None


def _refuse_unsigned(stdout: str, stderr: str) -> None:
    """Nothing was certified: refuse with gpg's reason."""
    out, err = stdout.splitlines(), stderr.splitlines()
    if _REVOKED in err:
        raise Refusal("openpgp-key-revoked", "the key is revoked")
    if _EXPIRED in out:
        raise Refusal("openpgp-key-expired", "the key has expired")
    if any(_NOTHING.match(line) for line in out):
        raise Refusal(
            "openpgp-no-valid-uid", "no user ID of the key is valid (self-signed, not revoked)"
        )
    if any(_NOT_FOUND.match(line) for line in err):
        raise Refusal("openpgp-import-failed", "gpg did not read the key that was inspected")
    # Only gpg's own failure lines: others quote user IDs, which are the requester's text.
    failures = [line for line in err if _GPG_FAILURE.match(line)]
    detail = f": {failures[-1]}" if failures else ""
    raise Refusal("openpgp-certify-failed", f"no user ID certified{detail}")


def armour(data: bytes) -> bytes:
    """``data`` as an armoured public key block, as ``gpg --armor --export`` writes it."""
    text = base64.b64encode(data)
    lines = [text[i : i + 64] for i in range(0, len(text), 64)]
    crc = base64.b64encode(_crc24(data).to_bytes(3, "big"))
    return b"\n".join(
        [
            b"-----BEGIN PGP PUBLIC KEY BLOCK-----",
            b"",
            *lines,
            b"=" + crc,
            b"-----END PGP PUBLIC KEY BLOCK-----",
            b"",
        ]
    )


def _crc24(data: bytes) -> int:
    crc = 0xB704CE
    for byte in data:
        crc = ((crc << 8) & 0xFFFFFF) ^ _CRC24_TABLE[((crc >> 16) ^ byte) & 0xFF]
    return crc


def _crc24_entry(index: int) -> int:
    crc = index << 16
    for _bit in range(8):
        crc <<= 1
        if crc & 0x1000000:
            crc ^= 0x1864CFB
    return crc & 0xFFFFFF


_CRC24_TABLE = tuple(_crc24_entry(i) for i in range(256))
