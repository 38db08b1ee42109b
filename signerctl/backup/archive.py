"""Full off-site backups of the signer: one tar archive, encrypted with gpg.

Trusted side tooling, run by an operator on the appliance (as root) while the
daemons run. The appliance has no network, so its only backups are the ones
an operator carries away on a visit; each is complete on its own.

What goes in, in this order (``MANIFEST`` first):

- ``MANIFEST``: the format, the time, the audit head the archive contains
  (number of records and hash of the last one) and the SHA-256 and size of
  every other member;
- ``config/signer.toml``: the configuration file;
- ``database/ca.sqlite``: a consistent snapshot of the CA database taken with
  SQLite's online backup API (never a file copy: the signer may be writing),
  which holds the certificates, revocations, CRL history and audit chain;
- ``certs/root<N>.crt``: the root certificates (public, needed to run);
- ``crl/<path>``: any ``*.crl`` file under the state directory;
- ``config/blocklist``: the blocklist of compromised public keys, if configured;
- only with ``include_keys``: ``keys/root<N>.key``, ``keys/root<N>.passphrase``
  and ``openpgp/key``, ``openpgp/passphrase``, ``openpgp/home/<path>``.

The tar stream goes straight into ``gpg --encrypt`` in a throw-away GnuPG home
holding only the backup public key (``--trust-model always``: the operator
chose the key; there is no web of trust to consult offline), and gpg's output
goes to a temporary file beside the target that is fsynced and renamed into
place. Plain key material is never written to disk by this module. The
private half of the backup key is never on the signer: a key file that holds
a secret key is refused.

It trusts the configuration and the files it names; ``manifest`` parsing is
shared with ``restore``, which treats archives as hostile.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import os
import re
import shutil
import sqlite3
import subprocess
import tarfile
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from signer_core.store.audit import GENESIS, AuditLog, Verdict
from spool.safeio import fsync_dir

FORMAT = "signer-appliance-backup/1"
MANIFEST = "MANIFEST"
MAX_MANIFEST = 1 << 20
MAX_MEMBERS = 10_000
MAX_KEY_FILE = 1 << 20
CONFIG_MEMBER = "config/signer.toml"
DATABASE_MEMBER = "database/ca.sqlite"
BLOCKLIST_MEMBER = "config/blocklist"  # the operator's list of compromised public keys
_NAME = re.compile(r"[A-Za-z0-9._+~-]{1,128}")
_HEX64 = re.compile(r"[0-9a-f]{64}")


class BackupError(Exception):
    """A backup cannot be made or read; the message says why."""


@dataclass(frozen=True)
class Member:
    name: str
    size: int
    sha256: str


@dataclass(frozen=True)
class Manifest:
    created: str
    audit_count: int
    audit_head: str
    includes_keys: bool
    members: tuple[Member, ...]

    def to_bytes(self) -> bytes:
        data = {
            "format": FORMAT,
            "created": self.created,
            "audit": {"count": self.audit_count, "head": self.audit_head},
            "includes_keys": self.includes_keys,
            "members": [{"name": m.name, "size": m.size, "sha256": m.sha256} for m in self.members],
        }
        return (json.dumps(data, indent=1, sort_keys=True) + "\n").encode()


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


def check_member_name(name: object) -> str:
    """A relative path of safe components; the only names restore will write."""
    if not isinstance(name, str) or len(name) > 1024:
        raise BackupError("member name is not a short string")
    parts = name.split("/")
    if len(parts) > 8 or not all(_NAME.fullmatch(p) and p not in (".", "..") for p in parts):
        raise BackupError(f"unsafe member name {name[:80]!r}")
    return name


def _field(data: dict, key: str, kind: type) -> Any:
    value = data.get(key)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise BackupError(f"manifest: {key} missing or not a {kind.__name__}")
    return value


def _member(item: object) -> Member:
    if not isinstance(item, dict) or set(item) != {"name", "size", "sha256"}:
        raise BackupError("manifest: a member entry is malformed")
    size, digest = _field(item, "size", int), _field(item, "sha256", str)
    if not 0 <= size < 1 << 50 or not _HEX64.fullmatch(digest):
        raise BackupError("manifest: a member's size or SHA-256 is malformed")
    return Member(check_member_name(item["name"]), size, digest)


def parse_manifest(raw: bytes) -> Manifest:
    """The manifest of an archive; BackupError on anything unexpected."""
    if len(raw) > MAX_MANIFEST:
        raise BackupError("manifest too large")
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise BackupError("manifest is not JSON") from exc
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise BackupError(f"manifest: not a {FORMAT} archive")
    audit, items = _field(data, "audit", dict), _field(data, "members", list)
    count, head = _field(audit, "count", int), _field(audit, "head", str)
    if count < 0 or not _HEX64.fullmatch(head) or len(items) > MAX_MEMBERS:
        raise BackupError("manifest: audit head or member list malformed")
    members = tuple(_member(item) for item in items)
    names = [m.name for m in members]
    if len(set(names)) != len(names) or MANIFEST in names:
        raise BackupError("manifest: a member is listed twice")
    return Manifest(
        _field(data, "created", str), count, head, _field(data, "includes_keys", bool), members
    )


# --- gpg -------------------------------------------------------------------


@dataclass(frozen=True)
class GpgRun:
    returncode: int
    status: tuple[str, ...]  # "[GNUPG:] " lines, prefix removed
    messages: str  # everything else gpg said

    def has(self, keyword: str) -> bool:
        return any(s.split(" ", 1)[0] == keyword for s in self.status)

    def reason(self) -> str:
        lines = [ln for ln in self.messages.splitlines() if ln.strip()]
        return lines[-1].strip() if lines else f"gpg exited with {self.returncode}"


def gpg_command(home: Path | None, *args: str) -> list[str]:
    home_args = ["--homedir", str(home)] if home is not None else []
    return ["gpg", *home_args, "--no-tty", "--status-fd", "2", *args]


def gpg_result(returncode: int, stderr: bytes) -> GpgRun:
    text = stderr.decode("utf-8", "replace").splitlines()
    status = tuple(ln[9:] for ln in text if ln.startswith("[GNUPG:] "))
    messages = "\n".join(ln for ln in text if not ln.startswith("[GNUPG:] "))
    return GpgRun(returncode, status, messages)


def run_gpg(home: Path | None, *args: str, data: bytes = b"") -> tuple[GpgRun, bytes]:
    proc = subprocess.run(
        gpg_command(home, "--batch", *args),
        input=data,
        capture_output=True,
        timeout=120,
        check=False,
    )
    return gpg_result(proc.returncode, proc.stderr), proc.stdout


@contextmanager
def throwaway_home() -> Iterator[Path]:
    """A fresh GnuPG home (0700), removed afterwards; never the signer's own."""
    home = Path(tempfile.mkdtemp(prefix="signer-gpg-"))
    try:
        yield home
    finally:
        subprocess.run(
            ["gpgconf", "--homedir", str(home), "--kill", "all"],
            capture_output=True,
            timeout=30,
            check=False,
        )
        shutil.rmtree(home, ignore_errors=True)


