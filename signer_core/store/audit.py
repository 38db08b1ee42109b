"""The audit log: every decision of the signer, in a hash chain.

Trusted side. Records live in the CA database (readable by the signer user
alone) in table ``audit``, defined in ``schema``; the SQL on it is this
module's. Record ``n`` carries the SHA-256 of record ``n - 1``, and its own
hash covers its number, time, event, details and that link; so editing, deleting or reordering any record breaks the chain at a
place ``verify`` names. Removing records from the end leaves a valid but
shorter chain: that is what the head hash, written down by the operators on
each visit, is for, and the checkpoints of the Merkle tree over the records
(``auditree``), whose leaf ``i`` is record ``i + 1`` and which grows in the
same transaction as the chain.

Details are JSON written canonically (sorted keys, no spaces) so that the
hash does not depend on a library's formatting. They never hold key material,
passphrases or whole requests: callers pass identifiers and reasons.
"""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
from dataclasses import dataclass

from signer_core.store.auditree import AuditTree, TreeCheck, TreeError
from tlog.records import GENESIS, chain_hash, leaf

# The record's hash and its leaf are the web host's to compute too: defined once, in tlog.
record_hash = chain_hash
record_leaf = leaf


@dataclass(frozen=True)
class Record:
    seq: int
    at: str  # ISO 8601, UTC, microseconds
    event: str
    details: dict[str, object]


@dataclass(frozen=True)
class Verdict:
    ok: bool
    count: int
    head: str  # hash of the last record that verified
    bad_seq: int | None = None
    problem: str = ""


