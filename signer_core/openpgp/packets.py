"""The framing of OpenPGP data (RFC 4880 / RFC 9580): armour, packets, MPIs; bounded.

Trusted side. Its input is a user's public key taken from a spool request:
hostile bytes. It never verifies a signature (gpg does that) and gives no
meaning to a packet beyond its tag: it de-armours the input and splits it
into packets, and reads the MPIs of a key packet's body for the checks of
``openpgp.limits`` and ``openpgp.keyblock``.

gpg is then fed exactly the binary packets walked here, never the original
text, so that armour quirks cannot make gpg see something this reader did
not. Every failure is a ``Refusal``; input size, packet count and armour
block count are bounded, and the work here is linear in the input's size.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass

from signer_core.refusal import Refusal

MAX_INPUT = 1 << 20
MAX_ARMOUR_BLOCKS = 8
MAX_PACKETS = 2000  # what ``walk`` takes by default; ``PacketLimits`` may set another bound

TAG_SIGNATURE = 2
TAG_SECRET_KEY = 5
TAG_PUBLIC_KEY = 6
TAG_SECRET_SUBKEY = 7
TAG_TRUST = 12
TAG_USER_ID = 13
TAG_PUBLIC_SUBKEY = 14
TAG_USER_ATTRIBUTE = 17

# Public-key algorithm ids (RFC 4880 9.1, RFC 9580 9.1).
ALGO_RSA = (1, 2, 3)  # RSA, RSA encrypt-only, RSA sign-only
ALGO_RSA_SIGNING = (1, 3)
ALGO_ELGAMAL = (16, 20)
ALGO_DSA = 17
ALGO_ECDSA = 19
ALGO_EDDSA = 22

_ARMOUR_BEGIN = re.compile(rb"^-----BEGIN PGP ([A-Z ,/0-9]+)-----$")
_ARMOUR_END = re.compile(rb"^-----END PGP ([A-Z ,/0-9]+)-----$")
_ARMOUR_HEADER = re.compile(rb"^[A-Za-z][A-Za-z0-9-]*: ")


@dataclass(frozen=True)
class Packet:
    tag: int
    raw: bytes  # header and body, as received
    body: bytes


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


def walk(data: bytes, max_packets: int = MAX_PACKETS) -> list[Packet]:
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


def mpi_sizes(fields: bytes, count: int, which: str) -> list[int]:
    """Bit lengths of the first ``count`` MPIs of ``fields``, from their values.

    The values, not the stated bit counts, which may lie; ``which`` names the
    key in the refusal of a truncated MPI.
    """
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
