"""Power loss, a full disk and a lost inotify queue: what the signer does about each.

Power loss cannot be caused in a test, so the test checks what survives it:
the database runs with synchronous=FULL, and ``strace`` of a real signer
shows the one durable flush per certificate in its place (the issuance's
commit, before the result is published) and no flush of the spool, which is
a volatile handoff. A full disk is a real small tmpfs under the spool and
the database; the inotify overflow is a real kernel queue cut to a few events.
Assertions are on the CA database, the audit chain, the spool and what the
client received.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from inotify_simple import INotify, flags

from signer_core.store.cadb import CADatabase
from signerctl.demo.ca import create_demo_ca
from signerctl.demo.rig import (
    LoneSigner,
    audit_events,
    audit_verdict,
    cert_rows,
    enqueue_as_comm,
    sign_x509,
    spool_names,
    wait_spool_settled,
    wait_until,
)
from signerctl.demo.run import demo_request
from webhost.client import WebClient

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (mount, sysctl)")


def test_database_runs_with_full_durability(world_dir):
    db = CADatabase(world_dir / "lib" / "ca.sqlite")  # opened exactly as the signer opens it
    try:
        assert db.connection.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
        assert db.connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        db.close()


# --- commit order under strace ------------------------------------------------

TRACE_LINE = re.compile(r"^(\d+)\s+(\w+)\((.*)\)\s+=\s+(-?\d+)")
PATH_ARG = re.compile(r'"([^"]*)"')
FD_PATH = re.compile(r"^\d+<(.*)>$")


def joined_lines(text: str) -> list[str]:
    """strace's lines with each call that another task interrupted put back together:
    ``PID name(args <unfinished ...>`` and later ``PID <... name resumed>rest``."""
    pending: dict[str, str] = {}
    lines = []
    for line in text.splitlines():
        pid, rest = (line.split(None, 1) + [""])[:2]
        if rest.endswith(" <unfinished ...>"):
            pending[pid] = line[: -len(" <unfinished ...>")]
        elif rest.startswith("<... ") and pid in pending:
            lines.append(pending.pop(pid) + rest.split(" resumed>", 1)[-1])
        else:
            lines.append(line)
    return lines


LINK_DIR = re.compile(r"^\s*\w+(?:<[^>]*>)?,\s*\"[^\"]*\",\s*\d+<([^>]*)>,\s*\"([^\"]*)\"")


def syscalls(trace: Path, pid: int) -> list[tuple[str, list[str], int]]:
    """(name, string arguments or the fd's path, result) of ``pid``'s completed calls.

    A ``linkat`` (how spool entries are published) gives the path it made."""
    calls = []
    for line in joined_lines(trace.read_text(errors="replace")):
        match = TRACE_LINE.match(line)
        if match is None or int(match.group(1)) != pid:
            continue
        name, args, result = match.group(2), match.group(3), int(match.group(4))
        if name in ("fsync", "fdatasync"):
            fd = FD_PATH.match(args.split(",")[0].strip())
            paths = [fd.group(1)] if fd else []
        elif name == "linkat" and (made := LINK_DIR.match(args)):
            paths = [f"{made.group(1)}/{made.group(2)}"]
        else:
            paths = PATH_ARG.findall(args)
        calls.append((name, paths, result))
    return calls


def unlink_of(calls, path: Path) -> int:
    return next(
        i
        for i, c in enumerate(calls)
        if c[0].startswith("unlink") and c[1][-1:] == [str(path)] and c[2] == 0
    )


def is_sync(call, path_end: str) -> bool:
    return call[0] in ("fsync", "fdatasync") and bool(call[1]) and call[1][0].endswith(path_end)


def published(calls, path: Path) -> int:
    return next(i for i, c in enumerate(calls) if c[0] == "linkat" and c[1] == [str(path)])


@pytest.mark.skipif(
    subprocess.run(["which", "strace"], capture_output=True, check=False).returncode != 0,
    reason="strace is not installed",
)
def test_one_durable_flush_per_certificate_before_its_result(world_dir, users):
    config = create_demo_ca(world_dir / "ca", users, "/dev/null")
    spool_dir = world_dir / "ca" / "spool"
    ids = enqueue_as_comm(spool_dir, users, ["sign one", "nul", "sign two"])
    (world_dir / "log").mkdir()
    trace = world_dir / "trace"
    signer = LoneSigner(
        config,
        world_dir / "log" / "signer.log",
        wrapper=[
            "strace",
            "-f",
            "-qq",
            "-y",
            "-o",
            str(trace),
            "-e",
            "trace=fsync,fdatasync,linkat,rename,renameat,renameat2,openat,unlink,unlinkat",
        ],
    )
    try:
        wait_until(lambda: len(spool_names(spool_dir, "results")) == 2, 60, "two results")
        wait_spool_settled(spool_dir)
    finally:
        signer.stop()
    pid = int(trace.read_text().split(None, 1)[0])  # strace's first child: the signer
    calls = syscalls(trace, pid)
    syncs = [c for c in calls if c[0] in ("fsync", "fdatasync")]
    assert syncs and not [c for c in syncs if str(spool_dir) in c[1][0]], "the spool is flushed"
    assert not [c for c in calls if c[0].startswith("rename") and str(spool_dir) in c[1][-1]]
    claims = {i: published(calls, spool_dir / "active" / f"{i}.req") for i in ids}
    for request_id in ids:  # the comm handler's entry goes only once the copy exists
        assert claims[request_id] < unlink_of(calls, spool_dir / "incoming" / f"{request_id}.req")
    for request_id in (ids[0], ids[2]):
        result = published(calls, spool_dir / "results" / f"{request_id}.res")
        between = calls[claims[request_id] : result]
        flushes = [c for c in between if c[0] in ("fsync", "fdatasync")]
        assert len(flushes) == 1 and is_sync(flushes[0], "ca.sqlite-wal"), flushes
        # The unnamed result file is made after the flush: nothing is published before it.
        result_open = min(
            j
            for j in range(claims[request_id], result)
            if calls[j][0] == "openat" and calls[j][1][:1] == [str(spool_dir / "results")]
        )
        assert calls.index(flushes[0], claims[request_id]) < result_open
        assert result < unlink_of(calls, spool_dir / "active" / f"{request_id}.req")
    # A keep-alive's reading is not flushed; only the clock script is, when the
    # reading enters the history (here the first one; later every 10 minutes at most).
    keep_alive = calls[claims[ids[1]] : claims[ids[2]]]
    flushed = {c[1][0] for c in keep_alive if c[0] in ("fsync", "fdatasync")}
    lib = world_dir / "ca" / "lib"
    assert all(p == str(lib) or p.startswith(f"{lib}/.set-clock.sh.") for p in flushed), flushed
    rows = cert_rows(world_dir / "ca" / "lib" / "ca.sqlite")
    assert [state for _, _, state, _ in rows] == ["issued", "issued"]


# --- inotify queue overflow ---------------------------------------------------

QUEUE_LIMIT = Path("/proc/sys/fs/inotify/max_queued_events")


@needs_root
def test_inotify_overflow_is_survived_by_rescanning(world_dir, users):
    """A queue of 8 events: a burst of 300 requests overflows it; each one is still served."""
    config = create_demo_ca(world_dir / "ca", users, "/dev/null")
    spool_dir = world_dir / "ca" / "spool"
    db_path = world_dir / "ca" / "lib" / "ca.sqlite"
    (world_dir / "log").mkdir()
    saved = QUEUE_LIMIT.read_text()
    signer = probe = None
    try:
        QUEUE_LIMIT.write_text("8\n")  # read by inotify_init: applies to watches made from now
        signer = LoneSigner(config, world_dir / "log" / "signer.log")
        probe = INotify()
        probe.add_watch(str(spool_dir / "incoming"), flags.CREATE | flags.MOVED_TO)
        enqueue_as_comm(spool_dir, users, ["nul"])  # served once the signer watches and scans
        wait_spool_settled(spool_dir)
        QUEUE_LIMIT.write_text(saved)  # both watches keep their 8; spare every other process
        plan = [f"sign burst{i}" if i % 10 == 0 else "nul" for i in range(300)]
        enqueue_as_comm(spool_dir, users, plan)
        wait_spool_settled(spool_dir, 120)
        events = probe.read(timeout=0)
        assert any(e.mask & flags.Q_OVERFLOW for e in events), "the burst did not overflow a queue"
    finally:
        QUEUE_LIMIT.write_text(saved)
        if probe is not None:
            probe.close()
        if signer is not None:
            signer.stop()
    assert len(spool_names(spool_dir, "results")) == 30
    assert spool_names(spool_dir, "corrupt") == []
    assert [state for _, _, state, _ in cert_rows(db_path)] == ["issued"] * 30
    assert audit_verdict(db_path).ok


# --- disk full ----------------------------------------------------------------

TMPFS_SIZE = "16m"


@pytest.fixture
def small_disk(world_dir):
    """The demo CA's directory (keys, spool, database) on a 16 MiB tmpfs."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mount = world_dir / "ca"
    mount.mkdir()
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={TMPFS_SIZE},mode=0755", "tmpfs", str(mount)],
        check=True,
    )
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(directory: Path) -> Path:
    """Fill the file system holding ``directory`` to the last byte; return the filler."""
    filler = directory / "filler"
    chunk = b"\0" * 65536
    with open(filler, "wb", buffering=0) as f:
        for size in (65536, 4096, 512, 1):
            try:
                while True:
                    f.write(chunk[:size])
            except OSError:
                continue
    assert os.statvfs(directory).f_bavail == 0
    return filler


def receipt_taken(spool_dir: Path) -> None:
    """The delivery receipt of the one answer so far is recorded: the signer will write
    nothing more on its own, so what a test leaves of the disk stays for the request."""
    db_path = spool_dir.parent / "lib" / "ca.sqlite"
    wait_until(lambda: len(audit_events(db_path, "delivered")) == 1, 10, "the receipt")


def test_disk_full_refuses_and_resumes(small_disk, appliance, retry):
    db_path = appliance.directory / "lib" / "ca.sqlite"
    spool_dir = appliance.directory / "spool"
    with WebClient(appliance.link, response_timeout=30) as client:
        before = sign_x509(client, demo_request(), "before")
        assert before.ok
        receipt_taken(spool_dir)
        filler = fill(small_disk)
        csr = demo_request()
        refused = sign_x509(client, csr, "during")
        assert refused.payload1 == b"" and refused.payload2.startswith(b"ERR spool-unavailable: ")
        nul = client.nul()
        assert not nul.ok and nul.payload2.startswith(b"ERR spool-unavailable: ")
        # What was committed before is whole while the disk is full.
        assert [state for _, _, state, _ in cert_rows(db_path)] == ["issued"]
        der = x509.load_pem_x509_certificate(before.payload1).public_bytes(Encoding.DER)
        assert cert_rows(db_path)[0][3] == der
        assert audit_verdict(db_path).ok
        assert spool_names(spool_dir, "incoming") == spool_names(spool_dir, "active") == []
        filler.unlink()
        after = retry(lambda: sign_x509(client, csr, "during"))
    assert after.response is not None and after.response.ok, after.failures
    assert [state for _, _, state, _ in cert_rows(db_path)] == ["issued", "issued"]
    assert audit_verdict(db_path).ok
    wait_spool_settled(spool_dir)
    appliance.assert_alive()


def test_disk_full_under_the_signer_keeps_the_request_until_space_returns(small_disk, appliance):
    """The comm handler commits a request into the last free page; the signer cannot copy it.

    The signer must neither crash (a restart storm) nor drop or refuse the
    request for the disk's sake: it keeps it and serves it once space returns,
    while the comm handler is still waiting to answer the client.
    """
    db_path = appliance.directory / "lib" / "ca.sqlite"
    spool_dir = appliance.directory / "spool"
    answers: list = []
    with WebClient(appliance.link, response_timeout=60) as client:
        assert sign_x509(client, demo_request(), "before").ok
        receipt_taken(spool_dir)
        filler = fill(small_disk)
        os.truncate(filler, filler.stat().st_size - 4096)  # one page: room for the request only
        csr = demo_request()
        waiting = threading.Thread(target=lambda: answers.append(sign_x509(client, csr, "stalled")))
        waiting.start()
        try:
            wait_until(
                lambda: spool_names(spool_dir, "incoming") or spool_names(spool_dir, "active"),
                20,
                "the request to be committed",
            )
            time.sleep(3)  # the signer has met the full disk, maybe several times
            assert len(spool_names(spool_dir, "incoming") + spool_names(spool_dir, "active")) == 1
            assert appliance.supervisor.restarts == {"signer-core": 0, "signer-comm": 0}
            assert [state for _, _, state, _ in cert_rows(db_path)] == ["issued"]
            assert audit_verdict(db_path).ok
        finally:
            filler.unlink()
            waiting.join()
    assert answers and answers[0].ok, answers
    assert [state for _, _, state, _ in cert_rows(db_path)] == ["issued", "issued"]
    wait_spool_settled(spool_dir)
    assert audit_verdict(db_path).ok
    appliance.assert_alive()


def test_signer_started_on_a_full_disk_waits_for_space(small_disk, appliance, retry):
    """A signer (re)started while the disk is full must wait, not exit into a restart storm."""
    db_path = appliance.directory / "lib" / "ca.sqlite"
    with WebClient(appliance.link, response_timeout=60) as client:
        assert sign_x509(client, demo_request(), "before").ok
        receipt_taken(appliance.directory / "spool")
        filler = fill(small_disk)
        try:
            os.kill(appliance.supervisor.pid("signer-core"), signal.SIGKILL)
            wait_until(lambda: appliance.supervisor.restarts["signer-core"] == 1, 20, "a restart")
            time.sleep(3)  # the new signer meets the full disk at start, maybe several times
            assert appliance.supervisor.restarts == {"signer-core": 1, "signer-comm": 0}
            assert appliance.supervisor.processes["signer-core"].poll() is None
        finally:
            filler.unlink()
        after = retry(lambda: sign_x509(client, demo_request(), "after"))
    assert after.response is not None and after.response.ok, after.failures
    assert [state for _, _, state, _ in cert_rows(db_path)] == ["issued", "issued"]
    assert audit_verdict(db_path).ok