class AuditLog:
    """Appends to and verifies the chain; one writer (the signer)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn  # the signer's, or a read-only one (signerctl) to verify

    def head(self) -> tuple[int, str]:
        """(number of records, hash of the last one) as stored, without checking.

        Read each time rather than cached: a rolled-back transaction must not
        leave a head in memory that the next record would link to.
        """
        row = self.conn.execute("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
        return (row[0], row[1]) if row else (0, GENESIS)

    def append(self, event: str, **details: object) -> str:
        """Add one record and its leaf; returns its hash. Joins the caller's transaction.

        Outside one, a savepoint makes the record and its leaf one commit.
        TreeError if the tree is not one leaf per record: a leaf put at
        another index would make every later proof about the wrong record.
        """
        self.conn.execute("SAVEPOINT audit_append")
        try:
            digest = self._append(event, details)
        except BaseException:
            self.conn.execute("ROLLBACK TO audit_append")
            self.conn.execute("RELEASE audit_append")
            raise
        self.conn.execute("RELEASE audit_append")
        return digest

    def _append(self, event: str, details: dict[str, object]) -> str:
        last, prev = self.head()
        tree = AuditTree(self.conn)
        leaves = tree.size()
        if leaves < last:
            raise TreeError(
                f"the audit tree has {leaves} leaves for {last} records,"
                " so the next record's leaf would stand for another record"
            )
        # Records cut from the end leave their leaves: the next record takes the next
        # leaf, and the gap in the numbers is the chain's evidence of the cut.
        seq = leaves + 1
        at = dt.datetime.now(dt.UTC).isoformat(timespec="microseconds")
        text = json.dumps(details, sort_keys=True, separators=(",", ":"), default=str)
        digest = record_hash(seq, at, event, text, prev)
        self.conn.execute(
            "INSERT INTO audit VALUES (?, ?, ?, ?, ?, ?)", (seq, at, event, text, prev, digest)
        )
        tree.append(record_leaf(seq, at, event, text, prev))
        return digest

    def entries(self, start: int, limit: int) -> list[tuple[int, str, str, str, str, str]]:
        """The raw rows (seq, at, event, details, prev, hash) after record ``start``,
        oldest first, at most ``limit``: the log extraction's batches, unchecked."""
        rows = self.conn.execute(
            "SELECT seq, at, event, details, prev, hash FROM audit WHERE seq > ? ORDER BY seq"
            " LIMIT ?",
            (start, limit),
        )
        return [
            (seq, at, event, details, prev, digest)
            for seq, at, event, details, prev, digest in rows
        ]

    def events(self, event: str) -> list[dict[str, object]]:
        """The details of every ``event`` record, oldest first (for operators and tests)."""
        rows = self.conn.execute("SELECT details FROM audit WHERE event = ? ORDER BY seq", (event,))
        return [json.loads(details) for (details,) in rows]

    def records(
        self,
        *,
        event: str | None = None,
        serial: int | None = None,
        since: dt.datetime | None = None,
        until: dt.datetime | None = None,
        limit: int = 100,
    ) -> list[Record]:
        """The newest ``limit`` records that match, oldest first, unchecked (``verify``
        checks). ``serial`` matches the records about that certificate: those whose
        ``serial`` is it, and refusals that ``released`` it; ``since`` and ``until``
        (aware times) bound ``at``, ``until`` excluded."""
        where, args = ["1"], []
        if event is not None:
            where.append("event = ?")
            args.append(event)
        if serial is not None:
            where.append(
                "(json_extract(details, '$.serial') = ? OR json_extract(details, '$.released') = ?)"
            )
            args += [format(serial, "x")] * 2
        for bound, op in ((since, ">="), (until, "<")):
            if bound is not None:
                where.append(f"at {op} ?")
                args.append(bound.astimezone(dt.UTC).isoformat(timespec="microseconds"))
        rows = self.conn.execute(
            f"SELECT seq, at, event, details FROM audit WHERE {' AND '.join(where)}"
            " ORDER BY seq DESC LIMIT ?",
            (*args, limit),
        ).fetchall()
        return [Record(seq, at, ev, json.loads(details)) for seq, at, ev, details in rows[::-1]]

    def kinds(self) -> list[str]:
        """The events the chain holds, by name."""
        return [e for (e,) in self.conn.execute("SELECT DISTINCT event FROM audit ORDER BY event")]

    def verify(self) -> Verdict:
        """Check the chain and the tree: on a fault, the first record it shows at, and why.

        The chain finds an edited, deleted or reordered record by itself; the
        tree, recomputed node by node from the records, must hold exactly
        their leaves, so an edit of the tree alone, or a record removed from
        the end with its leaf left behind, is found too.
        """
        if self.conn.in_transaction:
            return self._verify()
        # One snapshot for the records and the tree, or a record committed between
        # the two reads would look like a leaf without its record.
        self.conn.execute("BEGIN")
        try:
            return self._verify()
        finally:
            self.conn.execute("COMMIT")

    def _verify(self) -> Verdict:
        prev, expected = GENESIS, 1
        tree = TreeCheck(self.conn)
        rows = self.conn.execute(
            "SELECT seq, at, event, details, prev, hash FROM audit ORDER BY seq"
        )
        for seq, at, event, details, link, digest in rows:
            problem = _chain_problem(expected, seq, at, event, details, link, prev, digest)
            if problem is None:
                problem = tree.add(record_leaf(seq, at, event, details, link))
            if problem is not None:
                return Verdict(False, expected - 1, prev, expected, problem)
            prev, expected = digest, expected + 1
        problem = tree.finish()
        if problem is not None:
            return Verdict(False, expected - 1, prev, expected, problem)
        return Verdict(True, expected - 1, prev)


def _chain_problem(
    expected: int, seq: int, at: str, event: str, details: str, link: str, prev: str, digest: str
) -> str | None:
    """Why the row read where record ``expected`` should be breaks the chain, or None."""
    if seq != expected:
        return f"record {expected} is missing (next is {seq})"
    if link != prev:
        return f"record {seq} does not follow record {seq - 1}"
    if record_hash(seq, at, event, details, link) != digest:
        return f"record {seq} was altered"
    return None
