"""Fixtures of the link tests: a null-modem cable of two real ptys, and its two ends open.

Test tooling, untrusted side (the link layer).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import serial

from signerctl.demo.nullmodem import NullModem


@pytest.fixture
def modem() -> Iterator[NullModem]:
    with NullModem() as nm:
        yield nm


@pytest.fixture
def ends(modem: NullModem) -> Iterator[tuple[serial.Serial, serial.Serial]]:
    a = serial.Serial(modem.a_path, 115200)
    b = serial.Serial(modem.b_path, 115200)
    yield a, b
    a.close()
    b.close()
