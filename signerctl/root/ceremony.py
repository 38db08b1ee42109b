"""The ceremony steps on a root of its own: ``generate``, ``csr`` and ``install``, and
what every step shares (``Ceremony``: the signer user, the CA database, the transcript).

Trusted side tooling, run by the operator (root or the signer user) with the
signer stopped or the root not yet in service. It trusts the configuration
(root owns it) and the key it names; a certificate or CSR it is given is
checked before anything is written. Files a root-run signerctl makes for
the signer (its key, its certificate, a new CA database) are owned by the
signer user.

Each step is one transcript: what was done, when, the SHA-256 of the key's
SubjectPublicKeyInfo and of each certificate or CSR's DER, printed for the
operator and appended to the audit chain as ``ceremony-<step>`` (the
details are the transcript itself; no key material). ``subroot`` holds the
fourth step, ``sign-subroot``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed448, ed25519

from signer_core.config import Config, RootConfig
from signer_core.refusal import Refusal
from signer_core.roots import Root
from signer_core.store.audit import AuditLog
from signer_core.store.cadb import CADatabase
from signer_core.store.schema import SchemaError
from signer_core.x509.compat import not_after, not_before, verify_issued_by
from signer_core.x509.keychecks import spki_sha256
from signer_core.x509.subject import parse_subject
from signerctl.backup.restore import signer_owner
from signerctl.cli import CtlError, configured_root, iso, log, problem
from signerctl.root.keys import RootKeyBackend, backend_for, fingerprint
from spool.safeio import commit_file, commit_stream, write_all

MAX_INPUT = 1 << 20  # no CSR or certificate comes near a megabyte


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


def der_sha256(item: x509.Certificate | x509.CertificateSigningRequest) -> str:
    return hashlib.sha256(item.public_bytes(serialization.Encoding.DER)).hexdigest()


def _read(path: Path, what: str) -> bytes:
    try:
        with path.open("rb") as f:
            return f.read(MAX_INPUT + 1)
    except OSError as exc:
        raise CtlError(problem(exc, what)) from None


def read_certificate(path: Path) -> x509.Certificate:
    """The PEM certificate in ``path`` (the signer reads PEM); CtlError if it holds none."""
    data = _read(path, "the certificate ")
    try:
        return x509.load_pem_x509_certificate(data)
    except ValueError:
        raise CtlError(f"{path} holds no PEM certificate") from None


def read_csr(path: Path) -> x509.CertificateSigningRequest:
    """The CSR in ``path``, PEM or DER, its signature checked; CtlError otherwise."""
    data = _read(path, "the CSR ")
    try:
        if b"-----BEGIN" in data:
            request = x509.load_pem_x509_csr(data)
        else:
            request = x509.load_der_x509_csr(data)
        valid = request.is_signature_valid
    except ValueError:
        raise CtlError(f"{path} holds no certificate signing request (PEM or DER)") from None
    if not valid:
        raise CtlError(f"the CSR in {path} is not signed by the key it carries")
    return request


@dataclass(frozen=True)
class Ceremony:
    """One ceremony step's surroundings: the configuration and who owns what it makes."""

    cfg: Config
    owner: tuple[int, int] | None  # the signer user's (uid, gid) when run as root

    @classmethod
    def of(cls, cfg: Config) -> Ceremony:
        owner, _ = signer_owner(cfg.signer.user, cfg.signer.group)
        return cls(cfg, owner)

    def root(self, root_id: int) -> RootConfig:
        configured_root(self.cfg, root_id)
        return self.cfg.x509.roots[root_id]

    def key(self, root_id: int) -> RootKeyBackend:
        return backend_for(self.root(root_id), self.owner)

    def existing_key(self, root_id: int) -> RootKeyBackend:
        key = self.key(root_id)
        if not key.exists():
            raise CtlError(
                f"root {root_id} has no key at {key.where}: make it first with"
                f" signerctl root generate --root {root_id}"
            )
        return key

    @contextmanager
    def database(self) -> Iterator[CADatabase]:
        """The CA database, writable; a new one is made as the signer user's."""
        path = self.cfg.signer.database
        if path.is_symlink():  # the signer user's directory: root follows no link there
            raise CtlError(f"the CA database {path} is a symbolic link: refused")
        if self.owner is not None and not os.path.lexists(path):
            _signer_dirs(path.parent, self.owner)
            # Made exclusively and never through a link: the directory is the signer
            # user's, who must not be able to point root's chown elsewhere.
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            except FileExistsError:
                pass  # made meanwhile: SQLite opens it as it is
            else:
                try:
                    os.fchown(fd, *self.owner)  # SQLite gives its side files the same owner
                finally:
                    os.close(fd)
        try:
            db = CADatabase(path)
        except SchemaError as exc:
            raise CtlError(str(exc)) from None
        try:
            yield db
        finally:
            db.close()

    def record(self, db: CADatabase, step: str, when: dt.datetime, **details: object) -> dict:
        """Append the transcript of ``step`` to the audit chain (joining an open
        transaction); the transcript as printed, with the record's hash."""
        transcript = {"step": step, "at": when.isoformat(), **details}
        with db.transaction() as conn:
            digest = AuditLog(conn).append(f"ceremony-{step}", **transcript)
        return {**transcript, "audit_record": digest}


def _signer_dirs(directory: Path, owner: tuple[int, int]) -> None:
    """``directory`` and any missing parents, made 0700 and given to the signer user."""
    missing = []
    while not directory.exists():
        missing.append(directory)
        directory = directory.parent
    for made in reversed(missing):
        made.mkdir(mode=0o700)
        os.chown(made, *owner, follow_symlinks=False)


