"""Floods from the comm side, at the spool's level: bounded corrupt/, cheap wake-ups, fairness.

The comm user (untrusted) can fill incoming/ with bad entries and storm it
with events. On real directories and a real inotify watch: corrupt/ keeps at
most its bounds and counts the rest by reason, a request committed behind a
flood is claimed long before the flood is cleared, and events naming
temporary files wake nobody.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

import spool.corrupt as corrupt
import spool.entry as entry
import spool.safeio as safeio
import spool.scan as scan
from spool.corrupt import CorruptLimits
from spool.queue import Spool
from spool.watch import COMMIT_MASK, DirWatcher
from tests.support.spool import claim_request, drops

HEADER = bytes([1, 1, 0, 0, 2, 1, 0x6E, 0, 0])
TOO_SHORT = "record of N bytes is too short"  # 64 bytes of garbage


def make_spool(root: Path, **limits: int) -> Spool:
    s = Spool(root, comm_uid=os.getuid(), corrupt_limits=CorruptLimits(**limits))
    s.create_dirs()
    return s


def bogus(s: Spool, count: int, start: int = 0, size: int = 64) -> None:
    """Well-named entries older than any real request, holding garbage."""
    for i in range(start, start + count):
        (s.incoming / f"{10**15 + i:020d}-{i:032x}.req").write_bytes(b"\x01" * size)


def kept(s: Spool) -> list[str]:
    return [n for n in os.listdir(s.corrupt) if not n.endswith(".reason")]


def test_corrupt_keeps_its_entry_bound_and_counts_the_rest(tmp_path: Path) -> None:
    s = make_spool(tmp_path / "spool", max_entries=5)
    bogus(s, 20)
    (s.incoming / "not-a-request").write_bytes(b"x")
    assert s.claim_next() is None
    assert os.listdir(s.incoming) == []
    assert len(kept(s)) == 5 and all((s.corrupt / f"{n}.reason").exists() for n in kept(s))
    report = drops(s)
    assert report.counts == {TOO_SHORT: 15, "name does not match <time_ns>-<hexN>.req": 1}
    assert report.bytes >= 16 * 64 and report.skipped == 0
    assert s.drop_report() is None  # read and reset


def test_corrupt_keeps_its_byte_bound(tmp_path: Path) -> None:
    s = make_spool(tmp_path / "spool", max_bytes=64 * 2**10)
    bogus(s, 10, size=20 * 2**10)  # each takes 20 KiB and a reason
    assert s.claim_next() is None
    used = sum(os.lstat(s.corrupt / n).st_blocks * 512 for n in os.listdir(s.corrupt))
    assert 1 <= len(kept(s)) < 10 and used <= 64 * 2**10
    assert sum(drops(s).counts.values()) == 10 - len(kept(s))


def test_room_made_by_a_purge_is_used_again(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(corrupt, "RECOUNT_EVERY", 0.0)
    s = make_spool(tmp_path / "spool", max_entries=3)
    bogus(s, 5)
    assert s.claim_next() is None and len(kept(s)) == 3
    for name in os.listdir(s.corrupt):  # what `signerctl spool purge-corrupt` does
        os.unlink(s.corrupt / name)
    bogus(s, 5, start=100)
    assert s.claim_next() is None and len(kept(s)) == 3


def test_nothing_is_kept_with_zero_bounds(tmp_path: Path) -> None:
    s = make_spool(tmp_path / "spool", max_entries=0)
    bogus(s, 3)
    os.mkfifo(s.incoming / "fifo")
    os.symlink("/etc/passwd", s.incoming / f"{10**15 + 9:020d}-{9:032x}.req")
    assert s.claim_next() is None
    assert os.listdir(s.corrupt) == [] and os.listdir(s.incoming) == []
    assert os.path.exists("/etc/passwd")
    assert drops(s).counts == {
        TOO_SHORT: 3,
        "name does not match <time_ns>-<hexN>.req": 1,
        "not a regular file: symbolic link": 1,
    }


def test_a_request_behind_a_flood_is_claimed_before_the_flood_is_cleared(tmp_path: Path) -> None:
    s = make_spool(tmp_path / "spool")
    bogus(s, 3000)
    request_id = s.enqueue(HEADER, (b"real", b"", b""), received_at=time.time())
    assert claim_request(s).id == request_id
    assert len(os.listdir(s.incoming)) >= 3000 - 2 * scan.PEEK_EVERY
    assert s.claim_next() is None and os.listdir(s.incoming) == []


def test_a_request_committed_during_a_flood_is_claimed_at_the_next_rescan(
    tmp_path: Path, monkeypatch
) -> None:
    """The comm user commits the real request while the signer is clearing an old listing."""
    monkeypatch.setattr(scan, "RESCAN_EVERY", 0.0)
    s = make_spool(tmp_path / "spool")
    bogus(s, 3000)
    committed: list[str] = []
    real_read = safeio.read_hostile  # what spool.entry imported

    def read_then_commit(*args, **kwargs):
        if not committed:  # once the signer has its listing and is at work on it
            committed.append(s.enqueue(HEADER, (b"real", b"", b""), received_at=time.time()))
        return real_read(*args, **kwargs)

    monkeypatch.setattr(entry, "read_hostile", read_then_commit)
    assert claim_request(s).id == committed[0]
    assert len(os.listdir(s.incoming)) >= 3000 - 2 * scan.PEEK_EVERY


def test_without_refusals_the_order_stays_oldest_first(tmp_path: Path) -> None:
    s = make_spool(tmp_path / "spool")
    ids = [s.enqueue(HEADER, (b"%d" % i, b"", b""), received_at=1.0) for i in range(300)]
    claimed = []
    while (request := s.claim_next()) is not None:
        claimed.append(request.id)
    assert claimed == ids


def test_clearing_cost_per_bad_entry_is_bounded(tmp_path: Path) -> None:
    s = make_spool(tmp_path / "spool")
    bogus(s, 10_000)
    started = time.monotonic()
    assert s.claim_next() is None
    elapsed = time.monotonic() - started
    print(f"\n10,000 bad entries cleared in {elapsed:.2f} s ({elapsed / 10_000 * 1e6:.0f} us each)")
    assert elapsed < 10.0 and len(kept(s)) == 1000


# --- the watch ---------------------------------------------------------------------


def test_events_naming_temporary_files_wake_nobody(tmp_path: Path) -> None:
    with DirWatcher(tmp_path, mask=COMMIT_MASK) as watcher:
        for i in range(50):
            (tmp_path / f".tmp{i}").write_bytes(b"x")
            (tmp_path / f".tmp{i}").unlink()
        assert watcher.wait(0.2) is False
        assert watcher.take_ignored() >= 50 and watcher.take_ignored() == 0
        (tmp_path / ".tmp").write_bytes(b"x")
        os.rename(tmp_path / ".tmp", tmp_path / "committed")  # a commit
        assert watcher.wait(1) is True
        os.unlink(tmp_path / "committed")  # deletions bring nothing to read
        assert watcher.wait(0.1) is False


def test_an_entry_made_in_place_wakes_the_watcher(tmp_path: Path) -> None:
    with DirWatcher(tmp_path, mask=COMMIT_MASK) as watcher:
        os.mkfifo(tmp_path / "made-in-place")
        assert watcher.wait(1) is True


def test_wake_ups_are_rate_bounded(tmp_path: Path) -> None:
    """Under a stream of commits the watcher reads at most once per interval, all at once."""
    stop = threading.Event()

    def commit_forever() -> None:
        i = 0
        while not stop.is_set():
            i += 1
            (tmp_path / f".t{i}").write_bytes(b"")
            os.rename(tmp_path / f".t{i}", tmp_path / f"e{i}")

    writer = threading.Thread(target=commit_forever, daemon=True)
    with DirWatcher(tmp_path, mask=COMMIT_MASK, min_interval=0.05, burst=4) as watcher:
        writer.start()
        try:
            started, wakeups = time.monotonic(), 0
            while time.monotonic() - started < 1.0:
                wakeups += watcher.wait(1)
        finally:
            stop.set()
            writer.join()
    assert 5 <= wakeups <= 4 + 1.0 / 0.05 + 1


@pytest.mark.timing
def test_a_commit_is_seen_at_once_whatever_the_interval(tmp_path: Path) -> None:
    """A commit brings two events (its temporary's creation, its rename): no wait between them."""
    with DirWatcher(tmp_path, mask=COMMIT_MASK, min_interval=5.0) as watcher:
        for i in range(3):
            (tmp_path / f".t{i}").write_bytes(b"")
            started = time.monotonic()
            threading.Timer(0.05, os.rename, (tmp_path / f".t{i}", tmp_path / f"e{i}")).start()
            assert watcher.wait(2) is True
            assert time.monotonic() - started < 1.0


@pytest.mark.timing
@pytest.mark.parametrize("interval", [0.0, 0.02])
def test_a_wait_returns_on_time_whatever_the_interval(tmp_path: Path, interval: float) -> None:
    with DirWatcher(tmp_path, mask=COMMIT_MASK, min_interval=interval) as watcher:
        (tmp_path / "x").write_bytes(b"")
        assert watcher.wait(1) is True
        started = time.monotonic()
        assert watcher.wait(0.1) is False
        assert 0.09 <= time.monotonic() - started < 0.5


# --- configuration -----------------------------------------------------------------


def test_both_daemons_read_the_spool_limits_section(tmp_path: Path) -> None:
    from comm_handler.config import load_comm_config
    from signer_core.config import load_config
    from spool.settings import ConfigError

    config = tmp_path / "signer.toml"
    base = '[comm]\ndevice = "/dev/null"\n[spool]\ndir = "spool"\n'
    config.write_text(base)
    assert load_config(config).spool_limits == CorruptLimits(1000, 16 * 2**20)
    config.write_text(base + "corrupt_max_entries = 5\ncorrupt_max_bytes = 0\n")
    assert load_config(config).spool_limits == CorruptLimits(5, 0)
    assert load_comm_config(config).spool_dir == tmp_path / "spool"  # the same [spool] reader
    for bad in ("corrupt_max_entries = -1", 'corrupt_max_bytes = "16 MiB"', "corrupt_max = 1"):
        config.write_text(base + bad + "\n")
        for load in (load_config, load_comm_config):
            with pytest.raises(ConfigError, match=r"spool\.corrupt_max"):
                load(config)
