"""The web host's time, as read from keep-alives, and the clock script.

Trusted side. A NUL request carries the web host's UTC time as
``MMDDhhmmYYYY.SS`` (``date -u`` syntax). The reading is hostile input: it is
accepted only if it matches that form exactly and names a real date, and the
drift is computed against ``received_at``, the moment the comm handler had
the frame, because requests may have queued ahead of it.

The appliance never sets its own clock. It keeps the drift history and writes
``set-clock.sh`` in its state directory (the comm user cannot write there),
which an operator reads and runs by hand. The script applies the drift to
the clock at the moment it is run, rather than an absolute time that would be
stale by then.

Keep-alives arrive every few seconds: the last reading is always kept, the
history only every ``HISTORY_INTERVAL`` seconds or when the drift moves.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from pathlib import Path

from signer_core.cadb import CADatabase
from signer_core.refusal import Refusal
from spool.safeio import commit_file

HISTORY_INTERVAL = 600.0
DRIFT_STEP = 1.0
_READING = re.compile(rb"\A(\d{2})(\d{2})(\d{2})(\d{2})(\d{4})\.(\d{2})\Z")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS time_readings (
    id INTEGER PRIMARY KEY,
    received_at REAL NOT NULL,
    web_time REAL NOT NULL,
    drift REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS time_last (
    one INTEGER PRIMARY KEY CHECK (one = 1),
    received_at REAL NOT NULL,
    web_time REAL NOT NULL,
    drift REAL NOT NULL
);
"""


def parse_reading(payload: bytes) -> dt.datetime:
    """The web host's time from a NUL payload; Refusal unless exactly valid."""
    match = _READING.match(payload)
    if match is None:
        raise Refusal("bad-time", "expected MMDDhhmmYYYY.SS")
    month, day, hour, minute, year, second = (int(g) for g in match.groups())
    try:
        return dt.datetime(year, month, day, hour, minute, second, tzinfo=dt.timezone.utc)
    except ValueError as exc:
        raise Refusal("bad-time", str(exc)) from exc


@dataclass(frozen=True)
class Reading:
    received_at: float
    web_time: float
    drift: float  # web host minus appliance, seconds


class TimeReadings:
    def __init__(self, db: CADatabase, state_dir: Path) -> None:
        self.db = db
        self.conn = db.connection
        self.conn.executescript(_SCHEMA)
        self.script = state_dir / "set-clock.sh"

    def record(self, payload: bytes, received_at: float) -> Reading:
        web_time = parse_reading(payload).timestamp()
        reading = Reading(received_at, web_time, web_time - received_at)
        with self.db.transaction():
            self.conn.execute(
                "INSERT OR REPLACE INTO time_last VALUES (1, ?, ?, ?)",
                (reading.received_at, reading.web_time, reading.drift))
            if self._worth_keeping(reading):
                self.conn.execute(
                    "INSERT INTO time_readings (received_at, web_time, drift) VALUES (?, ?, ?)",
                    (reading.received_at, reading.web_time, reading.drift))
                self._write_script(reading)
        return reading

    def _worth_keeping(self, reading: Reading) -> bool:
        row = self.conn.execute(
            "SELECT received_at, drift FROM time_readings ORDER BY id DESC LIMIT 1").fetchone()
        return (row is None or reading.received_at - row[0] >= HISTORY_INTERVAL
                or abs(reading.drift - row[1]) >= DRIFT_STEP)

    def last(self) -> Reading | None:
        row = self.conn.execute("SELECT received_at, web_time, drift FROM time_last").fetchone()
        return Reading(*row) if row else None

    def history(self, limit: int = 20) -> list[Reading]:
        rows = self.conn.execute(
            "SELECT received_at, web_time, drift FROM time_readings ORDER BY id DESC LIMIT ?",
            (limit,)).fetchall()
        return [Reading(*r) for r in rows]

    def _write_script(self, reading: Reading) -> None:
        seen = dt.datetime.fromtimestamp(reading.web_time, dt.timezone.utc).isoformat()
        drift = round(reading.drift)
        text = (
            "#!/bin/sh\n"
            f"# Written by signer-core: the web host read {seen},\n"
            f"# {reading.drift:+.1f} s from this machine's clock.\n"
            "# Run by hand, as root, at a quiet moment; it moves the clock by that drift.\n"
            "set -e\n"
            f'date -u -s "@$(( $(date -u +%s) + ({drift}) ))"\n'
            "hwclock --systohc\n"
        )
        commit_file(self.script.parent, self.script.name, text.encode("ascii"), 0o644)