def generate(c: Ceremony, root_id: int, key_type: str) -> dict:
    """Make root ``root_id``'s key where the configuration says; never over an existing one."""
    key = c.key(root_id)
    if key.exists():
        raise CtlError(
            f"root {root_id} has a key already, at {key.where}: generate never replaces"
            " a key (move the old one away first if it is to go)"
        )
    with c.database() as db:  # a database this user cannot write refuses before a key is made
        key.generate(key_type)
        return c.record(
            db,
            "generate",
            now(),
            root=root_id,
            key_type=key_type,
            **key.describe(),
            key_sha256=fingerprint(key),
        )


def csr(c: Ceremony, root_id: int, subject_text: str, out: Path) -> dict:
    """Write a CSR for root ``root_id``'s key, with the subject the operator gives."""
    key = c.existing_key(root_id)
    try:
        subject = parse_subject(subject_text.encode())
    except Refusal as exc:
        raise CtlError(f"--subject {subject_text!r} is not a subject: {exc.text}") from None
    signing = key.signing_key()
    algorithm = (
        None
        if isinstance(signing, (ed25519.Ed25519PrivateKey, ed448.Ed448PrivateKey))
        else hashes.SHA256()
    )
    try:
        builder = x509.CertificateSigningRequestBuilder().subject_name(subject)
        request = builder.sign(signing, algorithm)
    except Refusal as exc:  # a token key that cannot sign now
        raise CtlError(exc.text) from None
    finally:
        key.close()
    with c.database() as db:
        commit_file(out.parent, out.name, request.public_bytes(serialization.Encoding.PEM), 0o644)
        return c.record(
            db,
            "csr",
            now(),
            root=root_id,
            subject=subject.rfc4514_string(),
            key_sha256=fingerprint(key),
            csr=str(out),
            csr_sha256=der_sha256(request),
        )


def load_root(rcfg: RootConfig, refused: str, owner: tuple[int, int] | None) -> Root:
    """Root ``rcfg`` loaded as the signer (``owner``, when we are root) loads it at start;
    CtlError, after ``refused``, with the reason the signer would give when it would not
    put it in service."""
    try:
        return Root.load(rcfg, None if owner is None else owner[0])
    except ValueError as exc:
        reason = str(exc)
        if reason.startswith("cannot load"):  # the library's words follow: to the log only
            log.debug("root %d: %s", rcfg.id, reason)
            reason = "its key or certificate cannot be read (a wrong passphrase, or not PEM)"
        raise CtlError(f"{refused}: {reason}") from None


def _issuer_root(c: Ceremony, root_id: int, cert: x509.Certificate, path: Path) -> int | None:
    """The configured root that signed ``cert`` (``root_id`` itself if it is self-signed);
    None when no configured root has its issuer's name; CtlError when one has it and
    did not sign it."""
    named = []
    for rid, rcfg in sorted(c.cfg.x509.roots.items()):
        if rid == root_id:
            issuer = cert if cert.issuer == cert.subject else None
        elif rcfg.certificate.is_file():
            issuer = read_certificate(rcfg.certificate)
        else:
            issuer = None
        if issuer is None or issuer.subject != cert.issuer:
            continue
        named.append(rid)
        try:
            verify_issued_by(cert, issuer)
        except InvalidSignature:
            continue
        return rid
    if named:
        which = " or ".join(f"root {rid}" for rid in named)
        raise CtlError(
            f"the certificate in {path} names {which} as its issuer, but {which}'s key"
            " did not sign it"
        )
    return None


def _check_install(c: Ceremony, root_id: int, cert: x509.Certificate, path: Path) -> int | None:
    """Every check of ``install``, in order; the issuing root, if a configured one."""
    key = c.existing_key(root_id)
    if spki_sha256(cert.public_key()) != fingerprint(key):
        raise CtlError(
            f"the certificate in {path} is not for root {root_id}'s key (at {key.where})"
        )
    # What the signer will check at start (key and certificate agree, a CA that signs):
    load_root(
        dataclasses.replace(c.root(root_id), certificate=path),
        f"root {root_id} would not go into service with the certificate in {path}",
        c.owner,
    ).close()
    moment = now()
    if moment < not_before(cert):
        raise CtlError(
            f"the certificate in {path} is not valid yet (from {not_before(cert).isoformat()})"
        )
    if moment >= not_after(cert):
        raise CtlError(f"the certificate in {path} expired on {not_after(cert).isoformat()}")
    return _issuer_root(c, root_id, cert, path)


def install(c: Ceremony, root_id: int, cert_path: Path) -> dict:
    """Check a certificate for root ``root_id``'s key, then put it where the configuration says."""
    rcfg = c.root(root_id)
    cert = read_certificate(cert_path)
    issuer = _check_install(c, root_id, cert, cert_path)
    target = rcfg.certificate
    replaced = None
    if target.is_file():
        try:
            replaced = der_sha256(read_certificate(target))
        except CtlError:
            replaced = "not a certificate"
    pem = cert.public_bytes(serialization.Encoding.PEM)

    def fill(fd: int) -> None:
        write_all(fd, pem)
        if c.owner is not None:
            os.fchown(fd, *c.owner)

    with c.database() as db:
        commit_stream(target.parent, target.name, fill, 0o644)
        return c.record(
            db,
            "install",
            now(),
            root=root_id,
            certificate=str(target),
            certificate_sha256=der_sha256(cert),
            key_sha256=fingerprint(c.key(root_id)),
            subject=cert.subject.rfc4514_string(),
            issuer=cert.issuer.rfc4514_string(),
            issuer_root=issuer,
            not_before=iso(not_before(cert).timestamp()),
            not_after=iso(not_after(cert).timestamp()),
            replaced_sha256=replaced,
        )
