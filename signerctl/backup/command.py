"""signerctl backup, restore and integrity: the commands an operator runs on a visit.

Trusted side tooling, run by an operator as root on the console (restore on
the machine that holds the backup secret key). Wiring only: the work is in
``backup``, ``restore`` and ``integrity``. Each command returns
``(data, exit_code)`` like the others in ``signerctl.main``; a refusal is data with a
``refused`` reason and exit code 1.
"""

from __future__ import annotations

import argparse
import pwd
from pathlib import Path

from signerctl.cli import read_config


def cmd_backup(args) -> tuple[object, int]:
    from signerctl.backup.archive import BackupError, make_backup

    try:
        result = make_backup(
            read_config(args),
            args.encrypt_to,
            args.out,
            include_keys=args.include_keys,
            keyring=args.gnupghome,
        )
    except BackupError as exc:
        return {"refused": str(exc)}, 1
    data = {
        "archive": str(result.path),
        "sha256": result.sha256,
        "encrypted_to": result.recipient,
        "audit": {
            "records": result.audit_count,
            "head": result.audit_head,
            "chain_ok": result.audit_ok,
        },
        "members": len(result.members),
        "keys_included": args.include_keys,
    }
    if result.missing:
        data["missing"] = list(result.missing)
    if not result.audit_ok:
        data["audit"]["problem"] = result.audit_problem
    if result.database_problem:
        data["database_problem"] = result.database_problem
    sound = result.audit_ok and not result.database_problem and not result.missing
    return data, 0 if sound else 1


def cmd_restore(args) -> tuple[object, int]:
    from signerctl.backup.restore import RestoreError, restore_backup

    try:
        result = restore_backup(
            args.input,
            args.config,
            gnupghome=args.gnupghome,
            force=args.force,
            check_only=args.check,
        )
    except RestoreError as exc:
        return {"refused": str(exc)}, 1
    data: dict = {
        "archive_sha256": result.archive_sha256,
        "backup_made": result.created,
        "audit": {"records": result.audit_count, "head": result.audit_head},
    }
    if args.check:
        data["sound"] = "every member checked; nothing was installed"
        data["would_restore"] = [{"path": p} for p in result.restored]
    else:
        data["restored"] = [_as_installed(Path(p)) for p in result.restored]
        data["warnings"] = [{"warning": w} for w in result.warnings]
    return data, 0


def _as_installed(path: Path) -> dict:
    """What is on disk now, for the operator to see: path, mode, owner."""
    st = path.stat()
    try:
        owner = pwd.getpwuid(st.st_uid).pw_name
    except KeyError:
        owner = str(st.st_uid)
    return {"path": str(path), "mode": f"{st.st_mode & 0o7777:04o}", "owner": owner}


def cmd_integrity(args) -> tuple[object, int]:
    from signer_core.integrity import NO_BASELINE, IntegrityError
    from signerctl.integrity import check

    try:
        report = check(read_config(args), baseline=args.baseline, accept=args.accept)
    except IntegrityError as exc:
        return {"refused": str(exc)}, 1
    if report.baseline_digest is None and not args.accept:
        return {
            "baseline": None,
            "baseline_file": str(report.baseline),
            "digest": report.digest,
            "files": len(report.files),
            "note": NO_BASELINE,
        }, 1
    data = {
        "clean": report.clean,
        "digest": report.digest,
        "files": len(report.files),
        "baseline": str(report.baseline),
        "baseline_accepted_at": report.baseline_accepted_at,
        "differences": [
            {"change": change, "file": label}
            for change, labels in (
                ("changed", report.changed),
                ("added", report.added),
                ("removed", report.removed),
            )
            for label in labels
        ],
    }
    if args.accept:
        data["accepted"] = "the current set is now the baseline"
    return data, 0 if report.clean else 1


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    backup = subparsers.add_parser(
        "backup", help="encrypted full backup: database snapshot, configuration, CRLs, audit"
    )
    backup.add_argument(
        "--encrypt-to",
        required=True,
        metavar="KEYID_OR_FILE",
        help="the backup public key: a key file, or a key id in --gnupghome",
    )
    backup.add_argument("--out", type=Path, required=True, help="the archive to write (new file)")
    backup.add_argument(
        "--include-keys",
        action="store_true",
        help="also the root keys, passphrase files and OpenPGP secret key",
    )
    backup.add_argument(
        "--gnupghome", type=Path, help="keyring holding KEYID (default: gpg's own default)"
    )
    backup.set_defaults(func=cmd_backup)

    restore = subparsers.add_parser(
        "restore", help="check a backup completely, then install it (daemons stopped)"
    )
    restore.add_argument("--in", dest="input", type=Path, required=True, metavar="FILE")
    restore.add_argument("--gnupghome", type=Path, help="GnuPG home with the backup secret key")
    restore.add_argument(
        "--force", action="store_true", help="replace an existing CA database and differing files"
    )
    restore.add_argument(
        "--check", action="store_true", help="check the backup completely but install nothing"
    )
    restore.set_defaults(func=cmd_restore)

    integrity = subparsers.add_parser(
        "integrity", help="compare programs, configuration, roots, units with the baseline"
    )
    integrity.add_argument(
        "--accept", action="store_true", help="make the current set the baseline"
    )
    integrity.add_argument(
        "--baseline", type=Path, help="baseline file (default <state_dir>/integrity-baseline.json)"
    )
    integrity.set_defaults(func=cmd_integrity)
