"""Parse payload 1 of a Sign X.509 request: a PKCS#10 CSR or an SPKAC block.

Trusted side, hostile input. The request only proves possession of a key:
its signature is verified and its public key returned; the CSR's own subject
and extensions are ignored (the subject comes from payload 3, or from the
SPKAC block's attribute lines, which are returned for ``subject.py``).
SPKAC DER is decoded with asn1crypto and must be canonical DER; its
signature over PublicKeyAndChallenge is checked with cryptography. A
refusal says what is wrong and where in our words (``der.fault``); the
libraries' own texts go to the log only.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import logging
from typing import TYPE_CHECKING, Any, ClassVar

from asn1crypto import algos, core, keys
from cryptography import x509
from cryptography.exceptions import (
    InternalError,
    InvalidSignature,
    UnsupportedAlgorithm,
)
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, padding, rsa

from signer_core.refusal import Refusal
from signer_core.x509 import der
from spool.header import is_spkac, spkac_value

if TYPE_CHECKING:
    from signer_core.x509.compat import PublicKeyTypes

log = logging.getLogger(__name__)

MAX_REQUEST_BYTES = 65536
MAX_SPKAC_LINES = 32
_PEM_LABELS = ("CERTIFICATE REQUEST", "NEW CERTIFICATE REQUEST")

# What cryptography raises on malformed input; InternalError comes from
# cryptography 38's OpenSSL-backed key loading, InvalidVersion from a CSR
# version other than 1.
_DECODE_ERRORS = (ValueError, UnsupportedAlgorithm, InternalError, x509.InvalidVersion)
# What asn1crypto raises on malformed DER (found by fuzzing, see tests).
_ASN1CRYPTO_ERRORS = (TypeError, KeyError, IndexError, OverflowError)


@dataclasses.dataclass(frozen=True)
class ParsedRequest:
    public_key: PublicKeyTypes
    spkac_subject_lines: tuple[bytes, ...] | None


# asn1crypto ships no types: its classes are Any to mypy, and so are these.
class _PublicKeyAndChallenge(core.Sequence):  # type: ignore[misc]
    _fields: ClassVar[list[tuple[str, Any]]] = [
        ("spki", keys.PublicKeyInfo),
        ("challenge", core.IA5String),
    ]


class _SignedPublicKeyAndChallenge(core.Sequence):  # type: ignore[misc]
    _fields: ClassVar[list[tuple[str, Any]]] = [
        ("public_key_and_challenge", _PublicKeyAndChallenge),
        ("signature_algorithm", algos.SignedDigestAlgorithm),
        ("signature", core.OctetBitString),
    ]


def parse_request(payload1: bytes, spkac: bool) -> ParsedRequest:
    """Verify the request's self-signature and return its key (and SPKAC lines).

    The payload decides the format, as on the deployed server: a line
    ``SPKAC=`` makes it SPKAC. ``spkac`` (the header's key-type flag) is
    advisory only: the web side sets it from how it stored the request.
    """
    del spkac
    if len(payload1) > MAX_REQUEST_BYTES:
        raise Refusal("bad-csr", f"request longer than {MAX_REQUEST_BYTES} bytes")
    if is_spkac(payload1):
        return _parse_spkac(payload1)
    return ParsedRequest(_parse_pkcs10(payload1), None)


def _parse_pkcs10(payload1: bytes) -> PublicKeyTypes:
    if b"-----BEGIN" in payload1:
        try:
            der_csr = der.from_pem(payload1, _PEM_LABELS)
        except ValueError as exc:
            raise Refusal("bad-csr", f"payload 1 has a PEM line but {exc}") from None
    else:
        der_csr = payload1
    try:
        csr = x509.load_der_x509_csr(der_csr)
        # cryptography 38 parses lazily: touch the parts whose faults fault() names.
        _ = (csr.tbs_certrequest_bytes, csr.signature)
    except _DECODE_ERRORS as exc:
        log.info("PKCS#10 request not parsed: %s", exc)
        raise Refusal(
            "bad-csr", f"payload 1 is not a PKCS#10 request: {der.fault(der_csr, der.CSR)}"
        ) from None
    try:
        key = csr.public_key()
    except _DECODE_ERRORS as exc:
        log.info("PKCS#10 public key not loaded: %s", exc)
        raise Refusal(
            "bad-csr",
            "the request's subjectPublicKeyInfo holds no key the signer can read"
            " (unknown type or malformed)",
        ) from None
    try:
        valid = csr.is_signature_valid
    except _DECODE_ERRORS as exc:
        log.info("PKCS#10 signature not checked: %s", exc)
        raise Refusal(
            "bad-csr-signature",
            "the request's signature cannot be checked: unknown algorithm or malformed value",
        ) from None
    if not valid:
        raise Refusal("bad-csr-signature", "the CSR is not signed by its own key")
    return key


def _parse_spkac(payload1: bytes) -> ParsedRequest:
    lines = [ln for ln in payload1.splitlines() if ln.strip()]
    if len(lines) > MAX_SPKAC_LINES:
        raise Refusal("bad-spkac", f"more than {MAX_SPKAC_LINES} lines")
    values = [spkac_value(ln) for ln in lines]
    spkac_values = [v for v in values if v is not None]
    if len(spkac_values) != 1:
        raise Refusal("bad-spkac", "exactly one SPKAC= line expected")
    subject = tuple(ln for ln, v in zip(lines, values, strict=True) if v is None)
    try:
        der_spkac = base64.b64decode(spkac_values[0], validate=True)
    except (binascii.Error, ValueError):
        raise Refusal("bad-spkac", "SPKAC value is not base64") from None
    return ParsedRequest(_verify_spkac(der_spkac), subject)


def _verify_spkac(der_spkac: bytes) -> PublicKeyTypes:
    try:
        spkac = _SignedPublicKeyAndChallenge.load(der_spkac, strict=True)
        pkac = spkac["public_key_and_challenge"]
        signed = pkac.dump()
        spki = pkac["spki"].dump()
        algo = spkac["signature_algorithm"]
        sig_algo, hash_algo = algo.signature_algo, algo["algorithm"].native
        signature = spkac["signature"].native
        canonical = spkac.dump(force=True) == der_spkac
        key = serialization.load_der_public_key(spki)
    except (*_DECODE_ERRORS, *_ASN1CRYPTO_ERRORS) as exc:
        log.info("SPKAC not decoded: %s", exc)
        raise Refusal(
            "bad-spkac", f"the SPKAC cannot be decoded: {der.fault(der_spkac, der.SPKAC)}"
        ) from None
    if not canonical:
        raise Refusal("bad-spkac", "SPKAC is not DER")
    _verify(key, sig_algo, hash_algo, signature, signed)
    return key


_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "md5": hashes.MD5,
    "sha1": hashes.SHA1,
    "sha224": hashes.SHA224,
    "sha256": hashes.SHA256,
    "sha384": hashes.SHA384,
    "sha512": hashes.SHA512,
}


def _verify(
    key: PublicKeyTypes, sig_algo: str, algo_name: str, signature: bytes, data: bytes
) -> None:
    """Check an SPKAC signature. MD5 is accepted here: browsers' keygen used it,
    and a collision cannot forge possession of another party's key."""
    hash_name = algo_name.split("_")[0]
    try:
        if isinstance(key, rsa.RSAPublicKey) and sig_algo == "rsassa_pkcs1v15":
            key.verify(signature, data, padding.PKCS1v15(), _HASHES[hash_name]())
        elif isinstance(key, ec.EllipticCurvePublicKey) and sig_algo == "ecdsa":
            key.verify(signature, data, ec.ECDSA(_HASHES[hash_name]()))
        elif isinstance(key, (ed25519.Ed25519PublicKey, ed448.Ed448PublicKey)) and sig_algo in (
            "ed25519",
            "ed448",
        ):
            key.verify(signature, data)
        else:
            raise Refusal("bad-spkac", f"unsupported SPKAC signature {algo_name}")
    except KeyError:
        raise Refusal("bad-spkac", f"unsupported SPKAC digest {algo_name}") from None
    except (InvalidSignature, *_DECODE_ERRORS):
        raise Refusal("bad-csr-signature", "the SPKAC is not signed by its own key") from None
