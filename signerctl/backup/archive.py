"""Full off-site backups of the signer: one tar archive, encrypted with gpg.

Trusted side tooling, run by an operator on the appliance (as root) while the
daemons run. The appliance has no network, so its only backups are the ones
an operator carries away on a visit; each is complete on its own.

What goes in, in this order (``MANIFEST`` first):

- ``MANIFEST``: the format, the time, the audit head the archive contains
  and the size and SHA-256 of every other member (``manifest``);
- ``config/signer.toml``: the configuration file;
- ``database/ca.sqlite``: a consistent snapshot of the CA database taken with
  SQLite's online backup API (never a file copy: the signer may be writing),
  which holds the certificates, revocations, CRL history and audit chain;
- ``certs/root<N>.crt``: the root certificates (public, needed to run);
- ``crl/<path>``: any ``*.crl`` file under the state directory;
- ``config/blocklist``: the blocklist of compromised public keys, if configured;
- only with ``include_keys``: ``keys/root<N>.key``, ``keys/root<N>.passphrase``
  and ``openpgp/key``, ``openpgp/passphrase``, ``openpgp/home/<path>``.

The tar stream goes straight into ``gpg --encrypt`` to the backup public key
(``crypt``), and gpg's output into ``spool.safeio.commit_stream``: a
temporary file beside the target, fsynced and renamed into place. Plain key
material is never written to disk by this module.

It trusts the configuration and the files it names. ``restore`` uses the
database checks below on the database it restores.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import shutil
import sqlite3
import tarfile
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from signer_core.integrity import sha256_file
from signer_core.store.audit import AuditLog, Verdict
from signerctl.backup.crypt import encrypt_to_file, import_backup_key, throwaway_home
from signerctl.backup.manifest import (
    BLOCKLIST_MEMBER,
    CONFIG_MEMBER,
    DATABASE_MEMBER,
    MANIFEST,
    MAX_MEMBERS,
    BackupError,
    Manifest,
    Member,
    check_member_name,
)
from spool.safeio import commit_stream
from tlog.records import GENESIS


@dataclass(frozen=True)
class BackupResult:
    path: Path
    sha256: str
    recipient: str
    audit_ok: bool
    audit_count: int
    audit_head: str
    audit_problem: str
    database_problem: str  # "" when SQLite's integrity check passed
    members: tuple[str, ...]
    missing: tuple[str, ...]


# --- gathering ---------------------------------------------------------------


@dataclass(frozen=True)
class _Item:
    name: str
    # Small files are read once, into memory; the database snapshot is streamed from disk.
    source: bytes | Path

    def size(self) -> int:
        s = self.source
        return len(s) if isinstance(s, bytes) else s.stat().st_size

    def open(self) -> IO[bytes]:
        s = self.source
        return io.BytesIO(s) if isinstance(s, bytes) else s.open("rb")

    def sha256(self) -> str:
        s = self.source
        return hashlib.sha256(s).hexdigest() if isinstance(s, bytes) else sha256_file(s)


def snapshot_database(database: Path, target: Path) -> None:
    """Copy the live database with SQLite's online backup API, in one step.

    One step holds a single read transaction for the whole copy, so the
    snapshot is one consistent state; in WAL mode that does not stop the
    signer from committing meanwhile.
    """
    if not database.is_file():
        raise BackupError(f"{database}: no CA database there")
    src = sqlite3.connect(f"{database.resolve().as_uri()}?mode=ro", uri=True)
    try:
        dst = sqlite3.connect(target)
        try:
            src.backup(dst)
        finally:
            dst.close()
    finally:
        src.close()


def _open_immutable(database: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"{database.resolve().as_uri()}?immutable=1", uri=True)


def database_problem(database: Path) -> str:
    """SQLite's integrity check of a file nobody is writing: "" when it is sound."""
    conn = _open_immutable(database)
    try:
        lines = [row[0] for row in conn.execute("PRAGMA integrity_check(5)")]
    finally:
        conn.close()
    return "" if lines == ["ok"] else "; ".join(lines)


def audit_of(database: Path) -> Verdict:
    """The audit verdict of a database file nobody else is writing."""
    conn = _open_immutable(database)
    try:
        has_audit = conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type='table' AND name='audit'"
        ).fetchone()
        if not has_audit:
            return Verdict(True, 0, GENESIS)
        return AuditLog(conn).verify()
    finally:
        conn.close()


def _files_under(directory: Path, pattern: str) -> Iterator[tuple[str, Path]]:
    for path in sorted(directory.rglob(pattern)):
        if path.is_file() and not path.is_symlink():
            yield path.relative_to(directory).as_posix(), path


