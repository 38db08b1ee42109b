"""``signer-client audit-sync`` and ``signer-client audit verify``: the audit log on demand.

Runs on the web host (or an auditor's machine), on the untrusted side. What
it trusts and checks is ``webhost.audit_sync``'s and ``audit_verify``'s;
this module reads the arguments, opens the link or the export file, and
turns the outcome into a line and an exit status for a person or a monitor:
0 verified, 1 refused by the appliance, 3 link failure, 4 an answer that
could not be used, 5 the log failed a check (the alarm; evidence kept).
"""

from __future__ import annotations

import argparse
import sys
from typing import BinaryIO

import serial

from comm_handler.frames import FrameError
from comm_handler.transfer import LinkError
from comm_handler.v2messages import Kind, V2Answer, V2Request
from spool import codes
from tlog.exchange import (
    NONCE_SIZE,
    AuditQuery,
    AuditReply,
    ExchangeError,
    read_export,
    read_export_head,
)
from tlog.note import MAX_NOTE, NoteError, Verifier
from tlog.records import MAX_BATCH
from webhost.audit_copy import AuditCopy, CopyError
from webhost.audit_sync import Ask, AuditAlarm, Sync, SyncError
from webhost.audit_verify import verify_copy
from webhost.client_v2 import V2Client
from webhost.exits import EXIT_ALARM, EXIT_LINK, EXIT_OK, EXIT_UNUSABLE, EXIT_USAGE

MAX_ANSWER = MAX_NOTE + MAX_BATCH + 4096


def _fail(code: int, sentence: str) -> int:
    print(f"signer-client: {sentence}", file=sys.stderr)
    return code


def _over_link(client: V2Client) -> Ask:
    def ask(query: AuditQuery) -> V2Answer:
        return client.exchange_v2(V2Request(Kind.AUDIT, payloads=(query.encode(), b"", b"")))

    return ask


def _from_export(stream: BinaryIO) -> Ask:
    since = read_export_head(stream)
    bodies = read_export(stream, MAX_ANSWER)
    expected = since

    def ask(query: AuditQuery) -> V2Answer:
        nonlocal expected
        if query.start != expected:
            raise SyncError(
                f"the export starts from {since} records and the copy holds {query.start}:"
                f" export again with --since {query.start}"
            )
        body = next(bodies, None)
        if body is None:
            raise SyncError("the export ends before its checkpoint's records")
        expected += AuditReply.decode(body).count
        return V2Answer(Kind.AUDIT, codes.OK, body, "")

    return ask


def sync_command(args: argparse.Namespace) -> int:
    try:
        with AuditCopy(args.state) as copy:
            verifier = copy.verifier(args.key)
            if args.export is not None:
                with args.export.open("rb") as stream:
                    # An export answers queries with no nonce: a file is its own freshness.
                    sync = Sync(_from_export(stream), copy, verifier, lambda: bytes(NONCE_SIZE))
                    result = sync.run()
            else:
                with V2Client(args.link, baud=args.baud, response_timeout=args.timeout) as client:
                    result = Sync(_over_link(client), copy, verifier).run()
    except AuditAlarm as exc:
        return _fail(EXIT_ALARM, f"audit alarm: {exc}")
    except serial.SerialException:  # an OSError: before the copy's own
        return _fail(EXIT_LINK, f"link failure: cannot use {args.link}")
    except (LinkError, FrameError) as exc:
        return _fail(EXIT_LINK, f"link failure: {exc}")
    except (CopyError, OSError) as exc:
        return _fail(EXIT_USAGE, str(exc))
    except (SyncError, ExchangeError) as exc:
        return _fail(EXIT_UNUSABLE, f"the audit log could not be synced: {exc}")
    print(f"audit log verified: {result.size} records ({result.added} new)")
    return EXIT_OK


def verify_command(args: argparse.Namespace) -> int:
    try:
        verifier = Verifier.parse(args.key.read_text()[:4096])
    except (OSError, UnicodeDecodeError, NoteError) as exc:
        return _fail(EXIT_USAGE, f"the log's public key cannot be read: {exc}")
    report = verify_copy(args.log, verifier)
    if not report.ok:
        for problem in report.problems:
            print(f"signer-client: {problem}", file=sys.stderr)
        return EXIT_ALARM
    print(f"audit log copy verified: {report.records} records, {report.checkpoints} checkpoints")
    return EXIT_OK
