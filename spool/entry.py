"""Spool entries: their names, the ids in them, and the checked read of one.

Shared by both sides. An entry is named for the id of the record it holds
and its kind (``<time_ns:020d>-<hex32>.req``, ``.dlv``, ``.res``), so ids,
and the names of valid entries, sort in the order they were made. A name
says nothing of what the file holds: ``read_entry`` reads the file with the
hostile-file rules and checks the record's own id against its name, so what
it returns may be trusted as far as the record decoder checks it.
"""

from __future__ import annotations

import re
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, TypeVar

from spool.record import (
    ID_PATTERN,
    MAX_REQUEST_SIZE,
    RECEIPT_SIZE,
    Receipt,
    Request,
    SpoolFormatError,
    decode_receipt,
    decode_request,
)
from spool.safeio import read_hostile

R = TypeVar("R", Request, Receipt)

REQUEST_SUFFIX = ".req"
RECEIPT_SUFFIX = ".dlv"
RESULT_SUFFIX = ".res"


@dataclass(frozen=True)
class EntryKind(Generic[R]):
    """What an entry of one kind is called, may weigh, and is decoded with."""

    suffix: str
    max_size: int
    decode: Callable[[bytes], R]


REQUEST = EntryKind(REQUEST_SUFFIX, MAX_REQUEST_SIZE, decode_request)
RECEIPT = EntryKind(RECEIPT_SUFFIX, RECEIPT_SIZE, decode_receipt)

_NAMES = {
    suffix: re.compile(rf"({ID_PATTERN.pattern}){re.escape(suffix)}")
    for suffix in (REQUEST_SUFFIX, RECEIPT_SUFFIX, RESULT_SUFFIX)
}


def entry_id(name: str, suffix: str) -> str | None:
    """The id in ``name`` if it is a valid name for an entry ending in ``suffix``, else None."""
    match = _NAMES[suffix].fullmatch(name)
    return None if match is None else match.group(1)


def id_time(record_id: str) -> float:
    """When the id was made, in seconds since the epoch."""
    return int(record_id[:20]) / 1e9


def read_entry(directory: Path, name: str, kind: EntryKind[R], *, expected_uid: int | None) -> R:
    """The record in ``directory/name``, checked against its name.

    ``UnsafeEntry`` or ``SpoolFormatError`` (the message is the reason) if it
    is refused; ``FileNotFoundError`` if it is gone.
    """
    record_id = entry_id(name, kind.suffix)
    if record_id is None:
        raise SpoolFormatError(f"name does not match <time_ns>-<hex32>{kind.suffix}")
    data = read_hostile(directory / name, max_size=kind.max_size, expected_uid=expected_uid)
    entry = kind.decode(data)
    if entry.id != record_id:
        raise SpoolFormatError(f"file holds id {entry.id}")
    return entry


class _IdClock:
    """Strictly increasing nanosecond stamps, so ids sort in the order they were made."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last = 0

    def next_id(self) -> str:
        with self._lock:
            self._last = max(time.time_ns(), self._last + 1)
            return f"{self._last:020d}-{uuid.uuid4().hex}"


_CLOCK = _IdClock()


def new_id() -> str:
    """A fresh id, later than every id made before it in this process."""
    return _CLOCK.next_id()
