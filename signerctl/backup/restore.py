"""Restore a backup made by ``signerctl.backup.archive`` into the configured paths.

Trusted side tooling, run by an operator as root, with the daemons stopped,
on a machine whose GnuPG home holds the backup secret key. The archive is
hostile until it has passed every check: anyone holding the public backup
key can make one, and a copy carried on a stick can be damaged. So:

1. gpg decrypts (integrity protection required: ``DECRYPTION_OKAY`` and
   ``GOODMDC``) straight into a bounded tar reader (``unpack``): ``MANIFEST``
   must come first; every other member must be a regular file the manifest
   lists, of the listed size and SHA-256, and none may be missing; names are
   checked before they become paths; the stream may not outgrow the manifest;
2. members land in a private staging directory (0700), never in place;
3. the staged database must pass SQLite's integrity check, its audit chain
   must verify, and its head must be the one the manifest records;
4. the backup's configuration, as if installed at ``config_path``, says
   where each member goes; an existing CA database (or any existing file
   that differs) is kept unless ``force``;
5. only then is each file put in place (``spool.safeio.commit_stream``: temp
   file beside the target, fsync, rename) with its mode, owned by the signer
   user when run as root.

A refusal happens before step 5 and changes nothing but the staging
directory, which is always removed. ``check_only`` stops after step 4 (on
the office machine, to know a backup is sound before it is needed). The
operator compares the audit head printed here with the one written down when
the backup was made.
"""

from __future__ import annotations

import grp
import os
import pwd
import re
import shutil
import sqlite3
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from signer_core import procfs
from signer_core.integrity import sha256_file
from signerctl.backup.archive import audit_of, database_problem
from signerctl.backup.crypt import decryption_problem, gpg_command, gpg_result
from signerctl.backup.manifest import BLOCKLIST_MEMBER, CONFIG_MEMBER, DATABASE_MEMBER, Manifest
from signerctl.backup.unpack import RestoreError, read_archive
from spool.safeio import commit_stream, fsync_dir, write_all

_KEY = re.compile(r"keys/root(\d{1,3})\.(key|passphrase)")
_CERT = re.compile(r"certs/root(\d{1,3})\.crt")
_DB_SIDE_FILES = ("-wal", "-shm", "-journal")


@dataclass(frozen=True)
class RestoreResult:
    archive_sha256: str
    created: str
    audit_count: int
    audit_head: str
    restored: tuple[str, ...]
    warnings: tuple[str, ...]


def decrypt_and_stage(archive: Path, gnupghome: Path | None, staging: Path) -> Manifest:
    """Decrypt with the backup secret key and stage the members; RestoreError if anything is off."""
    # No --batch: a passphrase-protected backup key may need the operator's pinentry.
    command = gpg_command(gnupghome, "--decrypt", "--output", "-", str(archive))
    failure = None
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err
        )
        assert proc.stdout is not None
        try:
            manifest = read_archive(proc.stdout, staging)
        except RestoreError as exc:
            failure = exc
        finally:
            proc.stdout.close()  # gpg, if still writing, stops on the closed pipe
            returncode = proc.wait(timeout=600)
        err.seek(0)
        run = gpg_result(returncode, err.read())
    problem = decryption_problem(run)
    if problem is not None:
        raise RestoreError(problem) from failure
    if failure is not None:
        raise failure
    if returncode != 0:
        raise RestoreError(f"gpg could not read it (damaged or truncated): {run.reason()}")
    if not (run.has("DECRYPTION_OKAY") and run.has("GOODMDC")):
        raise RestoreError("gpg did not confirm the archive's integrity protection")
    return manifest


def check_database(database: Path, manifest: Manifest) -> None:
    try:
        problem, verdict = database_problem(database), audit_of(database)
    except sqlite3.Error as exc:
        raise RestoreError(f"the database in the backup is unreadable: {exc}") from exc
    if problem:
        raise RestoreError(f"the database in the backup is corrupt: {problem}")
    if not verdict.ok:
        raise RestoreError(
            f"the audit chain in the backup is broken at record"
            f" {verdict.bad_seq}: {verdict.problem}"
        )
    if (verdict.count, verdict.head) != (manifest.audit_count, manifest.audit_head):
        raise RestoreError(
            f"the database's audit head ({verdict.count}, {verdict.head})"
            " is not the one the manifest records"
        )


