"""What /proc says about the other processes of this machine.

Trusted side: the signer (to find a private home's gpg-agent) and signerctl
(to find the daemons, and whoever holds the CA database open) read /proc
only through here. It trusts the kernel's answers and nothing more: any
process may exit, or its pid be reused, between two reads, so every reader
gets "nothing" for a process that is gone or not ours to see, and a caller
that acts on a process (a signal) must look again through a pidfd.
"""

from __future__ import annotations

import os
from collections.abc import Iterator


def pids() -> Iterator[int]:
    """The process ids /proc lists at this moment."""
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            yield int(entry.name)


def argv(pid: int) -> list[bytes]:
    """The command line of ``pid``, one item per argument; [] once it has gone."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            raw = f.read()
    except OSError:
        return []
    args = raw.split(b"\0")
    if args[-1] == b"":  # the terminator of the last argument (or a kernel thread's nothing)
        args.pop()
    return args


def status(pid: int) -> dict[str, str]:
    """The fields of ``/proc/PID/status`` (``Name``, ``Uid``...); {} once it has gone."""
    try:
        with open(f"/proc/{pid}/status", encoding="utf-8", errors="replace") as f:
            text = f.read()
    except OSError:
        return {}
    return dict(line.split(":\t", 1) for line in text.splitlines() if ":\t" in line)


def open_files(pid: int) -> set[str]:
    """Where the descriptors of ``pid`` point; empty if it has gone or is not ours to see."""
    try:
        descriptors = list(os.scandir(f"/proc/{pid}/fd"))
    except OSError:
        return set()
    targets = set()
    for fd in descriptors:
        try:
            targets.add(os.readlink(fd.path))
        except OSError:  # closed meanwhile
            continue
    return targets
