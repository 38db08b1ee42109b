"""Spool state machine on real directories: commit, FIFO, recovery, results, operators' view."""

from __future__ import annotations

import os
import stat
import threading
import time
from pathlib import Path

import pytest
from inotify_simple import INotify, flags

from spool.queue import Spool
from spool.record import (
    Receipt,
    Request,
    Result,
    SpoolFormatError,
    decode_request,
    encode_receipt,
    encode_request,
    encode_result,
)
from spool.watch import WATCH_MASK, DirWatcher
from tests.support.spool import claim_request

HEADER = bytes([1, 1, 0, 0, 2, 1, 0x6E, 0, 0])


@pytest.fixture
def spool(tmp_path: Path) -> Spool:
    s = Spool(tmp_path / "spool", comm_uid=os.getuid())
    s.create_dirs()
    return s


def enqueue(s: Spool, tag: bytes = b"csr", reply: bool = True) -> str:
    return s.enqueue(HEADER, (tag, b"san", b"subject"), received_at=time.time(), reply=reply)


def mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def test_directory_modes(spool: Spool) -> None:
    assert mode(spool.root) == 0o755
    assert {s: mode(spool.root / s) for s in ("incoming", "active", "results", "corrupt")} == {
        "incoming": 0o1770,
        "active": 0o700,
        "results": 0o2750,
        "corrupt": 0o700,
    }
    os.chmod(spool.active, 0o777)
    spool.create_dirs()  # repairs
    assert mode(spool.active) == 0o700


def test_full_cycle_with_file_modes(spool: Spool) -> None:
    old = os.umask(0o077)  # the commit must not depend on the caller's umask
    try:
        request_id = spool.enqueue(HEADER, (b"p1", b"p2", b"p3"), received_at=1234.5, reply=False)
    finally:
        os.umask(old)
    incoming = spool.incoming / f"{request_id}.req"
    assert mode(incoming) == 0o644
    assert os.listdir(spool.incoming) == [incoming.name]  # no temp file left behind

    request = claim_request(spool)
    assert request == Request(request_id, 1234.5, HEADER, (b"p1", b"p2", b"p3"), False)
    assert not incoming.exists()
    active = spool.active / incoming.name
    assert mode(active) == 0o600
    assert decode_request(active.read_bytes()) == request

    spool.finish(request, Result(request_id, 1, b"cert", b""))
    assert not active.exists()
    result_path = spool.results / f"{request_id}.res"
    assert mode(result_path) == 0o640
    assert spool.wait_result(request_id, 0) == Result(request_id, 1, b"cert", b"")
    assert spool.counts() == {"incoming": 0, "active": 0, "results": 1, "corrupt": 0}


def test_fifo_order(spool: Spool) -> None:
    ids = [enqueue(spool, b"%d" % i) for i in range(60)]
    assert ids == sorted(ids) and len(set(ids)) == 60
    claimed: list[Request] = []
    while (request := spool.claim_next()) is not None:
        assert isinstance(request, Request)
        claimed.append(request)
    assert [r.id for r in claimed] == ids
    assert [r.payloads[0] for r in claimed] == [b"%d" % i for i in range(60)]


def test_receipts_come_in_order_and_leave_nothing_behind(spool: Spool) -> None:
    first = enqueue(spool)
    receipt_id = spool.deliver(first)
    second = enqueue(spool)
    assert mode(spool.incoming / f"{receipt_id}.dlv") == 0o644
    claimed = [spool.claim_next(), spool.claim_next(), spool.claim_next()]
    assert [type(c).__name__ for c in claimed] == ["Request", "Receipt", "Request"]
    assert claimed[1] == Receipt(receipt_id, first)
    assert isinstance(claimed[2], Request) and claimed[2].id == second
    assert spool.claim_next() is None
    assert os.listdir(spool.incoming) == []
    assert spool.counts()["corrupt"] == 0


@pytest.mark.parametrize(
    "name, data, reason",
    [
        ("01795898819128038868-be1a0e1af7c54478a0de33ad6b46d3df.dlv", b"junk", "too short"),
        (
            "01795898819128038868-be1a0e1af7c54478a0de33ad6b46d3df.dlv",
            encode_receipt(
                Receipt(
                    "01795898819128038868-00000000000000000000000000000000",
                    "01795898819128038868-be1a0e1af7c54478a0de33ad6b46d3df",
                )
            ),
            "file holds id",
        ),
        ("x.dlv", b"", "does not match"),
    ],
)
def test_bad_receipts_go_to_corrupt(spool: Spool, name, data, reason) -> None:
    (spool.incoming / name).write_bytes(data)
    assert spool.claim_next() is None
    assert reason in (spool.corrupt / f"{name}.reason").read_text()


def test_receipt_as_a_directory_is_refused_not_fatal(spool: Spool) -> None:
    (spool.incoming / "01795898819128038868-be1a0e1af7c54478a0de33ad6b46d3df.dlv").mkdir()
    request_id = enqueue(spool)
    assert claim_request(spool).id == request_id
    assert spool.counts()["corrupt"] == 1


