"""Import an OpenSSL ``ca`` directory (the old signer's state) into the CA database.

Trusted side tooling, run by an operator with signer-core stopped. It trusts
the appliance's configured root certificate and nothing on the old CA's
disk: every certificate file must be signed by that root and agree with its
index line, and every CRL must be signed by it, or the import is refused
(the files are read and checked by ``oldca``, spread over the cores by
``checks``). The rows are written through ``signer_core.store``, in the
signer's own shapes, in one process and in index order.

All problems are gathered, each with its file and line number, and the
import is one transaction: it completes, or the database is left exactly as
it was. Importing again is harmless: identical rows are skipped and counted,
a row that disagrees with the database is a problem.

What lands where:

- each certificate of the index becomes an ``issued`` row of
  ``certificates`` under a synthetic ``request_digest`` (``imported_digest``)
  that no real request can produce, with profile ``IMPORTED_PROFILE``;
- each revoked one becomes a ``revocations`` row with the original date and
  reason, encoded by ``crl.encode_entry`` like the appliance's own; rows are
  added in serial order, the order of ``openssl ca -gencrl``, so that the
  first CRL the appliance issues differs little from the old one;
- the CRLs the web host may hold are remembered as delta bases
  (``Revocations.add_known_crl``), and the CRL number continues from the old
  ``crlnumber`` file;
- the old ``serial`` file is kept in ``openssl_state`` for ``export-openssl``;
- one audit record ``openssl-imported`` carries the totals.
"""

from __future__ import annotations

import dataclasses
import hashlib
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from cryptography import x509

from signer_core.crl.encode import encode_entry
from signer_core.crl.revocation import Revocations
from signer_core.store import crls, openssl
from signer_core.store.audit import AuditLog
from signer_core.store.cadb import CADatabase, SignedElsewhere, serial_text
from signer_core.x509.compat import revocation_date
from signerctl.migrate.checks import CHUNK, Checked, Chunk, Verdict, check_chunks, default_workers
from signerctl.migrate.index import MAX_LINE, IndexEntry, IndexLineError, parse_line
from signerctl.migrate.oldca import (
    OldCrl,
    Progress,
    crl_number,
    hex_file,
    index_lines,
    read_crls,
)

IMPORTED_PROFILE = -1  # not one of profiles.md: "issued by the old signer"
MAX_PROBLEMS = 1000


@dataclass(frozen=True)
class Problem:
    file: str
    line: int | None
    text: str

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        return f"{where}: {self.text}"


class MigrationError(Exception):
    """The import was refused; nothing was written. ``problems`` lists each one."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = tuple(problems)
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        super().__init__(f"import refused: {problems[0]}{more}")


@dataclass(frozen=True)
class ImportTotals:
    root: int
    lines: int
    valid: int
    revoked: int
    expired: int
    skipped: int
    crls: int
    crl_number: int  # the number of the next CRL the appliance issues
    next_serial: str | None
    dropped_arguments: int  # hold instructions / invalidity dates not carried over


def imported_digest(root_id: int, serial: int) -> bytes:
    """The request_digest of an imported certificate: no request hashes to it."""
    return hashlib.sha256(b"imported:%d:%s" % (root_id, serial_text(serial).encode())).digest()


@dataclass
class _Run:
    """What one import has seen so far."""

    root_id: int
    index: Path
    fresh: bool = False  # the root had no certificate: nothing to compare with
    problems: list[Problem] = field(default_factory=list)
    seen: dict[int, int] = field(default_factory=dict)  # serial -> line
    revoked: list[IndexEntry] = field(default_factory=list)
    counts: dict[str, int] = field(
        default_factory=lambda: dict.fromkeys(("lines", "V", "R", "E", "skipped", "dropped"), 0)
    )

    def problem(self, line: int | None, text: str, file: Path | None = None) -> None:
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(Problem(str(file or self.index), line, text))

    @property
    def full(self) -> bool:
        return len(self.problems) >= MAX_PROBLEMS


# -- writing the database --------------------------------------------------


def _store_certificate(db: CADatabase, run: _Run, entry: IndexEntry, cert: Checked) -> bool:
    """Insert the certificate's row; False if an identical one is there already."""
    row = None if run.fresh else db.find_certificate(run.root_id, entry.serial)
    if row is not None:
        if row.state != "issued" or row.der != cert.der:
            run.problem(
                entry.line,
                f"serial {entry.serial_hex} is already in the database"
                " with a different certificate",
            )
        return False
    issued = cert.not_before  # the old CA kept no issuance time
    db.add_signed_elsewhere(
        [
            SignedElsewhere(
                run.root_id,
                entry.serial,
                imported_digest(run.root_id, entry.serial),
                IMPORTED_PROFILE,
                issued,
                cert.subject,
                issued,
                cert.not_after,
                cert.der,
            )
        ]
    )
    return True


