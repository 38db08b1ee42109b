"""The operator's view of the spool: list, show, requeue, purge.

Trusted side tooling: run by ``signerctl`` as root or as the signer user,
never by a daemon; it trusts nothing it reads in the spool. Entries
are read with the same hostile-file rules as the signer uses (no links
followed, bounded reads), because whatever is in incoming/ or corrupt/ may
have been planted by a compromised comm handler. Requeue moves a refused
entry back to incoming/ unchanged, so the signer checks it again from
scratch; purge is the only way anything in corrupt/ is ever deleted.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from signerctl.cli import CtlError, problem
from spool.corrupt import REASON_SUFFIX as REASON
from spool.entry import RECEIPT_SUFFIX, REQUEST_SUFFIX, RESULT_SUFFIX, id_time
from spool.queue import STATES, Spool
from spool.record import (
    MAX_REQUEST_SIZE,
    MAX_RESULT_SIZE,
    RECEIPT_SIZE,
    Receipt,
    Request,
    Result,
    SpoolFormatError,
    decode_receipt,
    decode_request,
    decode_result,
    is_valid_id,
)
from spool.safeio import UnsafeEntry, read_hostile

MAX_REASON = 4096


@dataclass(frozen=True)
class Entry:
    state: str
    name: str
    age_seconds: float
    size: int
    reason: str  # first line of the refusal, corrupt/ only


def _reason(spool: Spool, name: str) -> str:
    try:
        text = read_hostile(spool.corrupt / (name + REASON), max_size=MAX_REASON)
    except (OSError, UnsafeEntry):
        return "(no reason recorded)"
    return text.decode("utf-8", "replace").splitlines()[0] if text else ""


def entries(spool: Spool, states: tuple[str, ...] = STATES) -> list[Entry]:
    now = time.time()
    out = []
    for state in states:
        directory = spool.root / state
        for name in sorted(os.listdir(directory)):
            if name.startswith(".") or name.endswith(REASON):
                continue
            info = os.lstat(directory / name)
            out.append(
                Entry(
                    state,
                    name,
                    round(now - info.st_mtime, 1),
                    info.st_size,
                    _reason(spool, name) if state == "corrupt" else "",
                )
            )
    return out


def find(spool: Spool, name: str) -> tuple[str, Path]:
    """The state and path of entry ``name``; CtlError if it is in none."""
    if "/" in name or name.startswith(".") or name.endswith(REASON):
        raise CtlError(f"{name!r} is not the name of a spool entry (spool list shows them)")
    for state in STATES:
        path = spool.root / state / name
        if os.path.lexists(path):
            return state, path
    raise CtlError(f"no spool entry is named {name!r}, in any state (spool list shows them)")


# What each kind of entry is called, may weigh, and is decoded with.
_KINDS: dict[str, tuple[str, int, Callable[[bytes], Request | Result | Receipt]]] = {
    REQUEST_SUFFIX: ("request", MAX_REQUEST_SIZE, decode_request),
    RESULT_SUFFIX: ("result", MAX_RESULT_SIZE, decode_result),
    RECEIPT_SUFFIX: ("delivery receipt", RECEIPT_SIZE, decode_receipt),
}


def _when(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def _text(payload: bytes) -> str:
    """The start of a payload as text, for a person: it may hold anything."""
    return payload[:200].decode("utf-8", "replace")


def _fields(record: Request | Result | Receipt) -> dict:
    if isinstance(record, Request):
        return {
            "reply": record.reply,
            "received": _when(record.received_at),
            "header": record.header.hex(" "),
            "payload_sizes": [len(p) for p in record.payloads],
            "payload1_sha256": hashlib.sha256(record.payloads[0]).hexdigest(),
            "san": _text(record.payloads[1]),
            "subject": _text(record.payloads[2]),
        }
    if isinstance(record, Result):
        answered = not record.payload2.startswith(b"ERR ")
        return {
            "made": _when(id_time(record.id)),
            "action": record.action,
            "answer": "given" if answered else "refused",
            "payload_sizes": [len(record.payload1), len(record.payload2)],
            "payload1_sha256": hashlib.sha256(record.payload1).hexdigest(),
            "payload1_start": _text(record.payload1).split("\n", 1)[0][:80],
            "refusal": None if answered else _text(record.payload2),
        }
    return {"made": _when(id_time(record.id)), "delivered_request": record.request_id}


def show(spool: Spool, name: str) -> dict:
    """What an entry holds, in any state and of any kind, without printing whole
    payloads (they may hold anything)."""
    state, path = find(spool, name)
    info: dict = {"name": name, "state": state, "size": os.lstat(path).st_size}
    if state == "corrupt":
        info["reason"] = _reason(spool, name)
    suffix = os.path.splitext(name)[1]
    if suffix not in _KINDS:
        info["readable"] = f"no: the name ends in none of {', '.join(_KINDS)}"
        return info
    kind, max_size, decode = _KINDS[suffix]
    info["kind"] = kind
    try:
        record = decode(read_hostile(path, max_size=max_size))
    except OSError as exc:
        info["readable"] = f"no: {problem(exc)}"
        return info
    except (UnsafeEntry, SpoolFormatError) as exc:
        info["readable"] = f"no: {exc}"
        return info
    if name != record.id + suffix or not is_valid_id(record.id):
        info["readable"] = f"no: the file holds id {record.id}, not its name's"
        return info
    info.update(readable="yes", id=record.id, **_fields(record))
    return info


def requeue(spool: Spool, name: str) -> None:
    """Move a refused entry back to incoming/ for the signer to check again."""
    state, path = find(spool, name)
    if state != "corrupt":
        raise CtlError(f"{name} is in {state}/: only entries in corrupt/ are requeued")
    os.rename(path, spool.incoming / name)
    try:
        os.unlink(spool.corrupt / (name + REASON))
    except FileNotFoundError:
        pass


def purge_corrupt(spool: Spool, older_than: float) -> int:
    """Delete refused entries (and their reasons) older than ``older_than`` seconds."""
    removed = 0
    for entry in entries(spool, ("corrupt",)):
        if entry.age_seconds >= older_than:
            for victim in (spool.corrupt / entry.name, spool.corrupt / (entry.name + REASON)):
                if victim.is_dir() and not victim.is_symlink():
                    shutil.rmtree(victim)  # planted directories too; rmtree follows no links
                else:
                    victim.unlink(missing_ok=True)
            removed += 1
    return removed
