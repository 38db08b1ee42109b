"""Process hardening both daemons apply first thing at start.

Shared by both sides of the trust boundary, and so a package of its own
rather than part of either daemon's; it holds no policy. A daemon started as root drops to
its configured user and group with no supplementary groups, after emptying
its capability bounding set while it still may; then, whoever started it,
it sets no-new-privileges, forbids core dumps and, for the signer, makes
itself non-dumpable so that even its own uid cannot ptrace it or read its
memory (the keys) through /proc.

``refuse_readable`` is the comm handler's self-check: if it can open a key,
the database or the signer's state, the users are set up wrongly and it must
not run.
"""

from __future__ import annotations

import grp
import os
import pwd
import resource
from collections.abc import Iterable
from pathlib import Path

import prctl


class HardeningError(RuntimeError):
    """The daemon cannot reach the state it must run in; it must not start."""


def _drop_to(user: str, group: str) -> None:
    try:
        uid = pwd.getpwnam(user).pw_uid
        gid = grp.getgrnam(group or user).gr_gid
    except KeyError as exc:
        raise HardeningError(f"no such user or group: {exc}") from exc
    prctl.capbset.limit()  # empties the bounding set; needs CAP_SETPCAP, so before setuid
    os.setgroups([])
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)
    if os.getresuid() != (uid, uid, uid) or os.getresgid() != (gid, gid, gid):
        raise HardeningError("the uid or gid did not change")


def harden(name: str, user: str, group: str, *, dumpable: bool) -> None:
    """Drop to ``user`` if root, then lock the process down."""
    prctl.set_name(name[:15])
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if os.geteuid() == 0:
        if not user:
            raise HardeningError("started as root with no user configured to run as")
        _drop_to(user, group)
    prctl.set_no_new_privs(True)
    prctl.set_dumpable(dumpable)


def refuse_readable(paths: Iterable[Path]) -> None:
    """HardeningError if this process can open any of ``paths`` for reading."""
    for path in paths:
        try:  # O_RDONLY on a directory needs read permission too
            os.close(os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW))
        except OSError:
            continue
        raise HardeningError(f"{path} is readable by this user: fix owners and modes first")
