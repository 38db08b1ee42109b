"""``[signer]`` and ``[crl]``: the signer daemon's own settings.

Trusted side; the file is the operator's (see ``signer_core.config``). Each
key's default is its dataclass field's, each range is here.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from spool.settings import ConfigError, Table


@dataclasses.dataclass(frozen=True)
class SignerConfig:
    user: str
    group: str
    database: Path
    state_dir: Path
    # How long an undelivered answer is given again to the same request bytes.
    retry_window_days: int = 7
    # Wall-clock seconds one request may hold the signer (the queue waits behind it).
    request_budget_seconds: float = 20.0
    # A keep-alive further than this from the signer's clock is not believed (timesync).
    max_clock_drift_seconds: float = 86400.0
    # The drift history takes a row when the drift moves by more than this (or every 10 min)...
    clock_history_step_seconds: float = 10.0
    # ...and keeps this many rows at most, the oldest pruned.
    clock_history_max_rows: int = 10_000


@dataclasses.dataclass(frozen=True)
class CRLConfig:
    validity_days: int = 7
    history: int = 16
    prune_expired_after_days: int = 0


def read_signer(t: Table) -> SignerConfig:
    d = SignerConfig
    s = SignerConfig(
        user=t.str_("user", "_signer"),
        group=t.str_("group", "_signer"),
        database=t.path("database", "/var/lib/signer-appliance/ca.sqlite"),
        state_dir=t.path("state_dir", "/var/lib/signer-appliance"),
        retry_window_days=t.int_("retry_window_days", d.retry_window_days, 1, 366),
        request_budget_seconds=t.number("request_budget_seconds", d.request_budget_seconds),
        max_clock_drift_seconds=t.number("max_clock_drift_seconds", d.max_clock_drift_seconds),
        clock_history_step_seconds=t.number(
            "clock_history_step_seconds", d.clock_history_step_seconds
        ),
        clock_history_max_rows=t.int_(
            "clock_history_max_rows", d.clock_history_max_rows, 1, 10_000_000
        ),
    )
    if not 0 < s.request_budget_seconds < 100:
        raise ConfigError("signer.request_budget_seconds: must be above 0 and below 100")
    # Beyond these a setting defeats itself: a drift limit under a minute refuses honest
    # readings, one over ten years refuses nothing. NaN is outside every range.
    for key, lo, hi in (
        ("max_clock_drift_seconds", 60, 10 * 366 * 86400),
        ("clock_history_step_seconds", 1, 86400),
    ):
        if not lo <= getattr(s, key) <= hi:
            raise ConfigError(f"signer.{key}: must be between {lo} and {hi} seconds")
    t.finish()
    return s


def read_crl(t: Table) -> CRLConfig:
    d = CRLConfig()
    c = CRLConfig(
        validity_days=t.int_("validity_days", d.validity_days, 1, 3660),
        history=t.int_("history", d.history, 0, 100_000),
        prune_expired_after_days=t.int_(
            "prune_expired_after_days", d.prune_expired_after_days, 0, 100_000
        ),
    )
    t.finish()
    return c
