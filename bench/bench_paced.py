"""Exchanges on a line paced as a real 115200-baud UART, against their bytes' line time.

    python bench/bench_paced.py [--rounds 5] [--per-round 10] [--pause 0.3]

A relay (a child process) joins two pty pairs and forwards each byte, in each
direction, no sooner than one 10-bit time (86.8 us at 115200 baud) after
the byte before it: a clock per direction, as a UART's bytes queue, so that
the relay's own lateness does not add up. The comm daemon of a demo CA is on one side
(as its system user when run as root, the spool on a tmpfs as the package
has it), ``webhost.client.WebClient`` on the other.

For a keep-alive (NUL), an X.509 sign from the demo's root 0 and a revoke,
each exchange's wall time (the client's call) is set against the time its
bytes take on the line, both directions (the relay counts them: the link is
half duplex, one side waits while the other sends). Per kind: the median
wall, line time and ratio, medians over the rounds of each round's medians,
with the load average. Then, from the relay's time stamps, where the time
beyond line time goes: each side's reaction at each turnaround of the
handshake, and the comm daemon's wait on the spool (from its ACK of the
request to its start byte of the response). First, as a baseline, the
relay's own added latency: one byte sent through it and echoed back.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import select
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import deque
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent  # the tree measured, daemons included
sys.path.insert(0, str(ROOT))

from signerctl.demo.ca import Users, create_demo_ca, system_users  # noqa: E402
from signerctl.demo.run import daemons, demo_request, spool_filesystem, wait_until_served  # noqa: E402
from webhost.ptyport import make_raw  # noqa: E402

BAUD = 115200
BYTE_TIME = 10 / BAUD  # start bit, 8 data bits, stop bit
SPIN = 0.0002  # s before a burst's last byte is due when the relay stops sleeping
WEB, COMM = "web>comm", "comm>web"  # the two directions, by the side that writes

# One exchange's turnarounds: (name, byte reacted to, byte answered with); a byte is
# (direction, offset, negative from the end, "out" delivered or "in" read by the relay).
# web>comm: start, request frame, ready, ACK; comm>web: ready, ACK, start, response frame.
STEPS = (
    ("comm: start -> ready", (WEB, 0, "out"), (COMM, 0)),
    ("web: ready -> frame", (COMM, 0, "out"), (WEB, 1)),
    ("comm: frame -> ACK", (WEB, -3, "out"), (COMM, 1)),
    ("comm: ACK -> start (spool)", (COMM, 1, "in"), (COMM, 2)),
    ("web: start -> ready", (COMM, 2, "out"), (WEB, -2)),
    ("comm: ready -> frame", (WEB, -2, "out"), (COMM, 3)),
    ("web: frame -> ACK", (COMM, -1, "out"), (WEB, -1)),
)
REACTIONS = ("web: call -> start", *(step[0] for step in STEPS), "web: ACK -> return")


# --- the relay (its own process) ----------------------------------------------


class Lane:
    """One direction: bytes read from ``src`` leave on ``dst`` at the UART's pace."""

    def __init__(self, name: str, src: int, dst: int) -> None:
        self.name, self.src, self.dst = name, src, dst
        self.queue: deque[list] = deque()  # [time the first byte is due, bytes]
        self.clock = 0.0  # when the line is free again: the last queued byte's due time

    def take(self, data: bytes, now: float) -> None:
        start = max(now, self.clock)
        self.queue.append([start + BYTE_TIME, data])
        self.clock = start + len(data) * BYTE_TIME

    def wake(self, now: float) -> float:
        """When to look again: at the next byte's due time, but at once (a spin) while
        the last byte queued is due within SPIN: that byte ends a burst, the peer waits
        for it, and a sleep's wake-up would make it late."""
        return now if self.clock - now <= SPIN else self.queue[0][0]

    def release(self, now: float) -> tuple[int, float]:
        """Write the bytes due by ``now``; how many, and how late the last was."""
        written, late = 0, 0.0
        while self.queue and self.queue[0][0] <= now:
            first, data = self.queue[0]
            count = min(len(data), 1 + int((now - first) / BYTE_TIME))
            os.write(self.dst, data[:count])
            late = now - (first + (count - 1) * BYTE_TIME)
            written += count
            if count == len(data):
                self.queue.popleft()
            else:
                self.queue[0] = [first + count * BYTE_TIME, data[count:]]
        return written, late


