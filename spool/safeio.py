"""File primitives of the spool: atomic commit and the hostile-file read.

Shared by both sides, and the one atomic write of the project. Two ways to
publish a file, so that a reader sees no file or the whole file:

- ``commit_file``/``commit_stream`` (signerctl's backups, restored files,
  baselines and exports; the clock script): a dot-prefixed temporary name
  created exclusively with its final mode, written, fsynced, renamed into
  place (the commit point), then the directory fsynced. Durable, and it may
  replace an older file.
- ``publish`` (every spool entry): a new name, never a replacement, and not
  flushed. The spool is a volatile handoff on a tmpfs of its own; what must
  survive a power cut is in the CA database (docs/reliability.md). The file
  is made unnamed (``O_TMPFILE``), written, then linked under its name, so a
  watcher of the directory sees one event per entry, the link, and no
  temporary name at all; a crash leaves nothing behind. Where the file
  system cannot (no ``O_TMPFILE``), a dot-temporary renamed into place.

``read_hostile`` is how the signer reads an entry the comm handler
(untrusted) may have made: it never follows a link, never blocks on a FIFO,
never opens a non-regular file, and never reads more than the caller's
bound. It trusts nothing but the kernel's answers from ``lstat``/``fstat``
on the opened descriptor.
"""

from __future__ import annotations

import errno
import os
import stat
import uuid
from collections.abc import Callable
from pathlib import Path

_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY
_CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW
_TMPFILE_FLAGS = os.O_WRONLY | os.O_TMPFILE | os.O_CLOEXEC
# What open(O_TMPFILE) says on a file system (or kernel) that cannot make unnamed files.
_NO_TMPFILE = (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL)
_CHUNK = 1 << 20


class UnsafeEntry(Exception):
    """A directory entry the signer refuses to read; the message is the reason."""


def fsync_dir(directory: Path) -> None:
    """Make renames and unlinks in ``directory`` durable."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_all(fd: int, data: bytes) -> None:
    """Write all of ``data`` to ``fd`` (``os.write`` may take only part of it)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def publish(directory: Path, name: str, data: bytes, mode: int) -> None:
    """Create ``directory/name`` with ``data`` and ``mode``, whole or not at all, unflushed.

    ``FileExistsError`` if the name is taken: a spool entry is never replaced.
    """
    try:
        fd = os.open(directory, _TMPFILE_FLAGS, mode)
    except OSError as exc:
        if exc.errno not in _NO_TMPFILE:
            raise
        _publish_by_rename(directory, name, data, mode)
        return
    try:
        os.fchmod(fd, mode)  # the umask must not decide who can read it
        write_all(fd, data)
        dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            # dst_dir_fd makes Python call linkat(AT_SYMLINK_FOLLOW): plain
            # link() would link the /proc symbolic link itself (EXDEV).
            os.link(f"/proc/self/fd/{fd}", name, dst_dir_fd=dir_fd, follow_symlinks=True)
        finally:
            os.close(dir_fd)
    finally:
        os.close(fd)


def _publish_by_rename(directory: Path, name: str, data: bytes, mode: int) -> None:
    if os.path.lexists(directory / name):  # writers of a spool directory use fresh names
        raise FileExistsError(errno.EEXIST, "spool entry exists", str(directory / name))
    commit_stream(directory, name, lambda fd: write_all(fd, data), mode, durable=False)


def commit_file(directory: Path, name: str, data: bytes, mode: int) -> None:
    """Atomically and durably create or replace ``directory/name`` with ``data`` and ``mode``."""
    commit_stream(directory, name, lambda fd: write_all(fd, data), mode)


def commit_stream(
    directory: Path, name: str, fill: Callable[[int], None], mode: int, *, durable: bool = True
) -> None:
    """Atomically create or replace ``directory/name``: ``fill(fd)`` writes its contents.

    The temporary file has ``mode`` before ``fill`` writes a byte (the umask
    must not decide who can read it); ``fill`` may also ``fchown`` it.
    Readers ignore dot-files, so the file exists for them only after the
    rename; a crash leaves at most a dot-prefixed temporary file behind, an
    exception (from ``fill`` too) removes it. ``durable=False`` skips both
    flushes (``publish``'s fallback).
    """
    temp = f".{name}.{uuid.uuid4().hex[:12]}.tmp"
    fd = os.open(directory / temp, _CREATE_FLAGS, mode)
    try:
        try:
            os.fchmod(fd, mode)
            fill(fd)
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(directory / temp, directory / name)
    except BaseException:
        unlink_quietly(directory / temp)
        raise
    if durable:
        fsync_dir(directory)


def unlink_quietly(path: Path) -> None:
    """Remove ``path`` if possible; a vanished entry or a directory is not an error here."""
    try:
        os.unlink(path)
    except OSError:
        pass


def _kind(mode: int) -> str:
    for test, label in (
        (stat.S_ISLNK, "symbolic link"),
        (stat.S_ISDIR, "directory"),
        (stat.S_ISFIFO, "FIFO"),
        (stat.S_ISSOCK, "socket"),
        (stat.S_ISCHR, "character device"),
        (stat.S_ISBLK, "block device"),
    ):
        if test(mode):
            return label
    return f"file type {stat.S_IFMT(mode):#o}"


def _check(st: os.stat_result, max_size: int, expected_uid: int | None) -> None:
    if not stat.S_ISREG(st.st_mode):
        raise UnsafeEntry(f"not a regular file: {_kind(st.st_mode)}")
    if st.st_nlink != 1:
        raise UnsafeEntry(f"has {st.st_nlink} hard links, expected 1")
    if expected_uid is not None and st.st_uid != expected_uid:
        raise UnsafeEntry(f"owned by uid {st.st_uid}, expected {expected_uid}")
    if st.st_size > max_size:
        raise UnsafeEntry(f"size {st.st_size} exceeds {max_size}")


def _read_bounded(fd: int, max_size: int) -> bytes:
    chunks: list[bytes] = []
    total = 0
    while True:
        chunk = os.read(fd, min(_CHUNK, max_size + 1 - total))
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        total += len(chunk)
        if total > max_size:
            raise UnsafeEntry(f"grew beyond {max_size} bytes while being read")


def read_hostile(path: Path, *, max_size: int, expected_uid: int | None = None) -> bytes:
    """Read a regular, singly-linked, bounded file at ``path`` without trusting it.

    ``FileNotFoundError`` if the entry vanished before it was opened (its
    owner may remove it); ``UnsafeEntry`` for every refusal.
    """
    before = os.lstat(path)
    _check(before, max_size, expected_uid)  # refuse devices and FIFOs before any open
    try:
        fd = os.open(path, _READ_FLAGS)
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise UnsafeEntry(f"cannot open: {exc.strerror}") from None
    try:
        st = os.fstat(fd)
        if (st.st_dev, st.st_ino) != (before.st_dev, before.st_ino):
            raise UnsafeEntry("replaced between lstat and open")
        _check(st, max_size, expected_uid)
        try:
            return _read_bounded(fd, max_size)
        except OSError as exc:
            raise UnsafeEntry(f"cannot read: {exc.strerror}") from None
    finally:
        os.close(fd)