def _public_items(cfg) -> Iterator[_Item]:
    yield _Item(CONFIG_MEMBER, Path(cfg.path).read_bytes())
    for root_id, root in sorted(cfg.x509.roots.items()):
        if root.certificate.is_file():
            yield _Item(f"certs/root{root_id}.crt", root.certificate.read_bytes())
    for rel, path in _files_under(cfg.signer.state_dir, "*.crl"):
        yield _Item(check_member_name(f"crl/{rel}"), path.read_bytes())
    blocklist = cfg.x509.blocklist_file
    if blocklist is not None and blocklist.is_file():
        yield _Item(BLOCKLIST_MEMBER, blocklist.read_bytes())


def _secret_items(cfg) -> Iterator[tuple[str, Path]]:
    """(member name, source) of every secret the configuration names."""
    for root_id, root in sorted(cfg.x509.roots.items()):
        if not root.certificate.is_file():
            continue  # a root not installed yet has no key to keep; one with a certificate must
        if root.key is None:
            continue  # a key in a token: backing it up is the token vendor's procedure
        yield f"keys/root{root_id}.key", root.key
        if root.passphrase_file is not None:
            yield f"keys/root{root_id}.passphrase", root.passphrase_file
    pgp = cfg.openpgp
    if pgp is None:
        return
    if pgp.key_file is not None:
        yield "openpgp/key", pgp.key_file
    if pgp.passphrase_file is not None:
        yield "openpgp/passphrase", pgp.passphrase_file
    if pgp.home is not None:
        for rel, path in _files_under(pgp.home, "*"):
            # Sockets are skipped by is_file(); lock files are transient.
            if not path.name.startswith(".#lk"):
                yield check_member_name(f"openpgp/home/{rel}"), path


# --- writing -----------------------------------------------------------------


def _tar_info(name: str, size: int, mtime: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = size, mtime, 0o600
    return info


def _stream_archive(out: IO[bytes], manifest: bytes, items: list[_Item], mtime: int) -> None:
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        tar.addfile(_tar_info(MANIFEST, len(manifest), mtime), io.BytesIO(manifest))
        for item in items:
            with item.open() as f:
                tar.addfile(_tar_info(item.name, item.size(), mtime), f)


def _collect(cfg, include_keys: bool, snapshot: Path) -> tuple[list[_Item], list[str]]:
    items = list(_public_items(cfg))
    items.insert(1, _Item(DATABASE_MEMBER, snapshot))
    missing: list[str] = []
    if include_keys:
        for name, source in _secret_items(cfg):
            if source.is_file():
                items.append(_Item(name, source.read_bytes()))
            else:
                missing.append(str(source))
    if len(items) > MAX_MEMBERS:
        raise BackupError(f"more than {MAX_MEMBERS} files to back up")
    return items, missing


def make_backup(
    cfg, encrypt_to: str, out: Path, *, include_keys: bool = False, keyring: Path | None = None
) -> BackupResult:
    """Snapshot, pack, encrypt and write ``out``; the configuration names what to take."""
    out = Path(out)
    if out.exists():
        raise BackupError(f"{out}: exists; choose a new name")
    if not out.parent.is_dir():
        raise BackupError(f"{out.parent}: no such directory")
    with throwaway_home() as home:
        fingerprint = import_backup_key(home, encrypt_to, keyring)
        workdir = Path(tempfile.mkdtemp(prefix=".backup-", dir=cfg.signer.state_dir))
        try:
            snapshot = workdir / "ca.sqlite"
            snapshot_database(cfg.signer.database, snapshot)
            verdict, problem = audit_of(snapshot), database_problem(snapshot)
            items, missing = _collect(cfg, include_keys, snapshot)
            now = dt.datetime.now(dt.UTC)
            manifest = Manifest(
                now.isoformat(timespec="seconds"),
                verdict.count,
                verdict.head,
                include_keys,
                tuple(Member(i.name, i.size(), i.sha256()) for i in items),
            ).to_bytes()
            commit_stream(
                out.parent,
                out.name,
                lambda fd: encrypt_to_file(
                    home,
                    fingerprint,
                    fd,
                    lambda stdin: _stream_archive(stdin, manifest, items, int(now.timestamp())),
                ),
                0o600,
            )
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
    return BackupResult(
        out,
        sha256_file(out),
        fingerprint,
        verdict.ok,
        verdict.count,
        verdict.head,
        verdict.problem,
        problem,
        tuple(i.name for i in items),
        tuple(missing),
    )
