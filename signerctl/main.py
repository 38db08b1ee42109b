"""signerctl: the operator's command.

Trusted side tooling, run by an operator (root or the signer user) on the
appliance's console. It reads the configuration, the CA database (read-only)
and the spool; it never talks to the link and never loads a private key.
Output is a human table by default and JSON with ``--json``. The commands
that write say so: spool requeue and purge (the spool), backup (the archive),
restore (the configured paths), integrity (its record in the state
directory), and the migration imports (the CA database, daemons stopped).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import hashlib
import json
import sys
from pathlib import Path

from signerctl import spool_admin as admin
from signerctl.cli import read_config
from spool.queue import STATES, Spool

DEFAULT_CONFIG = Path("/etc/signer-appliance/signer.toml")


def render(data, out=sys.stdout, indent: str = "") -> None:
    """A dict as 'key: value' lines, a list of dicts as a table."""
    if isinstance(data, dict):
        for key, value in data.items():
            if isinstance(value, (dict, list)) and value:
                print(f"{indent}{key}:", file=out)
                render(value, out, indent + "  ")
            else:
                print(f"{indent}{key}: {'-' if value is None else value}", file=out)
    elif isinstance(data, list) and data and isinstance(data[0], dict):
        columns = list(data[0])
        cells = [[("-" if r.get(c) is None else str(r.get(c))) for c in columns] for r in data]
        widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
        print(
            indent + "  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip(),
            file=out,
        )
        for row in cells:
            print(
                indent + "  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip(),
                file=out,
            )
    else:
        print(f"{indent}{data if data not in (None, []) else '(none)'}", file=out)


def _db(cfg):
    from signer_core.store.schema import open_readonly

    return open_readonly(cfg.signer.database)


def cmd_status(args) -> tuple[object, int]:
    from signerctl import overview
    from signerctl.integrity import last_check

    cfg = read_config(args)
    daemons = overview.daemons(cfg.path)
    with _db(cfg) as conn:
        status = {
            "daemons": daemons,
            "database": overview.database(conn),
            "spool": overview.spool_status(Spool(cfg.spool_dir)),
            "time": overview.time_status(conn),
            "roots": overview.roots(cfg),
            "crls": overview.crls(conn),
            "audit": overview.audit_head(conn),
            "integrity": last_check(cfg.signer.state_dir),
        }
    alive = all(daemons.values())
    return status, 0 if alive else 1


def _spool(args):
    return Spool(read_config(args).spool_dir)


def cmd_spool_list(args) -> tuple[object, int]:
    states = (args.state,) if args.state else STATES
    return [dataclasses.asdict(e) for e in admin.entries(_spool(args), states)], 0


def cmd_spool_show(args) -> tuple[object, int]:
    return admin.show(_spool(args), args.name), 0


def cmd_spool_requeue(args) -> tuple[object, int]:
    admin.requeue(_spool(args), args.name)
    return {"requeued": args.name}, 0


def cmd_spool_purge(args) -> tuple[object, int]:
    return {"purged": admin.purge_corrupt(_spool(args), args.older_than_days * 86400.0)}, 0


def cmd_crl_show(args) -> tuple[object, int]:
    from cryptography import x509

    from signerctl.overview import crl_der, iso

    with _db(read_config(args)) as conn:
        der = crl_der(conn, args.root)
    if der is None:
        return {"root": args.root, "crl": None}, 1
    crl = x509.load_der_x509_crl(der)
    number = crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    return {
        "root": args.root,
        "issuer": crl.issuer.rfc4514_string(),
        "crl_number": number,
        "this_update": iso(crl.last_update.replace(tzinfo=dt.UTC).timestamp()),
        "next_update": (
            None
            if crl.next_update is None
            else iso(crl.next_update.replace(tzinfo=dt.UTC).timestamp())
        ),
        "entries": len(crl),
        "der_bytes": len(der),
        "sha1": hashlib.sha1(der).hexdigest(),
    }, 0


def cmd_certs_find(args) -> tuple[object, int]:
    from signerctl.overview import find_certificates

    since = dt.datetime.fromisoformat(args.since).replace(tzinfo=dt.UTC) if args.since else None
    with _db(read_config(args)) as conn:
        rows = find_certificates(
            conn, serial=args.serial, subject=args.subject, since=since, limit=args.limit
        )
    return rows, 0 if rows else 1


def cmd_time(args) -> tuple[object, int]:
    from signerctl import overview

    with _db(read_config(args)) as conn:
        return {
            "now": overview.iso(dt.datetime.now(dt.UTC).timestamp()),
            "last": overview.time_status(conn),
            "history": overview.time_history(conn, args.limit),
        }, 0


def cmd_audit_verify(args) -> tuple[object, int]:
    from signer_core.store.audit import AuditLog

    with _db(read_config(args)) as conn:
        verdict = AuditLog(conn).verify()
    data = {"ok": verdict.ok, "records": verdict.count, "head": verdict.head}
    if not verdict.ok:
        data.update(bad_record=verdict.bad_seq, problem=verdict.problem)
    return data, 0 if verdict.ok else 1


def cmd_demo(args) -> tuple[object, int]:
    from signerctl.demo.run import run_demo

    return None, run_demo(args.dir, args.serve)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="signerctl", description="Operate the signer appliance.")
    parser.add_argument(
        "--config",
        type=Path,
        default=DEFAULT_CONFIG,
        help=f"the appliance's configuration (default {DEFAULT_CONFIG})",
    )
    parser.add_argument("--json", action="store_true", help="print JSON for scripts")
    commands = parser.add_subparsers(dest="command", required=True)

    commands.add_parser(
        "status", help="daemons, spool, time, roots, database, audit head"
    ).set_defaults(func=cmd_status)

    certs = commands.add_parser("certs", help="issued certificates").add_subparsers(required=True)
    find = certs.add_parser("find", help="find by serial, subject text or issue date")
    find.add_argument("--serial", help="hexadecimal serial")
    find.add_argument("--subject", help="text contained in the subject")
    find.add_argument("--since", help="issued on or after this date (YYYY-MM-DD)")
    find.add_argument("--limit", type=int, default=100)
    find.set_defaults(func=cmd_certs_find)

    sp = commands.add_parser("spool", help="the spool's entries").add_subparsers(required=True)
    ls = sp.add_parser("list", help="entries per state, with age and refusal reason")
    ls.add_argument("--state", choices=STATES)
    ls.set_defaults(func=cmd_spool_list)
    for name, func, text in (
        ("show", cmd_spool_show, "one entry's details"),
        ("requeue", cmd_spool_requeue, "send a corrupt entry back to incoming"),
    ):
        cmd = sp.add_parser(name, help=text)
        cmd.add_argument("name", help="the entry's file name")
        cmd.set_defaults(func=func)
    purge = sp.add_parser("purge-corrupt", help="delete refused entries")
    purge.add_argument("--older-than-days", type=float, default=0.0)
    purge.set_defaults(func=cmd_spool_purge)

    crl = commands.add_parser("crl", help="CRLs").add_subparsers(required=True)
    show = crl.add_parser("show", help="a root's current CRL")
    show.add_argument("root", type=int)
    show.set_defaults(func=cmd_crl_show)

    tm = commands.add_parser(
        "time", help="the web host's time: drift, history, last and rejected readings"
    )
    tm.add_argument("--limit", type=int, default=20)
    tm.set_defaults(func=cmd_time)

    audit = commands.add_parser("audit", help="the audit chain").add_subparsers(required=True)
    audit.add_parser("verify", help="check the whole chain, print its head hash").set_defaults(
        func=cmd_audit_verify
    )

    from signerctl.backup.command import add_commands

    add_commands(commands)

    demo = commands.add_parser(
        "demo", help="run both daemons on a throwaway CA and sign one request"
    )
    demo.add_argument("--dir", type=Path, required=True, help="where the demo CA lives")
    demo.add_argument(
        "--serve", action="store_true", help="keep serving the link until interrupted"
    )
    demo.set_defaults(func=cmd_demo)

    from signerctl.migrate import command as ctl_migrate

    ctl_migrate.add_commands(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    import signal
    import sqlite3

    from signer_core.config import ConfigError

    signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # `signerctl ... | head` ends quietly
    args = build_parser().parse_args(argv)
    try:
        data, code = args.func(args)
    except (ConfigError, sqlite3.Error, OSError, KeyError, ValueError) as exc:
        print(f"signerctl: {exc}", file=sys.stderr)
        return 2
    if data is not None:
        if args.json:
            json.dump(data, sys.stdout, indent=2, sort_keys=False)
            print()
        else:
            render(data)
    return code


if __name__ == "__main__":
    sys.exit(main())
