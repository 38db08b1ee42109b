"""The spool between real processes, and as root between real users with the real directory modes."""

from __future__ import annotations

import grp
import json
import os
import pwd
import shutil
import stat
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest

from spool.queue import Spool
from spool.record import Request, Result, encode_request
from spool.watch import DirWatcher

CODE_ROOT = str(Path(__file__).resolve().parents[2])
COMM_USER = "_signer-comm"
SIGNER_USER = "nobody"  # any uid other than root and comm: proves the "other"/group bits suffice

ENQUEUER = """
import sys, time
from spool.queue import Spool
spool, n = Spool(sys.argv[1]), int(sys.argv[2])
for i in range(n):
    print(spool.enqueue(bytes(9), (b"%d" % i, b"", b""), received_at=time.time()), flush=True)
    if i % 7 == 0:
        time.sleep(0.002)
"""

SIGNER = """
import json, sys, time
from spool.queue import Spool
from spool.record import Request, Result, encode_request
from spool.watch import DirWatcher
spool, n = Spool(sys.argv[1], comm_uid=int(sys.argv[2])), int(sys.argv[3])
done, deadline = [], time.monotonic() + 30
with DirWatcher(spool.incoming) as watcher:
    while len(done) < n and time.monotonic() < deadline:
        request = spool.claim_next()
        if request is None:
            watcher.wait(1.0)
            continue
        spool.finish(request, Result(request.id, request.header[1], request.payloads[0][::-1], b""))
        done.append(request.id)
print(json.dumps(done))
"""

COMM = """
import json, os, sys, time
from spool.queue import Spool
spool, n = Spool(sys.argv[1]), int(sys.argv[2])

def denied(action):
    try:
        action()
    except PermissionError:
        return True
    return False

planted = spool.incoming / ".planted"
checks = {} if sys.argv[3:] != ["check"] else {
    "list active": denied(lambda: os.listdir(spool.active)),
    "list corrupt": denied(lambda: os.listdir(spool.corrupt)),
    "write results": denied(lambda: open(spool.results / "x.res", "wb")),
    "write spool root": denied(lambda: os.mkdir(spool.root / "evil")),
    "rename incoming dir": denied(lambda: os.rename(spool.incoming, spool.root / "moved")),
    "unlink other's file": denied(lambda: os.unlink(planted)),
    "rename other's file": denied(lambda: os.rename(planted, spool.incoming / ".stolen")),
    "write other's file": denied(lambda: open(planted, "r+b")),
}
ids = [spool.enqueue(bytes([1, 1]) + bytes(7), (b"csr%d" % i, b"", b""), received_at=time.time()) for i in range(n)]
results = [spool.wait_result(i, 20) for i in ids]
if checks:
    checks["read active copy"] = denied(lambda: open(spool.active / f"{ids[0]}.req", "rb"))
print(json.dumps({
    "checks": checks,
    "ids": ids,
    "results": [None if r is None else [r.id, r.action, r.payload1.hex()] for r in results],
}))
"""


def child_env() -> dict[str, str]:
    path = [CODE_ROOT] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(path), "HOME": "/"}


def spawn(code: str, *args: object, **kwargs) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code), *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=child_env(),
        cwd="/",
        **kwargs,
    )


def finish(proc: subprocess.Popen) -> str:
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    return out


def test_two_processes_fifo_exactly_once(tmp_path: Path) -> None:
    n = 200
    spool = Spool(tmp_path / "spool", comm_uid=os.getuid())
    spool.create_dirs()
    claimed: list[Request] = []
    with DirWatcher(spool.incoming) as watcher:
        proc = spawn(ENQUEUER, spool.root, n)
        deadline = time.monotonic() + 30
        while len(claimed) < n and time.monotonic() < deadline:
            request = spool.claim_next()
            if request is None:
                watcher.wait(1.0)
            else:
                assert isinstance(request, Request)  # the enqueuer delivers no receipts
                claimed.append(request)
        ids = finish(proc).split()
    assert len(ids) == n
    assert [r.id for r in claimed] == ids  # all of them, once each, in enqueue order
    assert [r.payloads[0] for r in claimed] == [b"%d" % i for i in range(n)]
    assert spool.claim_next() is None
    assert spool.counts() == {"incoming": 0, "active": n, "results": 0, "corrupt": 0}


def test_comm_process_waits_for_results(tmp_path: Path) -> None:
    n = 20
    spool = Spool(tmp_path / "spool", comm_uid=os.getuid())
    spool.create_dirs()
    comm = spawn(COMM, spool.root, n)
    with DirWatcher(spool.incoming) as watcher:
        handled = 0
        deadline = time.monotonic() + 30
        while handled < n and time.monotonic() < deadline:
            request = spool.claim_next()
            if request is None:
                watcher.wait(1.0)
                continue
            assert isinstance(request, Request)  # the comm process delivers no receipts
            spool.finish(request, Result(request.id, 1, request.payloads[0][::-1], b""))
            handled += 1
    report = json.loads(finish(comm))
    assert report["results"] == [
        [i, 1, (b"csr%d" % k)[::-1].hex()] for k, i in enumerate(report["ids"])
    ]


