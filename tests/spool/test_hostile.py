"""The signer against a hostile incoming/: every bad entry goes to corrupt/ with a reason, the queue goes on."""

from __future__ import annotations

import os
import stat
import subprocess
import threading
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import spool.entry as entry
import spool.queue as queue
from spool.queue import Spool
from spool.record import Request, encode_request
from tests.support.examples import examples
from tests.support.spool import drops

HEADER = bytes([1, 1, 0, 0, 2, 1, 0x6E, 0, 0])


@pytest.fixture
def spool(tmp_path: Path) -> Spool:
    s = Spool(tmp_path / "spool", comm_uid=os.getuid())
    s.create_dirs()
    return s


def early_name(n: int = 0) -> str:
    """A valid name older than anything enqueued in the test, so it is met first."""
    return f"{10**15 + n:020d}-{n:032x}.req"


def claim_all(s: Spool) -> list[Request]:
    """Claim in a thread so that a hang fails the test instead of blocking it."""
    claimed: list[Request] = []

    def run() -> None:
        while (request := s.claim_next()) is not None:
            assert isinstance(request, Request), request
            claimed.append(request)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(10)
    assert not thread.is_alive(), "claim_next hung"
    return claimed


def reason(s: Spool, name: str) -> str:
    return (s.corrupt / f"{name}.reason").read_text()


def assert_queue_survives(s: Spool) -> None:
    request_id = s.enqueue(HEADER, (b"ok", b"", b""), received_at=1.0)
    assert [r.id for r in claim_all(s)] == [request_id]
    assert [n for n in os.listdir(s.incoming) if not n.startswith(".")] == []


def test_symlink_is_moved_not_followed(spool: Spool, tmp_path: Path) -> None:
    target = tmp_path / "outside.txt"
    target.write_bytes(b"secret")
    os.chmod(target, 0o600)
    name = early_name()
    os.symlink(target, spool.incoming / name)
    assert_queue_survives(spool)
    assert os.path.islink(spool.corrupt / name)
    assert os.readlink(spool.corrupt / name) == str(target)
    assert "symbolic link" in reason(spool, name)
    assert target.read_bytes() == b"secret" and os.stat(target).st_mode & 0o777 == 0o600


def test_fifo_does_not_hang(spool: Spool) -> None:
    name = early_name()
    os.mkfifo(spool.incoming / name)
    assert_queue_survives(spool)
    assert "FIFO" in reason(spool, name)


def test_hard_link_is_refused(spool: Spool, tmp_path: Path) -> None:
    request_id = spool.enqueue(HEADER, (b"linked", b"", b""), received_at=1.0)
    name = f"{request_id}.req"
    os.link(spool.incoming / name, tmp_path / "kept-by-comm")
    assert claim_all(spool) == []
    assert "2 hard links" in reason(spool, name)
    assert (tmp_path / "kept-by-comm").read_bytes() == (spool.corrupt / name).read_bytes()
    assert_queue_survives(spool)


def _bytes_read() -> int:
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    raise AssertionError("no rchar in /proc/self/io")


def test_huge_sparse_file_is_refused_without_reading(spool: Spool) -> None:
    name = early_name()
    with open(spool.incoming / name, "wb") as f:
        f.truncate(100 * 2**20)
    before = _bytes_read()
    assert claim_all(spool) == []
    assert _bytes_read() - before < 2**20
    assert "exceeds" in reason(spool, name)
    assert os.stat(spool.corrupt / name).st_size == 100 * 2**20
    assert_queue_survives(spool)


def test_wrong_owner_is_refused(tmp_path: Path) -> None:
    s = Spool(tmp_path / "spool", comm_uid=os.getuid() + 4242)
    s.create_dirs()
    request_id = s.enqueue(HEADER, (b"", b"", b""), received_at=1.0)
    assert claim_all(s) == []
    assert f"expected {os.getuid() + 4242}" in reason(s, f"{request_id}.req")


@pytest.mark.parametrize(
    "name",
    [
        "hello.txt",
        "0123.req",
        "x" * 240,
        "line\nbreak.req",
        "evil.reason",
        "caf\udce9.req",
        early_name()[:-4] + ".res",
    ],
)
def test_bad_names_go_to_corrupt(spool: Spool, name: str) -> None:
    (spool.incoming / name).write_bytes(b"whatever")
    assert_queue_survives(spool)
    reasons = [n for n in os.listdir(spool.corrupt) if n.endswith(".reason")]
    assert len(reasons) == 1
    stored = reasons[0][: -len(".reason")]
    assert (spool.corrupt / stored).read_bytes() == b"whatever"
    text = (spool.corrupt / reasons[0]).read_text()
    assert "name does not match" in text and repr(name) in text


