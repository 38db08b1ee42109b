"""The configuration file's shared part: the TOML reader and the two sections both daemons read.

Shared by both sides of the trust boundary; no policy beyond the file's own
rules. The file is written by the operator and owned by root: it is trusted
as far as its syntax goes, and every value is still checked, so that a typo
stops the daemon at start with a ``ConfigError`` naming the dotted key.

``[spool]`` and ``[comm]`` are read here and nowhere else: both daemons call
``read_spool`` and ``read_comm`` on the same file, so they see the same
values and defaults, and refuse a bad value with the same message. The
signer needs ``[comm]`` for the contract between the two (``user`` owns the
files in incoming/, ``result_deadline`` bounds a request's time budget); it
reads the link keys too, so that a value the comm handler would refuse, or a
key nobody knows, stops both. Each daemon's own sections are read by its own
package (``signer_core.config``) with ``Table``.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from spool.corrupt import CorruptLimits
from spool.record import MAX_PAYLOAD


class ConfigError(ValueError):
    """The configuration file is unreadable or a key in it is wrong; the message names it."""


class Table:
    """One TOML table with typed getters that name the dotted key on error.

    Each getter marks its key as read; ``finish`` refuses the keys nobody read.
    """

    def __init__(self, data: Any, where: str, base: Path) -> None:
        if not isinstance(data, dict):
            raise ConfigError(f"[{where}] must be a table")
        self.data, self.where, self.base = data, where, base
        self.used: set[str] = set()

    def key(self, name: str) -> str:
        return f"{self.where}.{name}" if self.where else name

    def get(self, name: str, kind: type | tuple[type, ...], default: Any = ...) -> Any:
        self.used.add(name)
        if name not in self.data:
            if default is ...:
                raise ConfigError(f"{self.key(name)}: missing")
            return default
        value = self.data[name]
        # bool is an int subclass: never accept it where a number is meant.
        if not isinstance(value, kind) or (isinstance(value, bool) and bool not in _tuple(kind)):
            raise ConfigError(f"{self.key(name)}: expected {_kind_name(kind)}")
        return value

    def str_(self, name: str, default: Any = ...) -> str:
        value: str = self.get(name, str, default)
        return value

    def int_(self, name: str, default: Any = ..., lo: int = 0, hi: int = 2**31) -> int:
        value: int = self.get(name, int, default)
        if value is not None and not lo <= value <= hi:
            raise ConfigError(f"{self.key(name)}: must be between {lo} and {hi}")
        return value

    def number(self, name: str, default: Any = ...) -> float:
        """An int or a float, as a float (TOML writes 100 and 100.0 for the same seconds)."""
        return float(self.get(name, (int, float), default))

    def float_(self, name: str, default: Any, lo: float, hi: float, why: str = "") -> float:
        value = self.number(name, default)
        if not lo <= value <= hi:  # NaN is outside every range
            raise ConfigError(f"{self.key(name)}: must be between {lo:g} and {hi:g}{why}")
        return value

    def bool_(self, name: str, default: Any = ...) -> bool:
        value: bool = self.get(name, bool, default)
        return value

    def path(self, name: str, default: Any = ...) -> Path:
        value = self.str_(name, default)
        if not value:
            raise ConfigError(f"{self.key(name)}: empty path")
        return self.base / value

    def opt_path(self, name: str) -> Path | None:
        value = self.str_(name, "")
        return self.base / value if value else None

    def sub(self, name: str) -> Table:
        """The table ``name`` (empty when absent: every key then has its default)."""
        self.used.add(name)
        return Table(self.data.get(name, {}), self.key(name), self.base)

    def finish(self) -> None:
        extra = sorted(set(self.data) - self.used)
        if extra:
            raise ConfigError(f"{self.key(extra[0])}: unknown key")


def _tuple(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


def _kind_name(kind: type | tuple[type, ...]) -> str:
    return " or ".join(k.__name__ for k in _tuple(kind))


def read_file(path: Path) -> Table:
    """The whole file as the top table; relative paths in it resolve against its directory."""
    path = Path(path)
    try:
        with path.open("rb") as f:
            data = tomllib.load(f)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from exc
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    return Table(data, "", path.parent.resolve())


@dataclass(frozen=True)
class SpoolSettings:
    dir: Path
    corrupt: CorruptLimits = CorruptLimits()  # only the signer keeps corrupt/


def read_spool(top: Table) -> SpoolSettings:
    t = top.sub("spool")
    d = CorruptLimits()
    s = SpoolSettings(
        dir=t.path("dir"),
        corrupt=CorruptLimits(
            max_entries=t.int_("corrupt_max_entries", d.max_entries, 0, 10**7),
            max_bytes=t.int_("corrupt_max_bytes", d.max_bytes, 0, 2**40),
        ),
    )
    t.finish()
    return s


@dataclass(frozen=True)
class LinkTimeouts:
    """The comm handler's side of the transfer handshake (see comm_handler.transfer)."""

    ready: float = 20.0  # s the client may take to answer our start byte
    verdict: float = 5.0  # s the client may take to ACK/NAK our frame
    chunk: float = 5.0  # s of silence that abandons a request frame
    max_resends: int = 5  # resends of a response the client NAKs
    max_naks: int = 5  # NAKs of a damaged request before it is dropped
    max_message: int = MAX_PAYLOAD  # bytes a request may declare