def test_claim_sees_entries_committed_after_its_scan(spool: Spool) -> None:
    first = enqueue(spool)
    assert claim_request(spool).id == first
    second = enqueue(spool)
    assert claim_request(spool).id == second
    assert spool.claim_next() is None


def test_crash_recovery_returns_active_requests(spool: Spool) -> None:
    ids = [enqueue(spool, b"%d" % i) for i in range(3)]
    claimed = [spool.claim_next(), spool.claim_next()]
    # The signer dies here; a new process starts over on the same spool.
    restarted = Spool(spool.root, comm_uid=os.getuid())
    assert restarted.recover() == claimed
    assert claim_request(restarted).id == ids[2]
    assert restarted.claim_next() is None


def test_crash_between_copy_and_unlink_is_handled_once(spool: Spool) -> None:
    request_id = enqueue(spool)
    name = f"{request_id}.req"
    original = (spool.incoming / name).read_bytes()
    request = claim_request(spool)
    (spool.incoming / name).write_bytes(original)  # as if the unlink never happened
    os.chmod(spool.incoming / name, 0o644)
    restarted = Spool(spool.root, comm_uid=os.getuid())
    assert restarted.recover() == [request]
    assert restarted.claim_next() is None  # duplicate of the active copy: dropped
    assert os.listdir(spool.incoming) == []
    assert spool.counts()["corrupt"] == 0


def test_same_id_with_other_content_goes_to_corrupt(spool: Spool) -> None:
    enqueue(spool)
    request = claim_request(spool)
    forged = Request(request.id, 0.0, HEADER, (b"other", b"", b""), True)
    (spool.incoming / f"{request.id}.req").write_bytes(encode_request(forged))
    assert spool.claim_next() is None
    assert decode_request((spool.active / f"{request.id}.req").read_bytes()) == request
    reason = (spool.corrupt / f"{request.id}.req.reason").read_text()
    assert "differs from the active request" in reason


def test_torn_temp_files_are_ignored_and_cleaned(spool: Spool) -> None:
    good = encode_request(
        Request(f"{time.time_ns():020d}-{'a' * 32}", 0.0, HEADER, (b"", b"", b""), True)
    )
    for directory in (spool.incoming, spool.active, spool.results):
        (directory / ".torn.tmp").write_bytes(good[:40])
    assert spool.claim_next() is None
    assert spool.recover() == []
    assert spool.counts() == {"incoming": 0, "active": 0, "results": 0, "corrupt": 0}
    assert os.listdir(spool.active) == os.listdir(spool.results) == []  # own debris removed
    assert os.listdir(spool.incoming) == [".torn.tmp"]  # comm's: left until old enough
    assert spool.prune_temp(3600) == 0
    os.utime(spool.incoming / ".torn.tmp", (time.time() - 7200,) * 2)
    assert spool.prune_temp(3600) == 1
    assert os.listdir(spool.incoming) == []


def test_finish_twice_is_harmless_and_keeps_the_first_result(spool: Spool) -> None:
    # A crash between the result and the active copy's removal serves the
    # request again; the comm handler may already have sent the first answer.
    request_id = enqueue(spool)
    request = claim_request(spool)
    spool.finish(request, Result(request_id, 1, b"first", b""))
    spool.finish(request, Result(request_id, 1, b"", b"ERR again: second"))
    result = spool.wait_result(request_id, 0)
    assert result is not None and result.payload1 == b"first"
    assert [n for n in os.listdir(spool.results)] == [f"{request_id}.res"]
    with pytest.raises(ValueError, match="does not match"):
        spool.finish(request, Result(enqueue(spool), 1, b"", b""))
    with pytest.raises(ValueError, match="bad request id"):
        spool.finish(Request("../incoming/x", 0.0, HEADER, (b"", b"", b""), True), None)


def test_finish_without_result(spool: Spool) -> None:
    request_id = enqueue(spool, reply=False)
    spool.finish(claim_request(spool), None)
    assert spool.counts() == {"incoming": 0, "active": 0, "results": 0, "corrupt": 0}
    assert spool.wait_result(request_id, 0.05) is None


@pytest.mark.timing
def test_wait_result_times_out(spool: Spool) -> None:
    start = time.monotonic()
    assert spool.wait_result(enqueue(spool), 0.3) is None
    assert 0.29 <= time.monotonic() - start < 2


@pytest.mark.timing
def test_wait_result_wakes_on_commit(spool: Spool) -> None:
    request_id = enqueue(spool)

    def signer() -> None:
        time.sleep(0.3)
        spool.finish(claim_request(spool), Result(request_id, 2, b"done", b""))

    thread = threading.Thread(target=signer)
    start = time.monotonic()
    thread.start()
    result = spool.wait_result(request_id, 20)
    elapsed = time.monotonic() - start
    thread.join()
    assert result == Result(request_id, 2, b"done", b"")
    assert 0.29 <= elapsed < 5