def relay() -> None:
    """Print ``comm: PATH`` and ``web: PATH``, then relay; on stdin ``mark`` empties the
    time-stamp log (answers ``ok``), ``log`` prints it as one JSON line; EOF ends it."""
    masters, slaves, paths = [], [], []
    for _ in range(2):
        master, slave = os.openpty()
        make_raw(slave)
        masters.append(master)
        slaves.append(slave)  # held open: an end closed by its program never EIOs the master
        paths.append(os.ttyname(slave))
    lanes = [Lane(COMM, masters[0], masters[1]), Lane(WEB, masters[1], masters[0])]
    by_src = {lane.src: lane for lane in lanes}
    events: list[tuple[str, str, float, int, float]] = []  # lane, in/out, time, bytes, late
    print(f"comm: {paths[0]}\nweb: {paths[1]}", flush=True)
    control = sys.stdin.fileno()
    while True:
        now = time.monotonic()
        wakes = [lane.wake(now) for lane in lanes if lane.queue]
        wait = max(0.0, min(wakes) - now) if wakes else None
        readable, _, _ = select.select([control, *masters], [], [], wait)
        now = time.monotonic()
        for fd in readable:
            if fd == control:
                command = os.read(control, 4096)
                if not command:
                    return
                if b"log" in command:
                    sys.stdout.write(json.dumps(events) + "\n")
                    sys.stdout.flush()
                if b"mark" in command:
                    events.clear()
                    print("ok", flush=True)
                continue
            data = os.read(fd, 65536)
            lane = by_src[fd]
            lane.take(data, now)
            events.append((lane.name, "in", now, len(data), 0.0))
        now = time.monotonic()
        for lane in lanes:
            written, late = lane.release(now)
            if written:
                events.append((lane.name, "out", now, written, late))


class Relay:
    """The relay child, seen from the bench."""

    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, __file__, "relay"], stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )
        assert self.process.stdin is not None and self.process.stdout is not None
        self.stdin, self.stdout = self.process.stdin, self.process.stdout
        ends = dict(self.stdout.readline().decode().strip().split(": ") for _ in range(2))
        self.comm_end, self.web_end = ends["comm"], ends["web"]

    def mark(self) -> None:
        self.stdin.write(b"mark\n")
        self.stdin.flush()
        assert self.stdout.readline().strip() == b"ok"

    def log(self) -> list[tuple[str, str, float, int, float]]:
        self.stdin.write(b"log\n")
        self.stdin.flush()
        return [tuple(e) for e in json.loads(self.stdout.readline())]

    def close(self) -> None:
        self.stdin.close()
        self.process.wait(timeout=5)


def relay_latency(rounds: int = 200) -> list[float]:
    """Seconds the relay adds to one byte's pass beyond its 10-bit time: a byte written on
    one end, read on the other and written back, read again; half the round trip."""
    bench_relay = Relay()
    ends = []
    for path in (bench_relay.comm_end, bench_relay.web_end):
        fd = os.open(path, os.O_RDWR | os.O_NOCTTY)
        make_raw(fd)
        ends.append(fd)
    try:
        added = []
        for _ in range(rounds):
            started = time.monotonic()
            os.write(ends[0], b"x")
            os.read(ends[1], 1)
            os.write(ends[1], b"x")
            os.read(ends[0], 1)
            added.append((time.monotonic() - started) / 2 - BYTE_TIME)
            time.sleep(0.002)
        return added
    finally:
        for fd in ends:
            os.close(fd)
        bench_relay.close()


# --- the exchanges --------------------------------------------------------------


