"""The appliance's configuration file (TOML), read once at start-up.

Trusted side: the file is written by the operator and owned by root; it is
still checked strictly, so that a typo fails fast with a ``ConfigError``
naming the key at fault instead of surfacing as a wrong certificate later.
Relative paths resolve against the directory holding the file.
"""

from __future__ import annotations

import dataclasses
import tomllib
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

from cryptography.x509.oid import ObjectIdentifier

from signer_core.x509.profiles import BUILTIN_PROFILES, KEY_USAGE_NAMES, Profile, SanSource

OPENPGP_DIGESTS = frozenset({"SHA224", "SHA256", "SHA384", "SHA512"})
DIGEST_NAMES = frozenset({"md5", "sha1", "ripemd160", "sha256", "sha384", "sha512"})


class ConfigError(ValueError):
    """The configuration file is unreadable or a key in it is wrong."""


@dataclasses.dataclass(frozen=True)
class CommConfig:
    device: str
    baud: int
    user: str
    group: str
    result_deadline: float


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
class RootConfig:
    id: int
    name: str
    key: Path
    certificate: Path
    passphrase_file: Path | None
    crl_url: str
    default_digest: str


@dataclasses.dataclass(frozen=True)
class X509Config:
    ocsp_url: str
    cps_url: str
    policy_oid: str
    allow_weak_digests: bool
    allow_ed25519: bool
    blocklist_file: Path | None
    roots: Mapping[int, RootConfig]
    profiles: Mapping[int, Profile]
    subject_order: str = "policy"  # "policy" (the old CA's DN order) or "as-sent"


@dataclasses.dataclass(frozen=True)
class OpenPGPConfig:
    home: Path | None
    key_file: Path | None
    fingerprint: str
    passphrase_file: Path | None
    policy_url: str
    cert_level: int = 2
    digest: str = "SHA256"
    workdir: Path | None = None  # parent of the per-request GnuPG homes; <state_dir>/gpg by default
    # Bounds on a requester's key block before gpg sees it (openpgp_packets.PacketLimits).
    max_packets: int = 2000
    max_user_ids: int = 100
    max_subkeys: int = 32
    max_signatures: int = 1000
    max_signatures_per_uid: int = 200
    max_key_bits: int = 8192
    max_rsa_exponent_bits: int = 32
    # gpg's work on one request (openpgp_gpg.GpgLimits): CPU s per process, wall-clock s in all.
    gpg_cpu_seconds: int = 5
    gpg_wall_seconds: float = 10.0


@dataclasses.dataclass(frozen=True)
class CRLConfig:
    validity_days: int = 7
    history: int = 16
    prune_expired_after_days: int = 0


@dataclasses.dataclass(frozen=True)
class SpoolLimits:
    """How much of what it refuses the signer keeps in corrupt/; past it, refused entries go."""

    corrupt_max_entries: int = 1000
    corrupt_max_bytes: int = 16 * 2**20


@dataclasses.dataclass(frozen=True)
class Config:
    path: Path
    spool_dir: Path
    comm: CommConfig
    signer: SignerConfig
    x509: X509Config
    openpgp: OpenPGPConfig | None
    crl: CRLConfig
    spool_limits: SpoolLimits = SpoolLimits()


class _Table:
    """One TOML table with typed getters that name the dotted key on error."""

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
        return self.get(name, str, default)

    def int_(self, name: str, default: Any = ..., lo: int = 0, hi: int = 2**31) -> int:
        value = self.get(name, int, default)
        if value is not None and not lo <= value <= hi:
            raise ConfigError(f"{self.key(name)}: must be between {lo} and {hi}")
        return value

    def bool_(self, name: str, default: Any = ...) -> bool:
        return self.get(name, bool, default)

    def path(self, name: str, default: Any = ...) -> Path:
        value = self.str_(name, default)
        if not value:
            raise ConfigError(f"{self.key(name)}: empty path")
        return self.base / value

    def opt_path(self, name: str) -> Path | None:
        value = self.str_(name, "")
        return self.base / value if value else None

    def sub(self, name: str, default_empty: bool = True) -> _Table:
        self.used.add(name)
        data = self.data.get(name, {} if default_empty else None)
        return _Table(data, self.key(name), self.base)

    def finish(self) -> None:
        extra = sorted(set(self.data) - self.used)
        if extra:
            raise ConfigError(f"{self.key(extra[0])}: unknown key")


