"""Root (CA) keys and certificates, loaded once at start-up.

Trusted side: the files are the operator's, readable only by the signer
user. A root whose key or certificate file is missing, unreadable, or whose
key does not match its certificate or is of a kind that cannot sign here, is
recorded as not installed with the reason (logged by the caller), never a
crash; requests naming it are refused.
The public keys its files still show (its certificate, or its key) are kept
all the same, for installed and missing roots alike, so that no request
carrying one of them is signed (``cakeys``).

A root whose key is in a PKCS#11 token (``signer_core.tokens``) has its
session opened and its PIN given here, once; a token missing, its module
missing, a PIN refused or a token key that is not the certificate's makes
the same kind of reason. Once installed, such a root stays installed: a
token that goes away makes its requests refused (``root-unavailable``)
until it is back, without a restart.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa

from signer_core.config import RootConfig, TokenKeyConfig, X509Config
from signer_core.refusal import Refusal
from signer_core.tokens.keys import open_token_key
from signer_core.tokens.pkcs11 import TokenError, TokenSession

if TYPE_CHECKING:
    from signer_core.x509.compat import PrivateKeyTypes, PublicKeyTypes

# The kinds of root key that sign both certificates (cryptography's builder)
# and CRLs (``crl.encode``); a root holding another kind is not installed.
RootKey = (
    rsa.RSAPrivateKey
    | ec.EllipticCurvePrivateKey
    | ed25519.Ed25519PrivateKey
    | ed448.Ed448PrivateKey
)


def _spki(key: PublicKeyTypes) -> bytes:
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


@dataclasses.dataclass(frozen=True)
class Root:
    id: int
    config: RootConfig
    certificate: x509.Certificate
    private_key: RootKey = dataclasses.field(repr=False)

    @functools.cached_property
    def public_key(self) -> PublicKeyTypes:
        """The certificate's key, decoded once (every certificate's check verifies with it)."""
        return self.certificate.public_key()

    @classmethod
    def load(cls, cfg: RootConfig, pin_owner: int | None = None) -> Root:
        """Load one root; raise ValueError with a reason when it is not usable.

        ``pin_owner``: who must own a token's PIN file when that is not this
        process's user (an operator's ceremony run as root)."""
        try:
            cert = _read_certificate(cfg)
            key = None if cfg.token is not None else _read_private_key(cfg)
        except FileNotFoundError as exc:
            raise ValueError(f"file missing: {exc.filename}") from None
        except OSError as exc:
            raise ValueError(f"cannot read {exc.filename}: {exc.strerror}") from None
        except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
            raise ValueError(f"cannot load key or certificate: {exc}") from None
        if cfg.token is not None:
            return cls._with_token(cfg, cfg.token, cert, pin_owner)
        if not isinstance(key, RootKey):
            raise ValueError("the key is not RSA, EC, Ed25519 or Ed448, the kinds that sign here")
        if _spki(key.public_key()) != _spki(cert.public_key()):
            raise ValueError("private key does not match the certificate")
        if not _is_ca(cert):
            raise ValueError("certificate is not a CA certificate allowed to sign certificates")
        return cls(cfg.id, cfg, cert, key)

    @classmethod
    def _with_token(
        cls, cfg: RootConfig, token: TokenKeyConfig, cert: x509.Certificate, pin_owner: int | None
    ) -> Root:
        if not _is_ca(cert):
            raise ValueError("certificate is not a CA certificate allowed to sign certificates")
        session = TokenSession(f"root {cfg.id}", token.uri, token.module, token.pin_file, pin_owner)
        try:
            key = open_token_key(session)
            if _spki(key.public_key()) != _spki(cert.public_key()):
                raise TokenError("the token's key does not match the certificate")
        except TokenError as exc:
            session.close()
            raise ValueError(f"token key {token.uri}: {exc}") from None
        return cls(cfg.id, cfg, cert, key)

    def close(self) -> None:
        """End a token root's session (nothing to do for a key file)."""
        session = getattr(self.private_key, "token", None)
        if isinstance(session, TokenSession):
            session.close()


def _read_certificate(cfg: RootConfig) -> x509.Certificate:
    return x509.load_pem_x509_certificate(cfg.certificate.read_bytes())


def _read_private_key(cfg: RootConfig) -> PrivateKeyTypes:
    if cfg.key is None:
        raise ValueError("the key is in a token")
    password = None
    if cfg.passphrase_file is not None:
        password = cfg.passphrase_file.read_bytes().rstrip(b"\r\n")
    return serialization.load_pem_private_key(cfg.key.read_bytes(), password)


def _known_public_keys(cfg: RootConfig) -> tuple[PublicKeyTypes, ...]:
    """The public keys of a root that did not load, from whichever of its files still parses."""
    keys: list[PublicKeyTypes] = []
    for read in (_read_certificate, _read_private_key):
        try:
            keys.append(read(cfg).public_key())
        except (OSError, ValueError, TypeError, UnsupportedAlgorithm):
            continue
    return tuple(keys)


def _is_ca(cert: x509.Certificate) -> bool:
    """basicConstraints CA:TRUE, and keyCertSign if keyUsage is present."""
    try:
        if not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca:
            return False
    except x509.ExtensionNotFound:
        return False
    try:
        return cert.extensions.get_extension_for_class(x509.KeyUsage).value.key_cert_sign
    except x509.ExtensionNotFound:
        return True


@dataclasses.dataclass(frozen=True)
class RootStore:
    roots: Mapping[int, Root]
    missing: Mapping[int, str]  # root id -> why it is not installed
    # root id -> the public keys its files show, installed or not (empty: none readable)
    public_keys: Mapping[int, tuple[PublicKeyTypes, ...]] = dataclasses.field(
        default_factory=lambda: MappingProxyType({})
    )

    @classmethod
    def load(cls, x509cfg: X509Config) -> RootStore:
        roots: dict[int, Root] = {}
        missing: dict[int, str] = {}
        public_keys: dict[int, tuple[PublicKeyTypes, ...]] = {}
        for rid, rcfg in sorted(x509cfg.roots.items()):
            try:
                roots[rid] = Root.load(rcfg)
            except ValueError as exc:
                missing[rid] = str(exc)
                public_keys[rid] = _known_public_keys(rcfg)
            else:
                public_keys[rid] = (roots[rid].certificate.public_key(),)
        return cls(
            MappingProxyType(roots), MappingProxyType(missing), MappingProxyType(public_keys)
        )

    def close(self) -> None:
        """End the token sessions of the installed roots."""
        for root in self.roots.values():
            root.close()

    def get(self, root_id: int) -> Root:
        root = self.roots.get(root_id)
        if root is not None:
            return root
        if root_id in self.missing:
            raise Refusal("root-not-installed", f"root {root_id} is not installed")
        raise Refusal("unknown-root", f"no root {root_id} is configured")