def analyse(
    events: list[tuple[str, str, float, int, float]], started: float, ended: float
) -> dict[str, float] | None:
    """Line time and the reaction at each turnaround, from the time stamps of one exchange
    the client ran from ``started`` to ``ended``; None if its bytes are not one plain
    exchange (a resend, noise)."""
    ends: dict[tuple[str, str], list[tuple[int, float]]] = {}  # (end offset, time)
    totals = {(lane, kind): 0 for lane in (WEB, COMM) for kind in ("in", "out")}
    for lane, kind, when, count, _late in events:
        totals[lane, kind] += count
        ends.setdefault((lane, kind), []).append((totals[lane, kind], when))
    sizes = {lane: totals[lane, "in"] for lane in (WEB, COMM)}
    if min(sizes.values()) < 4 or any(totals[lane, "out"] != n for lane, n in sizes.items()):
        return None

    def at(lane: str, offset: int, kind: str = "in") -> float:
        wanted = offset if offset >= 0 else sizes[lane] + offset
        return next(when for end, when in ends[lane, kind] if end > wanted)

    figures = {"bytes": float(sum(sizes.values()))}
    figures["line"] = figures["bytes"] * BYTE_TIME
    for name, (t_lane, t_offset, t_kind), (a_lane, a_offset) in STEPS:
        figures[name] = at(a_lane, a_offset) - at(t_lane, t_offset, t_kind)
    figures["web: call -> start"] = at(WEB, 0) - started
    figures["web: ACK -> return"] = ended - at(WEB, -1)
    figures["wall"] = ended - started
    # The ACK before the response's start and the client's last ACK cross the line while
    # a reaction (the spool) runs or after the call returned: 2 bytes' time are in neither.
    figures["rest (relay lateness)"] = (
        figures["wall"] - figures["line"] + 2 * BYTE_TIME - sum(figures[n] for n in REACTIONS)
    )
    figures["relay: latest byte late by"] = max(e[4] for e in events if e[1] == "out")
    return figures


class Kinds:
    """The three exchanges, on one WebClient; revokes take the certificates signed."""

    def __init__(self, client, directory: Path, signs: int) -> None:
        self.client, self.directory = client, directory
        self.csrs = [demo_request() for _ in range(signs)]  # made before, not in, the timing
        self.signed: list[bytes] = []

    def nul(self) -> None:
        assert self.client.nul().ok

    def sign(self) -> None:
        name = f"h{len(self.csrs)}.bench.example"
        csr = self.csrs.pop()
        response = self.client.sign_x509(0, 5, 8, 365, csr, f"DNS:{name}", f"/CN={name}")
        assert response.ok, response.reason
        self.signed.append(response.payload1)

    def revoke(self) -> None:
        crl, root = self.directory / "web-crl0.der", self.directory / "certs" / "root0.crt"
        response = self.client.revoke(0, self.signed.pop(), crl, root)
        assert response.ok, response.reason


def run_kind(relay_proc: Relay, call, count: int, pause: float) -> list[dict[str, float]]:
    out = []
    for _ in range(count):
        time.sleep(pause)  # the signer's handling of the last request is over
        relay_proc.mark()
        started = time.monotonic()
        call()
        ended = time.monotonic()
        time.sleep(0.05)  # the client's ACK crosses the line
        figures = analyse(relay_proc.log(), started, ended)
        if figures is not None:
            out.append(figures)
    return out


def report(label: str, rounds: list[list[dict[str, float]]], loads: list[float]) -> None:
    def median(name: str) -> float:  # of each round's median
        return statistics.median(statistics.median(f[name] for f in r) for r in rounds)

    wall, line = median("wall"), median("line")
    print(
        f"{label:8} {median('bytes'):>6.0f} B  wall {wall * 1e3:8.2f} ms  line {line * 1e3:7.2f}"
        f" ms  ratio {wall / line:5.2f}  load {statistics.median(loads):4.2f}",
        flush=True,
    )
    for name in (*REACTIONS, "rest (relay lateness)", "relay: latest byte late by"):
        print(f"{'':10}{name:30} {median(name) * 1e3:8.3f} ms")