@dataclass(frozen=True)
class PaceSettings:
    """Slow writes, when ``pace = true``: the deployed server's (transfer.DEPLOYED_PACING)."""

    slice_bytes: int = 30
    per_byte: float = 270e-6
    per_slice: float = 9e-3


# The deployed web host gives up 120 s after its request; a "timeout" answer must beat it.
CLIENT_PATIENCE = 120.0


@dataclass(frozen=True)
class CommSettings:
    """``[comm]``: the serial link, and who the comm handler is to the signer."""

    device: str = "/dev/ttyUSB0"  # a device path or a pyserial URL
    baud: int = 115200
    user: str = "_signer-comm"  # run as, if started as root; owner of the files in incoming/
    group: str = "_signer-comm"
    result_deadline: float = 100.0  # s the comm handler waits for a result, then "timeout"
    link: LinkTimeouts = LinkTimeouts()
    pacing: PaceSettings | None = None  # None: write at once (ptys, USB, a buffering UART)


def read_comm(top: Table) -> CommSettings:
    t = top.sub("comm")
    d, dl, dp = CommSettings(), LinkTimeouts(), PaceSettings()
    link = LinkTimeouts(
        ready=t.float_("ready_timeout", dl.ready, 0.01, 60),
        verdict=t.float_("verdict_timeout", dl.verdict, 0.01, 60),
        chunk=t.float_("chunk_timeout", dl.chunk, 0.01, 60),
        max_resends=t.int_("max_resends", dl.max_resends, 0, 20),
        max_naks=t.int_("max_naks", dl.max_naks, 0, 20),
        max_message=t.int_("max_message", dl.max_message, 64, MAX_PAYLOAD),
    )
    # Checked whether pacing is on or not, so that turning it on cannot reveal a bad value.
    pacing = PaceSettings(
        slice_bytes=t.int_("pace_slice_bytes", dp.slice_bytes, 1, 65536),
        per_byte=t.float_("pace_per_byte", dp.per_byte, 0, 0.01),
        per_slice=t.float_("pace_per_slice", dp.per_slice, 0, 1),
    )
    c = CommSettings(
        device=t.str_("device", d.device),
        baud=t.int_("baud", d.baud, 50, 4_000_000),
        user=t.str_("user", d.user),
        group=t.str_("group", d.group),
        result_deadline=t.float_(
            "result_deadline",
            d.result_deadline,
            1,
            CLIENT_PATIENCE - 5,
            f" s: the web host gives up at {CLIENT_PATIENCE:g} s",
        ),
        link=link,
        pacing=pacing if t.bool_("pace", False) else None,
    )
    if not c.device:
        raise ConfigError(f"{t.key('device')}: empty")
    t.finish()
    return c
