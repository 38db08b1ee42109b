"""What link protocol v2 and the bridge cost: framing overhead, and the bridge's added time.

    python bench/bench_bridge.py [--requests 60] [--rounds 3]

1. Framing, in this process: a request carrying one payload of 1 KiB, 1 MiB
   and 16 MiB (less 1 KiB, so that v1's 2**24 - 1 limit holds it), encoded
   and decoded as a v1 frame (``comm_handler.frames``: L3 strings, a XOR
   check) and as a v2 frame (``comm_handler.v2frames`` and ``v2messages``:
   a checked head, CRC-32C). Printed: the bytes each adds on the line, and
   the median time to encode and decode, v2 against v1.
2. The bridge's added time: a demo CA with both daemons on a pty cable; the
   same RSA-less signing requests (the demo's P-256 root 0) sent by the v1
   client straight to the appliance, by the v2 client straight to it, and by
   the v1 client through ``signer-bridge`` on the same cable; rounds
   interleaved (v1, v2, bridge, ...) so that the machine's drift falls on
   all three alike. Printed: the median latency of each, and the bridge's
   added time (bridge less v2 direct, the same v2 exchange on the cable).

Medians of ``--rounds`` rounds; the load average is printed with the figures.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from comm_handler.frames import (  # noqa: E402
    FrameReceiver,
    Message,
    decode_message,
    encode_message,
    make_frame,
)
from comm_handler.v2frames import Frame, FrameType, decode_frame, encode_frame  # noqa: E402
from comm_handler.v2messages import (  # noqa: E402
    Kind,
    V2Request,
    decode_request,
    encode_request,
)
from signerctl.demo.ca import Users, create_demo_ca, system_users  # noqa: E402
from signerctl.demo.run import daemons, demo_request, start_cable, wait_until_served  # noqa: E402
from spool.header import Action, RequestHeader, System  # noqa: E402
from webhost.client import WebClient  # noqa: E402
from webhost.client_v2 import V2Client  # noqa: E402

SIZES = {"1 KiB": 1024, "1 MiB": 1 << 20, "16 MiB": (1 << 24) - 1024}
HEADER = RequestHeader(action=Action.SIGN, system=System.X509, profile=5, md=8, days=365)
LINE_BYTES_PER_S = 11520  # 115200 baud, 10 bits a byte


def _timed(work, payload: bytes, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        work(payload)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def v1_round_trip(payload: bytes) -> int:
    frame = make_frame(encode_message(Message(HEADER.to_bytes(), (payload, b"", b""))))
    receiver = FrameReceiver((1 << 24) - 1)
    receiver.feed(frame)
    decode_message(receiver.message())
    return len(frame)


def v2_round_trip(payload: bytes) -> int:
    body = encode_request(V2Request(Kind.SIGN_X509, 0, 5, 8, 365, False, (payload, b"", b"")))
    frame = encode_frame(Frame(FrameType.REQUEST, bytes(16), body))
    decode_request(decode_frame(frame).body)
    return len(frame)


def framing() -> None:
    print(
        f"{'payload':>8} {'v1 adds':>8} {'v2 adds':>8} {'v1 time':>9} {'v2 time':>9} {'v2/v1':>6}"
    )
    for label, size in SIZES.items():
        payload = os.urandom(size)
        repeat = 200 if size < 1 << 20 else 7
        v1_time = _timed(v1_round_trip, payload, repeat)
        v2_time = _timed(v2_round_trip, payload, repeat)
        v1_adds, v2_adds = v1_round_trip(payload) - size, v2_round_trip(payload) - size
        print(
            f"{label:>8} {v1_adds:>7}B {v2_adds:>7}B {v1_time * 1e3:>7.3f}ms"
            f" {v2_time * 1e3:>7.3f}ms {v2_time / v1_time:>6.2f}"
        )
    print(
        f"(v2's extra bytes cost {1e3 / LINE_BYTES_PER_S:.3f} ms each at 115200 baud; the ACK"
        " frames v2 sends in place of v1's one-byte verdicts add 31 bytes each way)"
    )


def latencies(client: WebClient, count: int) -> list[float]:
    times = []
    for i in range(count):
        csr = demo_request()
        start = time.perf_counter()
        response = client.sign_x509(
            0, 5, 8, 365, csr, f"DNS:b{i}.bench.example", f"/CN=b{i}.bench.example"
        )
        times.append(time.perf_counter() - start)
        assert response.ok, response.reason
    return times


def start_bridge(device: str) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "webhost.bridge", "--device", device, "--log-level", "WARNING"],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith("v1 link: "):
        proc.kill()
        raise RuntimeError(f"the bridge did not start: {line!r}")
    return proc, line.removeprefix("v1 link: ").strip()


def bridge_time(requests: int, rounds: int) -> None:
    users = system_users() if os.geteuid() == 0 else Users()
    base = Path(tempfile.mkdtemp(prefix="bench-bridge-", dir="/tmp"))
    base.chmod(0o755)
    cable = start_cable()
    bridge = None
    users.give_to_comm(cable.appliance_end)
    config = create_demo_ca(base / "ca", users, cable.appliance_end)
    supervisor = daemons(config, base / "log")
    try:
        supervisor.start()
        wait_until_served(cable.web_end)
        bridge, v1_link = start_bridge(cable.web_end)
        figures: dict[str, list[float]] = {"v1 direct": [], "v2 direct": [], "v1 via bridge": []}
        for _ in range(rounds):
            with WebClient(cable.web_end) as client:
                figures["v1 direct"] += latencies(client, requests)
            with V2Client(cable.web_end) as client:
                figures["v2 direct"] += latencies(client, requests)
            with WebClient(v1_link) as client:
                figures["v1 via bridge"] += latencies(client, requests)
        medians = {name: statistics.median(times) for name, times in figures.items()}
        for name, median in medians.items():
            print(f"{name:>14}: {median * 1e3:6.2f} ms median over {len(figures[name])} requests")
        added = medians["v1 via bridge"] - medians["v2 direct"]
        print(
            f"the bridge adds {added * 1e3:.2f} ms a request (goal: at most 2 ms);"
            f" v2 against v1 direct: {medians['v2 direct'] / medians['v1 direct']:.2f};"
            f" load {os.getloadavg()[0]:.2f}"
        )
    finally:
        supervisor.stop()
        if bridge is not None:
            bridge.send_signal(signal.SIGTERM)
            bridge.wait()
        cable.process.terminate()
        cable.process.wait()
        shutil.rmtree(base, ignore_errors=True)


def main() -> None:
    tree = str(Path(__file__).resolve().parent.parent)
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, (tree, os.getenv("PYTHONPATH"))))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=60, help="requests per round and client")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    print(f"load {os.getloadavg()[0]:.2f}")
    framing()
    bridge_time(args.requests, args.rounds)


if __name__ == "__main__":
    main()