def measure(line: Relay, directory: Path, args: argparse.Namespace) -> None:
    """The rounds of each kind asked for, interleaved, so that load hits them alike."""
    from webhost.client import WebClient  # the web host's side, only in the bench's process

    wanted = args.kinds.split(",")
    with WebClient(line.web_end) as client:
        kinds = Kinds(client, directory, args.rounds * args.per_round)
        calls = {"nul": kinds.nul, "sign": kinds.sign, "revoke": kinds.revoke}
        results: dict[str, list] = {label: [] for label in calls if label in wanted}
        loads: list[float] = []
        for _ in range(args.rounds):
            loads.append(os.getloadavg()[0])
            for label, rounds in results.items():
                rounds.append(run_kind(line, calls[label], args.per_round, args.pause))
    for label, rounds in results.items():
        report(label, rounds, loads)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--per-round", type=int, default=10, help="exchanges of each kind")
    parser.add_argument("--pause", type=float, default=0.3, help="s of quiet before each")
    parser.add_argument(
        "--kinds", default="nul,sign,revoke", help="which exchanges (revoke needs sign)"
    )
    parser.add_argument(
        "--disk-spool", action="store_true", help="as root too, leave the spool on the disk"
    )
    parser.add_argument(
        "--bare", action="store_true", help="no daemons: the link code answers NUL at once"
    )
    args = parser.parse_args()
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, (str(ROOT), os.getenv("PYTHONPATH"))))

    added = relay_latency()
    print(
        f"relay baseline: one byte through it takes its {BYTE_TIME * 1e6:.1f} us plus "
        f"{statistics.median(added) * 1e6:.0f} us (median; 90th percentile "
        f"{statistics.quantiles(added, n=10)[-1] * 1e6:.0f} us)",
        flush=True,
    )
    base = Path(tempfile.mkdtemp(prefix="bench-paced-", dir="/tmp"))
    base.chmod(0o755)
    line = Relay()
    try:
        with comm_side(line, base / "ca", args):
            measure(line, base / "ca", args)
    finally:
        line.close()
        shutil.rmtree(base, ignore_errors=True)


@contextlib.contextmanager
def comm_side(line: Relay, directory: Path, args: argparse.Namespace) -> Iterator[None]:
    """Both daemons of a demo CA in ``directory`` on the relay's comm end, or the bare
    link code (``bare``); answering on its web end."""
    if args.bare:
        print("comm side: the link code alone, no daemon, no spool")
        proc = subprocess.Popen([sys.executable, __file__, "bare", line.comm_end])
        try:
            wait_until_served(line.web_end)
            yield
        finally:
            proc.terminate()
            proc.wait()
        return
    users = system_users() if os.geteuid() == 0 else Users()
    directory.mkdir()
    spool = contextlib.nullcontext() if args.disk_spool else spool_filesystem(directory, sys.stdout)
    with spool:
        users.give_to_comm(line.comm_end)
        config = create_demo_ca(directory, users, line.comm_end)
        supervisor = daemons(config, directory / "log")
        supervisor.start()
        on_tmpfs = os.path.ismount(directory / "spool")
        print(f"comm side: the daemons, the spool on {'a tmpfs' if on_tmpfs else 'the disk'}")
        try:
            wait_until_served(line.web_end)
            yield
        finally:
            supervisor.stop()


def bare(path: str) -> None:
    """The link code alone on ``path``: every request answered at once with a NUL response,
    no spool, no daemon (the bench's ``--bare``)."""
    import serial

    from comm_handler.frames import Message, encode_message, response_header
    from comm_handler.transfer import receive_message, send_message

    answer = encode_message(Message(response_header(0), (b"", b"", b"")))
    port = serial.Serial(path, BAUD)
    while True:
        receive_message(port)
        send_message(port, answer)


if __name__ == "__main__":
    if sys.argv[1:] == ["relay"]:
        relay()
    elif sys.argv[1:2] == ["bare"]:
        bare(sys.argv[2])
    else:
        main()
