"""The audit log's key: an Ed25519 key of its own that signs the log's checkpoints.

Trusted side: the key file is the signer's own, in its state directory,
made by the signer at its first start (so owned by the signer user, mode
0600) and trusted as it finds it. It is never a root key: a checkpoint
proves what the log holds, and whoever can read the log key can only forge
that, never a certificate. The public half, as a verifier line, is written
beside it (``<log_key>.pub``, mode 0644) for the operator and the web host;
it is derived from the private key at every start, so it cannot drift.

Or the key is in a PKCS#11 token (``[audit] log_key`` a ``pkcs11:`` URI),
reached as a root's token key is (``signer_core.tokens``: the same session,
PIN file rules and re-login after the token comes back), Ed25519 signing
with CKM_EDDSA: the operator makes it there (``signerctl audit key
--generate``), the signer never does; its ``.pub`` is still written from the
public half the token shows.

A key that cannot be used (a file unreadable, a token missing, its PIN
refused) is a ``LogKeyError`` whose message says why; the daemon then serves
everything but the audit exchange. A token that goes away while serving
refuses the audit requests (``audit-unavailable``) until it is back. A storage fault
while making the key (a full disk) is raised as it is, so that the start is
tried again as for any other storage fault.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    load_pem_private_key,
)

from signer_core.config import AuditConfig
from signer_core.store.audit import AuditLog
from signer_core.store.faults import storage_fault
from signer_core.tokens.keys import TokenEd25519PrivateKey, open_ed25519_key
from signer_core.tokens.pkcs11 import TokenError, TokenSession
from spool.safeio import commit_file
from tlog.note import Checkpoint, NoteError, Verifier

log = logging.getLogger("signer-core")

MAX_KEY_FILE = 1 << 16  # an Ed25519 PEM is 119 bytes; anything this large is not one


class LogKeyError(Exception):
    """The log key cannot be used; the message says which file or URI and why."""


class NoLogKey(LogKeyError):
    """There is no log key file yet: the signer makes one at its first start."""

    def __init__(self, path: Path) -> None:
        super().__init__(f"there is no log key yet: the signer makes {path} at its first start")


@dataclass(frozen=True)
class LogKey:
    origin: str  # the log's name, and the key's name in every checkpoint
    private: Ed25519PrivateKey

    @property
    def verifier(self) -> Verifier:
        return Verifier(self.origin, self.private.public_key())

    def sign(self, checkpoint: Checkpoint) -> str:
        """The signed note of ``checkpoint``, which must be of this log."""
        if checkpoint.origin != self.origin:
            raise NoteError(f"the checkpoint is of log {checkpoint.origin!r}, not {self.origin!r}")
        return checkpoint.sign(self.private)

    def close(self) -> None:
        """End the token's session, for a key in a token (nothing to do for a file)."""
        if isinstance(self.private, TokenEd25519PrivateKey):
            self.private.token.close()


def where(cfg: AuditConfig) -> str:
    """Where the log key is: its file, or its token's URI."""
    return str(cfg.log_key) if cfg.token is None else str(cfg.token.uri)


def public_path(cfg: AuditConfig) -> Path:
    return cfg.log_key.with_name(cfg.log_key.name + ".pub")


def read_key(cfg: AuditConfig, pin_owner: int | None = None) -> LogKey:
    """The log key in ``cfg.log_key`` or its token (whose PIN file ``pin_owner`` owns, by
    default this user); NoLogKey if there is no file, LogKeyError if it is unusable.
    A key in a token holds a session open until ``close``."""
    if cfg.token is not None:
        return _token_key(cfg, pin_owner)
    path = cfg.log_key
    try:
        with path.open("rb") as f:
            pem = f.read(MAX_KEY_FILE + 1)
    except FileNotFoundError:
        raise NoLogKey(path) from None
    except OSError as exc:
        raise LogKeyError(f"the log key {path} cannot be read: {exc.strerror}") from None
    try:
        private = load_pem_private_key(pem, password=None)
    except (ValueError, TypeError):  # TypeError: a key that wants a passphrase
        raise LogKeyError(f"the log key {path} is not an unencrypted PEM private key") from None
    if not isinstance(private, Ed25519PrivateKey):
        raise LogKeyError(f"the log key {path} is not an Ed25519 key")
    return LogKey(cfg.origin, private)


def _token_key(cfg: AuditConfig, pin_owner: int | None) -> LogKey:
    assert cfg.token is not None
    t = cfg.token
    session = TokenSession(
        "the audit log", t.uri, t.module, t.pin_file, pin_owner, refusal="audit-unavailable"
    )
    try:
        return LogKey(cfg.origin, open_ed25519_key(session))
    except TokenError as exc:
        session.close()
        raise LogKeyError(f"the log key {t.uri}: {exc}") from None


def read_verifier(cfg: AuditConfig) -> Verifier:
    """The verifier line the signer last wrote beside the key; NoLogKey if there is none."""
    path = public_path(cfg)
    try:
        text = path.read_text(encoding="ascii", errors="replace")
    except FileNotFoundError:
        if cfg.token is not None:
            raise LogKeyError(
                f"there is no {path} yet: the signer writes it at its start from {where(cfg)}"
            ) from None
        raise NoLogKey(cfg.log_key) from None
    except OSError as exc:
        raise LogKeyError(f"the public log key {path} cannot be read: {exc.strerror}") from None
    try:
        return Verifier.parse(text)
    except NoteError as exc:
        raise LogKeyError(f"the public log key {path} is not a verifier line: {exc}") from None


def load_or_create(cfg: AuditConfig) -> tuple[LogKey, bool]:
    """The log key, made first if there is none yet (a file key only); and whether it was
    made now.

    Its verifier line is written beside it whenever the one there differs
    (a new key, or a new origin for the same key)."""
    created = False
    try:
        key = read_key(cfg)
    except NoLogKey:
        key, created = LogKey(cfg.origin, Ed25519PrivateKey.generate()), True
        pem = key.private.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
        _commit(cfg.log_key, pem, 0o600, "made")
    line = key.verifier.text() + "\n"
    try:
        current = public_path(cfg).read_text(encoding="ascii", errors="replace")
    except OSError:
        current = ""
    if current != line:
        try:
            _commit(public_path(cfg), line.encode(), 0o644, "written")
        except BaseException:
            key.close()
            raise
    return key, created


def start_log_key(cfg: AuditConfig, audit: AuditLog) -> tuple[LogKey | None, str]:
    """The log key at the signer's start, audited ("log-key": its verifier line, public);
    or None and the reason the audit exchange is refused."""
    try:
        key, created = load_or_create(cfg)
    except LogKeyError as exc:
        reason = f"the audit log key is not usable: {exc}"
        log.warning("%s; the audit exchange is refused until it is", reason)
        audit.append("log-key", verifier=None, created=False, reason=reason)
        return None, reason
    if created:
        log.info("made the audit log key %s: %s", cfg.log_key, key.verifier.text())
    audit.append("log-key", verifier=key.verifier.text(), created=created, reason="")
    return key, ""


def _commit(path: Path, data: bytes, mode: int, done: str) -> None:
    try:
        commit_file(path.parent, path.name, data, mode)
    except OSError as exc:
        if storage_fault(exc):
            raise
        raise LogKeyError(f"the log key file {path} cannot be {done}: {exc.strerror}") from None
