"""The CA's own public keys, so that no request carrying one of them is signed.

Trusted side. The CA's keys come from the operator's files: every configured
X.509 root whose certificate or key file still parses (``RootStore``), and
the OpenPGP root's primary key and subkeys as gpg exported them at start
(``OpenPGPSigner.ca_public``). The key of a request is hostile: an X.509
public key already parsed (and its self-signature verified) by
``signer_core.x509.request``, or the key packets of a block already walked, bounded, by
``signer_core.openpgp.packets``; their bodies are read here again, linearly, every MPI
length checked against what is left, and what cannot be read is skipped
(``None``), never an exception.

Keys are compared by an identity of their material, not of their container:
SHA-256 over a tagged, length-prefixed encoding of ("rsa", n, e), ("ec",
curve, compressed point), ("ed25519", RFC 8032 encoding), ("dsa", p, q, g,
y), ("elgamal", p, g, y), ("ed448" / "x25519" / "x448", raw bytes). So the
same key is recognised in a CSR, an SPKAC, an OpenPGP primary key or subkey
of any creation time or algorithm id (RSA 1/2/3; ECDSA 19 and ECDH 18 on one
curve, since an ECDH subkey's point is a key like any other; EdDSA 22 and the
RFC 9580 ids 25-28). Points are normalised the way gpg and libgcrypt read
them: EC points are compared compressed (no square root to take, so hostile
subkeys cost little), an Ed25519 point may also come as 0x04||x||y (gpg 2.2
accepts that), and the bit X25519 ignores is cleared. OpenPGP keys are also
compared by v4 fingerprint, which covers algorithms with no identity here.

Refusal codes: ca-key (an X.509 request), openpgp-ca-key (an OpenPGP key).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING

from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa, x448, x25519
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from signer_core.openpgp.keyblock import KeyPacket, KeySummary
from signer_core.openpgp.packets import TAG_PUBLIC_KEY
from signer_core.refusal import Refusal
from signer_core.roots import RootStore

if TYPE_CHECKING:  # openpgp imports this module
    from signer_core.openpgp.certify import OpenPGPSigner

_P25519 = 2**255 - 19
_LOW_255 = (1 << 255) - 1

# OpenPGP public-key algorithm id -> (kind, number of MPIs)
_MPI_KINDS = {
    1: ("rsa", 2),
    2: ("rsa", 2),
    3: ("rsa", 2),
    16: ("elgamal", 3),
    17: ("dsa", 4),
    20: ("elgamal", 3),
}
# RFC 9580 native keys: algorithm id -> (kind, raw size)
_RAW_KINDS = {25: ("x25519", 32), 26: ("x448", 56), 27: ("ed25519", 32), 28: ("ed448", 57)}
_ECDH, _ECDSA, _EDDSA = 18, 19, 22
# Curve OIDs (DER body) of the Weierstrass curves, for ECDSA and ECDH alike
_EC_CURVES: Mapping[bytes, ec.EllipticCurve] = {
    bytes.fromhex("2a8648ce3d030107"): ec.SECP256R1(),
    bytes.fromhex("2b81040022"): ec.SECP384R1(),
    bytes.fromhex("2b81040023"): ec.SECP521R1(),
    bytes.fromhex("2b8104000a"): ec.SECP256K1(),
    bytes.fromhex("2b2403030208010107"): ec.BrainpoolP256R1(),
    bytes.fromhex("2b240303020801010b"): ec.BrainpoolP384R1(),
    bytes.fromhex("2b240303020801010d"): ec.BrainpoolP512R1(),
}
_ED25519_OID = bytes.fromhex("2b06010401da470f01")
_CV25519_OID = bytes.fromhex("2b060104019755010501")
_RAW_TYPES = (
    (ed25519.Ed25519PublicKey, "ed25519"),
    (ed448.Ed448PublicKey, "ed448"),
    (x25519.X25519PublicKey, "x25519"),
    (x448.X448PublicKey, "x448"),
)


def _identity(kind: str, *fields: bytes) -> bytes:
    """SHA-256 over the kind and each field, each length-prefixed so no two tuples collide."""
    h = hashlib.sha256()
    for part in (kind.encode("ascii"), *fields):
        h.update(len(part).to_bytes(4, "big") + part)
    return h.digest()


def _int(value: int) -> bytes:
    """Minimal big-endian bytes, the same as an MPI's value with its leading zeros stripped."""
    return value.to_bytes((value.bit_length() + 7) // 8, "big")


def _x25519_raw(raw: bytes) -> bytes:
    # RFC 7748: the top bit is ignored and u is taken modulo p.
    u = (int.from_bytes(raw, "little") & _LOW_255) % _P25519
    return _identity("x25519", u.to_bytes(32, "little"))


def _raw_identity(kind: str, raw: bytes) -> bytes:
    return _x25519_raw(raw) if kind == "x25519" else _identity(kind, raw)


def key_identity(key: object) -> bytes | None:
    """The identity of a ``cryptography`` public key; None for a type no CA key has."""
    if isinstance(key, rsa.RSAPublicKey):
        numbers = key.public_numbers()
        return _identity("rsa", _int(numbers.n), _int(numbers.e))
    if isinstance(key, ec.EllipticCurvePublicKey):
        point = key.public_bytes(Encoding.X962, PublicFormat.CompressedPoint)
        return _identity("ec", key.curve.name.encode("ascii"), point)
    if isinstance(key, dsa.DSAPublicKey):
        y = key.public_numbers()
        p = y.parameter_numbers
        return _identity("dsa", _int(p.p), _int(p.q), _int(p.g), _int(y.y))
    for cls, kind in _RAW_TYPES:
        if isinstance(key, cls):
            return _raw_identity(kind, key.public_bytes(Encoding.Raw, PublicFormat.Raw))
    return None


def openpgp_identity(body: bytes) -> bytes | None:
    """The identity of a v4 public key packet body; None if malformed or of no known kind.

    Layout (RFC 4880 5.5.2): version 4, 4-byte creation time, algorithm id,
    then the algorithm's fields, of which only the key material is read.
    """
    if len(body) < 6 or body[0] != 4:
        return None
    algorithm, fields = body[5], body[6:]
    if algorithm in _MPI_KINDS:
        kind, count = _MPI_KINDS[algorithm]
        values = _mpis(fields, count)
        return None if values is None else _identity(kind, *values)
    if algorithm in _RAW_KINDS:
        kind, size = _RAW_KINDS[algorithm]
        if len(fields) < size:
            return None
        return _raw_identity(kind, fields[:size])
    if algorithm in (_ECDH, _ECDSA, _EDDSA):
        return _curve_identity(algorithm, fields)
    return None


def _mpis(fields: bytes, count: int) -> list[bytes] | None:
    """The first ``count`` MPIs of ``fields``, leading zeros stripped; None if truncated."""
    values: list[bytes] = []
    pos = 0
    for _ in range(count):
        if pos + 2 > len(fields):
            return None
        end = pos + 2 + (int.from_bytes(fields[pos : pos + 2], "big") + 7) // 8
        if end > len(fields):
            return None
        values.append(fields[pos + 2 : end].lstrip(b"\0"))
        pos = end
    return values


def _curve_identity(algorithm: int, fields: bytes) -> bytes | None:
    """ECDH, ECDSA, EdDSA: a curve OID (length byte, then DER body), then the point as an MPI.

    ECDH's KDF parameters follow the point; they say nothing about the key.
    """
    if not fields or len(fields) < 1 + fields[0]:
        return None
    oid = fields[1 : 1 + fields[0]]
    points = _mpis(fields[1 + fields[0] :], 1)
    if points is None:
        return None
    point = points[0]
    if algorithm == _EDDSA:
        return _eddsa_point(point) if oid == _ED25519_OID else None
    if algorithm == _ECDH and oid == _CV25519_OID:
        return _x25519_raw(point[1:]) if len(point) == 33 and point[0] == 0x40 else None
    curve = _EC_CURVES.get(oid)
    if curve is None:
        return None
    compressed = _compressed(curve, point)
    return None if compressed is None else _identity("ec", curve.name.encode("ascii"), compressed)


def _compressed(curve: ec.EllipticCurve, point: bytes) -> bytes | None:
    """An X9.62 point as 0x02/0x03 (y's parity) || x; None if it has neither form's size.

    Not checked to be on the curve: a point that is not cannot be a CA key, and
    one sharing x and y's parity with a CA key is refused as well.
    """
    size = (curve.key_size + 7) // 8
    if len(point) == 1 + 2 * size and point[0] == 0x04:
        return bytes([0x02 | point[-1] & 1]) + point[1 : 1 + size]
    if len(point) == 1 + size and point[0] in (0x02, 0x03):
        return point
    return None


def _eddsa_point(point: bytes) -> bytes | None:
    """Ed25519 as gpg writes it (0x40 || RFC 8032 encoding) or as libgcrypt also reads it
    (0x04 || x || y, big-endian: gpg 2.2 verifies self-signatures on that too)."""
    if len(point) == 33 and point[0] == 0x40:
        return _identity("ed25519", point[1:])
    if len(point) == 65 and point[0] == 0x04:
        # RFC 8032's encoding: y little-endian, x's parity in the top bit. (Coordinates
        # of p or more would name the same point again, but gpg refuses them.)
        y = int.from_bytes(point[33:], "big")
        return _identity("ed25519", (y | (point[32] & 1) << 255).to_bytes(32, "little"))
    return None


@dataclass(frozen=True)
class CaKeys:
    """Every CA key: identity of its material, and OpenPGP v4 fingerprint, to what it is."""

    identities: Mapping[bytes, str] = field(default_factory=lambda: MappingProxyType({}))
    fingerprints: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))

    @classmethod
    def build(cls, roots: RootStore | None = None, openpgp: OpenPGPSigner | None = None) -> CaKeys:
        """From the roots loaded at start (installed or not) and the OpenPGP root, if any.

        A signer not made by ``load_signer`` has no ``ca_public``: only its
        primary fingerprint is known then.
        """
        identities: dict[bytes, str] = {}
        fingerprints: dict[str, str] = {}
        for root_id, key in _root_keys(roots):
            identity = key_identity(key)
            if identity is not None:
                identities.setdefault(identity, f"X.509 root {root_id}'s key")
        if openpgp is not None:
            fingerprints[openpgp.fingerprint] = "the OpenPGP root's primary key"
            for packet in openpgp.ca_public:
                label = (
                    f"OpenPGP root subkey {packet.fingerprint[-16:]}"
                    if packet.tag != TAG_PUBLIC_KEY
                    else "the OpenPGP root's primary key"
                )
                fingerprints.setdefault(packet.fingerprint, label)
                identity = openpgp_identity(packet.body)
                if identity is not None:
                    identities.setdefault(identity, label)
        return cls(MappingProxyType(identities), MappingProxyType(fingerprints))

    def check_x509(self, public_key: object) -> None:
        """Refuse (``ca-key``) a request whose public key is a CA key."""
        identity = key_identity(public_key)
        label = self.identities.get(identity) if identity is not None else None
        if label is not None:
            raise Refusal("ca-key", f"the request's public key is {label}")

    def check_openpgp(self, summary: KeySummary) -> None:
        """Refuse (``openpgp-ca-key``) a key block whose primary key or any subkey is a CA key."""
        for packet in summary.keys:
            label = self._label(packet)
            if label is not None:
                where = (
                    "the key"
                    if packet.tag == TAG_PUBLIC_KEY
                    else f"subkey {packet.fingerprint[-16:]}"
                )
                raise Refusal("openpgp-ca-key", f"{where} is {label}")

    def _label(self, packet: KeyPacket) -> str | None:
        label = self.fingerprints.get(packet.fingerprint)
        if label is None:
            identity = openpgp_identity(packet.body)
            label = self.identities.get(identity) if identity is not None else None
        return label


def _root_keys(roots: RootStore | None) -> Iterable[tuple[int, object]]:
    """(root id, public key) for every root: loaded ones, and what missing ones' files show."""
    if roots is None:
        return
    # Loaded roots too: a RootStore made without ``public_keys`` still names them.
    for root_id, root in roots.roots.items():
        yield root_id, root.certificate.public_key()
    for root_id, keys in roots.public_keys.items():
        for key in keys:
            yield root_id, key
