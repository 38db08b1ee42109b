"""The comm handler's part of the appliance configuration.

Untrusted side. Reads ``[spool]`` and ``[comm]`` from the shared TOML file
with ``spool.settings``, the one reader of those sections (the signer uses
it too, so both see the same values and defaults, and refuse the same bad
value with the same message; every key, its default and its range are
there). It never looks at roots, keys or the database, except for the
paths of the signer's secrets, which it must find unreadable. The file is
written by the operator and is trusted as far as its syntax goes.

Pacing is off by default: on a pty, a USB link or a UART whose driver
buffers the output, writing at once is safe and fast. Turn it on for the
deployed web host's serial line if its reads overrun: the slices and delays
are those of the deployed server (a 1.3 kB certificate then takes 0.75 s
instead of 0.11 s of line time). The deployed client waits 5 s between our
chunks, 20 s for our ready and 5 s for our verdict; the timeouts here only
bound how long a silent or broken client can hold the line.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from comm_handler.transfer import Pacing
from spool.settings import ConfigError, LinkTimeouts, read_comm, read_file, read_spool


@dataclass(frozen=True)
class CommConfig:
    """What the comm daemon runs with: ``spool.settings.CommSettings``, in the link's types."""

    spool_dir: Path
    device: str
    baud: int
    user: str
    group: str
    result_deadline: float
    forbidden: tuple[Path, ...]  # the signer's secrets: the comm user must not read them
    link: LinkTimeouts = LinkTimeouts()
    pacing: Pacing | None = None  # None: write at once (ptys, USB links with flow control)


def _secret_paths(data: dict[str, Any], base: Path) -> tuple[Path, ...]:
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


def _section(data: dict[str, Any], name: str) -> dict[str, Any]:
    value = data.get(name, {})
    if not isinstance(value, dict):
        raise ConfigError(f"[{name}] must be a table")
    return value


def load_comm_config(path: Path) -> CommConfig:
    top = read_file(path)
    spool, comm = read_spool(top), read_comm(top)
    return CommConfig(
        spool_dir=spool.dir,
        device=comm.device,
        baud=comm.baud,
        user=comm.user,
        group=comm.group,
        result_deadline=comm.result_deadline,
        forbidden=_secret_paths(top.data, top.base),
        link=comm.link,
        pacing=None if comm.pacing is None else Pacing(**asdict(comm.pacing)),
    )
