"""The web host's time: the reading parser (hostile input), drift, history and the clock script."""

from __future__ import annotations

import datetime as dt
import itertools
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from hypothesis import given, settings
from hypothesis import strategies as st

from signer_core.config import load_config
from signer_core.config.signer import SignerConfig
from signer_core.dispatch import MAX_QUEUE_AGE, handle_nul
from signer_core.refusal import Refusal
from signer_core.roots import Root, RootStore
from signer_core.store.cadb import CADatabase
from signer_core.timesync import (
    HISTORY_INTERVAL,
    ClockRules,
    TimeReadings,
    parse_reading,
    roots_validity,
)
from spool.record import Request
from spool.settings import ConfigError
from tests.support.examples import examples

NOW = dt.datetime(2026, 11, 28, 12, 0, 0, tzinfo=dt.UTC)


def reading(when: dt.datetime) -> bytes:
    return when.strftime("%m%d%H%M%Y.%S").encode()


@given(st.datetimes(min_value=dt.datetime(1970, 1, 2), max_value=dt.datetime(9999, 12, 31)))
def test_readings_round_trip(when):
    when = when.replace(microsecond=0, tzinfo=dt.UTC)
    assert parse_reading(reading(when)) == when


@settings(max_examples=examples(2000), deadline=None)
@given(st.binary(max_size=40))
def test_anything_else_is_refused(data):
    try:
        parse_reading(data)
    except Refusal as exc:
        assert exc.code == "bad-time"


@pytest.mark.parametrize(
    "bad",
    [
        b"",
        b"1128120020260",
        b"113212002026.00",
        b"112812002026.0",
        b"022912002026.00",
        b"112812002026.00\n",
        b"112812002026.00; rm",
    ],
)
def test_malformed_readings(bad):
    with pytest.raises(Refusal):
        parse_reading(bad)


class Ctx:
    def __init__(self, tmp_path, rules: ClockRules | None = None):
        self.time_readings = TimeReadings(
            CADatabase(tmp_path / "ca.sqlite"), tmp_path, rules or ClockRules()
        )

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
    ctx = Ctx(tmp_path, ClockRules(max_drift=MAX_QUEUE_AGE))  # the drift limit aside
    handle_nul(ctx, None, nul(lie, reading(NOW)))
    assert ctx.time_readings.last().drift == pytest.approx(drift)


def test_a_week_old_received_at_is_over_the_drift_limit(tmp_path):
    ctx = Ctx(tmp_path)
    with pytest.raises(Refusal, match="implausible-time"):
        handle_nul(ctx, None, nul(0.0, reading(NOW)))
    assert ctx.time_readings.last() is None


# Implausible readings: counted, never in the clock script.

DAY = dt.timedelta(days=1)
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
LAST_SECOND = dt.datetime(9999, 12, 31, 23, 59, 59, tzinfo=dt.UTC)


def readings(tmp_path: Path, **rules) -> TimeReadings:
    return TimeReadings(CADatabase(tmp_path / "ca.sqlite"), tmp_path, ClockRules(**rules))


def at(when: dt.datetime, drift: float = 0.0) -> tuple[bytes, float]:
    """A keep-alive read at ``when + drift`` on the web host, received at ``when`` here."""
    return reading(when + dt.timedelta(seconds=drift)), when.timestamp()


def history_rows(times: TimeReadings) -> int:
    return times.conn.execute("SELECT count(*) FROM time_readings").fetchone()[0]


def test_absurd_readings_are_counted_and_the_script_kept(tmp_path):
    times = readings(tmp_path)
    times.record(*at(NOW, 10))
    script = times.script.read_bytes()
    with pytest.raises(Refusal) as refused:  # the first of a run: audited by the dispatcher
        times.record(reading(EPOCH), NOW.timestamp())
    assert refused.value.code == "implausible-time" and "1970-01-01" in refused.value.text
    times.record(reading(LAST_SECOND), NOW.timestamp() + 1)  # the same run: only counted
    times.record(*at(NOW + dt.timedelta(seconds=2), 2 * 86400))  # two days off
    rejected = times.rejected()
    assert (rejected.count, rejected.run) == (3, 3)
    assert rejected.last.drift == pytest.approx(2 * 86400)
    assert rejected.reason.endswith(
        "is 2 days ahead of this machine's clock; max_clock_drift_seconds allows 86400"
    )
    assert times.script.read_bytes() == script
    assert times.last().drift == pytest.approx(10) and history_rows(times) == 1

    times.record(*at(NOW + dt.timedelta(seconds=3), 40))
    assert times.last().drift == pytest.approx(40)
    assert b"+ (40) ))" in times.script.read_bytes()
    assert (times.rejected().count, times.rejected().run) == (3, 0)
    with pytest.raises(Refusal):  # a new run is audited again
        times.record(reading(EPOCH), NOW.timestamp() + 4)


@pytest.mark.parametrize(
    "web, why",
    [
        (NOW - 400 * DAY, "before the earliest root became valid (2025-11-28)"),
        (NOW + 400 * DAY, "after the last root expires (2027-11-28)"),
    ],
)
def test_a_reading_outside_the_roots_validity_is_rejected(tmp_path, web, why):
    """Even with a drift limit wide enough to take it, as an operator may set."""
    times = readings(
        tmp_path, max_drift=1000 * 86400.0, plausible=(NOW - 365 * DAY, NOW + 365 * DAY)
    )
    with pytest.raises(Refusal, match="implausible-time"):
        times.record(reading(web), NOW.timestamp())
    assert why in times.rejected().reason
    assert times.last() is None and not times.script.exists()
    times.record(*at(NOW, 5))
    assert times.last().drift == pytest.approx(5) and times.script.exists()