def _store_revocation(db: CADatabase, run: _Run, entry: IndexEntry) -> bool:
    """Insert the revocation; False if the database already has it."""
    assert entry.revoked_at is not None
    when = int(entry.revoked_at.timestamp())
    reason = None if entry.reason is None else entry.reason.value
    stored = crls.revocation_of(db.connection, run.root_id, entry.serial)
    if stored is not None:
        if stored != (when, reason):
            run.problem(
                entry.line,
                f"serial {entry.serial_hex} is already revoked in the"
                " database with another date or reason",
            )
        return False
    return crls.add_revocation(
        db.connection,
        run.root_id,
        entry.serial,
        when,
        reason,
        int(entry.expires.timestamp()),
        encode_entry(entry.serial, entry.revoked_at, entry.reason),
    )


def _entry(run: _Run, number: int, text: str | None) -> IndexEntry | str:
    """The line's entry, or what is wrong with the line."""
    if text is None:
        return f"malformed line: not UTF-8 or over {MAX_LINE} bytes"
    try:
        entry = parse_line(number, text)
    except IndexLineError as exc:
        return f"malformed line: {exc}"
    if entry.serial in run.seen:
        return f"duplicate serial {entry.serial_hex} (first on line {run.seen[entry.serial]})"
    run.seen[entry.serial] = number
    return entry


def _chunks(run: _Run, lines: Iterator[tuple[int, str | None]]) -> Iterator[Chunk]:
    chunk: Chunk = []
    for number, text in lines:
        chunk.append((number, _entry(run, number, text)))
        if len(chunk) == CHUNK:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _import_entry(db: CADatabase, run: _Run, entry: IndexEntry, verdict: Verdict) -> None:
    if isinstance(verdict, list):
        for complaint in verdict:
            run.problem(entry.line, complaint)
        return
    new = _store_certificate(db, run, entry, verdict)
    if entry.status == "R":
        run.revoked.append(entry)
        run.counts["dropped"] += bool(entry.reason_argument)
    elif new:
        run.counts[entry.status] += 1
    else:
        run.counts["skipped"] += 1


def _import_index(
    db: CADatabase,
    run: _Run,
    ca_dir: Path,
    root_cert: x509.Certificate,
    meter: Progress,
    workers: int,
) -> None:
    """Each line in order; the certificates are checked by ``checks``, in ``workers`` processes."""
    run.fresh = not db.has_certificates(run.root_id)
    chunks = _chunks(run, index_lines(run.index, meter))
    for chunk, verdicts in check_chunks(chunks, ca_dir, root_cert, workers):
        verdict = iter(verdicts)
        for number, item in chunk:
            run.counts["lines"] = number
            if isinstance(item, str):
                run.problem(number, item)
            else:
                _import_entry(db, run, item, next(verdict))
        if run.full:
            break
    _store_revocations(db, run)


def _store_revocations(db: CADatabase, run: _Run) -> None:
    """In serial order, as ``openssl ca -gencrl`` sorts its CRLs."""
    for entry in sorted(run.revoked, key=lambda e: e.serial):
        run.counts["R" if _store_revocation(db, run, entry) else "skipped"] += 1


