"""The public half of a key in a token, from the attributes the token shows.

Trusted side; the token is the operator's, and what it reports is still
checked: a curve we do not take is an ``UnsupportedCurve``, a point that
does not parse a ``ValueError``, for the caller to name. RSA keys are built from CKA_MODULUS
and CKA_PUBLIC_EXPONENT; EC and Ed25519 keys from the public key object's
CKA_EC_PARAMS (the curve) and CKA_EC_POINT (the point).
"""

from __future__ import annotations

from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

TokenPublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey | Ed25519PublicKey

# CKA_EC_PARAMS of the curves a root may use: the namedCurve OID, DER.
_CURVES: dict[bytes, ec.EllipticCurve] = {
    bytes.fromhex("06082a8648ce3d030107"): ec.SECP256R1(),
    bytes.fromhex("06052b81040022"): ec.SECP384R1(),
    bytes.fromhex("06052b81040023"): ec.SECP521R1(),
}
# CKA_EC_PARAMS of Ed25519 (PKCS#11 3.0, 2.3.10): the OID 1.3.101.112 (what SoftHSM2
# and OpenSC write), or the PrintableString "edwards25519" (what some older tokens write).
ED25519_PARAMS = bytes.fromhex("06032b6570")
_ED25519_NAMES = (ED25519_PARAMS, b"\x13\x0cedwards25519")


class UnsupportedCurve(ValueError):
    """The token's key is on a curve we do not take; the message says which we do."""


def spki(key: TokenPublicKey) -> bytes:
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def octets(value: Any) -> bytes:
    return bytes(value) if value is not None else b""


def _point(data: bytes) -> bytes:
    """CKA_EC_POINT: a DER OCTET STRING around the point (PKCS#11), or the bare point."""
    if len(data) > 2 and data[0] == 0x04:
        if data[1] < 0x80 and len(data) == 2 + data[1]:
            return data[2:]
        if data[1] == 0x81 and len(data) > 3 and len(data) == 3 + data[2]:
            return data[3:]
    return data


def rsa_public(modulus: Any, exponent: Any) -> rsa.RSAPublicKey:
    e, n = (int.from_bytes(octets(v), "big") for v in (exponent, modulus))
    return rsa.RSAPublicNumbers(e, n).public_key()


def ec_public(params: Any, point: Any) -> ec.EllipticCurvePublicKey:
    curve = _CURVES.get(octets(params))
    if curve is None:
        raise UnsupportedCurve("the token's EC key is not on P-256, P-384 or P-521")
    return ec.EllipticCurvePublicKey.from_encoded_point(curve, _point(octets(point)))


def ed25519_public(params: Any, point: Any) -> Ed25519PublicKey:
    if octets(params) not in _ED25519_NAMES:
        raise UnsupportedCurve("the token's Edwards key is not on edwards25519")
    raw = octets(point)
    # SoftHSM2 2.6 writes the OCTET STRING (04 20 and the 32 bytes); some tokens the bare
    # 32, which may begin with 04 as well: only a value of another size is unwrapped.
    return Ed25519PublicKey.from_public_bytes(raw if len(raw) == 32 else _point(raw))
