"""signerctl's view of the audit chain: ``audit verify`` and ``audit show``.

Trusted side tooling, run by an operator as root or as the signer user, on
the CA database read-only (``signer_core.store.audit`` holds the SQL). What
``show`` prints is the records as stored, not checked: ``verify`` checks the
chain and gives the head hash the operator writes down.
"""

from __future__ import annotations

import argparse
import sys

from signer_core.store.audit import AuditLog, Record
from signerctl.cli import count_arg, date_arg, open_database, read_config, serial_arg


def cmd_audit_verify(args) -> tuple[object, int]:
    with open_database(read_config(args)) as conn:
        verdict = AuditLog(conn).verify()
    data = {"ok": verdict.ok, "records": verdict.count, "head": verdict.head}
    if not verdict.ok:
        data.update(bad_record=verdict.bad_seq, problem=verdict.problem)
    return data, 0 if verdict.ok else 1


def _row(record: Record, as_json: bool) -> dict:
    if as_json:
        return {"seq": record.seq, "at": record.at, "kind": record.event, "details": record.details}
    details = " ".join(f"{key}={value}" for key, value in record.details.items())
    return {
        "seq": record.seq,
        "at": record.at[:19] + "Z",  # to the second, as the other views
        "kind": record.event,
        "details": details,
    }


def cmd_audit_show(args) -> tuple[object, int]:
    with open_database(read_config(args)) as conn:
        log = AuditLog(conn)
        found = log.records(
            event=args.kind,
            serial=args.serial,
            since=args.since,
            until=args.until,
            limit=args.limit,
        )
        kinds = log.kinds() if args.kind is not None and not found else []
    if args.kind is not None and kinds and args.kind not in kinds:
        print(
            f"signerctl: no record is of kind {args.kind!r}; the chain holds {', '.join(kinds)}",
            file=sys.stderr,
        )
    return [_row(r, args.json) for r in found], 0 if found else 1


def add_commands(commands: argparse._SubParsersAction) -> None:
    """``audit verify`` and ``audit show`` on signerctl's parser."""
    audit = commands.add_parser("audit", help="the audit chain").add_subparsers(
        dest="subcommand", metavar="{verify,show}", required=True
    )
    audit.add_parser("verify", help="check the whole chain, print its head hash").set_defaults(
        func=cmd_audit_verify
    )
    show = audit.add_parser(
        "show", help="the chain's records (the newest --limit), oldest first, as stored"
    )
    show.add_argument("--kind", help="only records of this kind: issued, revoked, refused...")
    show.add_argument("--serial", type=serial_arg, help="only records about this certificate")
    show.add_argument("--since", type=date_arg, help="from this date or time (UTC)")
    show.add_argument("--until", type=date_arg, help="before this date or time (UTC)")
    show.add_argument("--limit", type=count_arg, default=100, help="at most this many (100)")
    show.set_defaults(func=cmd_audit_show)
