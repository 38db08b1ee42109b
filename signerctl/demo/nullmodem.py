"""A virtual null-modem cable: two pseudo-terminals whose masters are relayed.

Test and development tool on the untrusted side; it holds no secrets and
trusts nothing. Each end ("a", "b") is a real pty slave in raw mode (no echo,
no output processing, no XON/XOFF: 0x11 is NAK on this link, not XOFF), so
programs open it like a serial device. The relay keeps the slave fds open
itself, so a program closing its end never turns the master into EIO.

Faults for tests, on either direction, at absolute byte offsets of that
direction (``position()`` tells where the next byte will be): flip bits of a
byte, drop a byte, inject noise now, cut the line from an offset (bytes
vanish) and mend it,
or hang up one end (its master closes: the program on that slave gets EIO).

Run ``python -m signerctl.demo.nullmodem``: it prints ``a: /dev/pts/N`` and
``b: /dev/pts/M`` and relays until SIGTERM or SIGINT.
"""

from __future__ import annotations

import enum
import os
import select
import signal
import threading
from dataclasses import dataclass, field

from webhost.ptyport import make_raw

READ_SIZE = 65536
MAX_PENDING = 1 << 20  # stop reading a source while this much waits for its sink


class Direction(enum.Enum):
    A_TO_B = "a>b"
    B_TO_A = "b>a"


@dataclass
class _Lane:
    src: int
    dst: int
    pending: bytearray = field(default_factory=bytearray)
    position: int = 0
    cut_from: int | None = None  # bytes at or after this offset vanish
    flips: dict[int, int] = field(default_factory=dict)  # offset -> xor mask
    drops: set[int] = field(default_factory=set)

    def apply(self, data: bytes) -> bytes:
        start, self.position = self.position, self.position + len(data)
        if self.cut_from is not None:
            data = data[: max(0, self.cut_from - start)]
        end = start + len(data)
        if not any(start <= offset < end for offset in (*self.flips, *self.drops)):
            return data
        out = bytearray()
        for offset, byte in enumerate(data, start):
            if offset in self.drops:
                self.drops.discard(offset)
                continue
            out.append(byte ^ self.flips.pop(offset, 0))
        return bytes(out)


class NullModem:
    """Two raw ptys relayed to each other by a thread (``start``) or ``run()``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)
        self._hangups: list[tuple[str, threading.Event]] = []
        self._thread: threading.Thread | None = None
        masters, self._slaves, paths = [], [], []
        for _ in range(2):
            master, slave = os.openpty()
            make_raw(slave)
            os.set_blocking(master, False)
            masters.append(master)
            self._slaves.append(slave)
            paths.append(os.ttyname(slave))
        self.a_path, self.b_path = paths
        self._masters = {"a": masters[0], "b": masters[1]}
        self._lanes = {
            Direction.A_TO_B: _Lane(masters[0], masters[1]),
            Direction.B_TO_A: _Lane(masters[1], masters[0]),
        }

    # -- fault injection (thread-safe) --

    def position(self, direction: Direction) -> int:
        with self._lock:
            return self._lanes[direction].position

    def flip(self, direction: Direction, offset: int, mask: int = 0xFF) -> None:
        with self._lock:
            self._lanes[direction].flips[offset] = mask

    def drop(self, direction: Direction, offset: int) -> None:
        with self._lock:
            self._lanes[direction].drops.add(offset)

    def inject(self, direction: Direction, data: bytes) -> None:
        with self._lock:
            self._lanes[direction].pending += data
        self._wake()

    def cut(self, direction: Direction | None = None, at: int | None = None) -> None:
        """Lose every byte from offset ``at`` (default: from now) until ``mend``."""
        with self._lock:
            for key, lane in self._lanes.items():
                if direction in (None, key):
                    lane.cut_from = lane.position if at is None else at

    def mend(self, direction: Direction | None = None) -> None:
        with self._lock:
            for key, lane in self._lanes.items():
                if direction in (None, key):
                    lane.cut_from = None

    def hangup(self, side: str) -> None:
        """Close the master of ``side`` ("a" or "b"): that end then sees EIO.

        The relay thread does the closing, between two selects, so it never
        selects on a closed descriptor; this call returns once it is done.
        """
        done = threading.Event()
        with self._lock:
            self._hangups.append((side, done))
        if self._thread is None or not self._thread.is_alive():
            with self._lock:
                self._do_hangups()
        self._wake()
        done.wait()

    def _do_hangups(self) -> None:
        for side, done in self._hangups:
            fd = self._masters.pop(side)
            for key in [k for k, lane in self._lanes.items() if fd in (lane.src, lane.dst)]:
                del self._lanes[key]
            os.close(fd)
            done.set()
        self._hangups.clear()

    # -- relay --

    def start(self) -> NullModem:
        self._thread = threading.Thread(target=self.run, name="nullmodem", daemon=True)
        self._thread.start()
        return self

    def request_stop(self) -> None:
        """Make ``run()`` return soon; safe from a signal handler."""
        self._stop.set()
        self._wake()

    def stop(self) -> None:
        self.request_stop()
        if self._thread is not None:
            self._thread.join()
        self.close()

    def __enter__(self) -> NullModem:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def close(self) -> None:
        for fd in [*self._masters.values(), *self._slaves, self._wake_r, self._wake_w]:
            try:
                os.close(fd)
            except OSError:
                pass
        self._masters.clear()
        self._slaves.clear()

    def _wake(self) -> None:
        try:
            os.write(self._wake_w, b"x")
        except OSError:  # pipe full (already awake) or closed after stop
            pass

    def run(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                self._do_hangups()
                lanes = list(self._lanes.values())
            readers = [self._wake_r] + [
                lane.src for lane in lanes if len(lane.pending) < MAX_PENDING
            ]
            writers = [lane.dst for lane in lanes if lane.pending]
            readable, writable, _ = select.select(readers, writers, [], 0.5)
            if self._wake_r in readable:
                os.read(self._wake_r, 4096)
            with self._lock:
                for lane in self._lanes.values():
                    if lane.src in readable:
                        self._pull(lane)
                    if lane.dst in writable and lane.pending:
                        self._push(lane)

    @staticmethod
    def _pull(lane: _Lane) -> None:
        try:
            data = os.read(lane.src, READ_SIZE)
        except BlockingIOError:
            return
        lane.pending += lane.apply(data)

    @staticmethod
    def _push(lane: _Lane) -> None:
        try:
            written = os.write(lane.dst, lane.pending)
        except BlockingIOError:
            return
        del lane.pending[:written]


def main() -> None:
    modem = NullModem()
    signal.signal(signal.SIGTERM, lambda *_: modem.request_stop())
    signal.signal(signal.SIGINT, lambda *_: modem.request_stop())
    print(f"a: {modem.a_path}\nb: {modem.b_path}", flush=True)
    try:
        modem.run()
    finally:
        modem.close()


if __name__ == "__main__":
    main()
