"""Import an OpenSSL ``ca`` directory (the old signer's state) into the CA database.

Trusted side tooling, run by an operator with signer-core stopped. It trusts
the appliance's configured root certificate and nothing on the old CA's
disk: every certificate file must be signed by that root and agree with its
index line, and every CRL must be signed by it, or the import is refused.

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
import datetime as dt
import hashlib
import re
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization

from signer_core.crl.encode import encode_entry
from signer_core.crl.revocation import MAX_IMPORTED_CRL, Revocations
from signer_core.store.audit import AuditLog
from signer_core.store.cadb import CADatabase, serial_text
from signer_core.x509.compat import not_after, not_before, verify_issued_by
from signerctl.migrate.index import (
    MAX_LINE,
    IndexEntry,
    IndexLineError,
    oneline,
    parse_line,
)

IMPORTED_PROFILE = -1  # not one of profiles.md: "issued by the old signer"
MAX_CERT_FILE = 64 * 1024
MAX_PROBLEMS = 1000
CERT_DIRS = ("newcerts", "certs")
_SHA1_NAME = re.compile(r"[0-9a-f]{40}\.crl")
_HEX = re.compile(rb"[0-9A-Fa-f]{1,42}")
_PEM_CERT = b"-----BEGIN CERTIFICATE-----"

OPENSSL_STATE_SCHEMA = """
CREATE TABLE IF NOT EXISTS openssl_state (
    root INTEGER PRIMARY KEY,
    next_serial TEXT NOT NULL,
    imported_at INTEGER NOT NULL
)
"""


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


@dataclass(frozen=True)
class OldCrl:
    path: Path
    der: bytes
    crl: x509.CertificateRevocationList


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


class Progress:
    """A one-line progress counter on a terminal; silent otherwise."""

    def __init__(self, stream: TextIO | None, total_bytes: int, label: str) -> None:
        self._stream = stream if stream is not None and stream.isatty() else None
        self._total = max(total_bytes, 1)
        self._label = label
        self._next = 0.0

    def update(self, done_bytes: int, lines: int) -> None:
        now = time.monotonic()
        if self._stream is None or now < self._next:
            return
        self._next = now + 0.25
        self._stream.write(f"\r{self._label}: {100 * done_bytes // self._total:3d}% {lines} lines")
        self._stream.flush()

    def done(self, lines: int) -> None:
        if self._stream is not None:
            self._stream.write(f"\r{self._label}: 100% {lines} lines\n")
            self._stream.flush()


# -- reading the old CA's files --------------------------------------------


def _hex_file(path: Path, run: _Run) -> int | None:
    """The number in an OpenSSL ``serial`` or ``crlnumber`` file; None if absent."""
    try:
        with path.open("rb") as f:
            text = f.read(64).strip()
    except FileNotFoundError:
        return None
    except OSError as exc:
        run.problem(None, f"cannot read: {exc.strerror}", path)
        return None
    if not _HEX.fullmatch(text):
        run.problem(1, "not a hexadecimal number", path)
        return None
    return int(text, 16)


def _load_certificate(ca_dir: Path, entry: IndexEntry) -> x509.Certificate | None:
    """The entry's certificate; None if no file holds it."""
    names = [f"{d}/{entry.serial_hex}.pem" for d in CERT_DIRS]
    if entry.filename not in ("", "unknown") and "/" not in entry.filename.lstrip("./"):
        names.insert(0, entry.filename)
    for name in names:
        try:
            with open(ca_dir / name, "rb") as f:
                data = f.read(MAX_CERT_FILE + 1)
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            continue
        if len(data) > MAX_CERT_FILE:
            raise ValueError(f"{name} is larger than {MAX_CERT_FILE} bytes")
        cert = (
            x509.load_pem_x509_certificate(data)
            if _PEM_CERT in data
            else x509.load_der_x509_certificate(data)
        )
        _ = (cert.subject, cert.serial_number, not_after(cert))  # cryptography 38 is lazy
        return cert
    return None


