"""signer_core.stopping: a stop signal cuts the signer's idle waits short and never
interrupts anything else."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from signer_core.stopping import STOP_SIGNALS, StopRequest


@pytest.fixture
def stop():
    """A StopRequest installed in this process; the previous handlers put back after."""
    previous = {signum: signal.getsignal(signum) for signum in STOP_SIGNALS}
    request = StopRequest()
    request.install()
    yield request
    for signum, handler in previous.items():
        signal.signal(signum, handler)


def _signal_from_another_thread(signum: int) -> None:
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)  # so that the main thread takes it
    os.kill(os.getpid(), signum)


@pytest.mark.parametrize("signum", STOP_SIGNALS, ids=lambda s: s.name)
def test_a_stop_signal_cuts_an_idle_wait_short(stop, signum):
    timer = threading.Timer(0.2, _signal_from_another_thread, (signum,))
    began = time.monotonic()
    timer.start()
    try:
        assert stop.idle(time.sleep, 30.0) is False
    finally:
        timer.cancel()
    assert time.monotonic() - began < 5.0
    assert stop.requested and stop.signum == signum


def test_outside_an_idle_wait_a_stop_signal_is_only_remembered(stop):
    os.kill(os.getpid(), signal.SIGTERM)  # delivered to this thread before kill returns
    done = sum(range(1000))  # work in hand goes on
    assert done == 499500 and stop.signum == signal.SIGTERM
    assert stop.idle(time.sleep, 30.0) is False  # and no wait begins once it is asked for


def test_an_idle_wait_without_a_signal_returns_what_it_waited_for(stop):
    assert stop.idle(lambda seconds: seconds > 0, 0.01) is True
    assert not stop.requested