def _check_current_crl(old: OldCrl, run: _Run) -> None:
    """Every entry of the web host's CRL is revoked in the index, on the same date."""
    revoked = {e.serial: e for e in run.revoked}
    for item in old.crl:
        entry = revoked.get(item.serial_number)
        when = revocation_date(item)
        if entry is None:
            run.problem(
                None,
                f"bad CRL: lists serial {item.serial_number:X},"
                " which the index does not have as revoked",
                old.path,
            )
        elif entry.revoked_at != when:
            run.problem(
                None,
                f"bad CRL: serial {item.serial_number:X} revoked {when:%Y-%m-%d %H:%M:%S},"
                f" index line {entry.line} says {entry.revoked_at:%Y-%m-%d %H:%M:%S}",
                old.path,
            )


def _continue_numbers(
    db: CADatabase, run: _Run, old_crls: list[OldCrl], next_crl_number: int | None
) -> int:
    """Remember the CRLs as delta bases; return the number the next CRL will carry.

    Oldest first: Revocations keeps the newest ``history`` CRLs by id, so the
    current one, the likeliest on the web host, must be the last to go.
    """
    revs = Revocations(db)
    for old in sorted(old_crls, key=crl_number):
        sha1 = hashlib.sha1(old.der).digest()
        # Even a conflicting insert would use up an id: leave no trace.
        if crls.crl_by_sha1(db.connection, run.root_id, sha1) is None:
            revs.add_known_crl(run.root_id, old.der)
    if next_crl_number is not None:
        # ``crlnumber`` holds the number OpenSSL would have used next (a CRL
        # number never goes down).
        crls.raise_number(db.connection, run.root_id, next_crl_number - 1)
    last = crls.last_number(db.connection, run.root_id)
    return 1 if last is None else last + 1


def import_openssl(
    db: CADatabase,
    root_id: int,
    ca_dir: Path,
    root_cert: x509.Certificate,
    *,
    crl: Path | None = None,
    crl_dir: Path | None = None,
    progress: TextIO | None = sys.stderr,
    workers: int | None = None,
) -> ImportTotals:
    """Import one root's OpenSSL CA directory; MigrationError (nothing written) on any problem.

    ``progress`` gets a progress line when it is a terminal. ``workers``
    processes check the certificates (default: every core for a large
    index, none for a small one).
    """
    run = _Run(root_id, ca_dir / "index.txt")
    next_serial = hex_file(ca_dir / "serial", run.problem)
    next_crl_number = hex_file(ca_dir / "crlnumber", run.problem)
    old_crls = read_crls(crl, crl_dir, root_cert, run.problem)
    try:
        size = run.index.stat().st_size
    except OSError as exc:
        run.problem(None, f"cannot read: {exc.strerror}")
        raise MigrationError(run.problems) from None
    meter = Progress(progress, size, f"importing root {root_id}")
    with db.transaction() as conn:
        if workers is None:
            workers = default_workers(size)
        _import_index(db, run, ca_dir, root_cert, meter, workers)
        if crl is not None and old_crls and old_crls[0].path == crl:
            _check_current_crl(old_crls[0], run)
        if run.problems:
            raise MigrationError(run.problems)
        next_number = _continue_numbers(db, run, old_crls, next_crl_number)
        if next_serial is not None:
            openssl.remember_next_serial(conn, root_id, next_serial, int(time.time()))
        totals = ImportTotals(
            root_id,
            run.counts["lines"],
            run.counts["V"],
            run.counts["R"],
            run.counts["E"],
            run.counts["skipped"],
            len(old_crls),
            next_number,
            None if next_serial is None else serial_text(next_serial),
            run.counts["dropped"],
        )
        AuditLog(conn).append("openssl-imported", ca_dir=str(ca_dir), **dataclasses.asdict(totals))
    return totals
