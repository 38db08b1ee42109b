"""The comm handler's part of the appliance configuration.

Untrusted side. Reads only ``[spool]`` and ``[comm]`` from the shared TOML
file; it never looks at roots, keys or the database. The file is written by
the operator and is trusted as far as its syntax goes; every value is checked
here so that the daemon fails at start with the key at fault named, not later.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

DEFAULT_DEADLINE = 100.0


class CommConfigError(ValueError):
    """The configuration cannot be used; the message names the key."""


@dataclass(frozen=True)
class CommConfig:
    spool_dir: Path
    device: str
    baud: int
    user: str
    group: str
    result_deadline: float
    forbidden: tuple[Path, ...]  # the signer's secrets: the comm user must not read them


def _secret_paths(data: dict, base: Path) -> tuple[Path, ...]:
    """Keys, passphrases, the database and the signer's state, as the file names them."""
    tables = [_section(data, "signer"), _section(data, "openpgp")]
    roots = _section(_section(data, "x509"), "roots")
    tables += [t for t in roots.values() if isinstance(t, dict)]
    keys = ("key", "passphrase_file", "database", "state_dir", "home", "key_file")
    return tuple(sorted({(base / t[k]).resolve() for t in tables for k in keys
                         if isinstance(t.get(k), str) and t[k]}))


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


def load_comm_config(path: Path) -> CommConfig:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise CommConfigError(f"{path}: {exc}") from exc
    spool, comm = _section(data, "spool"), _section(data, "comm")
    spool_dir = _typed(spool, "dir", str, None, "spool")
    device = _typed(comm, "device", str, None, "comm")
    deadline = _typed(comm, "result_deadline", float, DEFAULT_DEADLINE, "comm")
    if not 1.0 <= deadline <= 115.0:
        raise CommConfigError("comm.result_deadline must be 1-115 s: the client gives up at 120 s")
    return CommConfig(
        spool_dir=(path.parent / spool_dir).resolve(),
        device=device,
        baud=_typed(comm, "baud", int, 115200, "comm"),
        user=_typed(comm, "user", str, "", "comm"),
        group=_typed(comm, "group", str, "", "comm"),
        result_deadline=deadline,
        forbidden=_secret_paths(data, path.parent),
    )
