"""The comm handler refuses every request its spool cannot take, but logs the
same refusal once per window, with a count, instead of once per request.

Test tooling on the untrusted side: the real LinkServer on a spool whose
incoming/ is missing, so every commit fails.
"""

from __future__ import annotations

import logging
import time

import pytest

from comm_handler import repeats
from comm_handler.daemon import LinkServer
from comm_handler.frames import Message, decode_message, encode_message
from spool.header import Action, RequestHeader, System
from spool.queue import Spool
from tests.support.comm import link_server

WINDOW = 0.5  # s, for the test instead of REPEAT_WINDOW's minute


@pytest.fixture
def server(tmp_path, monkeypatch) -> LinkServer:
    monkeypatch.setattr(repeats, "REPEAT_WINDOW", WINDOW)
    return link_server(tmp_path, 1.0, Spool(tmp_path / "no-spool-here"))


def nul() -> bytes:
    header = RequestHeader(action=Action.NUL, system=System.NONE).to_bytes()
    return encode_message(Message(header, (b"", b"", b"")))


def warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


def test_the_same_refusal_is_logged_once_per_window_with_a_count(server, caplog) -> None:
    caplog.set_level(logging.WARNING, logger="signer-comm")
    for _ in range(200):
        answer = decode_message(server.v1.answer(nul()).message)
        assert answer.payloads[1].startswith(b"ERR spool-unavailable: ")
    [first] = warnings(caplog)
    assert first.startswith("refused: spool-unavailable: ")
    time.sleep(WINDOW)
    server.v1.answer(nul())
    assert warnings(caplog)[1:] == [f"{first} (the same warning 200 times in the last 1 s)"]


def test_a_different_warning_is_logged_at_once_after_the_count(server, caplog) -> None:
    caplog.set_level(logging.WARNING, logger="signer-comm")
    for _ in range(3):
        server.v1.answer(nul())
    server.v1.answer(b"garbage")
    first, count, other = warnings(caplog)
    assert count == f"{first} (the same warning 2 times in the last 0 s)"
    assert other.startswith("refused: bad-message: ")