def _backup_key_material(encrypt_to: str, keyring: Path | None) -> bytes:
    path = Path(encrypt_to)
    if path.is_file():
        if path.stat().st_size > MAX_KEY_FILE:
            raise BackupError(f"{path}: too large for a public key")
        return path.read_bytes()
    run, data = run_gpg(keyring, "--export", "--", encrypt_to)
    if not data:
        raise BackupError(f"no public key {encrypt_to!r} in the keyring: {run.reason()}")
    return data


def import_backup_key(home: Path, encrypt_to: str, keyring: Path | None = None) -> str:
    """Put the one backup public key into ``home``; return its fingerprint."""
    material = _backup_key_material(encrypt_to, keyring)
    _, listing = run_gpg(
        home, "--with-colons", "--import-options", "show-only", "--import", data=material
    )
    records = [line.split(":") for line in listing.decode("utf-8", "replace").splitlines()]
    if any(r[0] in ("sec", "ssb") for r in records):
        raise BackupError(
            f"{encrypt_to}: holds a secret key; the backup key's private"
            " half must never be on the signer"
        )
    primaries = [i for i, r in enumerate(records) if r[0] == "pub"]
    if len(primaries) != 1:
        raise BackupError(f"{encrypt_to}: expected exactly one public key, found {len(primaries)}")
    fingerprint = next(r[9] for r in records[primaries[0] :] if r[0] == "fpr")
    run, _ = run_gpg(home, "--import", data=material)
    if run.returncode != 0:
        raise BackupError(f"cannot import the backup key: {run.reason()}")
    return fingerprint


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


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


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
        return AuditLog(conn, create=False).verify()
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


def _encrypt_to_file(home: Path, fingerprint: str, fd: int, write) -> None:
    """Run ``write(stdin)`` into gpg, whose ciphertext lands in ``fd``."""
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(
            gpg_command(
                home,
                "--batch",
                "--trust-model",
                "always",
                "--no-auto-key-locate",
                "--recipient",
                fingerprint,
                "--encrypt",
                "--output",
                "-",
            ),
            stdin=subprocess.PIPE,
            stdout=fd,
            stderr=err,
        )
        assert proc.stdin is not None
        try:
            write(proc.stdin)
        except BrokenPipeError:
            pass  # gpg stopped early; its own message says why
        finally:
            # Whatever happened, gpg must see the end of its input to finish.
            try:
                proc.stdin.close()
            except BrokenPipeError:
                pass
            returncode = proc.wait(timeout=600)
        err.seek(0)
        run = gpg_result(returncode, err.read())
    if returncode != 0 or not run.has("END_ENCRYPTION"):
        raise BackupError(f"gpg could not encrypt: {run.reason()}")


def write_atomically(target: Path, fill) -> None:
    """``fill(fd)`` writes a temp file beside ``target``; fsync, rename, fsync the dir."""
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        fill(fd)
        os.fsync(fd)
        os.close(fd)
        fd = -1
        os.rename(tmp, target)
    except BaseException:
        if fd >= 0:
            os.close(fd)
        os.unlink(tmp)
        raise
    fsync_dir(target.parent)


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
            write_atomically(
                out,
                lambda fd: _encrypt_to_file(
                    home,
                    fingerprint,
                    fd,
                    lambda stdin: _stream_archive(stdin, manifest, items, int(now.timestamp())),
                ),
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