def _check_certificate(
    cert: x509.Certificate, entry: IndexEntry, root_cert: x509.Certificate
) -> list[str]:
    """How the certificate disagrees with its index line or root (empty if it does not)."""
    wrong = []
    if cert.serial_number != entry.serial:
        wrong.append(
            f"certificate has serial {cert.serial_number:X}, index says {entry.serial_hex}"
        )
    subject = oneline(cert.subject.public_bytes())
    if subject != entry.subject:
        wrong.append(f"certificate subject {subject!r} differs from the index's {entry.subject!r}")
    if not_after(cert) != entry.expires:
        wrong.append(
            f"certificate expires {not_after(cert):%Y-%m-%d %H:%M:%S},"
            f" index says {entry.expires:%Y-%m-%d %H:%M:%S}"
        )
    try:
        verify_issued_by(cert, root_cert)
    except (InvalidSignature, UnsupportedAlgorithm, ValueError, TypeError):
        wrong.append("certificate is not signed by this root")
    return wrong


def read_crl(path: Path, root_cert: x509.Certificate) -> OldCrl:
    """A CRL file as the web host holds it (DER), signed by the root; ValueError otherwise."""
    with path.open("rb") as f:
        der = f.read(MAX_IMPORTED_CRL + 1)
    if len(der) > MAX_IMPORTED_CRL:
        raise ValueError("CRL too large")
    if der.lstrip().startswith(b"-----BEGIN"):
        raise ValueError("PEM: give the DER file the web host holds (its SHA-1 is what it sends)")
    try:
        crl = x509.load_der_x509_crl(der)
        verify_issued_by(crl, root_cert)
    except InvalidSignature:
        raise ValueError("CRL is not signed by this root") from None
    except (UnsupportedAlgorithm, TypeError) as exc:
        raise ValueError(f"cannot check the CRL: {exc}") from None
    return OldCrl(path, der, crl)


def _read_crls(
    current: Path | None, crl_dir: Path | None, root_cert: x509.Certificate, run: _Run
) -> list[OldCrl]:
    paths = [] if current is None else [current]
    if crl_dir is not None:
        for path in sorted(crl_dir.iterdir()):
            if path.suffix != ".crl":
                continue
            if not _SHA1_NAME.fullmatch(path.name):
                run.problem(None, "CRL file name is not <sha1>.crl", path)
                continue
            paths.append(path)
    crls = []
    for path in paths:
        try:
            old = read_crl(path, root_cert)
        except (OSError, ValueError) as exc:
            run.problem(None, f"bad CRL: {exc}", path)
            continue
        if path.parent == crl_dir and hashlib.sha1(old.der).hexdigest() != path.stem:
            run.problem(None, "bad CRL: file name is not the SHA-1 of its content", path)
            continue
        crls.append(old)
    return crls


def _index_lines(path: Path, progress: Progress) -> Iterator[tuple[int, str | None]]:
    """(line number, text) of each line; text None for a line too long or not UTF-8."""
    done = number = 0
    with path.open("rb") as f:
        while raw := f.readline(MAX_LINE + 1):
            number += 1
            done += len(raw)
            if number % 4096 == 0:
                progress.update(done, number)
            if len(raw) > MAX_LINE:
                while raw and not raw.endswith(b"\n"):  # skip the rest, keep the count right
                    raw = f.readline(MAX_LINE + 1)
                    done += len(raw)
                yield number, None
                continue
            try:
                yield number, raw.rstrip(b"\r\n").decode("utf-8")
            except UnicodeDecodeError:
                yield number, None
    progress.done(number)


# -- writing the database --------------------------------------------------


def _store_certificate(conn, run: _Run, entry: IndexEntry, cert: x509.Certificate) -> bool:
    """Insert the certificate's row; False if an identical one is there already."""
    der = cert.public_bytes(serialization.Encoding.DER)
    row = (
        None
        if run.fresh
        else conn.execute(
            "SELECT state, der FROM certificates WHERE root = ? AND serial = ?",
            (run.root_id, serial_text(entry.serial)),
        ).fetchone()
    )
    if row is not None:
        if row[0] != "issued" or bytes(row[1]) != der:
            run.problem(
                entry.line,
                f"serial {entry.serial_hex} is already in the database"
                " with a different certificate",
            )
        return False
    issued = int(not_before(cert).timestamp())
    conn.execute(
        "INSERT INTO certificates (root, serial, request_digest, profile, state, reserved_at,"
        " issued_at, subject, not_before, not_after, der)"
        " VALUES (?, ?, ?, ?, 'issued', ?, ?, ?, ?, ?, ?)",
        (
            run.root_id,
            serial_text(entry.serial),
            imported_digest(run.root_id, entry.serial),
            IMPORTED_PROFILE,
            issued,
            issued,
            cert.subject.rfc4514_string(),
            issued,
            int(not_after(cert).timestamp()),
            der,
        ),
    )
    return True


