"""What ``signerctl`` shows: the appliance's state, gathered read-only.

Trusted side tooling, run by an operator as root or as the signer user. It
opens the CA database read-only, reads the spool's directories and the
configuration, and looks at /proc for the daemons; it never loads a private
key and never writes. Everything is returned as plain data (dicts, lists) so
the command can print it as a table or as JSON.
"""

from __future__ import annotations

import datetime as dt
import os
import sqlite3
import time
from pathlib import Path

from cryptography import x509

from signer_core import procfs
from signer_core.config import Config
from signer_core.store.audit import AuditLog
from signer_core.x509.compat import not_after
from spool.queue import STATES, Spool

DAEMONS = ("signer-core", "signer-comm")


def open_readonly(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    conn.row_factory = sqlite3.Row
    return conn


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return dt.datetime.fromtimestamp(ts, dt.UTC).isoformat(timespec="seconds")


def _runs_on(pid: int, config: Path) -> bool:
    argv = procfs.argv(pid)
    return any(arg and Path(os.fsdecode(arg)).resolve() == config for arg in argv[1:])


def daemons(config: Path) -> dict[str, list[dict]]:
    """Running daemons of this configuration, by process name (each sets it at start)."""
    config = config.resolve()
    found: dict[str, list[dict]] = {name: [] for name in DAEMONS}
    for pid in procfs.pids():
        fields = procfs.status(pid)
        name = fields.get("Name", "").strip()
        if name in found and _runs_on(pid, config):
            found[name].append({"pid": pid, "uid": int(fields["Uid"].split()[0])})
    return found


def roots(cfg: Config) -> list[dict]:
    out = []
    for root_id, root in sorted(cfg.x509.roots.items()):
        info = {
            "root": root_id,
            "name": root.name,
            "key_installed": root.key.is_file(),
            "certificate_expires": None,
        }
        if root.certificate.is_file():
            cert = x509.load_pem_x509_certificate(root.certificate.read_bytes())
            info["certificate_expires"] = not_after(cert).isoformat(timespec="seconds")
        out.append(info)
    return out


def table_exists(conn: sqlite3.Connection, name: str) -> bool:
    return (
        conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type='table' AND name=?", (name,)
        ).fetchone()
        is not None
    )


def spool_status(spool: Spool) -> list[dict]:
    ages = {state: spool.oldest_age(state) for state in STATES}
    return [
        {"state": state, "entries": n, "oldest_age_seconds": _rounded(ages[state])}
        for state, n in spool.counts().items()
    ]


def _rounded(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds, 1)


def crls(conn: sqlite3.Connection) -> list[dict]:
    """Each root's newest CRL: number, nextUpdate, entries."""
    if not table_exists(conn, "crls"):
        return []
    rows = conn.execute(
        "SELECT c.root, c.number, c.next_update, length(c.der) AS size,"
        " (SELECT count(*) FROM revocations r WHERE r.root = c.root) AS entries"
        " FROM crls c WHERE c.id = (SELECT max(id) FROM crls WHERE root = c.root AND imported = 0)"
        " ORDER BY c.root"
    ).fetchall()
    return [
        {
            "root": r["root"],
            "crl_number": r["number"],
            "next_update": iso(r["next_update"]),
            "entries": r["entries"],
            "der_bytes": r["size"],
        }
        for r in rows
    ]


def crl_der(conn: sqlite3.Connection, root: int) -> bytes | None:
    row = (
        conn.execute(
            "SELECT der FROM crls WHERE root = ? AND imported = 0 ORDER BY id DESC LIMIT 1", (root,)
        ).fetchone()
        if table_exists(conn, "crls")
        else None
    )
    return None if row is None else bytes(row[0])


def database(conn: sqlite3.Connection) -> dict:
    counts = dict(
        conn.execute("SELECT state, count(*) FROM certificates GROUP BY state").fetchall()
    )
    last = conn.execute("SELECT max(issued_at) FROM certificates").fetchone()[0]
    return {
        "certificates": counts.get("issued", 0),
        "reserved": counts.get("reserved", 0),
        "last_issued": iso(last),
    }


def time_status(conn: sqlite3.Connection) -> dict:
    """The last believed reading, then the rejected ones: how many, and the last with why."""
    row = (
        conn.execute("SELECT received_at, web_time, drift FROM time_last").fetchone()
        if table_exists(conn, "time_last")
        else None
    )
    status: dict = {"last_reading": None}
    if row is not None:
        status = {
            "last_reading": iso(row["received_at"]),
            "web_time": iso(row["web_time"]),
            "drift_seconds": round(row["drift"], 3),
            "age_seconds": round(time.time() - row["received_at"], 1),
        }
    return status | time_rejected(conn)


def time_rejected(conn: sqlite3.Connection) -> dict:
    row = (
        conn.execute(
            "SELECT count, run, received_at, web_time, drift, reason FROM time_rejected"
        ).fetchone()
        if table_exists(conn, "time_rejected")
        else None
    )
    if row is None:
        return {"rejected": 0, "rejected_in_a_row": 0, "last_rejected": None}
    return {
        "rejected": row["count"],
        "rejected_in_a_row": row["run"],
        "last_rejected": {
            "received": iso(row["received_at"]),
            "web_time": iso(row["web_time"]),
            "drift_seconds": round(row["drift"], 3),
            "reason": row["reason"],
        },
    }


def time_history(conn: sqlite3.Connection, limit: int) -> list[dict]:
    if not table_exists(conn, "time_readings"):
        return []
    rows = conn.execute(
        "SELECT received_at, web_time, drift FROM time_readings ORDER BY id DESC LIMIT ?", (limit,)
    ).fetchall()
    return [
        {
            "received": iso(r["received_at"]),
            "web_time": iso(r["web_time"]),
            "drift_seconds": round(r["drift"], 3),
        }
        for r in rows
    ]


def audit_head(conn: sqlite3.Connection) -> dict:
    if not table_exists(conn, "audit"):
        return {"records": 0, "head": None}
    count, head = AuditLog(conn, create=False).head()
    return {"records": count, "head": head}


def find_certificates(
    conn: sqlite3.Connection,
    *,
    serial: str | None = None,
    subject: str | None = None,
    since: dt.datetime | None = None,
    limit: int = 100,
) -> list[dict]:
    query: list[str] = ["state = 'issued'"]
    args: list[str | int] = []
    if serial is not None:
        query.append("serial = ?")
        args.append(format(int(serial, 16), "x"))
    if subject is not None:
        query.append("subject LIKE ? ESCAPE '\\'")
        args.append(
            "%" + subject.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        )
    if since is not None:
        query.append("issued_at >= ?")
        args.append(int(since.timestamp()))
    rows = conn.execute(
        "SELECT root, serial, profile, subject, issued_at, not_after FROM certificates"
        f" WHERE {' AND '.join(query)} ORDER BY issued_at DESC LIMIT ?",
        (*args, limit),
    )
    return [
        {
            "root": r["root"],
            "serial": r["serial"],
            "profile": r["profile"],
            "subject": r["subject"],
            "issued": iso(r["issued_at"]),
            "expires": iso(r["not_after"]),
        }
        for r in rows
    ]
