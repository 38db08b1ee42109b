"""``[audit]``: the witnessed audit log's key, its name, and how often the signer measures itself.

Trusted side; the file is the operator's (see ``signer_core.config``). The
origin is the log key's name in every checkpoint, so it is checked here,
printable ASCII without spaces or '+' (within signed-note's rule, which
``tlog.note`` checks): a name the web side would refuse must stop the signer
at start, not every sync later.
"""

from __future__ import annotations

import dataclasses
import re
import socket
from pathlib import Path

from spool.settings import ConfigError, Table
from tlog.note import NAME_CHARS

LOG_KEY_NAME = "audit-log.key"
# Below a second the measurement (a few hundred ms of hashing) would be most of what the
# signer does; above a week a changed program stays unseen longer than an operator's visit.
MIN_INTERVAL, MAX_INTERVAL = 1.0, 7 * 86400.0


@dataclasses.dataclass(frozen=True)
class AuditConfig:
    log_key: Path  # PKCS#8 PEM, made by the signer at its first start
    origin: str  # the log's name, and its key's
    # Seconds between two "integrity" records while the signer runs (one is made at start).
    integrity_interval_seconds: float = 86400.0


def default_origin() -> str:
    """This machine's name, reduced to what an origin may hold, and the program's."""
    host = re.sub(f"[^{NAME_CHARS}]", "", socket.gethostname())
    return f"{host}/signer-appliance"


def read_audit(t: Table, state_dir: Path) -> AuditConfig:
    a = AuditConfig(
        log_key=t.path("log_key", str(state_dir / LOG_KEY_NAME)),
        origin=t.str_("origin", default_origin()),
        integrity_interval_seconds=t.float_(
            "integrity_interval_seconds",
            AuditConfig.integrity_interval_seconds,
            MIN_INTERVAL,
            MAX_INTERVAL,
            " seconds",
        ),
    )
    # Stricter than signed-note: the name this appliance chooses is printable ASCII.
    if not re.fullmatch(f"[{NAME_CHARS}]+", a.origin):
        raise ConfigError(
            f"{t.key('origin')}: the key name {a.origin!r} is not printable ASCII"
            " without spaces and '+'"
        )
    t.finish()
    return a
