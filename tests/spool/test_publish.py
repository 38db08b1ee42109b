"""Publishing spool entries (``safeio.publish``) and the comm side's kept watch on results/."""

from __future__ import annotations

import errno
import os
import shutil
import stat
import threading
import time
from pathlib import Path

import pytest
from inotify_simple import INotify, flags

from spool import safeio
from spool.entry import new_id
from spool.queue import Spool
from spool.record import Result, encode_result
from spool.results import ResultWatch
from spool.safeio import publish
from spool.watch import COMMIT_MASK, DirWatcher

HEADER = bytes(9)


def _events(directory: Path, action) -> list[tuple[str, list[flags]]]:
    inotify = INotify()
    try:
        inotify.add_watch(os.fspath(directory), 0xFFF)  # every event on entries
        action()
        return [(e.name, flags.from_mask(e.mask)) for e in inotify.read(timeout=100)]
    finally:
        inotify.close()


def test_publish_makes_the_whole_file_with_its_mode_and_no_temporary_name(tmp_path: Path) -> None:
    saved = os.umask(0o077)  # the umask must not decide the mode
    try:
        events = _events(tmp_path, lambda: publish(tmp_path, "a.req", b"x" * 5000, 0o644))
    finally:
        os.umask(saved)
    path = tmp_path / "a.req"
    assert path.read_bytes() == b"x" * 5000
    st = os.lstat(path)
    assert stat.S_IMODE(st.st_mode) == 0o644 and st.st_nlink == 1
    assert os.listdir(tmp_path) == ["a.req"]
    named = {name for name, _ in events if name and not name.startswith("#")}
    assert named == {"a.req"}  # nothing under a temporary name
    created = [name for name, fl in events if flags.CREATE in fl]
    assert created == ["a.req"]


def test_a_watcher_wakes_once_per_published_entry(tmp_path: Path) -> None:
    with DirWatcher(tmp_path, mask=COMMIT_MASK) as watcher:
        for i in range(5):
            publish(tmp_path, f"{i}.req", b"data", 0o600)
        raw = watcher._inotify.read(timeout=100)
    assert sorted(e.name for e in raw) == [f"{i}.req" for i in range(5)]


def test_publish_never_replaces(tmp_path: Path) -> None:
    publish(tmp_path, "a.res", b"first", 0o640)
    with pytest.raises(FileExistsError):
        publish(tmp_path, "a.res", b"second", 0o640)
    assert (tmp_path / "a.res").read_bytes() == b"first"
    assert os.listdir(tmp_path) == ["a.res"]


def test_publish_inherits_the_group_of_a_setgid_directory(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to give the directory another group")
    tmp_path.chmod(0o2770)
    os.chown(tmp_path, -1, 1)
    publish(tmp_path, "a.res", b"x", 0o640)
    assert os.lstat(tmp_path / "a.res").st_gid == 1


def test_without_o_tmpfile_publish_renames_a_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A file system without unnamed files (NFS, some FUSE) cannot be mounted here.
    real_open = os.open

    def no_tmpfile(path, flags_, *args):
        if flags_ & os.O_TMPFILE == os.O_TMPFILE:
            raise OSError(errno.EOPNOTSUPP, "Operation not supported")
        return real_open(path, flags_, *args)

    monkeypatch.setattr(os, "open", no_tmpfile)
    publish(tmp_path, "a.req", b"data", 0o644)
    assert (tmp_path / "a.req").read_bytes() == b"data"
    assert stat.S_IMODE(os.lstat(tmp_path / "a.req").st_mode) == 0o644
    with pytest.raises(FileExistsError):
        publish(tmp_path, "a.req", b"other", 0o644)
    assert os.listdir(tmp_path) == ["a.req"]


def test_publish_leaves_nothing_when_the_write_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full(fd: int, data: bytes) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(safeio, "write_all", full)
    with pytest.raises(OSError, match="No space"):
        publish(tmp_path, "a.req", b"data", 0o644)
    assert os.listdir(tmp_path) == []


def _inotify_fds() -> int:
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            count += os.readlink(f"/proc/self/fd/{fd}") == "anon_inode:inotify"
        except OSError:
            pass
    return count


def _answer_soon(spool: Spool, request_id: str) -> threading.Thread:
    def signer() -> None:
        request = spool.claim_next()
        assert request is not None
        spool.finish(request, Result(request_id, 1, b"ok", b""))  # type: ignore[arg-type]

    thread = threading.Thread(target=signer)
    thread.start()
    return thread


def test_the_comm_side_keeps_one_watch_on_results(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    spool.create_dirs()
    before = _inotify_fds()
    for _ in range(5):
        request_id = spool.enqueue(HEADER, (b"", b"", b""), received_at=0.0)
        thread = _answer_soon(spool, request_id)
        assert spool.wait_result(request_id, 20) == Result(request_id, 1, b"ok", b"")
        thread.join()
        assert _inotify_fds() == before + 1  # the same watch, kept between waits


def test_a_results_directory_made_anew_is_watched_again(tmp_path: Path) -> None:
    watch = ResultWatch(tmp_path / "results")
    (tmp_path / "results").mkdir()
    request_id = new_id()
    try:
        assert watch.wait(request_id, 0.01) is None  # opens the watch
        shutil.rmtree(tmp_path / "results")
        (tmp_path / "results").mkdir()
        assert watch.wait(request_id, 0.05) is None  # sees the old watch dropped
        assert watch._watcher is not None and watch._watcher.gone
        done = Result(request_id, 1, b"ok", b"")
        timer = threading.Timer(0.2, publish, (tmp_path / "results", f"{request_id}.res"))
        timer.kwargs = {"data": encode_result(done), "mode": 0o640}
        timer.start()
        started = time.monotonic()
        assert watch.wait(request_id, 10) == done
        assert time.monotonic() - started < 8  # woken by the new watch, not the timeout
        timer.join()
        assert watch._watcher is not None and not watch._watcher.gone
    finally:
        watch.close()
