"""What the signer checks about a requester's OpenPGP key block before gpg sees it.

Trusted side. Its input is a user's public key taken from a spool request:
hostile bytes, de-armoured and walked by ``openpgp.packets`` and bounded by
``openpgp.limits``. It never verifies a signature (gpg does that); it
answers the questions the signer must settle *before* gpg sees the key: is
there a secret key packet (tags 5 and 7), how many primary keys and user IDs
are there, what algorithm and size is the primary key, and what is its v4
fingerprint (so that the key gpg imports can be matched with the one
inspected here). It also hands on the body and v4 fingerprint of the
primary key and of each public subkey, so that ``cakeys`` can refuse a
block that carries one of the CA's own keys.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from signer_core.openpgp.limits import (
    DEFAULT_LIMITS,
    PacketLimits,
    check_counts,
    check_key_numbers,
)
from signer_core.openpgp.packets import (
    ALGO_DSA,
    ALGO_ECDSA,
    ALGO_EDDSA,
    ALGO_RSA_SIGNING,
    TAG_PUBLIC_KEY,
    TAG_PUBLIC_SUBKEY,
    TAG_SECRET_KEY,
    TAG_SECRET_SUBKEY,
    TAG_SIGNATURE,
    TAG_TRUST,
    TAG_USER_ATTRIBUTE,
    TAG_USER_ID,
    Packet,
    dearmour,
    mpi_sizes,
    walk,
)
from signer_core.refusal import Refusal

MIN_RSA_DSA_BITS = 2048

_KEY_BLOCK_TAGS = frozenset(
    {TAG_SIGNATURE, TAG_PUBLIC_KEY, TAG_TRUST, TAG_USER_ID, TAG_PUBLIC_SUBKEY, TAG_USER_ATTRIBUTE}
)
_SECRET_TAGS = frozenset({TAG_SECRET_KEY, TAG_SECRET_SUBKEY})

# Curve OIDs (DER body, without tag and length) accepted per primary-key algorithm.
_P256 = bytes.fromhex("2a8648ce3d030107")
_P384 = bytes.fromhex("2b81040022")
_P521 = bytes.fromhex("2b81040023")
_ED25519 = bytes.fromhex("2b06010401da470f01")
_CURVES = {
    ALGO_ECDSA: {_P256: "nistp256", _P384: "nistp384", _P521: "nistp521"},
    ALGO_EDDSA: {_ED25519: "ed25519"},  # the legacy v4 encoding, what gpg 2.2/2.4 make
}


@dataclass(frozen=True)
class KeyPacket:
    """A primary key (tag 6) or public subkey (tag 14) packet of a key block."""

    tag: int
    fingerprint: str  # v4 fingerprint of the body, upper-case hex
    body: bytes


@dataclass(frozen=True)
class KeySummary:
    """What the signer checks about a key block before gpg imports it."""

    packets: bytes  # the binary packets to hand to gpg
    fingerprint: str  # v4 fingerprint of the primary key, upper-case hex
    algorithm: int  # OpenPGP public-key algorithm id
    bits: int  # RSA/DSA modulus size, or the curve's size
    curve: str  # "" for RSA/DSA
    user_ids: int  # user ID packets (tag 13)
    keys: tuple[KeyPacket, ...] = ()  # the primary key, then each public subkey, in order


def summarise(
    data: bytes, drop_certifier: str = "", limits: PacketLimits = DEFAULT_LIMITS
) -> KeySummary:
    """Check that ``data`` is exactly one public key block of an accepted kind, within ``limits``.

    Certifications issued by the key whose 16-hex-digit key ID is
    ``drop_certifier`` are left out of the packets handed on: gpg would not
    certify a user ID again while an earlier certification by the same key
    is still valid, and a forged one must not travel back either.
    """
    packets = walk(dearmour(data), limits.max_packets)
    tags = [p.tag for p in packets]
    if any(t in _SECRET_TAGS for t in tags):
        raise Refusal("openpgp-secret-key", "a secret key was sent; send only the public key")
    unexpected = sorted({t for t in tags if t not in _KEY_BLOCK_TAGS})
    if unexpected:
        raise Refusal("openpgp-bad-packets", f"packet tag {unexpected[0]} in a key block")
    primaries = tags.count(TAG_PUBLIC_KEY)
    if primaries == 0:
        raise Refusal("openpgp-no-key", "no public key in the data")
    if primaries > 1:
        raise Refusal("openpgp-multiple-keys", f"{primaries} keys sent; send exactly one")
    if tags[0] != TAG_PUBLIC_KEY:
        raise Refusal("openpgp-bad-packets", "key block does not start with the primary key")
    user_ids = tags.count(TAG_USER_ID)
    if user_ids == 0:
        raise Refusal("openpgp-no-uid", "the key has no user ID")
    check_counts(tags, limits)
    algorithm, bits, curve = key_strength(packets[0].body)
    check_key_numbers(packets, limits)
    keys = key_packets(packets)
    kept = b"".join(p.raw for p in packets if not _certified_by(p, drop_certifier))
    return KeySummary(kept, keys[0].fingerprint, algorithm, bits, curve, user_ids, keys)


def key_strength(body: bytes) -> tuple[int, int, str]:
    """Return (algorithm, bits, curve) of a v4 primary key body, or refuse it."""
    if len(body) < 6:
        raise Refusal("openpgp-bad-packets", "truncated public key packet")
    version, algorithm = body[0], body[5]
    if version < 4:
        raise Refusal("openpgp-weak-key", f"version {version} keys are not accepted")
    if version != 4:
        raise Refusal("openpgp-unsupported-key", f"version {version} keys are not supported")
    fields = body[6:]
    if algorithm in ALGO_RSA_SIGNING or algorithm == ALGO_DSA:
        bits = mpi_sizes(fields, 1, "the primary key")[0]
        if bits < MIN_RSA_DSA_BITS:
            raise Refusal(
                "openpgp-weak-key", f"{bits}-bit RSA/DSA key; at least {MIN_RSA_DSA_BITS} needed"
            )
        return algorithm, bits, ""
    curves = _CURVES.get(algorithm)
    if curves is None:
        raise Refusal(
            "openpgp-weak-key",
            f"public-key algorithm {algorithm} is not accepted for a primary key",
        )
    if not fields or not 0 < fields[0] < 255 or len(fields) < 1 + fields[0]:
        raise Refusal("openpgp-bad-packets", "bad curve OID in public key packet")
    curve = curves.get(fields[1 : 1 + fields[0]])
    if curve is None:
        raise Refusal("openpgp-weak-key", "curve not accepted")
    return algorithm, {"nistp256": 256, "nistp384": 384, "nistp521": 521}.get(curve, 255), curve


def key_packets(packets: list[Packet]) -> tuple[KeyPacket, ...]:
    """The primary key and public subkey packets of ``packets``, in order, with fingerprints."""
    keys = []
    for p in packets:
        if p.tag not in (TAG_PUBLIC_KEY, TAG_PUBLIC_SUBKEY):
            continue
        # The v4 fingerprint hashes a two-byte length: a longer body has none.
        if len(p.body) > 0xFFFF:
            raise Refusal("openpgp-bad-packets", "public key packet over 65535 bytes")
        fingerprint = hashlib.sha1(b"\x99" + len(p.body).to_bytes(2, "big") + p.body)
        keys.append(KeyPacket(p.tag, fingerprint.hexdigest().upper(), p.body))
    return tuple(keys)


def _certified_by(packet: Packet, keyid: str) -> bool:
    """Whether ``packet`` is a user ID certification (0x10-0x13) naming ``keyid`` as issuer."""
    body = packet.body
    if packet.tag != TAG_SIGNATURE or not keyid or len(body) < 2:
        return False
    if body[0] == 3:
        return len(body) >= 15 and 0x10 <= body[2] <= 0x13 and body[7:15].hex().upper() == keyid
    if body[0] != 4 or not 0x10 <= body[1] <= 0x13:
        return False
    return keyid in issuers(body)


def issuers(body: bytes) -> set[str]:
    """Key IDs named by the issuer (16) and issuer fingerprint (33) subpackets of a v4 signature."""
    found: set[str] = set()
    for _hashed, kind, value in signature_subpackets(body):
        if kind == 16 and len(value) == 8:
            found.add(value.hex().upper())
        elif kind == 33 and len(value) == 21 and value[0] == 4:
            found.add(value[-8:].hex().upper())
    return found


def signature_subpackets(body: bytes) -> list[tuple[bool, int, bytes]]:
    """(hashed?, type without the critical bit, value) of each subpacket of a v4 signature body.

    Bounded by the body: a truncated area ends the list, never raises.
    """
    found: list[tuple[bool, int, bytes]] = []
    pos = 4
    for hashed in (True, False):
        if pos + 2 > len(body):
            return found
        end = pos + 2 + int.from_bytes(body[pos : pos + 2], "big")
        pos += 2
        while pos < min(end, len(body)):
            pos, kind, value = _subpacket(body, pos, min(end, len(body)))
            if kind:
                found.append((hashed, kind, value))
        pos = end
    return found


def _subpacket(body: bytes, pos: int, end: int) -> tuple[int, int, bytes]:
    """Return (next position, type without the critical bit, value); bounded by ``end``."""
    first = body[pos]
    if first < 192:
        start, length = pos + 1, first
    elif first < 255:
        start = pos + 2
        length = ((first - 192) << 8) + (body[pos + 1] if pos + 1 < end else 0) + 192
    else:
        start, length = pos + 5, int.from_bytes(body[pos + 1 : pos + 5], "big")
    stop = start + length
    if length == 0 or stop > end:
        return end, 0, b""
    return stop, body[start] & 0x7F, body[start + 1 : stop]
