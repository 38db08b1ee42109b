"""``[x509]``: the X.509 roots, the built-in profiles' overrides and new profiles.

Trusted side; the file is the operator's (see ``signer_core.config``). A
root's key and certificate are only named here: ``signer_core.roots`` loads
them, and refuses a root it cannot use with a reason. A root's ``key`` is a
PEM file, or a ``pkcs11:`` URI (RFC 7512) with ``module`` and ``pin_file``
beside it: the URI is parsed here, so that a bad one stops the signer at start.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

from cryptography.x509.oid import ObjectIdentifier

from signer_core.tokens.uri import TokenURI, TokenURIError, is_token_uri, parse_uri
from signer_core.x509.profiles import BUILTIN_PROFILES, KEY_USAGE_NAMES, Profile, SanSource
from spool.header import DIGEST_IDS
from spool.settings import ConfigError, Table

DIGEST_NAMES = frozenset(DIGEST_IDS.values())


@dataclasses.dataclass(frozen=True)
class TokenKeyConfig:
    """A key in a PKCS#11 token (a root's, the audit log's): which one, the module that
    reaches it, its PIN's file."""

    uri: TokenURI
    module: Path
    pin_file: Path


@dataclasses.dataclass(frozen=True)
class RootConfig:
    id: int
    name: str
    key: Path | None  # a PEM file; None when the key is in a token
    certificate: Path
    passphrase_file: Path | None
    crl_url: str
    default_digest: str
    token: TokenKeyConfig | None = None


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


def _oid(t: Table, name: str, default: Any = ...) -> str:
    value = t.str_(name, default)
    try:
        ObjectIdentifier(value)
    except ValueError as exc:
        raise ConfigError(f"{t.key(name)}: not an OID") from exc
    return value


def url(t: Table, name: str, default: Any = ...) -> str:
    value = t.str_(name, default)
    if not value.startswith(("http://", "https://")) or any(c.isspace() for c in value):
        raise ConfigError(f"{t.key(name)}: not an http(s) URL")
    return value


def _digest(t: Table, name: str) -> str:
    value = t.str_(name, "sha256").lower().replace("-", "")
    if value not in DIGEST_NAMES:
        raise ConfigError(f"{t.key(name)}: unknown digest (one of {sorted(DIGEST_NAMES)})")
    return value


def read_x509(t: Table) -> X509Config:
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
        ocsp_url=url(t, "ocsp_url", "http://ocsp.cacert.org/"),
        cps_url=url(t, "cps_url", "http://www.cacert.org/cps.php"),
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


def _int_key(t: Table, key: str, hi: int) -> int:
    if not key.isdigit() or int(key) > hi:
        raise ConfigError(f"{t.key(key)}: table name must be a number 0-{hi}")
    return int(key)


def _root(rid: int, t: Table) -> RootConfig:
    token = token_key(t, "key")
    r = RootConfig(
        id=rid,
        name=t.str_("name"),
        key=None if token else t.path("key"),
        certificate=t.path("certificate"),
        passphrase_file=None if token else t.opt_path("passphrase_file"),
        crl_url=url(t, "crl_url"),
        default_digest=_digest(t, "default_digest"),
        token=token,
    )
    t.finish()
    return r


def token_key(t: Table, name: str, default: Any = ...) -> TokenKeyConfig | None:
    """``module`` and ``pin_file`` with a ``pkcs11:`` URI in ``name``; None for a key file."""
    key = t.str_(name, default)
    if not is_token_uri(key):
        for beside in ("module", "pin_file"):
            if beside in t.data:
                raise ConfigError(
                    f'{t.key(beside)}: only for a key in a token ({name} = "pkcs11:...")'
                )
        return None
    if "passphrase_file" in t.data:
        raise ConfigError(f"{t.key('passphrase_file')}: a key in a token has pin_file instead")
    try:
        uri = parse_uri(key)
    except TokenURIError as exc:
        raise ConfigError(f"{t.key(name)}: {exc}") from None
    return TokenKeyConfig(uri=uri, module=t.path("module"), pin_file=t.path("pin_file"))


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


def _profile(pid: int, base: Profile | None, t: Table) -> Profile:
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
