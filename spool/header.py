"""The 9-byte v1 request header, as it travels from the link into the spool.

Part of the contract between the two daemons: the comm handler reads the
action from it (to know whether the web host waits for an answer) and
copies it into the request record unchanged; the signer parses it again and
trusts nothing the comm handler made of it. Pure data, no I/O; every field
is checked on construction and any inconsistency is a ``HeaderError``.

Layout: version (1, or 2 for a request that came over link protocol v2) | action | system | root | profile | md | days (2,
big-endian) | key-type flag (0 PKCS#10, 1 SPKAC).

What the md and profile bytes mean is part of the header too:
``DIGEST_IDS`` and ``BUILTIN_PROFILE_NAMES`` are the one table of each, which
the signer issues by and the web host's client takes names from.

The key-type flag says how the web side stored the request; the payload
decides, as on the deployed server: ``is_spkac`` is the one test, which the
web host's client uses to set the flag and the signer to choose its parser
(it ignores the flag). It splits and strips, no pattern, so it is linear in
its input: the signer runs it on hostile bytes (bounded before the call).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TypeVar

from spool.record import HEADER_SIZE

VERSION = 1
VERSION_2 = 2

DIGEST_IDS: Mapping[int, str] = MappingProxyType(
    {1: "md5", 2: "sha1", 3: "ripemd160", 8: "sha256", 9: "sha384", 10: "sha512"}
)
"""The md byte of an X.509 request: digest id to digest name (0: the root's default)."""

BUILTIN_PROFILE_NAMES: Mapping[int, str] = MappingProxyType(
    {
        0: "client",
        1: "client-org",
        2: "code-signing",
        3: "client-machine",
        4: "client-ads",
        5: "server",
        6: "server-org",
        7: "server-xmpp",
        8: "ocsp",
        9: "timestamp",
        10: "proxy",
        11: "subca",
    }
)
"""The profile byte: the built-in profiles' ids and short names. The configuration
may rename these and add others, which have numbers only on the link."""


class HeaderError(ValueError):
    """A request header that is not a valid v1 header; the message says which field."""


class Action(enum.IntEnum):
    NUL = 0
    SIGN = 1
    REVOKE = 2
    STATUS = 3  # v2 only: what the web host may know of the appliance's state
    AUDIT = 4  # v2 only: reserved for the audit log's exchange


V2_ONLY = frozenset({Action.STATUS, Action.AUDIT})


class System(enum.IntEnum):
    NONE = 0
    X509 = 1
    OPENPGP = 2


_E = TypeVar("_E", Action, System)


def _enum_value(kind: type[_E], value: int, name: str) -> _E:
    try:
        return kind(value)
    except ValueError:
        raise HeaderError(f"unknown {name} {value}") from None


@dataclass(frozen=True, kw_only=True)
class RequestHeader:
    """The 9-byte request header, validated on construction."""

    version: int = VERSION
    action: Action
    system: System
    root: int = 0
    profile: int = 0
    md: int = 0
    days: int = 0
    spkac: bool = False

    def __post_init__(self) -> None:
        if self.version not in (VERSION, VERSION_2):
            raise HeaderError(f"unsupported protocol version {self.version}")
        object.__setattr__(self, "action", _enum_value(Action, self.action, "action"))
        if self.action in V2_ONLY and self.version != VERSION_2:
            raise HeaderError(f"action {self.action} exists in protocol version 2 only")
        object.__setattr__(self, "system", _enum_value(System, self.system, "system"))
        for name in ("root", "profile", "md"):
            if not 0 <= getattr(self, name) <= 255:
                raise HeaderError(f"{name} {getattr(self, name)} does not fit in a byte")
        if not 0 <= self.days <= 0xFFFF:
            raise HeaderError(f"days {self.days} does not fit in 16 bits")
        if not isinstance(self.spkac, bool):
            raise HeaderError("spkac flag must be a bool")

    @classmethod
    def from_bytes(cls, data: bytes, *, version: int = VERSION) -> RequestHeader:
        """Parse a header that must be of protocol ``version``: a v1 message never
        carries a v2 header, and a v2 request never a v1 one."""
        if len(data) != HEADER_SIZE:
            raise HeaderError(f"request header has {len(data)} bytes, expected {HEADER_SIZE}")
        if data[0] != version:
            raise HeaderError(f"unsupported protocol version {data[0]}")
        if data[8] not in (0, 1):
            raise HeaderError(f"key-type flag {data[8]} is neither 0 nor 1")
        return cls(
            version=data[0],
            action=_enum_value(Action, data[1], "action"),
            system=_enum_value(System, data[2], "system"),
            root=data[3],
            profile=data[4],
            md=data[5],
            days=int.from_bytes(data[6:8], "big"),
            spkac=bool(data[8]),
        )

    def to_bytes(self) -> bytes:
        return (
            bytes([self.version, self.action, self.system, self.root, self.profile, self.md])
            + self.days.to_bytes(2, "big")
            + bytes([int(self.spkac)])
        )


def spkac_value(line: bytes) -> bytes | None:
    """The value of a ``SPKAC = value`` line (blanks around each part), else None.

    Split and strip, not a pattern: a lazy group before trailing blanks
    backtracks quadratically (64 KiB of blanks cost over a minute).
    """
    name, sep, value = line.partition(b"=")
    return value.strip() if sep and name.strip() == b"SPKAC" else None


def is_spkac(payload1: bytes) -> bool:
    """Whether a Sign X.509 request's payload 1 is an SPKAC block: one of its lines is
    ``SPKAC=...``. Anything else is taken for a PKCS#10 request."""
    return any(spkac_value(line) is not None for line in payload1.splitlines())
