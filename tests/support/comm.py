"""A comm daemon's ``LinkServer`` on a spool, with no device and no signer, for the tests.

Test tooling, untrusted side: the link servers' answers are checked against
a real spool; without a signer a request waits out ``result_deadline``.
"""

from __future__ import annotations

from pathlib import Path

from comm_handler.config import CommConfig
from comm_handler.daemon import LinkServer
from spool.queue import Spool


def link_server(spool_dir: Path, result_deadline: float, spool: Spool | None = None) -> LinkServer:
    """A LinkServer configured as a development comm daemon (one user), on ``spool``
    (default: a new one laid out in ``spool_dir``)."""
    if spool is None:
        spool = Spool(spool_dir)
        spool.create_dirs()
    cfg = CommConfig(
        spool_dir=spool_dir,
        device="loop://",
        baud=115200,
        user="",
        group="",
        result_deadline=result_deadline,
        forbidden=(),
    )
    return LinkServer(cfg, spool)
