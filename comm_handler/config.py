"""The comm handler's part of the appliance configuration.

Untrusted side. Reads only ``[spool]`` and ``[comm]`` from the shared TOML
file; it never looks at roots, keys or the database. The file is written by
the operator and is trusted as far as its syntax goes; every value is checked
here so that the daemon fails at start with the key at fault named, not later.

``[comm]`` keys, with their defaults (the deployed programs' values)::

    device = "/dev/ttyUSB0"   # required: a device path or a pyserial URL
    baud = 115200
    user = "" ; group = ""    # the comm user, when started as root
    result_deadline = 100.0   # s; refuse with "timeout" after this (client: 120 s)
    ready_timeout = 20.0      # s the client may take to answer our start byte
    verdict_timeout = 5.0     # s the client may take to ACK/NAK our frame
    chunk_timeout = 5.0       # s of silence that abandons a request frame
    max_resends = 5           # resends of a response the client NAKs
    max_naks = 5              # NAKs of a damaged request before it is dropped
    max_message = 16777215    # bytes a request may declare (2^24 - 1)
    pace = false              # write responses slowly, for a 115200-baud UART
    pace_slice_bytes = 30     #   ... in slices of this many bytes,
    pace_per_byte = 0.00027   #   ... sleeping this long per byte
    pace_per_slice = 0.009    #   ... and this long per slice

Pacing is off by default: on a pty, a USB link or a UART whose driver
buffers the output, writing at once is safe and fast. Turn it on for the
deployed web host's serial line if its reads overrun: the slices and delays
are those of the deployed server (a 1.3 kB certificate then takes 0.75 s
instead of 0.11 s of line time). The deployed client waits 5 s between our
chunks, 20 s for our ready and 5 s for our verdict; the timeouts here only
bound how long a silent or broken client can hold the line.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

from comm_handler.frames import MAX_STRING
from comm_handler.transfer import DEPLOYED_PACING, Pacing

DEFAULT_DEADLINE = 100.0
CLIENT_PATIENCE = 120.0  # the deployed client's wait for a response's start byte


COMM_KEYS = frozenset(
    {
        "device",
        "baud",
        "user",
        "group",
        "result_deadline",
        "ready_timeout",
        "verdict_timeout",
        "chunk_timeout",
        "max_resends",
        "max_naks",
        "max_message",
        "pace",
        "pace_slice_bytes",
        "pace_per_byte",
        "pace_per_slice",
    }
)


class CommConfigError(ValueError):
    """The configuration cannot be used; the message names the key."""


@dataclass(frozen=True)
class LinkTimeouts:
    """The daemon's side of the transfer handshake (see comm_handler.transfer)."""

    ready: float = 20.0
    verdict: float = 5.0
    chunk: float = 5.0
    max_resends: int = 5
    max_naks: int = 5
    max_message: int = MAX_STRING


@dataclass(frozen=True)
class CommConfig:
    spool_dir: Path
    device: str
    baud: int
    user: str
    group: str
    result_deadline: float
    forbidden: tuple[Path, ...]  # the signer's secrets: the comm user must not read them
    link: LinkTimeouts = LinkTimeouts()
    pacing: Pacing | None = None  # None: write at once (ptys, USB links with flow control)


def _secret_paths(data: dict, base: Path) -> tuple[Path, ...]:
    """Keys, passphrases, the database and the signer's state, as the file names them."""
    tables = [_section(data, "signer"), _section(data, "openpgp")]
    roots = _section(_section(data, "x509"), "roots")
    tables += [t for t in roots.values() if isinstance(t, dict)]
    keys = ("key", "passphrase_file", "database", "state_dir", "home", "key_file")
    return tuple(
        sorted(
            {
                (base / t[k]).resolve()
                for t in tables
                for k in keys
                if isinstance(t.get(k), str) and t[k]
            }
        )
    )


def _section(data: dict, name: str) -> dict:
    value = data.get(name, {})
    if not isinstance(value, dict):
        raise CommConfigError(f"[{name}] must be a table")
    return value


def _typed(table: dict, key: str, kind: type, default, where: str):
    value = table.get(key, default)
    if value is None:
        raise CommConfigError(f"{where}.{key} is required")
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        raise CommConfigError(f"{where}.{key} must be of type {kind.__name__}")
    return value


def _bounded(comm: dict, key: str, default: float, low: float, high: float):
    value = _typed(comm, key, type(default), default, "comm")
    if not low <= value <= high:
        raise CommConfigError(f"comm.{key} must be within {low}-{high}, not {value}")
    return value


def _link_timeouts(comm: dict) -> LinkTimeouts:
    d = LinkTimeouts()
    return LinkTimeouts(
        ready=_bounded(comm, "ready_timeout", d.ready, 0.01, 60.0),
        verdict=_bounded(comm, "verdict_timeout", d.verdict, 0.01, 60.0),
        chunk=_bounded(comm, "chunk_timeout", d.chunk, 0.01, 60.0),
        max_resends=_bounded(comm, "max_resends", d.max_resends, 0, 20),
        max_naks=_bounded(comm, "max_naks", d.max_naks, 0, 20),
        max_message=_bounded(comm, "max_message", d.max_message, 64, MAX_STRING),
    )


def _pacing(comm: dict) -> Pacing | None:
    if not _typed(comm, "pace", bool, False, "comm"):
        return None
    d = DEPLOYED_PACING
    return Pacing(
        slice_bytes=_bounded(comm, "pace_slice_bytes", d.slice_bytes, 1, 65536),
        per_byte=_bounded(comm, "pace_per_byte", d.per_byte, 0.0, 0.01),
        per_slice=_bounded(comm, "pace_per_slice", d.per_slice, 0.0, 1.0),
    )


def load_comm_config(path: Path) -> CommConfig:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise CommConfigError(f"{path}: {exc}") from exc
    spool, comm = _section(data, "spool"), _section(data, "comm")
    spool_dir = _typed(spool, "dir", str, None, "spool")
    unknown = sorted(set(comm) - COMM_KEYS)
    if unknown:
        raise CommConfigError(f"comm.{unknown[0]}: unknown key")
    device = _typed(comm, "device", str, None, "comm")
    deadline = _typed(comm, "result_deadline", float, DEFAULT_DEADLINE, "comm")
    if not 1.0 <= deadline <= CLIENT_PATIENCE - 5.0:
        raise CommConfigError("comm.result_deadline must be 1-115 s: the client gives up at 120 s")
    return CommConfig(
        spool_dir=(path.parent / spool_dir).resolve(),
        device=device,
        baud=_typed(comm, "baud", int, 115200, "comm"),
        user=_typed(comm, "user", str, "", "comm"),
        group=_typed(comm, "group", str, "", "comm"),
        result_deadline=deadline,
        forbidden=_secret_paths(data, path.parent),
        link=_link_timeouts(comm),
        pacing=_pacing(comm),
    )