# --- where each member goes ---------------------------------------------------


@dataclass(frozen=True)
class Placement:
    member: str
    target: Path
    mode: int
    signer_owned: bool  # chowned to the signer user; new parent dirs 0700


def _relocate(path: Path, staged_base: Path, real_base: Path) -> Path:
    """A path the staged configuration resolved, as the installed one will resolve it."""
    try:
        return real_base / path.relative_to(staged_base)
    except ValueError:
        return path


def _target(cfg, name: str) -> tuple[Path | None, int, bool]:
    roots, pgp = cfg.x509.roots, cfg.openpgp
    if name == DATABASE_MEMBER:
        return cfg.signer.database, 0o600, True
    if (m := _CERT.fullmatch(name)) and int(m[1]) in roots:
        return roots[int(m[1])].certificate, 0o644, False
    if (m := _KEY.fullmatch(name)) and int(m[1]) in roots:
        root = roots[int(m[1])]
        return (root.key if m[2] == "key" else root.passphrase_file), 0o600, True
    if name == BLOCKLIST_MEMBER and cfg.x509.blocklist_file is not None:
        return cfg.x509.blocklist_file, 0o644, False
    if name.startswith("crl/") and name.endswith(".crl"):
        return cfg.signer.state_dir / name[4:], 0o644, True
    if pgp is not None and name == "openpgp/key":
        return pgp.key_file, 0o600, True
    if pgp is not None and name == "openpgp/passphrase":
        return pgp.passphrase_file, 0o600, True
    if pgp is not None and pgp.home is not None and name.startswith("openpgp/home/"):
        return pgp.home / name[13:], 0o600, True
    return None, 0, False


def load_staged_config(staging: Path, load: Callable[[Path], object]):
    staged_config = staging / CONFIG_MEMBER
    if not staged_config.is_file():
        raise RestoreError("the backup holds no configuration")
    try:
        return load(staged_config)
    except ValueError as exc:
        raise RestoreError(f"the backup's configuration is invalid: {exc}") from exc


def plan(manifest: Manifest, cfg, staging: Path, config_path: Path) -> list[Placement]:
    """Where each member goes, by the backup's own configuration ``cfg`` (loaded from
    ``staging``) as if it were installed at ``config_path``."""
    staged_base = (staging / CONFIG_MEMBER).parent.resolve()
    real_base = config_path.parent.resolve()
    placements = [Placement(CONFIG_MEMBER, config_path, 0o644, False)]
    for member in manifest.members:
        if member.name == CONFIG_MEMBER:
            continue
        target, mode, owned = _target(cfg, member.name)
        if target is None:
            raise RestoreError(f"member {member.name}: no place for it in the configuration")
        placements.append(
            Placement(member.name, _relocate(target, staged_base, real_base), mode, owned)
        )
    targets = [p.target for p in placements]
    if len(set(targets)) != len(targets):
        twice = next(t for t in targets if targets.count(t) > 1)
        raise RestoreError(f"{twice}: two members of the backup would go there")
    # The database goes last: until it is in place, a half-restored machine cannot start.
    return sorted(placements, key=lambda p: p.member == DATABASE_MEMBER)


def database_holders(database: Path) -> list[int]:
    """Processes that have the database (or its WAL) open, as far as /proc shows."""
    names = {f"{database.resolve()}{suffix}" for suffix in ("", *_DB_SIDE_FILES)}
    return [pid for pid in procfs.pids() if names & procfs.open_files(pid)]