@pytest.mark.parametrize(
    "content, why",
    [
        (b"", "too short"),
        (b"garbage" * 20, "bad magic"),
        (b"\x00" * 5000, "bad magic"),
    ],
)
def test_garbage_content_goes_to_corrupt(spool: Spool, content: bytes, why: str) -> None:
    name = early_name()
    (spool.incoming / name).write_bytes(content)
    assert_queue_survives(spool)
    assert why in reason(spool, name)


def test_torn_or_edited_or_misnamed_records_go_to_corrupt(spool: Spool) -> None:
    record = encode_request(Request(early_name(1)[:-4], 1.0, HEADER, (b"a" * 100, b"", b""), True))
    (spool.incoming / early_name(1)).write_bytes(record[: len(record) // 2])
    (spool.incoming / early_name(2)).write_bytes(record[:70] + b"b" + record[71:])
    (spool.incoming / early_name(3)).write_bytes(record)  # valid record, other name
    assert_queue_survives(spool)
    assert "checksum" in reason(spool, early_name(1))
    assert "checksum" in reason(spool, early_name(2))
    assert "holds id" in reason(spool, early_name(3))


def test_directory_and_unreadable_file(spool: Spool) -> None:
    (spool.incoming / early_name(1)).mkdir()
    unreadable = spool.incoming / early_name(2)
    unreadable.write_bytes(b"x")
    os.chmod(unreadable, 0)
    assert_queue_survives(spool)
    assert "directory" in reason(spool, early_name(1))
    assert (spool.corrupt / early_name(2)).exists()


def test_name_collision_in_corrupt_keeps_both(spool: Spool) -> None:
    for content in (b"first", b"second"):
        (spool.incoming / "dup").write_bytes(content)
        assert claim_all(spool) == []
    stored = sorted(
        (spool.corrupt / n).read_bytes()
        for n in os.listdir(spool.corrupt)
        if not n.endswith(".reason")
    )
    assert stored == [b"first", b"second"]
    assert spool.counts()["corrupt"] == 2


def test_bad_entry_in_active_goes_to_corrupt_on_recover(spool: Spool) -> None:
    good = spool.enqueue(HEADER, (b"", b"", b""), received_at=1.0)
    spool.claim_next()
    (spool.active / early_name()).write_bytes(b"torn")
    os.symlink("/etc/passwd", spool.active / early_name(1))
    assert [r.id for r in spool.recover()] == [good]
    assert "too short" in reason(spool, early_name())
    assert "symbolic link" in reason(spool, early_name(1))


def test_many_hostile_entries_do_not_stop_the_queue(spool: Spool, tmp_path: Path) -> None:
    target = tmp_path / "t"
    target.write_bytes(b"t")
    for i in range(50):
        kind = i % 3
        path = spool.incoming / early_name(i)
        if kind == 0:
            os.symlink(target, path)
        elif kind == 1:
            os.mkfifo(path)
        else:
            path.write_bytes(os.urandom(i * 10))
    ids = [spool.enqueue(HEADER, (b"%d" % i, b"", b""), received_at=time.time()) for i in range(5)]
    assert [r.id for r in claim_all(spool)] == ids
    assert spool.counts() == {"incoming": 0, "active": 5, "results": 0, "corrupt": 50}


def test_device_node_is_never_opened(spool: Spool) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to create a device node")
    name = early_name()
    os.mknod(spool.incoming / name, 0o666 | stat.S_IFCHR, os.makedev(1, 3))  # /dev/null's numbers
    assert_queue_survives(spool)
    assert "character device" in reason(spool, name)


def _mutate(record: bytes):
    return st.one_of(
        st.binary(max_size=400),
        st.integers(0, len(record)).map(lambda n: record[:n]),
        st.tuples(st.integers(0, len(record) - 1), st.integers(1, 255)).map(
            lambda t: record[: t[0]] + bytes([record[t[0]] ^ t[1]]) + record[t[0] + 1 :]
        ),
    )


@settings(
    max_examples=examples(60),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(data=st.data())
def test_claim_never_raises_on_fuzzed_files(spool: Spool, data) -> None:
    name = early_name()
    record = encode_request(Request(name[:-4], 1.0, HEADER, (b"abc", b"", b""), True))
    content = data.draw(_mutate(record))
    (spool.incoming / name).write_bytes(content)
    claimed = claim_all(spool)
    if content == record:
        assert [r.id for r in claimed] == [name[:-4]]
        (spool.active / name).unlink()
    else:
        assert claimed == []
        assert (spool.corrupt / name).read_bytes() == content
        for leftover in (spool.corrupt / name, spool.corrupt / f"{name}.reason"):
            leftover.unlink()
    assert os.listdir(spool.incoming) == []


def test_comm_holding_an_open_fd_cannot_alter_the_claimed_request(spool: Spool) -> None:
    request_id = spool.enqueue(HEADER, (b"original", b"", b""), received_at=1.0)
    fd = os.open(spool.incoming / f"{request_id}.req", os.O_RDWR)
    try:
        claimed = claim_all(spool)
        os.pwrite(fd, b"X" * 200, 0)
    finally:
        os.close(fd)
    assert [r.payloads[0] for r in claimed] == [b"original"]
    assert [r.payloads[0] for r in Spool(spool.root).recover()] == [b"original"]


# --- the comm user swaps its entry for a directory while the signer claims it ---------
# The swap cannot be timed from another process, so the filesystem call the
# signer makes just before its unlink performs it: the comm user's action,
# at the worst moment, against our real code and a real directory.


def _swap_for_directory_on(
    monkeypatch, module, target: str, path: Path, *, immovable=False
) -> None:
    """Replace ``path`` by a directory right after ``<module>.<target>`` returns.

    ``immovable``: a directory with something in it that nobody may rename or
    remove (chattr +i), as a comm user's 0755 directory is to the signer.
    """
    real = getattr(module, target)

    def swapping(*args, **kwargs):
        value = real(*args, **kwargs)
        if path.is_file():
            path.unlink()
            path.mkdir()
            if immovable:
                (path / "inside").write_bytes(b"x")
                subprocess.run(["chattr", "+i", str(path)], check=True, capture_output=True)
        return value

    monkeypatch.setattr(module, target, swapping)


def _claim_within(s: Spool, seconds: float):
    """claim_next in a thread: its answer, and how long it took (it must neither hang nor raise)."""
    outcome: list = []

    def run() -> None:
        try:
            outcome.append(s.claim_next())
        except BaseException as exc:  # noqa: BLE001 - reported below
            outcome.append(exc)

    started = time.monotonic()
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), "claim_next hung"
    assert not isinstance(outcome[0], BaseException), repr(outcome[0])
    return outcome[0], time.monotonic() - started


def test_request_swapped_for_a_directory_after_its_read_is_served(spool: Spool, monkeypatch):
    request_id = spool.enqueue(HEADER, (b"read intact", b"", b""), received_at=1.0)
    name = f"{request_id}.req"
    _swap_for_directory_on(monkeypatch, queue, "publish", spool.incoming / name)
    claimed, took = _claim_within(spool, 10)
    assert claimed.id == request_id and claimed.payloads[0] == b"read intact"
    assert took < 1.0
    assert (spool.active / name).is_file()  # our copy is what we serve
    assert "replaced after it was read" in reason(spool, name)
    assert (spool.corrupt / name).is_dir()
    monkeypatch.undo()
    assert_queue_survives(spool)


def test_receipt_swapped_for_a_directory_after_its_read_is_handled(spool: Spool, monkeypatch):
    receipt_id = spool.deliver(f"{10**15:020d}-{0:032x}")
    name = f"{receipt_id}.dlv"
    _swap_for_directory_on(monkeypatch, entry, "read_hostile", spool.incoming / name)
    claimed, _ = _claim_within(spool, 10)
    assert claimed.id == receipt_id
    assert "replaced after it was read" in reason(spool, name)
    monkeypatch.undo()
    assert_queue_survives(spool)


def test_swapped_directory_that_cannot_be_moved_or_removed_is_skipped(spool: Spool, monkeypatch):
    """Neither rename nor rmdir works on it: one skip, no pause, no loop, the queue goes on."""
    if os.geteuid() != 0:
        pytest.skip("needs root for chattr +i")
    probe = spool.root / "probe"
    probe.mkdir()
    if subprocess.run(["chattr", "+i", str(probe)], capture_output=True).returncode != 0:
        pytest.skip("this filesystem has no immutable attribute")
    subprocess.run(["chattr", "-i", str(probe)], check=True)
    request_id = spool.enqueue(HEADER, (b"first", b"", b""), received_at=1.0)
    name = f"{request_id}.req"
    _swap_for_directory_on(monkeypatch, queue, "publish", spool.incoming / name, immovable=True)
    try:
        claimed, took = _claim_within(spool, 10)
        assert claimed.id == request_id and claimed.payloads[0] == b"first" and took < 1.0
        monkeypatch.undo()
        assert (spool.incoming / name).is_dir()
        assert drops(spool).skipped == 1
        request_id = spool.enqueue(HEADER, (b"next", b"", b""), received_at=1.0)
        claimed, took = _claim_within(spool, 10)
        assert claimed.id == request_id and took < 1.0
        assert spool.claim_next() is None  # the skipped directory is not met again
        assert spool.drop_report() is None
    finally:
        subprocess.run(["chattr", "-i", str(spool.incoming / name)], capture_output=True)