def self_signed(not_before: dt.datetime, not_after: dt.datetime) -> x509.Certificate:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test root")])
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .sign(key, hashes.SHA256())
    )


def test_the_plausible_range_spans_the_loaded_roots():
    early = self_signed(NOW - 900 * DAY, NOW + 10 * DAY)
    late = self_signed(NOW - 10 * DAY, NOW + 3000 * DAY)
    store = RootStore({0: Root(0, None, early, None), 1: Root(1, None, late, None)}, {})
    assert roots_validity(store) == (NOW - 900 * DAY, NOW + 3000 * DAY)
    assert roots_validity(RootStore({}, {2: "file missing"})) is None
    signer = SignerConfig(
        "_signer",
        "_signer",
        Path("ca.sqlite"),
        Path("."),
        max_clock_drift_seconds=3600.0,
        clock_history_step_seconds=2.0,
        clock_history_max_rows=7,
    )
    assert ClockRules.of(signer, store) == ClockRules(3600.0, 2.0, 7, roots_validity(store))


def test_jitter_around_a_steady_drift_adds_only_the_periodic_rows(tmp_path):
    times = readings(tmp_path)
    start = NOW.timestamp() + 0.5
    for i in range(1000):  # a keep-alive every 3 s, read from 3 s early to 3 s late
        web = dt.datetime.fromtimestamp(start + 3 * i + 42 + (i * 5) % 7 - 3, dt.UTC)
        times.record(reading(web), start + 3 * i)
    rows = times.history(limit=100)
    assert len(rows) == 1 + (3 * 999) // int(HISTORY_INTERVAL)
    gaps = [a.received_at - b.received_at for a, b in itertools.pairwise(rows)]
    assert all(gap >= HISTORY_INTERVAL for gap in gaps)


def test_the_periodic_row_comes_after_the_interval(tmp_path):
    times = readings(tmp_path)
    times.record(*at(NOW, 7))
    times.record(*at(NOW + dt.timedelta(seconds=HISTORY_INTERVAL - 1), 7))
    assert history_rows(times) == 1
    times.record(*at(NOW + dt.timedelta(seconds=HISTORY_INTERVAL), 7))
    assert history_rows(times) == 2


def test_a_move_past_the_step_is_a_row_and_the_history_is_bounded(tmp_path):
    times = readings(tmp_path, history_step=5.0, history_max_rows=4)
    times.record(*at(NOW, 0))
    times.record(*at(NOW + dt.timedelta(seconds=1), 5))  # not more than the step
    assert history_rows(times) == 1
    for i in range(2, 20):
        times.record(*at(NOW + dt.timedelta(seconds=i), 6 * i))
    assert [round(r.drift) for r in times.history()] == [114, 108, 102, 96]
    assert history_rows(times) == 4


@pytest.fixture(scope="module")
def shared_readings(tmp_path_factory) -> TimeReadings:
    return readings(tmp_path_factory.mktemp("time"), plausible=(NOW - 3650 * DAY, NOW + 3650 * DAY))


PAYLOADS = st.one_of(
    st.binary(min_size=15, max_size=15),
    st.from_regex(rb"\A[0-9]{12}\.[0-9]{2}\Z"),
    st.datetimes(min_value=dt.datetime(1, 1, 1)).map(reading),
)


@settings(max_examples=examples(300), deadline=None)
@given(PAYLOADS, st.floats(min_value=0, max_value=2.0**33))
def test_record_takes_any_payload_or_refuses_it(shared_readings, payload, received_at):
    try:
        parsed = parse_reading(payload)
    except Refusal:
        parsed = None
    try:
        shared_readings.record(payload, received_at)
    except Refusal as exc:
        assert exc.code == ("bad-time" if parsed is None else "implausible-time")
    else:
        assert parsed is not None


@pytest.mark.parametrize(
    "key, value",
    [
        ("max_clock_drift_seconds", "59"),
        ("max_clock_drift_seconds", "1e12"),
        ("max_clock_drift_seconds", "nan"),
        ("max_clock_drift_seconds", '"1 day"'),
        ("clock_history_step_seconds", "0"),
        ("clock_history_step_seconds", "inf"),
        ("clock_history_max_rows", "0"),
        ("clock_history_max_rows", "1.5"),
    ],
)
def test_clock_settings_out_of_range_name_the_key(tmp_path, key, value):
    config = tmp_path / "signer.toml"
    config.write_text(f'[spool]\ndir = "spool"\n[signer]\n{key} = {value}\n')
    with pytest.raises(ConfigError, match=f"signer.{key}:"):
        load_config(config)


def test_clock_settings_default_and_load(tmp_path):
    config = tmp_path / "signer.toml"
    config.write_text('[spool]\ndir = "spool"\n')
    signer = load_config(config).signer
    assert (
        signer.max_clock_drift_seconds,
        signer.clock_history_step_seconds,
        signer.clock_history_max_rows,
    ) == (86400.0, 10.0, 10_000)
    config.write_text(
        '[spool]\ndir = "spool"\n[signer]\nmax_clock_drift_seconds = 3600\n'
        "clock_history_step_seconds = 2.5\nclock_history_max_rows = 50\n"
    )
    signer = load_config(config).signer
    assert (
        signer.max_clock_drift_seconds,
        signer.clock_history_step_seconds,
        signer.clock_history_max_rows,
    ) == (3600.0, 2.5, 50)
