"""signerctl's view of the audit chain: ``audit verify``, ``audit show`` and ``audit key``.

Trusted side tooling, run by an operator as root or as the signer user, on
the CA database read-only (``signer_core.store.audit`` holds the SQL). What
``show`` prints is the records as stored, not checked: ``verify`` checks the
chain and gives the head hash the operator writes down. ``key`` prints the
log key's verifier line, which anyone checks the log's checkpoints with; it
reads the signer's key files, or its token, and writes nothing (the signer
makes a file key) but for ``key --generate``: the Ed25519 key in a token,
which the signer never makes, generated there (``signer_core.tokens.generate``:
sensitive, never extractable).
"""

from __future__ import annotations

import argparse
import os
import sys

from signer_core.config import AuditConfig
from signer_core.logkey import LogKeyError, public_path, read_key, read_verifier, where
from signer_core.store.audit import AuditLog, Record
from signer_core.tokens import generate
from signer_core.tokens.pkcs11 import TokenError, TokenSession
from signerctl import audit_export
from signerctl.cli import CtlError, count_arg, date_arg, open_database, read_config, serial_arg


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


def cmd_audit_key(args) -> tuple[object, int]:
    config = read_config(args)
    cfg, owner = config.audit, audit_export.pin_owner(config)
    if args.generate:
        _generate(cfg, owner)
    # The private key is the truth, when this user can read it (root, the signer user; for
    # a token, its PIN file): the .pub beside it is a copy the signer rewrites at start.
    # Anyone else gets that copy.
    try:
        if os.access(cfg.log_key if cfg.token is None else cfg.token.pin_file, os.R_OK):
            key = read_key(cfg, owner)
            key.close()  # its public half is all this wants
            verifier, source = key.verifier, where(cfg)
        else:
            verifier, source = read_verifier(cfg), str(public_path(cfg))
    except LogKeyError as exc:
        print(f"signerctl: {exc}", file=sys.stderr)
        return None, 1
    if args.json:
        return {"verifier": verifier.text(), "from": source}, 0
    return verifier.text(), 0


def _generate(cfg: AuditConfig, owner: int | None) -> None:
    """An Ed25519 key pair made in the token, under the URI of ``[audit] log_key``."""
    t = cfg.token
    if t is None:
        raise CtlError(
            '--generate is for a log key in a token (log_key = "pkcs11:..."):'
            " the signer makes a key file itself"
        )
    session = TokenSession("the audit log", t.uri, t.module, t.pin_file, owner)
    try:
        generate.generate(session, "ed25519")
    except TokenError as exc:
        raise CtlError(f"the log key {t.uri}: {exc}") from None
    finally:
        session.close()


def add_commands(commands: argparse._SubParsersAction) -> None:
    """``audit verify``, ``audit show``, ``audit key`` and ``audit export`` on signerctl's parser."""
    audit = commands.add_parser("audit", help="the audit chain").add_subparsers(
        dest="subcommand", metavar="{verify,show,key,export}", required=True
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
    key = audit.add_parser(
        "key", help="the log key's verifier line, to check the log's checkpoints with"
    )
    key.add_argument(
        "--generate",
        action="store_true",
        help="first make the key in the token [audit] log_key names (a pkcs11: URI)",
    )
    key.set_defaults(func=cmd_audit_key)
    audit_export.add_command(audit)
