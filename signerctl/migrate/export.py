"""Write one root's state as an OpenSSL ``ca`` directory, for auditors' tools.

Trusted side tooling, read-only on the CA database (safe while signer-core
runs). It writes ``index.txt``, ``index.txt.attr``, ``serial`` and
``crlnumber`` so that ``openssl ca -status``, ``-updatedb`` and ``-gencrl``
and the auditors' existing scripts read the appliance's state as they read
the old signer's. No key is read or written: the operator points an
``openssl.cnf`` at the root's certificate and key if ``-gencrl`` is wanted.

``unique_subject = no`` is written because the appliance, unlike a default
OpenSSL CA, may issue many certificates to one subject. Revocation reasons
that ``openssl ca`` cannot store (privilegeWithdrawn, aACompromise) are
written without a reason and counted. Files are written under a temporary
name and renamed, so a reader never sees half an index.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509

from signer_core.store import crls, openssl
from signerctl.migrate.index import REASON_NAMES, format_line, oneline, serial_hex
from spool.safeio import commit_stream

_UTC = dt.UTC


class ExportError(ValueError):
    """The export cannot be written where asked."""


@dataclass(frozen=True)
class ExportTotals:
    root: int
    valid: int
    revoked: int
    expired: int
    next_serial: str
    next_crl_number: str
    reasons_dropped: int


def _write(path: Path, lines) -> None:
    def fill(fd: int) -> None:
        with open(fd, "w", encoding="ascii", newline="\n", closefd=False) as f:
            for line in lines:
                f.write(line)
                f.write("\n")

    commit_stream(path.parent, path.name, fill, 0o644)


def export_openssl(
    conn: sqlite3.Connection, root_id: int, out: Path, now: dt.datetime | None = None
) -> ExportTotals:
    """Write the root's index and counters into ``out``; ExportError if an index is there."""
    now = now or dt.datetime.now(_UTC)
    out.mkdir(parents=True, exist_ok=True)
    if (out / "index.txt").exists():
        raise ExportError(f"{out / 'index.txt'} exists: export into an empty directory")
    counts = {"V": 0, "R": 0, "E": 0, "dropped": 0}
    top = [0]

    def lines():
        for number, expires, der, revoked_at, reason in crls.issued_with_revocations(conn, root_id):
            top[0] = max(top[0], number)
            expiry = dt.datetime.fromtimestamp(expires, _UTC)
            flag = None if reason is None else x509.ReasonFlags(reason)
            if flag is not None and flag not in REASON_NAMES:
                counts["dropped"] += 1
                flag = None
            status = "R" if revoked_at is not None else "E" if expiry < now else "V"
            counts[status] += 1
            subject = oneline(x509.load_der_x509_certificate(der).subject.public_bytes())
            when = None if revoked_at is None else dt.datetime.fromtimestamp(revoked_at, _UTC)
            yield format_line(status, expiry, when, flag, number, subject)

    _write(out / "index.txt", lines())
    _write(out / "index.txt.attr", ["unique_subject = no"])
    next_serial = max(openssl.next_serial(conn, root_id) or 1, top[0] + 1)
    next_crl = (crls.last_number(conn, root_id) or 0) + 1
    _write(out / "serial", [serial_hex(next_serial)])
    _write(out / "crlnumber", [serial_hex(next_crl)])
    return ExportTotals(
        root_id,
        counts["V"],
        counts["R"],
        counts["E"],
        serial_hex(next_serial),
        serial_hex(next_crl),
        counts["dropped"],
    )