def _store_revocation(conn, run: _Run, entry: IndexEntry) -> bool:
    """Insert the revocation; False if the database already has it."""
    assert entry.revoked_at is not None
    when = int(entry.revoked_at.timestamp())
    reason = None if entry.reason is None else entry.reason.value
    row = conn.execute(
        "SELECT revoked_at, reason FROM revocations WHERE root = ? AND serial = ?",
        (run.root_id, serial_text(entry.serial)),
    ).fetchone()
    if row is not None:
        if (row[0], row[1]) != (when, reason):
            run.problem(
                entry.line,
                f"serial {entry.serial_hex} is already revoked in the"
                " database with another date or reason",
            )
        return False
    conn.execute(
        "INSERT INTO revocations (root, serial, revoked_at, reason, not_after, entry)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        (
            run.root_id,
            serial_text(entry.serial),
            when,
            reason,
            int(entry.expires.timestamp()),
            encode_entry(entry.serial, entry.revoked_at, entry.reason),
        ),
    )
    return True


def _import_line(
    conn, run: _Run, ca_dir: Path, root_cert: x509.Certificate, number: int, text: str | None
) -> None:
    if text is None:
        run.problem(number, f"malformed line: not UTF-8 or over {MAX_LINE} bytes")
        return
    try:
        entry = parse_line(number, text)
    except IndexLineError as exc:
        run.problem(number, f"malformed line: {exc}")
        return
    if entry.serial in run.seen:
        run.problem(
            number, f"duplicate serial {entry.serial_hex} (first on line {run.seen[entry.serial]})"
        )
        return
    run.seen[entry.serial] = number
    try:
        cert = _load_certificate(ca_dir, entry)
    except (OSError, ValueError, UnsupportedAlgorithm) as exc:
        run.problem(number, f"unreadable certificate {entry.serial_hex}.pem: {exc}")
        return
    if cert is None:
        run.problem(
            number, f"certificate {entry.serial_hex}.pem is missing from {' and '.join(CERT_DIRS)}/"
        )
        return
    wrong = _check_certificate(cert, entry, root_cert)
    for complaint in wrong:
        run.problem(number, complaint)
    if wrong:
        return
    new = _store_certificate(conn, run, entry, cert)
    if entry.status == "R":
        run.revoked.append(entry)
        run.counts["dropped"] += bool(entry.reason_argument)
    elif new:
        run.counts[entry.status] += 1
    else:
        run.counts["skipped"] += 1


def _import_index(
    conn, run: _Run, ca_dir: Path, root_cert: x509.Certificate, meter: Progress
) -> None:
    run.fresh = (
        conn.execute("SELECT 1 FROM certificates WHERE root = ? LIMIT 1", (run.root_id,)).fetchone()
        is None
    )
    for number, text in _index_lines(run.index, meter):
        run.counts["lines"] = number
        _import_line(conn, run, ca_dir, root_cert, number, text)
        if run.full:
            break
    _store_revocations(conn, run)


def _store_revocations(conn, run: _Run) -> None:
    """In serial order, as ``openssl ca -gencrl`` sorts its CRLs."""
    for entry in sorted(run.revoked, key=lambda e: e.serial):
        run.counts["R" if _store_revocation(conn, run, entry) else "skipped"] += 1


def _crl_number(old: OldCrl) -> int:
    try:
        return old.crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    except x509.ExtensionNotFound:
        return 0


