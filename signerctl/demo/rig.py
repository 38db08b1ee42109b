"""The test rig: a lone signer, a stand-in comm user, and the operator's readings.

Operator tooling on the trusted side, shared by the system tests and bench/
(the crash, fault, backlog and flood tests, bench_storm.py, soak.py). It plays
the comm handler (requests committed straight into the spool, as the comm user
when run as root; the hostile comm user's storm and flood scripts), starts
signer-core without the comm side, and reads what the operator would: the CA
database, the audit chain, the spool, a daemon's memory and CPU time. It
trusts nothing it reads; it only reports it.

The web host's side (a client that retries as the deployed one does) needs
the web-side client library, which signerctl may not import: ``sign_x509``
takes the caller's client, ``deployed_retry`` the caller's link errors.

Run as ``python -m signerctl.demo.rig enqueue SPOOL`` it is the child that
enqueues: one request per line of stdin (``sign <name>``, ``nul``), the ids
printed one per line in the order committed.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from signer_core.store.audit import AuditLog, Verdict
from signer_core.store.cadb import certificate_rows
from signerctl.demo.ca import Users
from signerctl.demo.run import demo_request
from spool.header import Action, RequestHeader, System
from spool.queue import Spool

# The directory holding our packages (a checkout or site-packages), for the children.
CODE_ROOT = Path(__file__).resolve().parents[2]

SIGN_HEADER = RequestHeader(
    action=Action.SIGN, system=System.X509, root=0, profile=5, md=8, days=365
)
NUL_HEADER = RequestHeader(action=Action.NUL, system=System.NONE)


def sign_payloads(name: str, csr: bytes | None = None) -> tuple[bytes, bytes, bytes]:
    return (
        csr or demo_request(),
        f"DNS:{name}.example.org".encode(),
        f"/CN={name}.example.org".encode(),
    )


def nul_payloads() -> tuple[bytes, bytes, bytes]:
    """A keep-alive carrying the time now, in the web host's ``date -u`` form
    (as webhost.client.nul_timestamp writes it; signerctl may not import webhost)."""
    return (time.strftime("%m%d%H%M%Y.%S", time.gmtime()).encode("ascii"), b"", b"")


# --- the web host ------------------------------------------------------------


def sign_x509(client, csr: bytes, name: str):
    """A server certificate for ``name``.example.org from root 0, asked through ``client``
    (a webhost.client.WebClient); its Response is returned."""
    p1, san, subject = sign_payloads(name, csr)
    h = SIGN_HEADER
    return client.sign_x509(h.root, h.profile, h.md, h.days, p1, san, subject)


class Answer(Protocol):
    """What the rig reads of a webhost.client.Response (signerctl does not import webhost)."""

    ok: bool
    reason: str
    payload1: bytes


@dataclass(frozen=True)
class Outcome:
    response: Answer | None  # the last Response received, None if every try failed on the link
    tries: int
    failures: tuple[str, ...]  # why each failed try failed


def deployed_retry(
    call: Callable[[], Answer],
    link_errors: tuple[type[Exception], ...],
    tries: int = 3,
    pause: float = 0.0,
) -> Outcome:
    """Send the same request again, as the deployed client does, until payload 1 comes back.

    One of ``link_errors`` (the client's failed transfers and bad frames), a
    response that is not a message, or an empty payload 1 is a failed try;
    three tries at most. ``pause``: seconds of silence after a link failure,
    so the peer gives up on the broken transfer before the next start byte.
    """
    failures: list[str] = []
    response: Answer | None = None
    for attempt in range(1, tries + 1):
        try:
            response = call()
        except link_errors as exc:
            failures.append(f"link: {type(exc).__name__}: {exc}")
            time.sleep(pause)
            continue
        if response.ok:
            return Outcome(response, attempt, tuple(failures))
        failures.append(f"refused: {response.reason}")
    return Outcome(response, tries, tuple(failures))


def timed_sign(client, name: str) -> float:
    """Seconds a new request for ``name`` takes to be answered with a certificate."""
    started = time.monotonic()
    response = sign_x509(client, demo_request(), name)
    took = time.monotonic() - started
    if not response.ok:
        raise RuntimeError(f"the request for {name} was refused: {response.reason}")
    return took


# --- the operator ------------------------------------------------------------


def open_db(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True)


def audit_verdict(db_path: Path) -> Verdict:
    conn = open_db(db_path)
    try:
        return AuditLog(conn).verify()
    finally:
        conn.close()


def cert_rows(db_path: Path) -> list[tuple[int, str, str, bytes | None]]:
    """(root, serial, state, der) of every certificate row, in reservation order."""
    conn = open_db(db_path)
    try:
        return certificate_rows(conn)
    finally:
        conn.close()


def audit_events(db_path: Path, event: str) -> list[dict[str, object]]:
    conn = open_db(db_path)
    try:
        return AuditLog(conn).events(event)
    finally:
        conn.close()


def spool_names(spool_dir: Path, state: str) -> list[str]:
    return sorted(n for n in os.listdir(spool_dir / state) if not n.startswith("."))


def wait_until(
    predicate: Callable[[], bool], timeout: float, what: str, step: float = 0.05
) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(step)


def wait_spool_settled(spool_dir: Path, timeout: float = 30.0) -> None:
    """incoming/ and active/ empty: nothing stuck."""
    wait_until(
        lambda: not spool_names(spool_dir, "incoming") and not spool_names(spool_dir, "active"),
        timeout,
        "incoming/ and active/ to empty",
    )


def _status_kib(pid: int, field: str) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise ProcessLookupError(pid)


def rss_kib(pid: int) -> int:
    """Resident memory now."""
    return _status_kib(pid, "VmRSS")


def peak_kib(pid: int) -> int:
    """The most resident memory the process ever had."""
    return _status_kib(pid, "VmHWM")


def cpu_seconds(pid: int) -> float:
    """User plus system time of ``pid`` so far (/proc/PID/stat, fields 14 and 15)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# --- the comm handler, and a hostile one ---------------------------------------

# Creates and removes one dot-file as fast as it can: the events name a temporary.
STORM = """
import os, sys, time
path, end, n = os.path.join(sys.argv[1], ".x"), time.monotonic() + float(sys.argv[2]), 0
while time.monotonic() < end:
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o644))
    os.unlink(path)
    n += 1
print(n)
"""

# Well-named 64-byte files of garbage, as the flood.
FLOOD_FILES = """
import os, sys, time, uuid
d, n = sys.argv[1], int(sys.argv[2])
for _ in range(n):
    fd = os.open(os.path.join(d, f"{time.time_ns():020d}-{uuid.uuid4().hex}.req"),
                 os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    os.write(fd, os.urandom(64))
    os.close(fd)
"""


def as_comm_user(users: Users) -> dict:
    """subprocess arguments that run a child as the comm user when we are root."""
    if users.comm_uid is None:
        return {}
    return {"user": users.comm_uid, "group": users.comm_gid, "extra_groups": []}


def as_comm(users: Users, code: str, *args: str, wait: bool = True):
    """Run ``code`` under the comm user (the attacker's uid when we are root)."""
    argv = [sys.executable, "-c", code, *args]
    kwargs = dict(cwd="/", stdout=subprocess.PIPE, stderr=subprocess.PIPE, **as_comm_user(users))
    if not wait:
        return subprocess.Popen(argv, **kwargs)
    done = subprocess.run(argv, timeout=300, **kwargs)
    if done.returncode != 0:
        raise RuntimeError(f"the comm user's script failed: {done.stderr.decode(errors='replace')}")
    return done


def enqueue_as_comm(
    spool_dir: Path, users: Users, plan: list[str], timeout: float = 300
) -> list[str]:
    """Commit the requests of ``plan`` as the comm handler would.

    Each line is "nul", "sign <name>" (a fresh CSR) or "sign <name> <CSR file>"
    (the same bytes each time: a retry, or a renewal).
    """
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(CODE_ROOT), env.get("PYTHONPATH", "")]))
    done = subprocess.run(
        [sys.executable, "-m", "signerctl.demo.rig", "enqueue", str(spool_dir)],
        input="\n".join(plan).encode(),
        capture_output=True,
        cwd="/",
        env=env,
        timeout=timeout,
        check=False,
        **as_comm_user(users),
    )
    ids = done.stdout.decode().split()
    if done.returncode != 0 or len(ids) != len(plan):
        raise RuntimeError(
            f"{len(ids)} of {len(plan)} requests committed: {done.stderr.decode(errors='replace')}"
        )
    return ids