def check_targets(placements: list[Placement], staging: Path, force: bool) -> None:
    for p in sorted(placements, key=lambda p: p.member != DATABASE_MEMBER):
        if p.target.is_dir():
            raise RestoreError(f"{p.target}: is a directory")
        if p.member == DATABASE_MEMBER:
            exists = any(Path(f"{p.target}{s}").exists() for s in ("", *_DB_SIDE_FILES))
            if exists and not force:
                raise RestoreError(
                    f"{p.target}: a CA database exists there; use --force to replace it"
                )
            # Replacing a database under a running signer would corrupt it, even forced.
            holders = database_holders(p.target) if exists else []
            if holders:
                raise RestoreError(
                    f"{p.target}: in use by process {holders[0]}; stop the daemons first"
                )
        elif (
            p.target.exists()
            and not force
            and sha256_file(p.target) != sha256_file(staging / p.member)
        ):
            raise RestoreError(
                f"{p.target}: exists and differs from the backup; use --force to replace it"
            )


# --- putting it in place ------------------------------------------------------


def signer_owner(cfg_user: str, cfg_group: str) -> tuple[tuple[int, int] | None, list[str]]:
    """(uid, gid) of the signer user when running as root and the user exists."""
    if os.geteuid() != 0:
        return None, []
    try:
        return (pwd.getpwnam(cfg_user).pw_uid, grp.getgrnam(cfg_group).gr_gid), []
    except KeyError:
        return None, [
            f"user {cfg_user!r} or group {cfg_group!r} does not exist:"
            " restored files are owned by root"
        ]


def _make_dirs(directory: Path, mode: int, owner: tuple[int, int] | None) -> None:
    missing = [d for d in (directory, *directory.parents) if not d.exists()]
    for d in reversed(missing):
        d.mkdir(mode=mode)
        d.chmod(mode)
        if owner is not None:
            os.chown(d, *owner)
        fsync_dir(d.parent)


def install(p: Placement, source: Path, owner: tuple[int, int] | None) -> list[str]:
    owner = owner if p.signer_owned else None
    _make_dirs(p.target.parent, 0o700 if p.signer_owned else 0o755, owner)
    warnings = []
    if p.mode == 0o600 and p.target.parent.stat().st_mode & 0o077:
        warnings.append(f"{p.target.parent}: others may enter this directory holding secrets")
    if p.member == DATABASE_MEMBER:
        for suffix in _DB_SIDE_FILES:
            Path(f"{p.target}{suffix}").unlink(missing_ok=True)

    def fill(fd: int) -> None:
        with source.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                write_all(fd, block)
        if owner is not None:
            os.fchown(fd, *owner)

    commit_stream(p.target.parent, p.target.name, fill, p.mode)
    return warnings


def archive_sha256(archive: Path) -> str:
    if not archive.is_file():
        raise RestoreError(f"{archive}: no such file")
    return sha256_file(archive)


def restore_backup(
    archive: Path,
    config_path: Path,
    *,
    gnupghome: Path | None = None,
    force: bool = False,
    check_only: bool = False,
    load: Callable[[Path], object] | None = None,
) -> RestoreResult:
    """Check ``archive`` completely, then install it (unless ``check_only``: then
    ``restored`` lists where it would go); ``load`` reads a configuration file
    (``signer_core.config.load_config`` unless given)."""
    if load is None:
        from signer_core.config import load_config

        load = load_config
    digest = archive_sha256(archive)
    staging = Path(tempfile.mkdtemp(prefix="signer-restore-")).resolve()
    try:
        manifest = decrypt_and_stage(archive, gnupghome, staging)
        if DATABASE_MEMBER not in {m.name for m in manifest.members}:
            raise RestoreError("the backup holds no CA database")
        check_database(staging / DATABASE_MEMBER, manifest)
        cfg = load_staged_config(staging, load)
        placements = plan(manifest, cfg, staging, Path(config_path).absolute())
        warnings: list[str] = []
        if not check_only:
            check_targets(placements, staging, force)
            owner, warnings = signer_owner(cfg.signer.user, cfg.signer.group)
            for p in placements:
                warnings += install(p, staging / p.member, owner)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return RestoreResult(
        digest,
        manifest.created,
        manifest.audit_count,
        manifest.audit_head,
        tuple(str(p.target) for p in placements),
        tuple(warnings),
    )
