"""Helpers for the crash, fault and backlog tests (and bench/soak.py).

Test tooling on both sides of the trust boundary: it plays the web host (a
client that retries as the deployed one does), the comm handler (requests
committed straight into the spool, as the comm user when run as root) and
the operator (reading the CA database, the audit chain and the spool).

Run as a script (``python tests/conftest_crash.py enqueue SPOOL``) it is the
child that enqueues: one request per line of stdin (``sign <name>``,
``nul``), the ids printed one per line in the order committed.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from comm_handler.frames import FrameError
from comm_handler.transfer import LinkError
from signer_core.store.audit import AuditLog, Verdict
from signerctl.demo.ca import Users
from signerctl.demo.run import demo_request as csr_pem
from spool.header import Action, RequestHeader, System
from webhost.client import Response, WebClient, nul_timestamp

SIGN_HEADER = RequestHeader(
    action=Action.SIGN, system=System.X509, root=0, profile=5, md=8, days=365
)
NUL_HEADER = RequestHeader(action=Action.NUL, system=System.NONE)


def sign_payloads(name: str, csr: bytes | None = None) -> tuple[bytes, bytes, bytes]:
    return (
        csr or csr_pem(),
        f"DNS:{name}.example.org".encode(),
        f"/CN={name}.example.org".encode(),
    )


def nul_payloads() -> tuple[bytes, bytes, bytes]:
    return (nul_timestamp(), b"", b"")


# --- the web host ------------------------------------------------------------


def sign_x509(client: WebClient, csr: bytes, name: str) -> Response:
    """A server certificate for ``name``.example.org from root 0, as the web host asks."""
    p1, san, subject = sign_payloads(name, csr)
    h = SIGN_HEADER
    return client.sign_x509(h.root, h.profile, h.md, h.days, p1, san, subject)


@dataclass(frozen=True)
class Outcome:
    response: Response | None  # the last response received, None if every try failed on the link
    tries: int
    failures: tuple[str, ...]  # why each failed try failed


def deployed_retry(call: Callable[[], Response], tries: int = 3, pause: float = 0.0) -> Outcome:
    """Send the same request again, as the deployed client does, until payload 1 comes back.

    A link failure, a response that is not a message, or an empty payload 1
    is a failed try; three tries at most.
    ``pause``: seconds of silence after a link failure, so the peer gives up
    on the broken transfer before the next start byte.
    """
    failures: list[str] = []
    response = None
    for attempt in range(1, tries + 1):
        try:
            response = call()
        except (LinkError, FrameError) as exc:
            failures.append(f"link: {type(exc).__name__}: {exc}")
            time.sleep(pause)
            continue
        if response.ok:
            return Outcome(response, attempt, tuple(failures))
        failures.append(f"refused: {response.reason}")
    return Outcome(response, tries, tuple(failures))


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
        return conn.execute(
            "SELECT root, serial, state, der FROM certificates ORDER BY id"
        ).fetchall()
    finally:
        conn.close()


def audit_events(db_path: Path, event: str) -> list[dict]:
    conn = open_db(db_path)
    try:
        rows = conn.execute("SELECT details FROM audit WHERE event = ? ORDER BY seq", (event,))
        return [json.loads(r[0]) for r in rows]
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


# --- the comm handler --------------------------------------------------------


def as_comm_user(users: Users) -> dict:
    """subprocess arguments that run a child as the comm user when we are root."""
    if users.comm_uid is None:
        return {}
    return {"user": users.comm_uid, "group": users.comm_gid, "extra_groups": []}


def enqueue_as_comm(
    spool_dir: Path, users: Users, plan: list[str], timeout: float = 300
) -> list[str]:
    """Commit the requests of ``plan`` ("sign <name>" or "nul") as the comm handler would."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH", "")]))
    done = subprocess.run(
        [sys.executable, str(Path(__file__)), "enqueue", str(spool_dir)],
        input="\n".join(plan).encode(),
        capture_output=True,
        env=env,
        timeout=timeout,
        check=False,
        **as_comm_user(users),
    )
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    ids = done.stdout.decode().split()
    assert len(ids) == len(plan)
    return ids


def _enqueue_main(spool_dir: str) -> None:
    from spool.queue import Spool

    spool = Spool(spool_dir)
    for line in sys.stdin.read().splitlines():
        kind, _, name = line.partition(" ")
        if kind == "sign":
            header, payloads, reply = SIGN_HEADER, sign_payloads(name), True
        else:
            header, payloads, reply = NUL_HEADER, nul_payloads(), False
        request_id = spool.enqueue(
            header.to_bytes(), payloads, received_at=time.time(), reply=reply
        )
        print(request_id)


# --- a signer without the comm side ------------------------------------------


class LoneSigner:
    """signer-core on ``config`` as a plain child (as root it drops to its own user)."""

    def __init__(self, config: Path, log_file: Path, wrapper: list[str] | None = None) -> None:
        """``wrapper``: a command line to run it under (strace...)."""
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
                cwd=REPO,
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
        sys.exit("usage: conftest_crash.py enqueue SPOOL_DIR < plan")
