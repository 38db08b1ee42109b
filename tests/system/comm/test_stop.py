"""signer-comm stopped by SIGTERM or SIGINT, idle and in the middle of a transfer.

Each stop exits 0 and leaves nothing half-written in the spool: a request
being received is lost (the web host retries), a response being sent is
abandoned without a delivery receipt (the retry is answered with the same
certificate). The supervisor then starts it again, as systemd would.
"""

from __future__ import annotations

import os
import signal

import pytest

from comm_handler.frames import READY, START, make_frame
from comm_handler.transfer import send_message
from signerctl.demo.rig import wait_until
from signerctl.demo.run import demo_request, wait_until_served
from tests.support.stop import signal_and_wait

LONG = 30.0  # s: a timeout the stop signal must come well within, however loaded the machine


def restarted(rig) -> None:
    wait_until(lambda: rig.running.restarts["signer-comm"] == 1, 10, "signer-comm to restart")
    wait_until_served(rig.web_end)


def every_name(rig, state: str) -> list[str]:
    """What a spool directory holds, temporary dot-files included."""
    return sorted(os.listdir(rig.ca / "spool" / state))


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_idle_comm_exits_0_and_comes_back(rig, signum) -> None:
    assert signal_and_wait(rig.running.processes["signer-comm"], signum) == 0
    assert f"stopping on {signum.name}" in rig.comm_log()
    restarted(rig)
    rig.assert_certificate(rig.sign(demo_request()))
    assert rig.running.restarts == {"signer-core": 0, "signer-comm": 1}


def test_comm_stopped_mid_request_leaves_nothing_half_written(make_rig) -> None:
    """Half a frame is in when SIGTERM comes: nothing reaches the spool; the retry is served."""
    rig = make_rig(chunk_timeout=LONG)  # the signal, not the chunk timeout, ends the frame
    csr = demo_request()
    frame = make_frame(rig.sign_message(csr))
    with rig.port() as port:
        port.write(bytes([START]))
        assert port.read(1) == bytes([READY])
        port.write(frame[: len(frame) // 2])
        port.flush()
        wait_until(
            lambda: rig.modem.position(rig.TO_COMM) >= 1 + len(frame) // 2, 5, "half a frame"
        )
        assert signal_and_wait(rig.running.processes["signer-comm"], signal.SIGTERM) == 0
    assert every_name(rig, "incoming") == [] and rig.spool() == rig.NOTHING_QUEUED
    assert "frame incomplete" not in rig.comm_log()  # stopped mid-frame, not timed out
    restarted(rig)
    rig.assert_certificate(rig.sign(csr))
    assert len(rig.certificates()) == rig.audited("issued") == 1
    rig.assert_spooled(1)


def test_comm_stopped_mid_response_then_the_retry_gets_the_same_certificate(make_rig) -> None:
    """SIGTERM while the response waits for the web host's READY: no receipt, so the
    retry of the same bytes is answered with the certificate already issued."""
    rig = make_rig(ready_timeout=LONG)  # the signal, not the ready timeout, ends the send
    csr = demo_request()
    with rig.port() as port:
        send_message(port, rig.sign_message(csr), ready_timeout=2.0, verdict_timeout=1.5)
        port.timeout = 30.0
        assert port.read(1) == bytes([START])  # the response has begun
        assert signal_and_wait(rig.running.processes["signer-comm"], signal.SIGTERM) == 0
    assert "response not delivered" not in rig.comm_log()  # stopped mid-send, not timed out
    assert len(rig.certificates()) == 1
    restarted(rig)
    again = rig.assert_certificate(rig.sign(csr))
    assert rig.certificates() == [format(again.serial_number, "x")]
    assert rig.audited("issued") == rig.audited("answered-again") == 1
    wait_until(lambda: rig.audited("delivered") == 1, 10, "the retry's delivery receipt")
    rig.assert_spooled(2)  # both results, each request handled once
    assert every_name(rig, "incoming") == [] and every_name(rig, "corrupt") == []