@pytest.fixture
def comm_user() -> pwd.struct_passwd:
    if os.geteuid() != 0:
        pytest.skip("needs root to switch users")
    try:
        return pwd.getpwnam(COMM_USER)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", COMM_USER],
            check=True,
        )
        return pwd.getpwnam(COMM_USER)


@pytest.fixture
def public_tmp():
    """A directory other users can traverse (pytest's tmp_path is root-only)."""
    path = Path(tempfile.mkdtemp(prefix="spool-test-", dir="/tmp"))
    os.chmod(path, 0o755)
    yield path
    shutil.rmtree(path)


@pytest.mark.root
def test_two_users_with_real_modes(comm_user: pwd.struct_passwd, public_tmp: Path) -> None:
    n = 8
    signer = pwd.getpwnam(SIGNER_USER)
    assert os.access(CODE_ROOT, os.R_OK | os.X_OK)
    spool = Spool(public_tmp / "spool")
    spool.create_dirs(signer_uid=signer.pw_uid, signer_gid=signer.pw_gid, comm_gid=comm_user.pw_gid)
    planted = spool.incoming / ".planted"
    planted.write_bytes(b"not yours")
    os.chown(planted, signer.pw_uid, signer.pw_gid)
    os.chmod(planted, 0o644)

    as_signer = dict(user=signer.pw_uid, group=signer.pw_gid, extra_groups=[])
    as_comm = dict(user=comm_user.pw_uid, group=comm_user.pw_gid, extra_groups=[])
    signer_proc = spawn(SIGNER, spool.root, comm_user.pw_uid, n, **as_signer)
    comm_proc = spawn(COMM, spool.root, n, "check", **as_comm)
    report = json.loads(finish(comm_proc))
    done = json.loads(finish(signer_proc))

    assert len(report["checks"]) == 9 and all(report["checks"].values()), report["checks"]
    assert done == report["ids"]
    assert report["results"] == [
        [i, 1, (b"csr%d" % k)[::-1].hex()] for k, i in enumerate(report["ids"])
    ]
    assert planted.read_bytes() == b"not yours"
    assert os.listdir(spool.incoming) == [".planted"]
    assert os.listdir(spool.corrupt) == [] and os.listdir(spool.active) == []
    for name in os.listdir(spool.results):
        st = os.stat(spool.results / name)
        assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (
            signer.pw_uid,
            comm_user.pw_gid,
            0o640,
        )
    st = os.stat(spool.incoming)
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (
        signer.pw_uid,
        comm_user.pw_gid,
        0o1770,
    )
    assert grp.getgrgid(comm_user.pw_gid).gr_mem == []  # the signer is not in the comm group


RACER = """
import os, sys, time
from pathlib import Path
incoming, secret, name, good = Path(sys.argv[1]), sys.argv[2], sys.argv[3], bytes.fromhex(sys.argv[4])
end = time.monotonic() + float(sys.argv[5])
i = 0
while i < 300 or time.monotonic() < end:  # enough rounds even on a loaded machine
    i += 1
    temp = incoming / f".race{i}"
    if i % 3 == 0:
        os.symlink(secret, temp)
    elif i % 3 == 1:
        os.link(secret, temp)
    else:
        temp.write_bytes(good)
        os.chmod(temp, 0o644)
    os.rename(temp, incoming / name)
print(i)
"""


def test_racing_comm_never_makes_the_signer_read_through_links(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool", comm_uid=os.getuid())
    spool.create_dirs()
    request_id = f"{time.time_ns():020d}-{'c' * 32}"
    secret = tmp_path / "secret"  # a valid record: claiming it would prove a link was followed
    secret.write_bytes(
        encode_request(Request(request_id, 0.0, bytes(9), (b"SECRET", b"", b""), True))
    )
    good = encode_request(Request(request_id, 0.0, bytes(9), (b"ok", b"", b""), True))
    before = secret.read_bytes()
    claimed: list[Request] = []
    with DirWatcher(spool.incoming) as watcher:
        racer = spawn(RACER, spool.incoming, secret, f"{request_id}.req", good.hex(), 1.5)
        while racer.poll() is None:
            request = spool.claim_next()
            if request is None:
                watcher.wait(0.1)
                continue
            assert isinstance(request, Request)  # the racer commits requests only
            claimed.append(request)
            spool.finish(request, None)  # so the next regular copy is claimed again
        rounds = int(finish(racer))
        while (request := spool.claim_next()) is not None:
            assert isinstance(request, Request)
            claimed.append(request)
    assert rounds >= 300
    assert claimed and {r.payloads[0] for r in claimed} == {b"ok"}
    assert secret.read_bytes() == before
    reasons = [
        (spool.corrupt / n).read_text() for n in os.listdir(spool.corrupt) if n.endswith(".reason")
    ]
    assert reasons and all(
        "symbolic link" in r or "hard links" in r or "replaced" in r for r in reasons
    ), reasons
