"""Keys in a token as cryptography's private keys: ``sign`` asks the token.

Trusted side; no policy. cryptography's certificate builder and our CRL
encoder (``crl.encode``) take any ``RSAPrivateKey`` or
``EllipticCurvePrivateKey`` and call its ``sign``: these subclasses pass the
data to the token (``TokenSession.sign``), so the key never leaves it. RSA
signs PKCS#1 v1.5 with the token's own hash-and-sign mechanism
(CKM_SHA256_RSA_PKCS and its siblings); ECDSA hashes here and has the token
sign the digest (CKM_ECDSA), whose raw r||s becomes the DER X.509 wants.
The audit log key is an ``Ed25519PrivateKey`` for ``tlog.note``: pure
Ed25519 over the whole message (CKM_EDDSA without parameters, RFC 8032).
Nothing else of a private key is there to read: exporting raises TypeError.
"""

from __future__ import annotations

from typing import Any, NoReturn

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from signer_core.tokens.pkcs11 import TokenError, TokenSession

_RSA_MECHANISMS = {
    "md5": "CKM_MD5_RSA_PKCS",
    "sha1": "CKM_SHA1_RSA_PKCS",
    "sha224": "CKM_SHA224_RSA_PKCS",
    "sha256": "CKM_SHA256_RSA_PKCS",
    "sha384": "CKM_SHA384_RSA_PKCS",
    "sha512": "CKM_SHA512_RSA_PKCS",
}


def _no_export() -> NoReturn:
    raise TypeError("a key held in a token cannot be exported")


class TokenRSAPrivateKey(rsa.RSAPrivateKey):
    """An RSA root key in a token: PKCS#1 v1.5 signatures only."""

    def __init__(self, token: TokenSession, public: rsa.RSAPublicKey) -> None:
        self.token, self._public = token, public

    def sign(
        self,
        data: bytes | bytearray | memoryview,
        padding: padding.AsymmetricPadding,
        algorithm: Any,
    ) -> bytes:
        if padding.name != "EMSA-PKCS1-v1_5":
            raise UnsupportedAlgorithm("a token root key signs PKCS#1 v1.5 only")
        mechanism = _RSA_MECHANISMS.get(getattr(algorithm, "name", ""))
        if mechanism is None or not isinstance(algorithm, hashes.HashAlgorithm):
            raise UnsupportedAlgorithm(f"a token root key does not sign with {algorithm!r}")
        return self.token.sign(mechanism, bytes(data))

    def public_key(self) -> rsa.RSAPublicKey:
        return self._public

    @property
    def key_size(self) -> int:
        return self._public.key_size

    def decrypt(self, ciphertext: bytes, padding: padding.AsymmetricPadding) -> bytes:
        raise TypeError("a root key in a token only signs")

    def private_numbers(self) -> rsa.RSAPrivateNumbers:
        _no_export()

    def private_bytes(self, *args: Any, **kwargs: Any) -> bytes:
        _no_export()

    def __copy__(self) -> TokenRSAPrivateKey:
        return self

    def __deepcopy__(self, memo: Any) -> TokenRSAPrivateKey:
        return self


class TokenECPrivateKey(ec.EllipticCurvePrivateKey):
    """An EC root key in a token: ECDSA signatures only."""

    def __init__(self, token: TokenSession, public: ec.EllipticCurvePublicKey) -> None:
        self.token, self._public = token, public

    def sign(
        self,
        data: bytes | bytearray | memoryview,
        signature_algorithm: ec.EllipticCurveSignatureAlgorithm,
    ) -> bytes:
        if not isinstance(signature_algorithm, ec.ECDSA):
            raise UnsupportedAlgorithm("a token root key signs ECDSA only")
        algorithm = signature_algorithm.algorithm
        if isinstance(algorithm, utils.Prehashed):
            raise UnsupportedAlgorithm("a token root key signs whole data, not a digest")
        digest = hashes.Hash(algorithm)
        digest.update(bytes(data))
        raw = self.token.sign("CKM_ECDSA", digest.finalize())
        half = len(raw) // 2
        if len(raw) % 2 or half != (self.curve.key_size + 7) // 8:
            raise ValueError("the token's ECDSA signature has the wrong size")
        return utils.encode_dss_signature(
            int.from_bytes(raw[:half], "big"), int.from_bytes(raw[half:], "big")
        )

    def public_key(self) -> ec.EllipticCurvePublicKey:
        return self._public

    @property
    def curve(self) -> ec.EllipticCurve:
        return self._public.curve

    @property
    def key_size(self) -> int:
        return self._public.key_size

    def exchange(self, algorithm: ec.ECDH, peer_public_key: ec.EllipticCurvePublicKey) -> bytes:
        raise TypeError("a root key in a token only signs")

    def private_numbers(self) -> ec.EllipticCurvePrivateNumbers:
        _no_export()

    def private_bytes(self, *args: Any, **kwargs: Any) -> bytes:
        _no_export()

    def __copy__(self) -> TokenECPrivateKey:
        return self

    def __deepcopy__(self, memo: Any) -> TokenECPrivateKey:
        return self


class TokenEd25519PrivateKey(Ed25519PrivateKey):
    """The audit log key in a token: Ed25519 signatures only."""

    def __init__(self, token: TokenSession, public: Ed25519PublicKey) -> None:
        self.token, self._public = token, public

    def sign(self, data: bytes | bytearray | memoryview) -> bytes:
        signature = self.token.sign("CKM_EDDSA", bytes(data))
        if len(signature) != 64:
            raise ValueError("the token's Ed25519 signature has the wrong size")
        return signature

    def public_key(self) -> Ed25519PublicKey:
        return self._public

    def private_bytes(self, *args: Any, **kwargs: Any) -> bytes:
        _no_export()

    def private_bytes_raw(self) -> bytes:
        _no_export()

    def __copy__(self) -> TokenEd25519PrivateKey:
        return self

    def __deepcopy__(self, memo: Any) -> TokenEd25519PrivateKey:
        return self


TokenKey = TokenRSAPrivateKey | TokenECPrivateKey


def open_token_key(session: TokenSession) -> TokenKey:
    """Open ``session`` and wrap its root key; TokenError with the reason if it cannot
    (the caller closes the session, whatever the outcome)."""
    public = session.open()
    if isinstance(public, rsa.RSAPublicKey):
        return TokenRSAPrivateKey(session, public)
    if isinstance(public, ec.EllipticCurvePublicKey):
        return TokenECPrivateKey(session, public)
    raise TokenError("the token's key is an Ed25519 key: a root's is RSA or EC")


def open_ed25519_key(session: TokenSession) -> TokenEd25519PrivateKey:
    """Open ``session`` and wrap its Ed25519 key; TokenError as ``open_token_key``."""
    public = session.open()
    if isinstance(public, Ed25519PublicKey):
        return TokenEd25519PrivateKey(session, public)
    raise TokenError("the token's key is not an Ed25519 key")
