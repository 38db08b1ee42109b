"""A root's private key as the ceremonies use it: the one interface a key backend fills.

Trusted side tooling, run by the operator (root or the signer user) with the
signer stopped or the root not yet in service. It trusts the configuration
(root owns it) and the key the configuration names; it never prints or
records key material, only the SHA-256 of the public key (``fingerprint``).

A backend (``RootKeyBackend``) does three things with one root's key: make
it (``generate``, never over an existing one), give its public half
(``public_key``), and give an object that cryptography's certificate and
CSR builders sign with (``signing_key``, until ``close``). Two backends,
chosen in ``backend_for`` from the root's configuration: key files
(``FileKey``: PEM, encrypted when the root has a ``passphrase_file``, 0600,
owned by the signer user) and PKCS#11 tokens (``signerctl.root.token``).
Nothing else in ``signerctl.root`` knows where a key lives.
"""

from __future__ import annotations

import os
import pwd
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from signer_core.config import RootConfig
from signer_core.roots import RootKey
from signer_core.x509.keychecks import spki_sha256
from signerctl.cli import CtlError, problem
from signerctl.root.token import TokenKey
from spool.safeio import commit_stream, fsync_dir, unlink_quietly, write_all

if TYPE_CHECKING:
    from signer_core.x509.compat import PublicKeyTypes

KEY_TYPES = ("rsa4096", "p256")


class RootKeyBackend(Protocol):
    """One root's private key, wherever it is kept."""

    @property
    def where(self) -> str:
        """Where the key is, for the transcript: a path (or a token's URI)."""
        ...

    def exists(self) -> bool: ...

    def describe(self) -> dict[str, object]:
        """Where the key is and how it is kept, for the transcript (no key material)."""
        ...

    def generate(self, key_type: str) -> None:
        """Make a new key of ``key_type`` (one of KEY_TYPES); CtlError if one exists."""
        ...

    def public_key(self) -> PublicKeyTypes: ...

    def signing_key(self) -> RootKey:
        """What cryptography's builders sign with; CtlError when the key cannot be used."""
        ...

    def close(self) -> None:
        """Let go of what ``signing_key`` holds open (a token's session)."""
        ...


def backend_for(cfg: RootConfig, owner: tuple[int, int] | None) -> RootKeyBackend:
    """The backend of root ``cfg``'s key, the one place that decides: the token its
    ``pkcs11:`` URI names, or its key file."""
    if cfg.token is not None:
        return TokenKey(cfg.id, cfg.token, owner)
    assert cfg.key is not None  # a root's settings name a key file or a token (config.x509)
    return FileKey(cfg.id, cfg.key, cfg.passphrase_file, owner)


def fingerprint(key: RootKeyBackend) -> str:
    """The SHA-256 of the key's SubjectPublicKeyInfo, as the transcript shows it."""
    return spki_sha256(key.public_key())


def _new_key(key_type: str) -> rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey:
    if key_type == "rsa4096":
        return rsa.generate_private_key(65537, 4096)
    if key_type == "p256":
        return ec.generate_private_key(ec.SECP256R1())
    raise CtlError(f"{key_type!r} is not a key type: the types are {', '.join(KEY_TYPES)}")


class FileKey:
    """A PEM key file, readable by the signer user alone."""

    def __init__(
        self, root: int, path: Path, passphrase_file: Path | None, owner: tuple[int, int] | None
    ) -> None:
        self.root = root
        self.path = path
        self.passphrase_file = passphrase_file
        self.owner = owner  # (uid, gid) of the signer user when run as root

    @property
    def where(self) -> str:
        return str(self.path)

    def exists(self) -> bool:
        return os.path.lexists(self.path)

    def describe(self) -> dict[str, object]:
        st = self.path.stat()
        try:
            owner = pwd.getpwuid(st.st_uid).pw_name
        except KeyError:
            owner = str(st.st_uid)
        return {"key": str(self.path), "key_mode": f"{st.st_mode & 0o7777:04o}", "key_owner": owner}

    def _passphrase(self) -> bytes | None:
        if self.passphrase_file is None:
            return None
        try:
            return self.passphrase_file.read_bytes().rstrip(b"\r\n")
        except OSError as exc:
            raise CtlError(problem(exc, f"root {self.root}'s passphrase file ")) from None

    def generate(self, key_type: str) -> None:
        key = _new_key(key_type)
        passphrase = self._passphrase()
        encryption: serialization.KeySerializationEncryption = (
            serialization.NoEncryption()
            if passphrase is None
            else serialization.BestAvailableEncryption(passphrase)
        )
        pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
        )

        def fill(fd: int) -> None:
            write_all(fd, pem)
            if self.owner is not None:
                os.fchown(fd, *self.owner)

        # Written whole under a temporary name, then linked to its own: a link
        # never replaces a file, so a key that appeared meanwhile is kept.
        directory, temporary = self.path.parent, f".{self.path.name}.new"
        try:
            commit_stream(directory, temporary, fill, 0o600)
            try:
                os.link(directory / temporary, self.path)
            finally:
                unlink_quietly(directory / temporary)
            fsync_dir(directory)
        except OSError as exc:
            raise CtlError(problem(exc, f"root {self.root}'s key file ")) from None

    def signing_key(self) -> RootKey:
        try:
            data = self.path.read_bytes()
        except OSError as exc:
            raise CtlError(problem(exc, f"root {self.root}'s key file ")) from None
        try:
            key = serialization.load_pem_private_key(data, self._passphrase())
        except (ValueError, TypeError, UnsupportedAlgorithm):
            raise CtlError(
                f"{self.path} holds no private key that root {self.root}'s passphrase"
                " (if any) opens"
            ) from None
        if not isinstance(key, RootKey):
            raise CtlError(f"{self.path} holds a kind of key that cannot sign certificates here")
        return key

    def public_key(self) -> PublicKeyTypes:
        return self.signing_key().public_key()

    def close(self) -> None:
        pass  # a key file holds nothing open