def _revocation_date(item: x509.RevokedCertificate) -> dt.datetime:
    value = getattr(item, "revocation_date_utc", None)  # cryptography 42+
    return value if value is not None else item.revocation_date.replace(tzinfo=dt.UTC)


def _check_current_crl(old: OldCrl, run: _Run) -> None:
    """Every entry of the web host's CRL is revoked in the index, on the same date."""
    revoked = {e.serial: e for e in run.revoked}
    for item in old.crl:
        entry = revoked.get(item.serial_number)
        when = _revocation_date(item)
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
    conn, revs: Revocations, run: _Run, crls: list[OldCrl], next_crl_number: int | None
) -> int:
    """Remember the CRLs as delta bases; return the number the next CRL will carry.

    Oldest first: Revocations keeps the newest ``history`` CRLs by id, so the
    current one, the likeliest on the web host, must be the last to go.
    """
    for old in sorted(crls, key=_crl_number):
        known = conn.execute(
            "SELECT 1 FROM crls WHERE root = ? AND sha1 = ?",
            (run.root_id, hashlib.sha1(old.der).digest()),
        ).fetchone()
        if known is None:  # even a conflicting insert would use up an id: leave no trace
            revs.add_known_crl(run.root_id, old.der)
    if next_crl_number is not None:
        # ``crlnumber`` holds the number OpenSSL would have used next; the same
        # upsert as Revocations keeps (a CRL number never goes down).
        conn.execute(
            "INSERT INTO crl_numbers (root, last_number) VALUES (?, ?) ON CONFLICT (root)"
            " DO UPDATE SET last_number = max(last_number, excluded.last_number)",
            (run.root_id, next_crl_number - 1),
        )
    row = conn.execute(
        "SELECT last_number FROM crl_numbers WHERE root = ?", (run.root_id,)
    ).fetchone()
    return 1 if row is None else int(row[0]) + 1


def import_openssl(
    db: CADatabase,
    root_id: int,
    ca_dir: Path,
    root_cert: x509.Certificate,
    *,
    crl: Path | None = None,
    crl_dir: Path | None = None,
    progress: TextIO | None = sys.stderr,
) -> ImportTotals:
    """Import one root's OpenSSL CA directory; MigrationError (nothing written) on any problem.

    ``progress`` gets a progress line when it is a terminal.
    """
    run = _Run(root_id, ca_dir / "index.txt")
    # Both create their (empty) tables with executescript, which would commit
    # our transaction: so before it, as the signer itself does at start-up.
    revs = Revocations(db)
    audit = AuditLog(db.connection)
    next_serial = _hex_file(ca_dir / "serial", run)
    next_crl_number = _hex_file(ca_dir / "crlnumber", run)
    crls = _read_crls(crl, crl_dir, root_cert, run)
    try:
        size = run.index.stat().st_size
    except OSError as exc:
        run.problem(None, f"cannot read: {exc.strerror}")
        raise MigrationError(run.problems) from None
    meter = Progress(progress, size, f"importing root {root_id}")
    with db.transaction() as conn:
        _import_index(conn, run, ca_dir, root_cert, meter)
        if crl is not None and crls and crls[0].path == crl:
            _check_current_crl(crls[0], run)
        if run.problems:
            raise MigrationError(run.problems)
        crl_number = _continue_numbers(conn, revs, run, crls, next_crl_number)
        conn.execute(OPENSSL_STATE_SCHEMA)
        if next_serial is not None:
            conn.execute(
                "INSERT INTO openssl_state VALUES (?, ?, ?) ON CONFLICT (root) DO UPDATE"
                " SET next_serial = excluded.next_serial, imported_at = excluded.imported_at"
                " WHERE next_serial != excluded.next_serial",
                (root_id, serial_text(next_serial), int(time.time())),
            )
        totals = ImportTotals(
            root_id,
            run.counts["lines"],
            run.counts["V"],
            run.counts["R"],
            run.counts["E"],
            run.counts["skipped"],
            len(crls),
            crl_number,
            None if next_serial is None else serial_text(next_serial),
            run.counts["dropped"],
        )
        audit.append("openssl-imported", ca_dir=str(ca_dir), **dataclasses.asdict(totals))
    return totals
