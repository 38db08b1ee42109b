"""The appliance's configuration file (TOML), as the signer reads it once at start-up.

Trusted side: the file is written by the operator and owned by root; it is
still checked strictly, so that a typo fails fast with a ``ConfigError``
naming the key at fault instead of surfacing as a wrong certificate, or as
a root refused at start, later. Relative paths resolve against the
directory holding the file.

One reader per section: ``spool.settings`` reads ``[spool]`` and ``[comm]``
(the comm handler reads them with the same code), ``signer`` reads
``[signer]`` and ``[crl]``, ``x509`` reads ``[x509]``, ``openpgp`` reads
``[openpgp]``, ``audit`` reads ``[audit]``. This module puts them together,
refuses unknown sections and nests the time limits across sections.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from signer_core.config.audit import AuditConfig, read_audit
from signer_core.config.openpgp import OpenPGPConfig, read_openpgp
from signer_core.config.signer import CRLConfig, SignerConfig, read_crl, read_signer
from signer_core.config.x509 import RootConfig, TokenKeyConfig, X509Config, read_x509
from spool.corrupt import CorruptLimits
from spool.settings import CommSettings, ConfigError, read_comm, read_file, read_spool

__all__ = [
    "AuditConfig",
    "CRLConfig",
    "CommSettings",
    "Config",
    "ConfigError",
    "OpenPGPConfig",
    "RootConfig",
    "SignerConfig",
    "TokenKeyConfig",
    "X509Config",
    "load_config",
]


@dataclasses.dataclass(frozen=True)
class Config:
    path: Path
    spool_dir: Path
    comm: CommSettings
    signer: SignerConfig
    x509: X509Config
    openpgp: OpenPGPConfig | None
    crl: CRLConfig
    audit: AuditConfig
    spool_limits: CorruptLimits = CorruptLimits()


def load_config(path: Path) -> Config:
    """Read and check the whole file; raise ConfigError naming the bad key."""
    path = Path(path)
    top = read_file(path)
    spool = read_spool(top)
    signer = read_signer(top.sub("signer"))
    x509 = read_x509(top.sub("x509"))
    cfg = Config(
        path=path,
        spool_dir=spool.dir,
        comm=read_comm(top),
        signer=signer,
        x509=x509,
        openpgp=read_openpgp(top, x509.cps_url),
        crl=read_crl(top.sub("crl")),
        audit=read_audit(top.sub("audit"), signer.state_dir),
        spool_limits=spool.corrupt,
    )
    top.finish()
    return _nest_time_limits(cfg, top.data)


def _nest_time_limits(cfg: Config, data: dict[str, Any]) -> Config:
    """Each wait ends inside the one around it: gpg's, a request's, the comm handler's.

    A limit left unset is brought inside the one around it (at most half of
    it); a limit set that does not fit is a ConfigError naming it.
    """
    deadline = cfg.comm.result_deadline
    budget = _nested(
        cfg.signer.request_budget_seconds,
        deadline,
        "request_budget_seconds" in data.get("signer", {}),
        f"signer.request_budget_seconds: must be below comm.result_deadline"
        f" ({deadline:g} s), or the web host gives up first",
    )
    cfg = dataclasses.replace(
        cfg, signer=dataclasses.replace(cfg.signer, request_budget_seconds=budget)
    )
    if cfg.openpgp is None:
        return cfg
    wall = _nested(
        cfg.openpgp.gpg_limits.wall_seconds,
        budget,
        "gpg_wall_seconds" in data.get("openpgp", {}),
        f"openpgp.gpg_wall_seconds: must be below signer.request_budget_seconds"
        f" ({budget:g} s), so that gpg's own limit refuses first",
    )
    gpg_limits = dataclasses.replace(cfg.openpgp.gpg_limits, wall_seconds=wall)
    return dataclasses.replace(cfg, openpgp=dataclasses.replace(cfg.openpgp, gpg_limits=gpg_limits))


def _nested(value: float, outer: float, explicit: bool, error: str) -> float:
    if not explicit:
        return min(value, outer / 2)
    if value >= outer:
        raise ConfigError(error)
    return value
