"""The keyword arguments that the link tests give the link's functions, typed.

Test tooling, types only: a test's options mapping is checked against the
parameters of ``comm_handler.transfer.send_message`` and ``receive_message``
and of ``webhost.client.WebClient`` when it is unpacked into a call.
"""

from __future__ import annotations

from typing import TypedDict


class SendTimeouts(TypedDict):
    """send_message's waits for READY and for the verdict."""

    ready_timeout: float
    verdict_timeout: float


class ReceiveOptions(TypedDict, total=False):
    """What a test may set of receive_message (its port and start timeout aside)."""

    chunk_timeout: float
    max_naks: int
    max_length: int
    quiet: float


class ClientTimeouts(TypedDict, total=False):
    """The waits of a WebClient a test may change."""

    ready_timeout: float
    verdict_timeout: float
    chunk_timeout: float
    response_timeout: float
