"""corrupt/: what the signer refuses, kept with its reason, within bounds.

Trusted (signer) side; what it handles is hostile. An entry refused in
incoming/ belongs to the comm user (untrusted), who may race the signer on
it: it may vanish, become a directory or a link, or grow through a
descriptor kept open. So a refused entry is never opened or followed: it is
renamed as it is, with a ``<name>.reason`` file of ours beside it; what
cannot be moved is removed, and what can be neither is skipped with one log
line. None of that raises for what the entry is or becomes meanwhile; only
the signer's own storage failing (an I/O error, corrupt/ unreadable) does.
Not flushed: a refusal is not a commit. A move lost to a power cut leaves
the entry where it was, to be refused again.

corrupt/ is bounded (``CorruptLimits``): past either bound a refused entry
is removed instead of kept, and counted by reason for ``drop_report``. An
entry counts as the space its inode takes when it is moved: what the comm
user writes later through a descriptor it kept is counted when corrupt/ is
counted again, what it puts into a directory it made writable to us is not
counted; the spool's own filesystem bounds both.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from spool.entry import new_id

log = logging.getLogger(__name__)

REASON_SUFFIX = ".reason"
REASON_MODE = 0o600
RECOUNT_EVERY = 10.0  # s between recounts of a full corrupt/ (an operator may have purged it)
MAX_KINDS = 16  # reasons a drop report tells apart; the rest count as "other"
_REASON_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC
_REASON_BLOCK = 4096  # space a reason file takes, until corrupt/ is counted again
_KEEP_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,199}")
_PARTICULARS = re.compile(r"[0-9a-f]{8,}|[0-9]+")


@dataclass(frozen=True)
class CorruptLimits:
    """How much corrupt/ keeps; past either bound a refused entry is removed instead."""

    max_entries: int = 1000
    max_bytes: int = 16 * 2**20  # space taken (blocks) by kept entries and their reasons


DEFAULT_LIMITS = CorruptLimits()


@dataclass(frozen=True)
class DropReport:
    """Refused entries removed instead of kept, or skipped, since the last report."""

    counts: dict[str, int]  # removed, per kind of reason
    bytes: int  # the space they took
    skipped: int  # entries that could be neither moved aside nor removed


class CorruptDir:
    """The corrupt/ directory at ``path``, its usage and what was dropped; one signer thread."""

    def __init__(self, path: Path, limits: CorruptLimits) -> None:
        self.path = path
        self.limits = limits
        self._usage: list[int] | None = None  # [entries, bytes], counted lazily
        self._counted_at = -float("inf")
        self._drops: Counter[str] = Counter()
        self._dropped_bytes = 0
        self._skipped = 0

    def refuse(self, directory: Path, name: str, reason: str) -> bool:
        """Move ``directory/name`` here with its reason, or remove it past the bounds.

        False if it could be neither: it was skipped and is still there.
        """
        try:
            st = os.lstat(directory / name)
        except FileNotFoundError:
            return True
        size = st.st_blocks * 512
        if not self._room_for(size):
            return self._drop(directory, name, reason, size)
        target = self._target_name(name)
        try:
            os.rename(directory / name, self.path / target)
        except FileNotFoundError:
            return True
        except OSError:
            # A directory the comm user keeps unwritable to us cannot be moved
            # (its ".." cannot change); nor anything when corrupt/ cannot grow.
            return self._drop(directory, name, reason, size)
        log.warning("spool: %s/%r refused: %s", directory.name, name, reason)
        self._write_reason(target, f"{reason}\noriginal: {directory.name}/{name!r}\n")
        usage = self._current_usage()
        usage[0] += 1
        usage[1] += size + _REASON_BLOCK
        return True

    def drop_report(self) -> DropReport | None:
        """What was removed instead of kept, or skipped, since the last call; None if nothing."""
        if not self._drops and not self._skipped:
            return None
        report = DropReport(dict(self._drops), self._dropped_bytes, self._skipped)
        self._drops, self._dropped_bytes, self._skipped = Counter(), 0, 0
        return report

    def _target_name(self, name: str) -> str:
        if (
            not _KEEP_NAME.fullmatch(name)
            or name.endswith(REASON_SUFFIX)
            or os.path.lexists(self.path / name)
        ):
            return f"{new_id()}.bad"
        return name

    def _write_reason(self, target: str, text: str) -> None:
        try:
            fd = os.open(self.path / (target + REASON_SUFFIX), _REASON_FLAGS, REASON_MODE)
            try:
                os.write(fd, text.encode("utf-8", "replace"))
            finally:
                os.close(fd)
        except OSError as exc:
            log.error("spool: cannot write the reason for %r: %s", target, exc)

    def _room_for(self, size: int) -> bool:
        """Whether corrupt/ may keep one more entry taking ``size`` bytes."""
        entries, used = self._current_usage()
        return (
            entries < self.limits.max_entries
            and used + size + _REASON_BLOCK <= self.limits.max_bytes
        )

    def _current_usage(self) -> list[int]:
        """[entries, bytes] in corrupt/: counted at first use, again when full now and then."""
        now = time.monotonic()
        if self._usage is None or (
            now - self._counted_at >= RECOUNT_EVERY
            and (
                self._usage[0] >= self.limits.max_entries
                or self._usage[1] + _REASON_BLOCK > self.limits.max_bytes
            )
        ):
            self._usage = self._count()
            self._counted_at = now
        return self._usage

    def _count(self) -> list[int]:
        entries = used = 0
        for name in os.listdir(self.path):
            try:
                used += os.lstat(self.path / name).st_blocks * 512
            except FileNotFoundError:
                continue
            entries += not name.startswith(".") and not name.endswith(REASON_SUFFIX)
        return [entries, used]

    def _drop(self, directory: Path, name: str, reason: str, size: int) -> bool:
        """Remove a refused entry instead of keeping it; counted for ``drop_report``."""
        try:
            _remove(directory / name)
        except FileNotFoundError:
            return True
        except OSError as exc:
            self._skip(directory, name, reason, exc)
            return False
        if not self._drops:
            log.warning(
                "spool: refused entries are being removed instead of kept (corrupt/ "
                "is at its bounds, or they could not be moved); counts follow"
            )
        kind = _kind(reason)
        if kind not in self._drops and len(self._drops) >= MAX_KINDS:
            kind = "other"
        self._drops[kind] += 1
        self._dropped_bytes += size
        return True

    def _skip(self, directory: Path, name: str, reason: str, exc: OSError) -> None:
        log.error(
            "spool: %s/%r refused (%s) but can be neither moved aside nor removed (%s); "
            "skipping it",
            directory.name,
            name,
            reason,
            exc.strerror,
        )
        self._skipped += 1


def _remove(path: Path) -> None:
    try:
        os.unlink(path)  # never follows a link
    except IsADirectoryError:
        os.rmdir(path)  # only an empty one: what a directory holds is left to its owner


def _kind(reason: str) -> str:
    """The reason without its particulars (numbers, ids, quoted values), to count by."""
    head = re.split(r"['\"]", reason, maxsplit=1)[0]
    return _PARTICULARS.sub("N", head).strip()[:60] or "other"
