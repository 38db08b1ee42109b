"""A pseudo-terminal's master end as a pyserial-like port, for the bridge's v1 line.

Web host side, untrusted like the link it serves: the bridge creates a pty,
gives its slave's path to the deployed v1 client and serves v1 on the master
through this class, which offers what ``comm_handler.transfer`` uses of a
pyserial port (``read`` with ``timeout``, ``write``, ``flush``,
``in_waiting``, ``reset_input_buffer``). pyserial itself opens ports by
path, and a pty's master has none.

The bridge keeps the slave open itself as well, so that the master never
reads end-of-file between two runs of the client, which opens and closes
the line for each batch of requests.
"""

from __future__ import annotations

import fcntl
import os
import select
import struct
import termios
import time

WRITE_STALL = 20.0  # s: as long as the v1 server waits for the client's ready


def make_raw(fd: int) -> None:
    """cfmakeraw, plus software flow control off (tty.setraw keeps IXOFF)."""
    iflag, oflag, cflag, lflag, ispeed, ospeed, cc = termios.tcgetattr(fd)
    iflag &= ~(
        termios.IGNBRK
        | termios.BRKINT
        | termios.PARMRK
        | termios.ISTRIP
        | termios.INLCR
        | termios.IGNCR
        | termios.ICRNL
        | termios.IXON
        | termios.IXOFF
        | termios.IXANY
        | termios.INPCK
    )
    oflag &= ~termios.OPOST
    lflag &= ~(termios.ECHO | termios.ECHONL | termios.ICANON | termios.ISIG | termios.IEXTEN)
    cflag = (
        (cflag & ~(termios.CSIZE | termios.PARENB)) | termios.CS8 | termios.CREAD | termios.CLOCAL
    )
    cc[termios.VMIN] = 1
    cc[termios.VTIME] = 0
    termios.tcsetattr(fd, termios.TCSANOW, [iflag, oflag, cflag, lflag, ispeed, ospeed, cc])


class PtyPort:
    """The master end of a new raw pty; ``name`` is the slave's path for the client."""

    def __init__(self) -> None:
        self.master, self._slave = os.openpty()
        make_raw(self._slave)
        self.name = os.ttyname(self._slave)
        self.timeout: float | None = None

    def read(self, size: int = 1) -> bytes:
        """Up to ``size`` bytes: fewer only when ``timeout`` seconds pass first (pyserial's rule)."""
        end = None if self.timeout is None else time.monotonic() + self.timeout
        data = b""
        while len(data) < size:
            wait = None if end is None else max(0.0, end - time.monotonic())
            ready, _, _ = select.select([self.master], [], [], wait)
            if not ready:
                break
            data += os.read(self.master, size - len(data))
        return data

    def write(self, data: bytes) -> int:
        """All of ``data``; OSError if the client stops reading for ``WRITE_STALL`` s
        (it died mid-response): the bridge must not block on a full pty for ever."""
        view = memoryview(data)
        while view:
            _, writable, _ = select.select([], [self.master], [], WRITE_STALL)
            if not writable:
                raise OSError(f"the v1 client read nothing for {WRITE_STALL:g} s")
            view = view[os.write(self.master, view) :]
        return len(data)

    def flush(self) -> None:
        """Nothing to drain: a pty hands written bytes to the other end at once."""

    @property
    def in_waiting(self) -> int:
        buf = fcntl.ioctl(self.master, termios.FIONREAD, struct.pack("i", 0))
        return int(struct.unpack("i", buf)[0])

    def reset_input_buffer(self) -> None:
        while self.in_waiting:
            os.read(self.master, self.in_waiting)

    def close(self) -> None:
        for fd in (self.master, self._slave):
            os.close(fd)
