"""``[audit]``: the witnessed audit log's key, its name, and how often the signer measures itself.

Trusted side; the file is the operator's (see ``signer_core.config``). The
origin is the log key's name in every checkpoint, so it is checked here,
printable ASCII without spaces or '+' (within signed-note's rule, which
``tlog.note`` checks): a name the web side would refuse must stop the signer
at start, not every sync later. ``log_key`` is a file, or a ``pkcs11:`` URI
with ``module`` and ``pin_file`` beside it, read as a root's ``key`` is
(``signer_core.config.x509.token_key``).
"""

from __future__ import annotations

import dataclasses
import re
import socket
from pathlib import Path

from signer_core.config.x509 import TokenKeyConfig, token_key
from spool.settings import ConfigError, Table
from tlog.note import NAME_CHARS

LOG_KEY_NAME = "audit-log.key"
# Below a second the measurement (a few hundred ms of hashing) would be most of what the
# signer does; above a week a changed program stays unseen longer than an operator's visit.
MIN_INTERVAL, MAX_INTERVAL = 1.0, 7 * 86400.0


@dataclasses.dataclass(frozen=True)
class AuditConfig:
    # PKCS#8 PEM, made by the signer at its first start; with a token key, only the name
    # its verifier line is written beside (<log_key>.pub): <state_dir>/audit-log.key.
    log_key: Path
    origin: str  # the log's name, and its key's
    # Seconds between two "integrity" records while the signer runs (one is made at start).
    integrity_interval_seconds: float = 86400.0
    token: TokenKeyConfig | None = None  # the key in a token: never made by the signer


def default_origin() -> str:
    """This machine's name, reduced to what an origin may hold, and the program's."""
    host = re.sub(f"[^{NAME_CHARS}]", "", socket.gethostname())
    return f"{host}/signer-appliance"


def read_audit(t: Table, state_dir: Path) -> AuditConfig:
    default = str(state_dir / LOG_KEY_NAME)
    token = token_key(t, "log_key", default)
    a = AuditConfig(
        log_key=Path(default) if token else t.path("log_key", default),
        origin=t.str_("origin", default_origin()),
        integrity_interval_seconds=t.float_(
            "integrity_interval_seconds",
            AuditConfig.integrity_interval_seconds,
            MIN_INTERVAL,
            MAX_INTERVAL,
            " seconds",
        ),
        token=token,
    )
    # Stricter than signed-note: the name this appliance chooses is printable ASCII.
    if not re.fullmatch(f"[{NAME_CHARS}]+", a.origin):
        raise ConfigError(
            f"{t.key('origin')}: the key name {a.origin!r} is not printable ASCII"
            " without spaces and '+'"
        )
    t.finish()
    return a
