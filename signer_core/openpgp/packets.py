"""A small, bounded reader of OpenPGP key blocks (RFC 4880 / RFC 9580 framing).

Trusted side. Its input is a user's public key taken from a spool request:
hostile bytes. It never verifies a signature (gpg does that); it only
de-armours the input, walks the packet headers, and answers the questions the
signer must settle *before* gpg sees the key: is there a secret key packet
(tags 5 and 7), how many primary keys and user IDs are there, what algorithm
and size is the primary key, and what is its v4 fingerprint (so that the key
gpg imports can be matched with the one inspected here). It also hands on
the body and v4 fingerprint of the primary key and of each public subkey, so
that ``cakeys`` can refuse a block that carries one of the CA's own keys.

gpg is then fed exactly the binary packets walked here, never the original
text, so that armour quirks cannot make gpg see something this reader did
not. Every failure is a ``Refusal``; input size, packet count and armour
block count are bounded, and the work here is linear in the input's size.

The bounds of ``PacketLimits`` cap what gpg's own checks can cost, since gpg
verifies every self-signature (on import and again in ``--check-sigs``) and
an RSA verification costs one modular squaring per exponent bit, each
quadratic in the modulus size: a 16384-bit modulus with a 16384-bit exponent
takes seconds per signature. Hence a largest modulus (and DSA/ElGamal prime),
a largest RSA exponent, a DSA subgroup no larger than FIPS 186-4's 256 bits,
for the primary key and every subkey alike, and counts of packets, user IDs
(with user attributes), subkeys and signatures, in all and per user ID (the
hash of a user ID is computed again for each of its signatures). Refusal
codes: openpgp-too-many-packets, -too-many-uids, -too-many-subkeys,
-too-many-signatures, -too-many-uid-signatures, -key-too-large,
-exponent-too-large.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from dataclasses import dataclass

from signer_core.refusal import Refusal

MAX_INPUT = 1 << 20
MAX_ARMOUR_BLOCKS = 8
MIN_RSA_DSA_BITS = 2048
# FIPS 186-4 DSA subgroups are 160, 224 or 256 bits; a larger q only makes verifying dearer.
MAX_DSA_Q_BITS = 256

TAG_SIGNATURE = 2
TAG_SECRET_KEY = 5
TAG_PUBLIC_KEY = 6
TAG_SECRET_SUBKEY = 7
TAG_TRUST = 12
TAG_USER_ID = 13
TAG_PUBLIC_SUBKEY = 14
TAG_USER_ATTRIBUTE = 17
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
    19: {_P256: "nistp256", _P384: "nistp384", _P521: "nistp521"},  # ECDSA
    22: {_ED25519: "ed25519"},  # EdDSA (legacy v4 encoding, what gpg 2.2/2.4 make)
}
_RSA_SIGNING = (1, 3)
_RSA = (1, 2, 3)
_DSA = 17
_ELGAMAL = (16, 20)

_ARMOUR_BEGIN = re.compile(rb"^-----BEGIN PGP ([A-Z ,/0-9]+)-----$")
_ARMOUR_END = re.compile(rb"^-----END PGP ([A-Z ,/0-9]+)-----$")
_ARMOUR_HEADER = re.compile(rb"^[A-Za-z][A-Za-z0-9-]*: ")


@dataclass(frozen=True)
class PacketLimits:
    """What one key block may hold before gpg sees it (see the module docstring for why)."""

    max_packets: int = 2000
    max_user_ids: int = 100  # user IDs and user attributes
    max_subkeys: int = 32
    max_signatures: int = 1000  # in the whole block
    max_signatures_per_uid: int = 200  # on one user ID or user attribute
    max_key_bits: int = 8192  # RSA modulus, DSA and ElGamal prime, of any key
    max_rsa_exponent_bits: int = 32  # 65537 has 17


DEFAULT_LIMITS = PacketLimits()


@dataclass(frozen=True)
class Packet:
    tag: int
    raw: bytes  # header and body, as received
    body: bytes


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


def dearmour(data: bytes) -> bytes:
    """Return the binary packets of ``data``: binary as is, armour decoded.

    Every armour block in the input is decoded and concatenated, so a second
    key hidden after the first block is still seen by ``walk``.
    """
    if len(data) > MAX_INPUT:
        raise Refusal("openpgp-too-large", f"key data over {MAX_INPUT} bytes")
    if not data:
        raise Refusal("openpgp-no-key", "empty key data")
    if data[0] & 0x80:
        return data
    lines = [line.rstrip(b" \t\r") for line in data.split(b"\n")]
    out = bytearray()
    blocks = 0
    i = 0
    while i < len(lines):
        begin = _ARMOUR_BEGIN.match(lines[i])
        i += 1
        if not begin:
            continue
        blocks += 1
        if blocks > MAX_ARMOUR_BLOCKS:
            raise Refusal("openpgp-bad-armour", "too many armour blocks")
        label = begin.group(1)
        if label in (b"PRIVATE KEY BLOCK", b"SECRET KEY BLOCK"):
            raise Refusal("openpgp-secret-key", "a secret key was sent; send only the public key")
        if label != b"PUBLIC KEY BLOCK":
            raise Refusal("openpgp-bad-armour", "armour is not a public key block")
        body, i = _armour_body(lines, i, label)
        out += body
    if not blocks:
        raise Refusal(
            "openpgp-bad-armour", "neither binary OpenPGP nor an armoured public key block"
        )
    return bytes(out)


def _armour_body(lines: list[bytes], i: int, label: bytes) -> tuple[bytes, int]:
    """Decode one armour block whose BEGIN line precedes ``lines[i]``."""
    while i < len(lines) and _ARMOUR_HEADER.match(lines[i]):
        i += 1
    if i < len(lines) and lines[i] == b"":
        i += 1
    chunks: list[bytes] = []
    seen_crc = False
    while i < len(lines):
        line = lines[i]
        i += 1
        end = _ARMOUR_END.match(line)
        if end:
            if end.group(1) != label:
                raise Refusal("openpgp-bad-armour", "armour END does not match BEGIN")
            return _decode_base64(b"".join(chunks)), i
        if seen_crc:
            raise Refusal("openpgp-bad-armour", "data after the armour checksum")
        # The CRC-24 line is optional (RFC 9580 says to ignore it); a corrupt
        # key still fails gpg's signature checks.
        seen_crc = line.startswith(b"=") and len(line) == 5
        if not seen_crc:
            chunks.append(line)
    raise Refusal("openpgp-bad-armour", "armour block without END line")


def _decode_base64(text: bytes) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise Refusal("openpgp-bad-armour", "bad base64 in armour") from None


def walk(data: bytes, max_packets: int = DEFAULT_LIMITS.max_packets) -> list[Packet]:
    """Split binary OpenPGP data into packets; refuse anything malformed.

    Only definite lengths are accepted (key blocks never use partial or
    indeterminate lengths), and the packets must end exactly at the end.
    """
    packets: list[Packet] = []
    pos = 0
    while pos < len(data):
        if len(packets) >= max_packets:
            raise Refusal("openpgp-too-many-packets", f"more than {max_packets} packets")
        tag, start, length = _header(data, pos)
        end = start + length
        if end > len(data):
            raise Refusal("openpgp-bad-packets", "packet longer than the data")
        packets.append(Packet(tag, data[pos:end], data[start:end]))
        pos = end
    return packets


def _header(data: bytes, pos: int) -> tuple[int, int, int]:
    """Return (tag, body start, body length) of the packet at ``pos``."""
    ctb = data[pos]
    if not ctb & 0x80:
        raise Refusal("openpgp-bad-packets", f"not a packet header at offset {pos}")
    if ctb & 0x40:
        return ctb & 0x3F, *_new_length(data, pos + 1)
    size = {0: 1, 1: 2, 2: 4}.get(ctb & 3)
    if size is None:
        raise Refusal("openpgp-bad-packets", "indeterminate packet length")
    start = pos + 1 + size
    if start > len(data):
        raise Refusal("openpgp-bad-packets", "truncated packet header")
    return (ctb >> 2) & 0xF, start, int.from_bytes(data[pos + 1 : start], "big")


def _new_length(data: bytes, pos: int) -> tuple[int, int]:
    if pos >= len(data):
        raise Refusal("openpgp-bad-packets", "truncated packet header")
    first = data[pos]
    if first < 192:
        return pos + 1, first
    if first < 224:
        if pos + 2 > len(data):
            raise Refusal("openpgp-bad-packets", "truncated packet header")
        return pos + 2, ((first - 192) << 8) + data[pos + 1] + 192
    if first == 255:
        if pos + 5 > len(data):
            raise Refusal("openpgp-bad-packets", "truncated packet header")
        return pos + 5, int.from_bytes(data[pos + 1 : pos + 5], "big")
    raise Refusal("openpgp-bad-packets", "partial body length in a key block")


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


def check_counts(tags: list[int], limits: PacketLimits) -> None:
    """Refuse a block with more user IDs, subkeys or signatures than ``limits`` allow."""
    names = sum(t in (TAG_USER_ID, TAG_USER_ATTRIBUTE) for t in tags)
    if names > limits.max_user_ids:
        raise Refusal(
            "openpgp-too-many-uids",
            f"{names} user IDs and attributes; at most {limits.max_user_ids}",
        )
    subkeys = tags.count(TAG_PUBLIC_SUBKEY)
    if subkeys > limits.max_subkeys:
        raise Refusal(
            "openpgp-too-many-subkeys", f"{subkeys} subkeys; at most {limits.max_subkeys}"
        )
    signatures = tags.count(TAG_SIGNATURE)
    if signatures > limits.max_signatures:
        raise Refusal(
            "openpgp-too-many-signatures",
            f"{signatures} signatures; at most {limits.max_signatures}",
        )
    most = max(_signatures_per_name(tags), default=0)
    if most > limits.max_signatures_per_uid:
        raise Refusal(
            "openpgp-too-many-uid-signatures",
            f"{most} signatures on one user ID; at most {limits.max_signatures_per_uid}",
        )


def _signatures_per_name(tags: list[int]) -> list[int]:
    """The number of signatures following each user ID or user attribute packet."""
    counts: list[int] = []
    on_name = False
    for tag in tags:
        if tag == TAG_SIGNATURE:
            if on_name:
                counts[-1] += 1
        elif tag != TAG_TRUST:  # gpg skips trust packets: the next signatures are the same name's
            on_name = tag in (TAG_USER_ID, TAG_USER_ATTRIBUTE)
            if on_name:
                counts.append(0)
    return counts


def check_key_numbers(packets: list[Packet], limits: PacketLimits) -> None:
    """Refuse a primary key or subkey whose numbers would make gpg's checks of it costly."""
    index = 0
    for p in packets:
        if p.tag in (TAG_PUBLIC_KEY, TAG_PUBLIC_SUBKEY):
            _check_numbers(p.body, limits, f"subkey {index}" if index else "the primary key")
            index += 1


