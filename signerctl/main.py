"""signerctl: the operator's command.

Trusted side tooling, run by an operator (root or the signer user) on the
appliance's console. It reads the configuration, the CA database (read-only)
and the spool; it never talks to the link, and loads a private key only in
the key ceremonies of ``root`` and in ``audit key`` (the log key, for its
public half).
Output is a human table by default and JSON with ``--json``. The commands
that write say so: spool requeue and purge (the spool), backup (the archive),
restore (the configured paths), integrity (its record in the state
directory), the migration imports (the CA database, daemons stopped), and
the key ceremonies (a root's key and certificate files, the CA database).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import sys
from pathlib import Path

from signerctl import spool_admin as admin
from signerctl.cli import (
    CtlError,
    CtlParser,
    count_arg,
    days_arg,
    emit,
    log,
    open_database,
    problem,
    read_config,
)
from spool.queue import STATES, Spool


def cmd_status(args) -> tuple[object, int]:
    from signerctl import overview
    from signerctl.integrity import last_check

    cfg = read_config(args)
    daemons = overview.daemons(cfg.path)
    with open_database(cfg) as conn:
        status = {
            "daemons": daemons,
            "database": overview.database(conn),
            "spool": overview.spool_status(Spool(cfg.spool_dir)),
            "time": overview.time_status(conn),
            "roots": overview.roots(cfg, conn),
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


def cmd_time(args) -> tuple[object, int]:
    from signerctl import overview
    from signerctl.cli import iso

    with open_database(read_config(args)) as conn:
        return {
            "now": iso(dt.datetime.now(dt.UTC).timestamp()),
            "last": overview.time_status(conn),
            "history": overview.time_history(conn, args.limit),
        }, 0


def cmd_demo(args) -> tuple[object, int]:
    from signerctl.demo.run import run_demo

    return None, run_demo(args.dir, args.serve)


def build_parser() -> CtlParser:
    parser = CtlParser(prog="signerctl", description="Operate the signer appliance.", top=True)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    commands.add_parser(
        "status", help="daemons, spool, time, roots, database, audit head"
    ).set_defaults(func=cmd_status)

    from signerctl import audit, certs

    certs.add_commands(commands)

    sp = commands.add_parser("spool", help="the spool's entries").add_subparsers(
        dest="subcommand", metavar="{list,show,requeue,purge-corrupt}", required=True
    )
    ls = sp.add_parser("list", help="entries per state, with age and refusal reason")
    ls.add_argument("--state", choices=STATES)
    ls.set_defaults(func=cmd_spool_list)
    for name, func, text in (
        ("show", cmd_spool_show, "one entry's details, in any state and of any kind"),
        ("requeue", cmd_spool_requeue, "send a corrupt entry back to incoming"),
    ):
        cmd = sp.add_parser(name, help=text)
        cmd.add_argument("name", help="the entry's file name")
        cmd.set_defaults(func=func)
    purge = sp.add_parser("purge-corrupt", help="delete refused entries")
    purge.add_argument("--older-than-days", type=days_arg, default=0.0)
    purge.set_defaults(func=cmd_spool_purge)

    tm = commands.add_parser(
        "time", help="the web host's time: drift, history, last and rejected readings"
    )
    tm.add_argument("--limit", type=count_arg, default=20)
    tm.set_defaults(func=cmd_time)

    audit.add_commands(commands)

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

    from signerctl.root import command as ctl_root

    ctl_root.add_commands(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command; a bad input is one sentence on stderr and exit code 2."""
    import signal
    import sqlite3

    from signer_core.config import ConfigError

    signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # `signerctl ... | head` ends quietly
    args = build_parser().parse_args(argv)
    try:
        data, code = args.func(args)
    except (CtlError, ConfigError) as exc:
        print(f"signerctl: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"signerctl: {problem(exc)}", file=sys.stderr)
        return 2
    except sqlite3.Error as exc:
        log.debug("%s", exc)
        print("signerctl: the CA database could not be read; it may be damaged", file=sys.stderr)
        return 2
    if data is not None:
        emit(data, args.json)
    return code


if __name__ == "__main__":
    sys.exit(main())