def test_wait_result_refuses_a_bad_id_and_a_bad_file(spool: Spool) -> None:
    with pytest.raises(ValueError):
        spool.wait_result("../../etc/passwd", 0)
    request_id = enqueue(spool)
    (spool.results / f"{request_id}.res").write_bytes(b"garbage")
    with pytest.raises(SpoolFormatError):
        spool.wait_result(request_id, 0)
    other = enqueue(spool)
    (spool.results / f"{request_id}.res").write_bytes(encode_result(Result(other, 0, b"", b"")))
    with pytest.raises(SpoolFormatError, match="holds id"):
        spool.wait_result(request_id, 0)


def test_prune_results_by_age_in_name(spool: Spool) -> None:
    old_id = f"{time.time_ns() - 7200 * 10**9:020d}-{'b' * 32}"
    old = Request(old_id, 0.0, HEADER, (b"", b"", b""), True)
    spool.finish(old, Result(old_id, 0, b"", b""))
    new_id = enqueue(spool)
    spool.finish(claim_request(spool), Result(new_id, 0, b"", b""))
    (spool.results / ".leftover.tmp").write_bytes(b"")
    assert spool.prune_results(3600) == 1
    assert sorted(os.listdir(spool.results)) == [".leftover.tmp", f"{new_id}.res"]


def test_counts_and_oldest_age(spool: Spool) -> None:
    assert spool.oldest_age("incoming") is None
    assert spool.oldest_age("corrupt") is None
    enqueue(spool)
    time.sleep(0.2)
    enqueue(spool)
    (spool.incoming / "junk").write_bytes(b"x")
    age = spool.oldest_age("incoming")
    assert age is not None and 0.2 <= age < 5
    assert spool.counts()["incoming"] == 3
    spool.claim_next()
    spool.claim_next()
    assert spool.claim_next() is None  # junk moved aside on the way
    assert spool.counts() == {"incoming": 0, "active": 2, "results": 0, "corrupt": 1}
    corrupt_age = spool.oldest_age("corrupt")
    assert corrupt_age is not None and 0 <= corrupt_age < 5
    active_age = spool.oldest_age("active")
    assert active_age is not None and active_age >= 0.2
    with pytest.raises(ValueError):
        spool.oldest_age("../etc")


def test_dir_watcher(tmp_path: Path) -> None:
    with DirWatcher(tmp_path) as watcher:
        assert watcher.wait(0.05) is False
        (tmp_path / "f").write_bytes(b"x")
        assert watcher.wait(1) is True
        while watcher.wait(0):
            pass
        os.rename(tmp_path / "f", tmp_path / "g")
        assert watcher.wait(1) is True
        while watcher.wait(0):
            pass
        os.unlink(tmp_path / "g")
        assert watcher.wait(1) is True
    with pytest.raises(ValueError):
        watcher.wait(0)  # closed
    with pytest.raises(OSError):
        DirWatcher(tmp_path / "missing")


def test_dir_watcher_overflow_means_scan_again(tmp_path: Path) -> None:
    limit = int(Path("/proc/sys/fs/inotify/max_queued_events").read_text())
    if limit > 40000:
        pytest.skip(f"max_queued_events={limit} is too large to overflow quickly")
    with DirWatcher(tmp_path) as watcher, INotify() as witness:
        witness.add_watch(str(tmp_path), WATCH_MASK)
        files = [tmp_path / "a", tmp_path / "b"]
        for f in files:
            f.write_bytes(b"")
        for i in range(
            limit + 10
        ):  # alternate, since the kernel merges identical consecutive events
            os.utime(files[i % 2])
        assert any(event.mask & flags.Q_OVERFLOW for event in witness.read(timeout=0))
        assert watcher.wait(0) is True
        while watcher.wait(0):
            pass
        assert watcher.wait(0.05) is False


def test_an_original_outliving_its_answer_is_dropped_not_served_again(spool: Spool) -> None:
    """A crash between the active copy and the original's removal: once the copy is
    answered, the original met again is not served a second time (its answer stands)."""
    request_id = enqueue(spool)
    original = (spool.incoming / f"{request_id}.req").read_bytes()
    spool.finish(claim_request(spool), Result(request_id, 1, b"first", b""))
    (spool.incoming / f"{request_id}.req").write_bytes(original)  # as the crash left it
    assert spool.claim_next() is None
    assert os.listdir(spool.incoming) == [] and os.listdir(spool.corrupt) == []
    result = spool.wait_result(request_id, 0)
    assert result is not None and result.payload1 == b"first"


def test_an_unreadable_active_copy_is_moved_aside_not_a_storage_fault(spool: Spool) -> None:
    request_id = enqueue(spool)
    (spool.active / f"{request_id}.req").mkdir()  # ours, yet no file: refused, then replaced
    request = claim_request(spool)
    assert request.id == request_id
    assert (spool.active / f"{request_id}.req").is_file()
    assert any(n.startswith(f"{request_id}.req") for n in os.listdir(spool.corrupt))