def _tuple(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


def _kind_name(kind: type | tuple[type, ...]) -> str:
    return " or ".join(k.__name__ for k in _tuple(kind))


def load_config(path: Path) -> Config:
    """Read and check the whole file; raise ConfigError naming the bad key."""
    path = Path(path)
    try:
        with path.open("rb") as f:
            data = tomllib.load(f)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    top = _Table(data, "", path.parent.resolve())
    spool = _sub_top(top, "spool")
    spool_dir = spool.path("dir")
    d = SpoolLimits()
    spool_limits = SpoolLimits(
        corrupt_max_entries=spool.int_("corrupt_max_entries", d.corrupt_max_entries, 0, 10**7),
        corrupt_max_bytes=spool.int_("corrupt_max_bytes", d.corrupt_max_bytes, 0, 2**40),
    )
    spool.finish()
    x509 = _x509(_sub_top(top, "x509"))
    openpgp = _openpgp(top, x509.cps_url)
    cfg = Config(
        path=path,
        spool_dir=spool_dir,
        comm=_comm(_sub_top(top, "comm")),
        signer=_signer(_sub_top(top, "signer")),
        x509=x509,
        openpgp=openpgp,
        crl=_crl(_sub_top(top, "crl")),
        spool_limits=spool_limits,
    )
    top.finish()
    return _nest_time_limits(cfg, data)


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
        cfg.openpgp.gpg_wall_seconds,
        budget,
        "gpg_wall_seconds" in data.get("openpgp", {}),
        f"openpgp.gpg_wall_seconds: must be below signer.request_budget_seconds"
        f" ({budget:g} s), so that gpg's own limit refuses first",
    )
    return dataclasses.replace(cfg, openpgp=dataclasses.replace(cfg.openpgp, gpg_wall_seconds=wall))


def _nested(value: float, outer: float, explicit: bool, error: str) -> float:
    if not explicit:
        return min(value, outer / 2)
    if value >= outer:
        raise ConfigError(error)
    return value


def _sub_top(top: _Table, name: str) -> _Table:
    top.used.add(name)
    return _Table(top.data.get(name, {}), name, top.base)


def _openpgp(top: _Table, cps_url: str) -> OpenPGPConfig | None:
    if "openpgp" not in top.data:
        top.used.add("openpgp")
        return None
    t = _sub_top(top, "openpgp")
    fpr = t.str_("fingerprint").replace(" ", "").upper()
    if len(fpr) not in (40, 64) or any(c not in "0123456789ABCDEF" for c in fpr):
        raise ConfigError("openpgp.fingerprint: 40 or 64 hex digits")
    # Integer bounds, each with its default from OpenPGPConfig and its allowed range.
    bounds = {
        name: t.int_(name, getattr(OpenPGPConfig, name), lo, hi)
        for name, lo, hi in (
            ("max_packets", 10, 100_000),
            ("max_user_ids", 1, 10_000),
            ("max_subkeys", 0, 10_000),
            ("max_signatures", 1, 100_000),
            ("max_signatures_per_uid", 1, 100_000),
            ("max_key_bits", 2048, 16384),
            ("max_rsa_exponent_bits", 17, 16384),
            ("gpg_cpu_seconds", 1, 600),
        )
    }
    o = OpenPGPConfig(
        home=t.opt_path("home"),
        key_file=t.opt_path("key_file"),
        fingerprint=fpr,
        passphrase_file=t.opt_path("passphrase_file"),
        policy_url=_url(t, "policy_url", cps_url),
        cert_level=t.int_("cert_level", 2, 0, 3),
        digest=t.str_("digest", "SHA256").upper(),
        workdir=t.opt_path("workdir"),
        gpg_wall_seconds=float(
            t.get("gpg_wall_seconds", (int, float), OpenPGPConfig.gpg_wall_seconds)
        ),
        **bounds,
    )
    if not 0 < o.gpg_wall_seconds <= 600:
        raise ConfigError("openpgp.gpg_wall_seconds: must be above 0 and at most 600")
    if o.digest not in OPENPGP_DIGESTS:
        raise ConfigError(f"openpgp.digest: one of {sorted(OPENPGP_DIGESTS)}")
    if o.home is None and o.key_file is None:
        raise ConfigError("openpgp.home: give home or key_file")
    t.finish()
    return o


