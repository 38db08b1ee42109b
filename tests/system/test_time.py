"""Absurd keep-alives through the real daemons: counted, shown, never in the clock script."""

from __future__ import annotations

import datetime as dt
import json
import time

from webhost.client import WebClient

EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
LAST_SECOND = dt.datetime(9999, 12, 31, 23, 59, 59, tzinfo=dt.UTC)
DAEMONS = ("signer-core", "signer-comm")


def wait_for(query, appliance, check, timeout: float = 10.0):
    """The row ``query`` gives once ``check`` accepts it; the signer works behind the link."""
    deadline = time.monotonic() + timeout
    while True:
        if not (appliance.directory / "lib" / "ca.sqlite").exists():
            # The comm handler answers keep-alives itself: the signer may still be starting.
            row = None
        else:
            with appliance.db() as db:
                tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master")}
                row = (
                    db.execute(query).fetchone()
                    if {"time_last", "time_rejected"} <= tables
                    else None
                )
        if check(row):
            return row
        assert time.monotonic() < deadline, f"still {row} after {timeout} s"
        time.sleep(0.1)


def keep_alive(appliance, when: dt.datetime | None = None) -> None:
    with WebClient(appliance.link) as client:
        assert client.nul(now=when).ok  # the web host hears nothing of a rejection


def last_received(appliance, after: float = 0.0) -> float:
    query = "SELECT received_at FROM time_last"
    return wait_for(query, appliance, lambda row: row is not None and row[0] > after)[0]


def rejected(appliance, count: int) -> tuple[int, int, str]:
    query = "SELECT count, run, reason FROM time_rejected"
    return wait_for(query, appliance, lambda row: row is not None and row[0] >= count)


def test_absurd_keep_alives_leave_the_clock_script_alone(appliance):
    pids = {name: appliance.supervisor.pid(name) for name in DAEMONS}
    received = last_received(appliance)  # the fixture's own keep-alive
    script = appliance.directory / "lib" / "set-clock.sh"
    before = script.read_bytes()
    sent = time.time()
    keep_alive(appliance, EPOCH)
    keep_alive(appliance, LAST_SECOND)
    count, run, reason = rejected(appliance, 2)
    assert (count, run) == (2, 2) and "9999-12-31" in reason
    assert script.read_bytes() == before
    assert last_received(appliance) < sent
    with appliance.db() as db:
        refusals = [
            json.loads(d)
            for (d,) in db.execute("SELECT details FROM audit WHERE event = 'refused'")
        ]
    assert [r["code"] for r in refusals] == ["implausible-time"]  # once for the run
    assert "1970-01-01" in refusals[0]["reason"]

    keep_alive(appliance)
    last_received(appliance, after=received)
    with appliance.db() as db:
        (drift,) = db.execute("SELECT drift FROM time_last").fetchone()
        assert db.execute("SELECT run FROM time_rejected").fetchone() == (0,)
    assert abs(drift) < 5
    assert {name: appliance.supervisor.pid(name) for name in DAEMONS} == pids
    appliance.assert_alive()


def test_signerctl_shows_the_rejected_readings(appliance, ctl, ctl_json):
    keep_alive(appliance, EPOCH)
    rejected(appliance, 1)
    shown = ctl_json(appliance, "time")["last"]
    assert (shown["rejected"], shown["rejected_in_a_row"]) == (1, 1)
    assert shown["last_rejected"]["web_time"] == "1970-01-01T00:00:00+00:00"
    assert "before the earliest root became valid" in shown["last_rejected"]["reason"]
    assert abs(shown["drift_seconds"]) < 5  # the believed reading is still the fixture's
    status = ctl_json(appliance, "status")["time"]
    assert status["rejected"] == 1 and status["last_rejected"] == shown["last_rejected"]
    for command in ("time", "status"):
        human = ctl(appliance, command).stdout.decode()
        assert "rejected: 1\n" in human and shown["last_rejected"]["reason"] in human