def _check_numbers(body: bytes, limits: PacketLimits, which: str) -> None:
    # Only v4 keys: gpg 2.2 and 2.4 skip the others and never compute with them.
    if len(body) < 6 or body[0] != 4:
        return
    algorithm = body[5]
    if algorithm in _RSA:
        n, e = _mpi_sizes(body[6:], 2, which)
        _at_most(n, limits.max_key_bits, f"{which} has a {n}-bit RSA modulus")
        if e > limits.max_rsa_exponent_bits:
            most = limits.max_rsa_exponent_bits
            raise Refusal(
                "openpgp-exponent-too-large", f"{which} has a {e}-bit RSA exponent; at most {most}"
            )
    elif algorithm == _DSA:
        p, q, g, y = _mpi_sizes(body[6:], 4, which)
        largest = max(p, g, y)
        _at_most(largest, limits.max_key_bits, f"{which} has a {largest}-bit DSA number")
        _at_most(q, MAX_DSA_Q_BITS, f"{which} has a {q}-bit DSA subgroup")
    elif algorithm in _ELGAMAL:
        p, g, y = _mpi_sizes(body[6:], 3, which)
        largest = max(p, g, y)
        _at_most(largest, limits.max_key_bits, f"{which} has a {largest}-bit ElGamal number")


