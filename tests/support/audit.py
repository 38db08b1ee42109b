"""The audit exchange between a real signer context and a web-side copy, without the cable.

Test tooling. ``Appliance`` answers audit queries through the signer's own
dispatch (a v2 request in the spool's shape, the handler, the result), as
the comm handler would pass them on; ``fill`` makes records fast.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from comm_handler.v2messages import Kind, V2Answer
from signer_core.dispatch import SignerContext, dispatch
from spool.entry import new_id
from spool.header import VERSION_2, Action, RequestHeader, System
from spool.record import Request
from tlog.exchange import AuditQuery
from tlog.note import Verifier
from webhost.audit_copy import AuditCopy
from webhost.audit_sync import Sync, SyncResult


def audit_request(query: AuditQuery) -> Request:
    header = RequestHeader(action=Action.AUDIT, system=System.NONE, version=VERSION_2)
    payloads = (query.encode(), b"", b"")
    return Request(new_id(), 0.0, header.to_bytes(), payloads, True, link_id=os.urandom(16))


class Appliance:
    """A signer context answering audit queries; counts them."""

    def __init__(self, ctx: SignerContext) -> None:
        self.ctx = ctx
        self.asked: list[AuditQuery] = []

    def ask(self, query: AuditQuery) -> V2Answer:
        self.asked.append(query)
        if self.ctx.audit_check is not None:
            self.ctx.audit_check.refresh()  # as the daemon's loop does between requests
        result = dispatch(self.ctx, audit_request(query))
        assert result is not None
        return V2Answer.from_result(Kind.AUDIT, result.payload1, result.payload2)

    @property
    def verifier(self) -> Verifier:
        assert self.ctx.log_key is not None
        return self.ctx.log_key.verifier

    def fill(self, count: int, event: str = "test-record") -> None:
        with self.ctx.db.transaction():
            for n in range(count):
                self.ctx.audit.append(event, n=n, serial=format(n * 7919, "x"))

    def size(self) -> int:
        return int(self.ctx.db.connection.execute("SELECT count(*) FROM audit").fetchone()[0])

    def other_connection(self) -> sqlite3.Connection:
        """A second writer on the database, as someone at the file would be."""
        return sqlite3.connect(self.ctx.config.signer.database, isolation_level=None)


def sync(appliance: Appliance, state: Path, key: Path | None = None, **kw: object) -> SyncResult:
    with AuditCopy(state) as copy:
        verifier = copy.verifier(key) if key else appliance.verifier
        return Sync(appliance.ask, copy, verifier).run(**kw)  # type: ignore[arg-type]


FILL = """import sys
from signer_core.store.cadb import CADatabase
from signer_core.store.audit import AuditLog
from pathlib import Path
db = CADatabase(Path(sys.argv[1]))
audit = AuditLog(db.connection)
with db.transaction():
    for n in range(int(sys.argv[2])):
        audit.append("test-record", n=n, serial=format(n * 7919, "x"))
"""


def fill_as_signer(database: Path, count: int, uid: int | None, gid: int | None) -> None:
    """``count`` records appended by a second writer running as the signer user, as the
    database's owner would (a root-owned journal file would lock the signer out)."""
    import subprocess
    import sys

    subprocess.run(
        [sys.executable, "-c", FILL, str(database), str(count)],
        check=True,
        user=uid,
        group=gid,
        env={**os.environ},
    )
