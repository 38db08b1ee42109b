"""Framing-layer throughput over a pseudo-terminal pair, against a raw copy.

Runs ``python -m signerctl.demo.nullmodem`` as a separate process (the cable),
opens both ends with pyserial, and for 1 KiB, 1 MiB and the largest allowed
message (16 MiB minus overhead) times:

- raw: a thread writes the frame-sized bytes on end a, the main thread reads
  them all from end b;
- framed: ``send_message`` on end a, ``receive_message`` on end b (start,
  ready, frame, XOR and trailer check, verdict).

Prints the median of repeated runs of each and the ratio framed / raw, and
for scale, 1 KiB sent with the deployed server's pacing.
Usage: python bench/bench_link.py [--repeat-scale X]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import serial

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from comm_handler.frames import MAX_PAYLOAD_TOTAL, Message, encode_message, make_frame  # noqa: E402
from comm_handler.transfer import DEPLOYED_PACING, Pacing, receive_message, send_message  # noqa: E402
from spool.record import HEADER_SIZE as REQUEST_HEADER_LEN

SIZES = [
    ("1 KiB", 1024, 50),
    ("1 MiB", 1 << 20, 10),
    ("16 MiB max", MAX_PAYLOAD_TOTAL - REQUEST_HEADER_LEN, 7),
]


def start_cable() -> tuple[subprocess.Popen, str, str]:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    command = [sys.executable, "-m", "signerctl.demo.nullmodem"]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env)
    assert proc.stdout is not None  # stdout=PIPE
    a = proc.stdout.readline().split(": ", 1)[1].strip()
    b = proc.stdout.readline().split(": ", 1)[1].strip()
    return proc, a, b


def time_raw(a: serial.Serial, b: serial.Serial, data: bytes) -> float:
    def write() -> None:
        a.write(data)
        a.flush()

    writer = threading.Thread(target=write)
    b.timeout = 5.0
    started = time.perf_counter()
    writer.start()
    got = 0
    while got < len(data):
        chunk = b.read(min(65536, max(1, b.in_waiting)))
        if not chunk:
            raise RuntimeError("raw copy stalled")
        got += len(chunk)
    elapsed = time.perf_counter() - started
    writer.join()
    return elapsed


def time_framed(
    a: serial.Serial, b: serial.Serial, message: bytes, pacing: Pacing | None = None
) -> float:
    errors: list[BaseException] = []

    def send() -> None:
        try:
            send_message(a, message, pacing=pacing)
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    sender = threading.Thread(target=send)
    started = time.perf_counter()
    sender.start()
    received = receive_message(b, start_timeout=10.0)
    sender.join()
    elapsed = time.perf_counter() - started
    if errors or received != message:
        raise RuntimeError(f"framed transfer failed: {errors}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--repeat-scale", type=float, default=1.0, help="multiply the repeat counts"
    )
    args = parser.parse_args()
    proc, a_path, b_path = start_cable()
    try:
        a = serial.Serial(a_path, 115200)
        b = serial.Serial(b_path, 115200)
        print(
            f"{'size':>12} {'bytes':>10} {'raw median':>12} {'framed median':>14} {'ratio':>7} {'framed MB/s':>12}"
        )
        for label, payload_size, repeats in SIZES:
            message = encode_message(
                Message(bytes(REQUEST_HEADER_LEN), (os.urandom(payload_size), b"", b""))
            )
            frame_size = len(make_frame(message))
            runs = max(1, round(repeats * args.repeat_scale))
            raws, frameds = [], []
            for _ in range(runs):  # interleaved, so machine load hits both alike
                raws.append(time_raw(a, b, os.urandom(frame_size)))
                frameds.append(time_framed(a, b, message))
            raw, framed = statistics.median(raws), statistics.median(frameds)
            print(
                f"{label:>12} {frame_size:>10} {raw * 1e3:>10.2f}ms {framed * 1e3:>12.2f}ms"
                f" {framed / raw:>7.2f} {frame_size / framed / 1e6:>12.1f}"
            )
        message = encode_message(Message(bytes(REQUEST_HEADER_LEN), (os.urandom(1024), b"", b"")))
        paced = statistics.median(time_framed(a, b, message, DEPLOYED_PACING) for _ in range(3))
        print(
            f"1 KiB with the deployed server's pacing (30-byte slices, 270 us/byte + 9 ms/slice): {paced:.3f} s"
        )
        a.close()
        b.close()
    finally:
        proc.terminate()
        proc.wait(timeout=5)


if __name__ == "__main__":
    main()