def _at_most(bits: int, most: int, what: str) -> None:
    if bits > most:
        raise Refusal("openpgp-key-too-large", f"{what}; at most {most} bits")


def _mpi_sizes(fields: bytes, count: int, which: str) -> list[int]:
    """Bit lengths of the first ``count`` MPIs of ``fields``, from their values."""
    sizes, pos = [], 0
    for _ in range(count):
        if pos + 2 > len(fields):
            raise Refusal("openpgp-bad-packets", f"truncated MPI in {which}")
        end = pos + 2 + (int.from_bytes(fields[pos : pos + 2], "big") + 7) // 8
        if end > len(fields):
            raise Refusal("openpgp-bad-packets", f"truncated MPI in {which}")
        sizes.append(int.from_bytes(fields[pos + 2 : end], "big").bit_length())
        pos = end
    return sizes


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
    return keyid in _issuers(body)


def _issuers(body: bytes) -> set[str]:
    """Key IDs named by the issuer (16) and issuer fingerprint (33) subpackets of a v4 signature."""
    found: set[str] = set()
    pos = 4
    for _area in range(2):
        if pos + 2 > len(body):
            return found
        end = pos + 2 + int.from_bytes(body[pos : pos + 2], "big")
        pos += 2
        while pos < min(end, len(body)):
            pos, kind, value = _subpacket(body, pos, min(end, len(body)))
            if kind == 16 and len(value) == 8:
                found.add(value.hex().upper())
            elif kind == 33 and len(value) == 21 and value[0] == 4:
                found.add(value[-8:].hex().upper())
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
    if algorithm in _RSA_SIGNING or algorithm == _DSA:
        bits = _mpi_bits(fields)
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


def _mpi_bits(fields: bytes) -> int:
    """Bit length of the first MPI, from its value (the stated count may lie)."""
    if len(fields) < 2:
        raise Refusal("openpgp-bad-packets", "truncated MPI")
    size = (int.from_bytes(fields[:2], "big") + 7) // 8
    if len(fields) < 2 + size:
        raise Refusal("openpgp-bad-packets", "truncated MPI")
    return int.from_bytes(fields[2 : 2 + size], "big").bit_length()