def _enqueue_main(spool_dir: str) -> None:
    spool = Spool(spool_dir)
    for line in sys.stdin.read().splitlines():
        kind, _, rest = line.partition(" ")
        name, _, csr_file = rest.partition(" ")
        if kind == "sign":
            csr = Path(csr_file).read_bytes() if csr_file else None
            header, payloads, reply = SIGN_HEADER, sign_payloads(name, csr), True
        else:
            header, payloads, reply = NUL_HEADER, nul_payloads(), False
        request_id = spool.enqueue(
            header.to_bytes(), payloads, received_at=time.time(), reply=reply
        )
        print(request_id)


# --- a signer without the comm side ------------------------------------------


class LoneSigner:
    """signer-core on ``config`` as a plain child (as root it drops to its own user)."""

    def __init__(
        self,
        config: Path,
        log_file: Path,
        wrapper: list[str] | None = None,
        code: Path = CODE_ROOT,
    ) -> None:
        """``wrapper``: a command line to run it under (strace...); ``code``: the tree
        whose packages it runs (a copy, for a test that changes a program file)."""
        with open(log_file, "ab") as out:
            self.proc = subprocess.Popen(
                [
                    *(wrapper or []),
                    sys.executable,
                    "-m",
                    "signer_core.daemon",
                    "--config",
                    str(config),
                ],
                cwd=code,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


if __name__ == "__main__":
    if sys.argv[1:2] == ["enqueue"] and len(sys.argv) == 3:
        _enqueue_main(sys.argv[2])
    else:
        sys.exit("usage: python -m signerctl.demo.rig enqueue SPOOL_DIR < plan")