# Link settings that only the comm handler reads; comm_handler.config checks them.
COMM_LINK_KEYS = frozenset(
    {
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


def _comm(t: _Table) -> CommConfig:
    c = CommConfig(
        device=t.str_("device", "/dev/ttyUSB0"),
        baud=t.int_("baud", 115200, 50, 4_000_000),
        user=t.str_("user", "_signer-comm"),
        group=t.str_("group", "_signer-comm"),
        result_deadline=float(t.get("result_deadline", (int, float), 100.0)),
    )
    if not 0 < c.result_deadline < 120:
        raise ConfigError("comm.result_deadline: must be above 0 and below the client's 120 s")
    t.used |= COMM_LINK_KEYS
    t.finish()
    return c


def _signer(t: _Table) -> SignerConfig:
    s = SignerConfig(
        user=t.str_("user", "_signer"),
        group=t.str_("group", "_signer"),
        database=t.path("database", "/var/lib/signer-appliance/ca.sqlite"),
        state_dir=t.path("state_dir", "/var/lib/signer-appliance"),
        retry_window_days=t.int_("retry_window_days", 7, 1, 366),
        request_budget_seconds=float(t.get("request_budget_seconds", (int, float), 20.0)),
        max_clock_drift_seconds=float(t.get("max_clock_drift_seconds", (int, float), 86400.0)),
        clock_history_step_seconds=float(t.get("clock_history_step_seconds", (int, float), 10.0)),
        clock_history_max_rows=t.int_("clock_history_max_rows", 10_000, 1, 10_000_000),
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


def _crl(t: _Table) -> CRLConfig:
    c = CRLConfig(
        validity_days=t.int_("validity_days", 7, 1, 3660),
        history=t.int_("history", 16, 0, 100_000),
        prune_expired_after_days=t.int_("prune_expired_after_days", 0, 0, 100_000),
    )
    t.finish()
    return c


def _oid(t: _Table, name: str, default: Any = ...) -> str:
    value = t.str_(name, default)
    try:
        ObjectIdentifier(value)
    except ValueError as exc:
        raise ConfigError(f"{t.key(name)}: not an OID") from exc
    return value


def _url(t: _Table, name: str, default: Any = ...) -> str:
    value = t.str_(name, default)
    if not value.startswith(("http://", "https://")) or any(c.isspace() for c in value):
        raise ConfigError(f"{t.key(name)}: not an http(s) URL")
    return value


def _digest(t: _Table, name: str) -> str:
    value = t.str_(name, "sha256").lower().replace("-", "")
    if value not in DIGEST_NAMES:
        raise ConfigError(f"{t.key(name)}: unknown digest (one of {sorted(DIGEST_NAMES)})")
    return value


def _x509(t: _Table) -> X509Config:
    roots_t = t.sub("roots")
    roots = {}
    for key in roots_t.data:
        roots_t.used.add(key)
        rid = _int_key(roots_t, key, 255)
        roots[rid] = _root(rid, roots_t.sub(key))
    profiles = dict(BUILTIN_PROFILES)
    prof_t = t.sub("profiles")
    for key in prof_t.data:
        prof_t.used.add(key)
        pid = _int_key(prof_t, key, 255)
        profiles[pid] = _profile(pid, profiles.get(pid), prof_t.sub(key))
    x = X509Config(
        ocsp_url=_url(t, "ocsp_url", "http://ocsp.cacert.org/"),
        cps_url=_url(t, "cps_url", "http://www.cacert.org/cps.php"),
        policy_oid=_oid(t, "policy_oid", "1.3.6.1.4.1.18506.4.4"),
        allow_weak_digests=t.bool_("allow_weak_digests", False),
        allow_ed25519=t.bool_("allow_ed25519", False),
        blocklist_file=t.opt_path("blocklist_file"),
        roots=MappingProxyType(roots),
        profiles=MappingProxyType(profiles),
        subject_order=t.str_("subject_order", "policy"),
    )
    if x.subject_order not in ("policy", "as-sent"):
        raise ConfigError(f'{t.key("subject_order")}: "policy" or "as-sent"')
    t.finish()
    return x


def _int_key(t: _Table, key: str, hi: int) -> int:
    if not key.isdigit() or int(key) > hi:
        raise ConfigError(f"{t.key(key)}: table name must be a number 0-{hi}")
    return int(key)


def _root(rid: int, t: _Table) -> RootConfig:
    r = RootConfig(
        id=rid,
        name=t.str_("name"),
        key=t.path("key"),
        certificate=t.path("certificate"),
        passphrase_file=t.opt_path("passphrase_file"),
        crl_url=_url(t, "crl_url"),
        default_digest=_digest(t, "default_digest"),
    )
    t.finish()
    return r


_PROFILE_KEYS: dict[str, type] = {
    "name": str,
    "enabled": bool,
    "key_usage": list,
    "extended_key_usage": list,
    "san_source": str,
    "ca": bool,
    "path_length": int,
    "max_days": int,
    "ocsp_nocheck": bool,
    "eku_critical": bool,
    "require_san": bool,
    "require_xmpp": bool,
    "server_names": bool,
    "email_names": bool,
    "policy_oids": list,
}
_NEW_PROFILE_REQUIRED = ("name", "enabled", "key_usage", "extended_key_usage", "san_source")


def _profile(pid: int, base: Profile | None, t: _Table) -> Profile:
    """A built-in profile with overrides, or a new profile (main keys then required)."""
    fields = {k: t.get(k, kind) for k, kind in _PROFILE_KEYS.items() if k in t.data}
    t.finish()
    if base is None:
        for key in _NEW_PROFILE_REQUIRED:
            if key not in fields:
                raise ConfigError(f"{t.key(key)}: missing (profile {pid} is not built in)")
    for key in ("extended_key_usage", "policy_oids", "key_usage"):
        if not all(isinstance(v, str) for v in fields.get(key, ())):
            raise ConfigError(f"{t.key(key)}: a list of strings")
    for key in ("extended_key_usage", "policy_oids"):
        for oid in fields.get(key, ()):
            try:
                ObjectIdentifier(oid)
            except ValueError as exc:
                raise ConfigError(f"{t.key(key)}: bad OID {oid[:40]!r}") from exc
    if not set(fields.get("key_usage", ())) <= KEY_USAGE_NAMES:
        raise ConfigError(f"{t.key('key_usage')}: names are {sorted(KEY_USAGE_NAMES)}")
    if fields.get("san_source", "none") not in {s.value for s in SanSource}:
        raise ConfigError(f"{t.key('san_source')}: one of {[s.value for s in SanSource]}")
    converters = {"key_usage": frozenset, "extended_key_usage": tuple, "san_source": SanSource}
    values = {k: converters.get(k, lambda v: v)(v) for k, v in fields.items()}
    if "policy_oids" in values:
        values["extra_policy_oids"] = tuple(values.pop("policy_oids"))
    try:
        if base is None:
            return Profile(id=pid, **values)
        return dataclasses.replace(base, **values)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{t.where}: {exc}") from exc
