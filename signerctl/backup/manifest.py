"""The backup archive's format: its member names and its ``MANIFEST``.

Trusted side tooling, shared by ``archive`` (which writes the manifest of
what it packs) and ``restore`` (which reads archives as hostile): the
manifest parser accepts nothing but the format below, every member name is
checked before it can become a path, and every failure is a ``BackupError``.

``MANIFEST`` is JSON: the format, the time the backup was made, the audit
head the archive contains (number of records and hash of the last one) and
the name, size and SHA-256 of every other member.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

FORMAT = "signer-appliance-backup/1"
MANIFEST = "MANIFEST"
MAX_MANIFEST = 1 << 20
MAX_MEMBERS = 10_000
CONFIG_MEMBER = "config/signer.toml"
DATABASE_MEMBER = "database/ca.sqlite"
BLOCKLIST_MEMBER = "config/blocklist"  # the operator's list of compromised public keys
_NAME = re.compile(r"[A-Za-z0-9._+~-]{1,128}")
_HEX64 = re.compile(r"[0-9a-f]{64}")


class BackupError(Exception):
    """A backup cannot be made or read; the message says why."""


@dataclass(frozen=True)
class Member:
    name: str
    size: int
    sha256: str


@dataclass(frozen=True)
class Manifest:
    created: str
    audit_count: int
    audit_head: str
    includes_keys: bool
    members: tuple[Member, ...]

    def to_bytes(self) -> bytes:
        data = {
            "format": FORMAT,
            "created": self.created,
            "audit": {"count": self.audit_count, "head": self.audit_head},
            "includes_keys": self.includes_keys,
            "members": [{"name": m.name, "size": m.size, "sha256": m.sha256} for m in self.members],
        }
        return (json.dumps(data, indent=1, sort_keys=True) + "\n").encode()


def check_member_name(name: object) -> str:
    """A relative path of safe components; the only names restore will write."""
    if not isinstance(name, str) or len(name) > 1024:
        raise BackupError("member name is not a short string")
    parts = name.split("/")
    if len(parts) > 8 or not all(_NAME.fullmatch(p) and p not in (".", "..") for p in parts):
        raise BackupError(f"unsafe member name {name[:80]!r}")
    return name


def _field(data: dict, key: str, kind: type) -> Any:
    value = data.get(key)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise BackupError(f"manifest: {key} missing or not a {kind.__name__}")
    return value


def _member(item: object) -> Member:
    if not isinstance(item, dict) or set(item) != {"name", "size", "sha256"}:
        raise BackupError("manifest: a member entry is malformed")
    size, digest = _field(item, "size", int), _field(item, "sha256", str)
    if not 0 <= size < 1 << 50 or not _HEX64.fullmatch(digest):
        raise BackupError("manifest: a member's size or SHA-256 is malformed")
    return Member(check_member_name(item["name"]), size, digest)


def parse_manifest(raw: bytes) -> Manifest:
    """The manifest of an archive; BackupError on anything unexpected."""
    if len(raw) > MAX_MANIFEST:
        raise BackupError("manifest too large")
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise BackupError("manifest is not JSON") from exc
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise BackupError(f"manifest: not a {FORMAT} archive")
    audit, items = _field(data, "audit", dict), _field(data, "members", list)
    count, head = _field(audit, "count", int), _field(audit, "head", str)
    if count < 0 or not _HEX64.fullmatch(head) or len(items) > MAX_MEMBERS:
        raise BackupError("manifest: audit head or member list malformed")
    members = tuple(_member(item) for item in items)
    names = [m.name for m in members]
    if len(set(names)) != len(names) or MANIFEST in names:
        raise BackupError("manifest: a member is listed twice")
    return Manifest(
        _field(data, "created", str), count, head, _field(data, "includes_keys", bool), members
    )
