"""What ``signerctl`` shows: the appliance's state, gathered read-only.

Trusted side tooling, run by an operator as root or as the signer user. It
opens the CA database read-only, reads the spool's directories and the
configuration, and looks at /proc for the daemons; it never loads a private
key and never writes. The database is read through ``signer_core.store``'s
functions (no SQL here), on ``schema.open_readonly``'s connection. Everything
is returned as plain data (dicts, lists) so the command can print it as a
table or as JSON.
"""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path

from cryptography import x509

from signer_core import procfs
from signer_core.config import Config
from signer_core.store import clock
from signer_core.store import crls as crl_rows
from signer_core.store.audit import AuditLog
from signer_core.store.cadb import certificate_summary
from signer_core.x509.compat import not_after
from signerctl.cli import iso
from spool.queue import STATES, Spool

DAEMONS = ("signer-core", "signer-comm")


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


def _at_last_start(conn: sqlite3.Connection) -> dict[int, str]:
    """What signer-core's last start said of each root (its audit records): "in service",
    or "not in service: <reason>". signerctl never opens a key or a token itself."""
    audit = AuditLog(conn)
    started = audit.records(event="started", limit=1)
    if not started:
        return {}
    since = started[0].seq
    said: dict[int, str] = {}
    for kind, text in (("root-loaded", "in service"), ("root-missing", "not in service: ")):
        for record in audit.records(event=kind, limit=1000):
            root = record.details.get("root")
            if record.seq > since and isinstance(root, int):
                reason = str(record.details.get("reason", "")) if kind == "root-missing" else ""
                said[root] = text + reason
    return said


def roots(cfg: Config, conn: sqlite3.Connection) -> list[dict]:
    out = []
    said = _at_last_start(conn)
    for root_id, root in sorted(cfg.x509.roots.items()):
        info = {
            "root": root_id,
            "name": root.name,
            "key_installed": root.key.is_file() if root.key is not None else None,
            "key_in_token": str(root.token.uri) if root.token is not None else None,
            "at_last_start": said.get(root_id),
            "certificate_expires": None,
        }
        if root.certificate.is_file():
            cert = x509.load_pem_x509_certificate(root.certificate.read_bytes())
            info["certificate_expires"] = not_after(cert).isoformat(timespec="seconds")
        out.append(info)
    return out


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
    return [
        {
            "root": c.root,
            "crl_number": c.number,
            "next_update": iso(c.next_update),
            "entries": c.entries,
            "der_bytes": c.der_bytes,
        }
        for c in crl_rows.crl_summaries(conn)
    ]


def database(conn: sqlite3.Connection) -> dict:
    summary = certificate_summary(conn)
    return {
        "certificates": summary.issued,
        "reserved": summary.reserved,
        "last_issued": iso(summary.last_issued_at),
    }


def _reading(reading: clock.Reading) -> dict:
    return {"web_time": iso(reading.web_time), "drift_seconds": round(reading.drift, 3)}


def time_status(conn: sqlite3.Connection) -> dict:
    """The last believed reading, then the rejected ones: how many, and the last with why."""
    last = clock.last_believed(conn)
    status: dict = {"last_reading": None}
    if last is not None:
        status = {
            "last_reading": iso(last.received_at),
            **_reading(last),
            "age_seconds": round(time.time() - last.received_at, 1),
        }
    return status | time_rejected(conn)


def time_rejected(conn: sqlite3.Connection) -> dict:
    rejected = clock.rejections(conn)
    if rejected is None:
        return {"rejected": 0, "rejected_in_a_row": 0, "last_rejected": None}
    return {
        "rejected": rejected.count,
        "rejected_in_a_row": rejected.run,
        "last_rejected": {
            "received": iso(rejected.last.received_at),
            **_reading(rejected.last),
            "reason": rejected.reason,
        },
    }


def time_history(conn: sqlite3.Connection, limit: int) -> list[dict]:
    return [{"received": iso(r.received_at), **_reading(r)} for r in clock.history(conn, limit)]


def audit_head(conn: sqlite3.Connection) -> dict:
    count, head = AuditLog(conn).head()
    return {"records": count, "head": head}
