"""Reading a backup archive as hostile input: the tar stream against its manifest.

Trusted side tooling, for ``restore``. Anyone holding the public backup key
can make an archive, and a copy carried on a stick can be damaged, so the
decrypted tar stream is read as hostile: ``MANIFEST`` must come first; every
other member must be a regular file the manifest lists, of the listed size
and SHA-256, and none may be missing; names are checked before they become
paths; the stream may not outgrow the manifest. Members land in a private
staging directory, never in place. Every refusal is a ``RestoreError``.
"""

from __future__ import annotations

import hashlib
import os
import tarfile
from pathlib import Path
from typing import IO, cast

from signerctl.backup.manifest import (
    MANIFEST,
    MAX_MANIFEST,
    BackupError,
    Manifest,
    Member,
    check_member_name,
    parse_manifest,
)

_SLACK = 64 * 1024  # tar headers, pax records and padding per member


class RestoreError(Exception):
    """The backup is refused, or cannot be put in place; the message says why."""


class _Bounded:
    """A read-only stream that refuses to deliver more than ``limit`` bytes."""

    def __init__(self, raw: IO[bytes], limit: int) -> None:
        self.raw, self.limit, self.consumed = raw, limit, 0

    def read(self, size: int = -1) -> bytes:
        room = self.limit - self.consumed + 1
        data = self.raw.read(room if size < 0 else min(size, room))
        self.consumed += len(data)
        if self.consumed > self.limit:
            raise RestoreError("the archive holds more data than its manifest lists")
        return data


def _read_manifest(tar: tarfile.TarFile, stream: _Bounded) -> Manifest:
    info = tar.next()
    if info is None or info.name != MANIFEST or not info.isreg():
        raise RestoreError("the archive does not start with its MANIFEST")
    if info.size > MAX_MANIFEST:
        raise RestoreError("MANIFEST too large")
    manifest = parse_manifest(_contents(tar, info).read())
    listed = sum(m.size for m in manifest.members)
    stream.limit = stream.consumed + listed + (len(manifest.members) + 2) * _SLACK
    return manifest


def _contents(tar: tarfile.TarFile, info: tarfile.TarInfo) -> IO[bytes]:
    reader = tar.extractfile(info)
    assert reader is not None, "a regular member always has contents"
    return reader


def _stage_member(
    tar: tarfile.TarFile, info: tarfile.TarInfo, member: Member, staging: Path
) -> None:
    if not info.isreg():
        raise RestoreError(f"member {member.name}: not a regular file")
    if info.size != member.size:
        raise RestoreError(f"member {member.name}: {info.size} bytes, manifest says {member.size}")
    target = staging / member.name
    try:
        target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except (FileExistsError, NotADirectoryError) as exc:
        raise RestoreError(f"member {member.name}: clashes with another member") from exc
    digest, source = hashlib.sha256(), _contents(tar, info)
    with os.fdopen(fd, "wb") as out:
        for block in iter(lambda: source.read(1 << 20), b""):
            digest.update(block)
            out.write(block)
    if digest.hexdigest() != member.sha256:
        raise RestoreError(f"member {member.name}: SHA-256 differs from the manifest (altered)")


def read_archive(stream: IO[bytes], staging: Path) -> Manifest:
    """Check the tar stream against its manifest, writing members under ``staging``."""
    bounded = _Bounded(stream, MAX_MANIFEST + 4 * _SLACK)
    try:
        with tarfile.open(fileobj=cast(IO[bytes], bounded), mode="r|") as tar:
            manifest = _read_manifest(tar, bounded)
            expected = {m.name: m for m in manifest.members}
            seen: set[str] = set()
            while (info := tar.next()) is not None:
                name = check_member_name(info.name)
                if name in seen:
                    raise RestoreError(f"member {name}: appears twice")
                if name not in expected:
                    raise RestoreError(f"member {name}: extra, not in the manifest")
                seen.add(name)
                _stage_member(tar, info, expected[name], staging)
            while bounded.read(1 << 16):
                pass
    except (tarfile.TarError, EOFError) as exc:
        raise RestoreError(f"the archive is damaged or truncated: {exc}") from exc
    except BackupError as exc:
        raise RestoreError(str(exc)) from exc
    missing = sorted(set(expected) - seen)
    if missing:
        raise RestoreError(f"member {missing[0]}: in the manifest but missing from the archive")
    return manifest
