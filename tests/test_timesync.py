"""The web host's time: the reading parser (hostile input), drift, history and the clock script."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from signer_core.cadb import CADatabase
from signer_core.dispatch import MAX_QUEUE_AGE, handle_nul
from signer_core.refusal import Refusal
from signer_core.timesync import TimeReadings, parse_reading
from spool.record import Request

NOW = dt.datetime(2026, 11, 28, 12, 0, 0, tzinfo=dt.timezone.utc)


def reading(when: dt.datetime) -> bytes:
    return when.strftime("%m%d%H%M%Y.%S").encode()


@given(st.datetimes(min_value=dt.datetime(1970, 1, 2), max_value=dt.datetime(9999, 12, 31)))
def test_readings_round_trip(when):
    when = when.replace(microsecond=0, tzinfo=dt.timezone.utc)
    assert parse_reading(reading(when)) == when


@settings(max_examples=2000)
@given(st.binary(max_size=40))
def test_anything_else_is_refused(data):
    try:
        parse_reading(data)
    except Refusal as exc:
        assert exc.code == "bad-time"


@pytest.mark.parametrize("bad", [b"", b"1128120020260", b"113212002026.00", b"112812002026.0",
                                 b"022912002026.00", b"112812002026.00\n", b"112812002026.00; rm"])
def test_malformed_readings(bad):
    with pytest.raises(Refusal):
        parse_reading(bad)


class Ctx:
    def __init__(self, tmp_path):
        self.time_readings = TimeReadings(CADatabase(tmp_path / "ca.sqlite"), tmp_path)

    @staticmethod
    def now() -> dt.datetime:
        return NOW


def nul(received_at: float, payload: bytes) -> Request:
    return Request(f"{0:020d}-{'0' * 32}", received_at, bytes(9), (payload, b"", b""), False)


def test_drift_is_from_when_the_frame_was_received(tmp_path):
    ctx = Ctx(tmp_path)
    received = NOW.timestamp() - 600  # queued ten minutes behind a backlog
    handle_nul(ctx, None, nul(received, reading(NOW - dt.timedelta(seconds=590))))
    assert ctx.time_readings.last().drift == pytest.approx(10.0)
    script = (tmp_path / "set-clock.sh").read_text()
    assert 'date -u -s "@$(( $(date -u +%s) + (10) ))"' in script and "hwclock --systohc" in script


@pytest.mark.parametrize("lie, drift", [(1e12, 0.0), (0.0, MAX_QUEUE_AGE)])
def test_a_lying_received_at_is_clamped(tmp_path, lie, drift):
    """A compromised comm handler's timestamp cannot put an absurd drift in the script."""
    ctx = Ctx(tmp_path)
    handle_nul(ctx, None, nul(lie, reading(NOW)))
    assert ctx.time_readings.last().drift == pytest.approx(drift)
