"""signerctl's certificate views: ``certs find``, ``certs show``, ``crl show``.

Trusted side tooling, run by an operator as root or as the signer user. It
reads the CA database read-only through ``signer_core.store``'s functions (no
SQL here) and the configuration; it trusts the certificates it finds there
as the signer stored them. Each command returns ``(data, exit code)`` like
the others; a serial or root that does not exist is a ``CtlError``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import sqlite3

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from signer_core.store import crls as crl_rows
from signer_core.store.cadb import CertRow, certificates_by_serial, find_issued, serial_text
from signer_core.x509.compat import crl_last_update, crl_next_update, not_after, not_before
from signerctl.cli import (
    CtlError,
    configured_root,
    count_arg,
    date_arg,
    iso,
    open_database,
    read_config,
    root_arg,
    serial_arg,
)


def _revocation(conn: sqlite3.Connection, root: int, serial: int) -> dict:
    found = crl_rows.revocation_of(conn, root, serial)
    if found is None:
        return {"revoked": None, "reason": None}
    return {"revoked": iso(found[0]), "reason": found[1]}


def _status(revocation: dict, expires: int | None, now: float) -> str:
    if revocation["revoked"] is not None:
        return "revoked"
    return "expired" if expires is not None and expires <= now else "valid"


def find_certificates(
    conn: sqlite3.Connection,
    *,
    serial: int | None = None,
    subject: str | None = None,
    since: dt.datetime | None = None,
    limit: int = 100,
) -> list[dict]:
    """Issued certificates, newest first, each with whether and when it was revoked."""
    now = dt.datetime.now(dt.UTC).timestamp()
    found = find_issued(
        conn,
        serial=serial,
        subject=subject,
        since=None if since is None else int(since.timestamp()),
        limit=limit,
    )
    rows = []
    for c in found:
        revocation = _revocation(conn, c.root, c.serial)
        rows.append(
            {
                "root": c.root,
                "serial": serial_text(c.serial),
                "profile": c.profile,
                "subject": c.subject,
                "issued": iso(c.issued_at),
                "expires": iso(c.not_after),
                "status": _status(revocation, c.not_after, now),
                **revocation,
            }
        )
    return rows


_UNISSUED = {
    "reserved": "reserved: the signer took the serial and has not stored a certificate",
    "released": "released: the request was refused after its serial was taken; never issued",
}


def certificate(conn: sqlite3.Connection, row: CertRow) -> dict:
    """One row as the operator reads it: state, dates, revocation, the PEM."""
    info: dict = {"root": row.root, "serial": serial_text(row.serial), "profile": row.profile}
    if row.der is None:
        return info | {"status": _UNISSUED.get(row.state, row.state)}
    cert = row.certificate()
    revocation = _revocation(conn, row.root, row.serial)
    now = dt.datetime.now(dt.UTC).timestamp()
    info |= {
        "status": _status(revocation, row.not_after, now),
        "subject": cert.subject.rfc4514_string(),
        "issuer": cert.issuer.rfc4514_string(),
        "not_before": not_before(cert).isoformat(timespec="seconds"),
        "not_after": not_after(cert).isoformat(timespec="seconds"),
        "issued": iso(row.issued_at),
        "delivered": iso(row.delivered_at),
        **revocation,
        "sha256": cert.fingerprint(hashes.SHA256()).hex(),
        "pem": row.pem().decode("ascii"),
    }
    return info


def cmd_certs_find(args) -> tuple[object, int]:
    with open_database(read_config(args)) as conn:
        rows = find_certificates(
            conn, serial=args.serial, subject=args.subject, since=args.since, limit=args.limit
        )
    return rows, 0 if rows else 1


def cmd_certs_show(args) -> tuple[object, int]:
    cfg = read_config(args)
    if args.root is not None:
        configured_root(cfg, args.root)
    with open_database(cfg) as conn:
        rows = certificates_by_serial(conn, args.serial, args.root)
        where = "" if args.root is None else f" in root {args.root}"
        if not rows:
            raise CtlError(f"no certificate has serial {serial_text(args.serial)}{where}")
        if len(rows) > 1:
            roots = " and ".join(str(r.root) for r in rows)
            raise CtlError(
                f"serial {serial_text(args.serial)} is in roots {roots}: say which with --root"
            )
        return certificate(conn, rows[0]), 0


def cmd_crl_show(args) -> tuple[object, int]:
    cfg = read_config(args)
    configured_root(cfg, args.root)
    with open_database(cfg) as conn:
        stored = crl_rows.newest_crl(conn, args.root)
    if stored is None:
        return {
            "root": args.root,
            "crl": None,
            "note": f"root {args.root} has no CRL yet: its first revoke or refresh-crl makes one",
        }, 1
    crl = x509.load_der_x509_crl(stored.der)
    number = crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    next_update = crl_next_update(crl)
    shown = {
        "root": args.root,
        "issuer": crl.issuer.rfc4514_string(),
        "crl_number": number,
        "this_update": crl_last_update(crl).isoformat(timespec="seconds"),
        "next_update": None if next_update is None else next_update.isoformat(timespec="seconds"),
        "entries": len(crl),
        "der_bytes": len(stored.der),
        "sha1": hashlib.sha1(stored.der).hexdigest(),
    }
    if args.pem:
        shown["pem"] = crl.public_bytes(serialization.Encoding.PEM).decode("ascii")
    return shown, 0


def add_commands(commands: argparse._SubParsersAction) -> None:
    """``certs find``, ``certs show`` and ``crl show`` on signerctl's parser."""
    certs = commands.add_parser("certs", help="issued certificates").add_subparsers(
        dest="subcommand", metavar="{find,show}", required=True
    )
    find = certs.add_parser("find", help="find by serial, subject text or issue date")
    find.add_argument("--serial", type=serial_arg, help="hexadecimal serial")
    find.add_argument("--subject", help="text contained in the subject")
    find.add_argument("--since", type=date_arg, help="issued on or after (YYYY-MM-DD, UTC)")
    find.add_argument("--limit", type=count_arg, default=100, help="at most this many (100)")
    find.set_defaults(func=cmd_certs_find)
    show = certs.add_parser(
        "show", help="one certificate: state, dates, revocation date and reason, PEM"
    )
    show.add_argument("serial", type=serial_arg, help="hexadecimal serial")
    show.add_argument("--root", type=root_arg, help="the root, if the serial is in several")
    show.set_defaults(func=cmd_certs_show)

    crl = commands.add_parser("crl", help="CRLs").add_subparsers(
        dest="subcommand", metavar="{show}", required=True
    )
    crl_show = crl.add_parser("show", help="a root's current CRL")
    crl_show.add_argument("root", type=root_arg, help="the root's number")
    crl_show.add_argument("--pem", action="store_true", help="print the CRL itself too")
    crl_show.set_defaults(func=cmd_crl_show)
