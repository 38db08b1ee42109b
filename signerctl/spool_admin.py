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
from dataclasses import dataclass
from pathlib import Path

from spool.corrupt import REASON_SUFFIX as REASON
from spool.queue import STATES, Spool
from spool.record import MAX_REQUEST_SIZE, SpoolFormatError, decode_request
from spool.safeio import UnsafeEntry, fsync_dir, read_hostile

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
    """The state and path of entry ``name``; KeyError if it is in none."""
    if "/" in name or name.startswith("."):
        raise KeyError(name)
    for state in STATES:
        path = spool.root / state / name
        if os.path.lexists(path):
            return state, path
    raise KeyError(name)


def show(spool: Spool, name: str) -> dict:
    """What an entry holds, without printing whole payloads (they may hold anything)."""
    state, path = find(spool, name)
    info: dict = {"name": name, "state": state, "size": os.lstat(path).st_size}
    if state == "corrupt":
        info["reason"] = _reason(spool, name)
    try:
        request = decode_request(read_hostile(path, max_size=MAX_REQUEST_SIZE))
    except (OSError, UnsafeEntry, SpoolFormatError) as exc:
        info["readable"] = f"no: {exc}"
        return info
    header = request.header
    info.update(
        readable="yes",
        id=request.id,
        reply=request.reply,
        received=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(request.received_at)),
        header=header.hex(" "),
        payload_sizes=[len(p) for p in request.payloads],
        payload1_sha256=hashlib.sha256(request.payloads[0]).hexdigest(),
        san=request.payloads[1][:200].decode("utf-8", "replace"),
        subject=request.payloads[2][:200].decode("utf-8", "replace"),
    )
    return info


def requeue(spool: Spool, name: str) -> None:
    """Move a refused entry back to incoming/ for the signer to check again."""
    state, path = find(spool, name)
    if state != "corrupt":
        raise ValueError(f"{name} is in {state}/, only corrupt entries are requeued")
    os.rename(path, spool.incoming / name)
    try:
        os.unlink(spool.corrupt / (name + REASON))
    except FileNotFoundError:
        pass
    fsync_dir(spool.corrupt)
    fsync_dir(spool.incoming)


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
    if removed:
        fsync_dir(spool.corrupt)
    return removed
