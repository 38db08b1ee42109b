"""``signerctl audit export``: the audit log's records and a checkpoint, in a file.

Trusted side tooling, run by an operator at the appliance (as root, or as
the signer user: it signs a checkpoint with the log key), for a site
without the bridge: the file carries what the audit exchange would (a
signed checkpoint, the consistency proof from ``--since``, the records after
it), and ``signer-client audit-sync --from FILE`` checks it into the web
host's copy as it checks the cable's answers. It reads the CA database
read-only, in one read transaction, so that every batch has the one
checkpoint however the signer goes on meanwhile.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from signer_core.audit_exchange import build_reply
from signer_core.config import Config
from signer_core.logkey import LogKey, LogKeyError, read_key
from signer_core.refusal import Refusal
from signer_core.store.audit import AuditLog
from signer_core.store.auditree import AuditTree
from signerctl.backup.restore import signer_owner
from signerctl.cli import CtlError, open_database, read_config
from spool.safeio import commit_stream, write_all
from tlog.exchange import AuditQuery, export_frame, export_head


def cmd_audit_export(args: argparse.Namespace) -> tuple[object, int]:
    cfg = read_config(args)
    try:
        key = read_key(cfg.audit, pin_owner(cfg))
    except LogKeyError as exc:
        raise CtlError(str(exc)) from None
    try:
        return _export(cfg, key, args)
    except Refusal as exc:  # a token key that cannot sign now
        raise CtlError(exc.text) from None
    finally:
        key.close()


def _export(cfg: Config, key: LogKey, args: argparse.Namespace) -> tuple[object, int]:
    out = Path(args.out)
    with open_database(cfg) as conn:
        conn.execute("BEGIN")  # one snapshot: every batch under the same checkpoint
        audit = AuditLog(conn)
        damage = audit.verify()
        if not damage.ok:
            raise CtlError(f"the audit log is damaged, nothing exported: {damage.problem}")
        size = AuditTree(conn).size()
        if args.since > size:
            raise CtlError(f"the audit log has {size} records, fewer than --since {args.since}")
        frames, start = [export_head(args.since)], args.since
        while True:
            reply = build_reply(audit, key, AuditQuery(start), 0)
            frames.append(export_frame(reply))
            start += reply.count
            if start >= size or not reply.count:
                break
        conn.execute("COMMIT")
    data = b"".join(frames)
    commit_stream(out.parent, out.name, lambda fd: write_all(fd, data), 0o644)
    return {
        "file": os.fspath(out),
        "since": args.since,
        "size": size,
        "answers": len(frames) - 1,
    }, 0


def pin_owner(cfg: Config) -> int | None:
    """Who must own a token key's PIN file: the signer user when run as root, else this user."""
    owner, _ = signer_owner(cfg.signer.user, cfg.signer.group)
    return None if owner is None else owner[0]


def _size_arg(text: str) -> int:
    if not text.strip().isdigit() or len(text.strip()) > 18:
        raise argparse.ArgumentTypeError(f"{text!r} is not a tree size: give a whole number")
    return int(text)


def add_command(audit: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    export = audit.add_parser(
        "export", help="the records after --since and a signed checkpoint, into a file"
    )
    export.add_argument(
        "--since", type=_size_arg, default=0, help="the tree size the web host holds (0)"
    )
    export.add_argument("--out", required=True, help="the file to write")
    export.set_defaults(func=cmd_audit_export)
