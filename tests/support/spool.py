"""Helpers shared by the spool tests: what a test knows the spool holds, checked.

Test tooling on the trusted side: it reads a spool the test filled itself.
``Spool`` answers "a request, a receipt or nothing" and "a report or nothing";
where the test knows which, these say so, and fail the test when it is not.
"""

from __future__ import annotations

from spool.corrupt import DropReport
from spool.queue import Spool
from spool.record import Request


def claim_request(s: Spool) -> Request:
    """The next claim, which the test knows to be a request."""
    claimed = s.claim_next()
    assert isinstance(claimed, Request), claimed
    return claimed


def drops(s: Spool) -> DropReport:
    """The drop report the test knows there is."""
    report = s.drop_report()
    assert report is not None, "nothing was dropped or skipped"
    return report
