"""The web host's time as stored: the SQL on ``time_last``, ``time_readings``, ``time_rejected``.

Trusted side, on the CA database (tables defined in ``schema``). Which
reading is believed, and when one joins the history, is decided in
``signer_core.timesync``; this module only keeps the rows, on the signer's
connection or on a read-only one (``signerctl time``). Callers hold the
transaction.

- ``time_last``: the last believed reading (one row);
- ``time_readings``: the drift history, newest rows kept;
- ``time_rejected``: how many readings were not believed, how many of them
  in a row since the last believed one, and the last with its reason (one row).
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass


@dataclass(frozen=True)
class Reading:
    received_at: float
    web_time: float
    drift: float  # web host minus appliance, seconds


@dataclass(frozen=True)
class Rejections:
    count: int
    run: int  # rejected since the last plausible reading
    last: Reading
    reason: str


def keep_believed(conn: sqlite3.Connection, reading: Reading) -> None:
    """The last believed reading; it ends a run of rejected ones."""
    conn.execute(
        "INSERT OR REPLACE INTO time_last VALUES (1, ?, ?, ?)",
        (reading.received_at, reading.web_time, reading.drift),
    )
    conn.execute("UPDATE time_rejected SET run = 0 WHERE run > 0")


def count_rejected(conn: sqlite3.Connection, reading: Reading, reason: str) -> int:
    """Count a reading not believed; how many in a row, this one included."""
    row = conn.execute(
        "INSERT INTO time_rejected VALUES (1, 1, 1, ?, ?, ?, ?) ON CONFLICT (one) DO UPDATE"
        " SET count = count + 1, run = run + 1, received_at = excluded.received_at,"
        " web_time = excluded.web_time, drift = excluded.drift, reason = excluded.reason"
        " RETURNING run",
        (reading.received_at, reading.web_time, reading.drift, reason),
    ).fetchone()
    return int(row[0])


def add_to_history(conn: sqlite3.Connection, reading: Reading, max_rows: int) -> None:
    conn.execute(
        "INSERT INTO time_readings (received_at, web_time, drift) VALUES (?, ?, ?)",
        (reading.received_at, reading.web_time, reading.drift),
    )
    # The newest rows stay: everything from the first row past the limit back goes.
    conn.execute(
        "DELETE FROM time_readings WHERE id <= (SELECT id FROM time_readings"
        " ORDER BY id DESC LIMIT 1 OFFSET ?)",
        (max_rows,),
    )


def last_believed(conn: sqlite3.Connection) -> Reading | None:
    row = conn.execute("SELECT received_at, web_time, drift FROM time_last").fetchone()
    return None if row is None else Reading(row[0], row[1], row[2])


def rejections(conn: sqlite3.Connection) -> Rejections | None:
    row = conn.execute(
        "SELECT count, run, received_at, web_time, drift, reason FROM time_rejected"
    ).fetchone()
    return None if row is None else Rejections(row[0], row[1], Reading(*row[2:5]), row[5])


def history(conn: sqlite3.Connection, limit: int) -> list[Reading]:
    """The newest ``limit`` readings of the history, newest first."""
    rows = conn.execute(
        "SELECT received_at, web_time, drift FROM time_readings ORDER BY id DESC LIMIT ?",
        (limit,),
    )
    return [Reading(r[0], r[1], r[2]) for r in rows]
