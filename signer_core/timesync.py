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

A well-formed reading may still be absurd (a web host whose clock battery
died reads 1970; a lie reads 9999), and an operator who trusts the script
would step the clock by decades. So a reading is believed only when:

- the web time lies within the loaded X.509 roots' validity, from the
  earliest notBefore to the latest notAfter: no real moment of this CA's
  life is outside it, and the appliance can sign nothing dated outside it;
- the drift is at most ``[signer] max_clock_drift_seconds`` (a day): an
  offline quartz clock drifts by seconds a day, and a clock set to local time
  in place of UTC is at most 14 hours off; a larger step is a wrong clock on
  one side or the other, which an operator must look at before anything moves.

A rejected reading is counted and the last one kept with its reason, for
``signerctl status`` and ``signerctl time``; it never touches the last
reading, the history or the script. The first of a run of rejected readings
is refused (``implausible-time``), so the audit chain records that the web
host's clock went wrong; the rest of the run is only counted, because a web
host with a dead clock sends one every few seconds and the audit chain
would grow with each.

Keep-alives arrive every few seconds: the last reading is always kept, the
history only every ``HISTORY_INTERVAL`` seconds or when the drift moves by
more than ``[signer] clock_history_step_seconds`` (10 s: the reading has
whole seconds and a frame may wait seconds behind a large transfer, so the
drift of a steady clock jitters by a few seconds each way). The history keeps
at most ``[signer] clock_history_max_rows`` rows, the oldest pruned, so that
a web host whose drift swings on every keep-alive cannot fill the disk.
The rows are kept by ``signer_core.store.clock``; this module decides them.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from pathlib import Path

from signer_core.config import SignerConfig
from signer_core.refusal import Refusal
from signer_core.roots import RootStore
from signer_core.store import clock
from signer_core.store.cadb import CADatabase
from signer_core.store.clock import Reading, Rejections
from signer_core.x509.compat import not_after, not_before
from spool.safeio import commit_file

HISTORY_INTERVAL = 600.0  # a row at least this often while readings come, however steady
_READING = re.compile(rb"\A(\d{2})(\d{2})(\d{2})(\d{2})(\d{4})\.(\d{2})\Z")


def parse_reading(payload: bytes) -> dt.datetime:
    """The web host's time from a NUL payload; Refusal unless exactly valid."""
    match = _READING.match(payload)
    if match is None:
        raise Refusal("bad-time", "expected MMDDhhmmYYYY.SS")
    month, day, hour, minute, year, second = (int(g) for g in match.groups())
    try:
        return dt.datetime(year, month, day, hour, minute, second, tzinfo=dt.UTC)
    except ValueError:
        raise Refusal(
            "bad-time", f"{payload.decode('ascii')} (MMDDhhmmYYYY.SS) is not a date and time"
        ) from None


def roots_validity(roots: RootStore) -> tuple[dt.datetime, dt.datetime] | None:
    """The earliest notBefore and the latest notAfter of the loaded roots; None if none is."""
    certs = [root.certificate for root in roots.roots.values()]
    if not certs:
        return None
    return min(not_before(c) for c in certs), max(not_after(c) for c in certs)


@dataclass(frozen=True)
class ClockRules:
    """When a reading is believed and when it joins the history; defaults as ``[signer]``'s."""

    max_drift: float = SignerConfig.max_clock_drift_seconds
    history_step: float = SignerConfig.clock_history_step_seconds
    history_max_rows: int = SignerConfig.clock_history_max_rows
    plausible: tuple[dt.datetime, dt.datetime] | None = None  # web times believed; None: any

    @classmethod
    def of(cls, signer: SignerConfig, roots: RootStore) -> ClockRules:
        return cls(
            signer.max_clock_drift_seconds,
            signer.clock_history_step_seconds,
            signer.clock_history_max_rows,
            roots_validity(roots),
        )


def _span(seconds: float) -> str:
    """A drift in the unit a person reads best: seconds, hours or days."""
    seconds = abs(seconds)
    if seconds < 2 * 3600:
        return f"{seconds:.0f} s"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f} hours"
    return f"{seconds / 86400:.0f} days"


class TimeReadings:
    def __init__(self, db: CADatabase, state_dir: Path, rules: ClockRules = ClockRules()) -> None:
        self.db = db
        self.conn = db.connection
        self.script = state_dir / "set-clock.sh"
        self.rules = rules

    def record(self, payload: bytes, received_at: float) -> Reading:
        """Keep a reading; Refusal if malformed, or implausible and the first such in a row."""
        web_time = parse_reading(payload).timestamp()
        reading = Reading(received_at, web_time, web_time - received_at)
        why = self._implausible(reading)
        if why is not None:
            self._reject(reading, why)
            return reading
        # Not flushed: a reading lost to a power cut is replaced by the next keep-alive.
        with self.db.transaction(durable=False):
            clock.keep_believed(self.conn, reading)
            if self._worth_keeping(reading):
                clock.add_to_history(self.conn, reading, self.rules.history_max_rows)
                self._write_script(reading)
        return reading

    def _implausible(self, reading: Reading) -> str | None:
        """Why a reading is not to be believed, or None."""
        web = dt.datetime.fromtimestamp(reading.web_time, dt.UTC)
        if self.rules.plausible is not None:
            start, end = self.rules.plausible
            if web < start:
                return (
                    f"the web host's time {web:%Y-%m-%d} is before the earliest root"
                    f" became valid ({start:%Y-%m-%d})"
                )
            if web > end:
                return (
                    f"the web host's time {web:%Y-%m-%d} is after the last root"
                    f" expires ({end:%Y-%m-%d})"
                )
        # Written so that a drift that is not a number is refused too.
        if not abs(reading.drift) <= self.rules.max_drift:
            side = "ahead of" if reading.drift > 0 else "behind"
            return (
                f"the web host's time {web:%Y-%m-%d %H:%M:%S} is {_span(reading.drift)}"
                f" {side} this machine's clock; max_clock_drift_seconds allows"
                f" {self.rules.max_drift:.0f}"
            )
        return None

    def _reject(self, reading: Reading, why: str) -> None:
        with self.db.transaction(durable=False):
            run = clock.count_rejected(self.conn, reading, why)
        if run == 1:
            raise Refusal("implausible-time", why)

    def _worth_keeping(self, reading: Reading) -> bool:
        newest = clock.history(self.conn, 1)
        return (
            not newest
            or reading.received_at - newest[0].received_at >= HISTORY_INTERVAL
            or abs(reading.drift - newest[0].drift) > self.rules.history_step
        )

    def last(self) -> Reading | None:
        return clock.last_believed(self.conn)

    def rejected(self) -> Rejections | None:
        return clock.rejections(self.conn)

    def history(self, limit: int = 20) -> list[Reading]:
        return clock.history(self.conn, limit)

    def _write_script(self, reading: Reading) -> None:
        seen = dt.datetime.fromtimestamp(reading.web_time, dt.UTC).isoformat()
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
