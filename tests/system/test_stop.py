"""SIGTERM and SIGINT stop both daemons cleanly: exit 0, ca.sqlite alone holds everything.

The whole appliance runs under the supervisor on a pty cable. After each stop
the database file is copied without its -wal and -shm files, as an operator
might copy it, and that copy is read: every issued certificate is in it and
its audit chain verifies. A request in hand when the signer is told to stop
is finished (held there with ``SIGNER_CRASH_SIGNAL=SIGSTOP``, spool.crashpoint,
so that the signal lands mid-request); the web host's retry after the restart
gets that one certificate, never a second.
"""

from __future__ import annotations

import signal
import threading
import time

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from signerctl.demo.rig import (
    audit_events,
    audit_verdict,
    cert_rows,
    sign_x509,
    spool_names,
    wait_spool_settled,
    wait_until,
)
from signerctl.demo.run import demo_request
from signerctl.demo.supervise import RESTART_DELAY
from tests.support.stop import database_alone, held, signal_and_wait, stop_held
from webhost.client import WebClient

SETTLE = 0.5  # the fixture's last keep-alive is ACKed before the comm handler is done with it


def issued(db_path) -> list[tuple[str, bytes | None]]:
    return [(serial, der) for _, serial, state, der in cert_rows(db_path) if state == "issued"]


def der(response) -> tuple[str, bytes]:
    cert = x509.load_pem_x509_certificate(response.payload1)
    return format(cert.serial_number, "x"), cert.public_bytes(serialization.Encoding.DER)


def assert_alone_holds(db_path, into, expected: list[tuple[str, bytes]], stops: int) -> None:
    """The file copied alone has the ``expected`` certificates, ``stops`` stops, a sound chain."""
    copy = database_alone(db_path, into)
    assert issued(copy) == expected
    assert len(audit_events(copy, "stopped")) == stops
    verdict = audit_verdict(copy)
    assert verdict.ok, verdict.problem


@pytest.fixture
def held_at(request, monkeypatch, world_dir):
    """(appliance, marker): the appliance, held by SIGSTOP at the point ``request.param``
    the first time a process reaches it once ``marker`` is removed."""
    markers = world_dir / "hold"
    markers.mkdir()
    markers.chmod(0o1777)  # each daemon, under its own uid, creates the marker when it holds
    marker = markers / "held"
    marker.touch()
    monkeypatch.setenv("SIGNER_CRASH_AT", request.param)
    monkeypatch.setenv("SIGNER_CRASH_MARKER", str(marker))
    monkeypatch.setenv("SIGNER_CRASH_SIGNAL", "SIGSTOP")
    appliance = request.getfixturevalue("appliance")
    time.sleep(SETTLE)
    yield appliance, marker
    for proc in appliance.supervisor.processes.values():  # a failed test may leave one held
        if proc.poll() is None:
            proc.send_signal(signal.SIGCONT)


def test_supervisor_stop_leaves_the_whole_database_in_its_file(appliance, world_dir):
    db_path = appliance.directory / "lib" / "ca.sqlite"
    crl_path = world_dir / "root0.crl"
    with WebClient(appliance.link) as client:
        answers = [sign_x509(client, demo_request(), f"n{i}") for i in range(3)]
        assert all(a.ok for a in answers), [a.reason for a in answers]
        revoked = client.revoke(0, answers[0].payload1, crl_path, appliance.root_cert(0))
        assert revoked.ok, revoked.reason
    codes = appliance.supervisor.stop()
    assert codes == {"signer-core": 0, "signer-comm": 0}
    time.sleep(RESTART_DELAY + 0.5)
    assert appliance.supervisor.restarts == {"signer-core": 0, "signer-comm": 0}
    assert all(proc.poll() is not None for proc in appliance.supervisor.processes.values())
    assert sorted(p.name for p in db_path.parent.iterdir() if p.name.startswith("ca.")) == [
        "ca.sqlite"
    ]
    assert_alone_holds(db_path, world_dir / "copy", [der(a) for a in answers], stops=1)
    assert audit_events(db_path, "stopped")[0]["signal"] == "SIGTERM"
    log = (world_dir / "log" / "signer-core.log").read_text()
    serial = der(answers[0])[0]
    assert f"serial {serial} of root 0 revoked: CRL " in log
    assert "stopping on SIGTERM" in log


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signer_stopped_while_idle_exits_0_and_service_resumes(appliance, world_dir, retry, signum):
    db_path = appliance.directory / "lib" / "ca.sqlite"
    with WebClient(appliance.link) as client:
        first = [sign_x509(client, demo_request(), f"n{i}") for i in range(2)]
        assert all(a.ok for a in first)
        signer = appliance.supervisor.processes["signer-core"]
        assert signal_and_wait(signer, signum) == 0
        assert_alone_holds(db_path, world_dir / "copy", [der(a) for a in first], stops=1)
        wait_until(lambda: appliance.supervisor.restarts["signer-core"] == 1, 10, "a restart")
        later = retry(lambda: sign_x509(client, demo_request(), "later")).response
    assert later is not None and later.ok
    assert issued(db_path) == [der(a) for a in [*first, later]]
    assert [e["signal"] for e in audit_events(db_path, "stopped")] == [signum.name]
    assert appliance.supervisor.restarts["signer-comm"] == 0
    verdict = audit_verdict(db_path)
    assert verdict.ok, verdict.problem


@pytest.mark.parametrize("held_at", ["certificate-signed"], indirect=True)
def test_signer_stopped_mid_request_finishes_it(held_at, world_dir):
    """SIGINT between the signature and its commit: the request is answered, then it exits."""
    appliance, marker = held_at
    db_path = appliance.directory / "lib" / "ca.sqlite"
    signer = appliance.supervisor.processes["signer-core"]
    codes: list[int] = []

    def stop_when_held() -> None:
        wait_until(lambda: held(signer.pid), 20, "signer-core to hold at certificate-signed")
        codes.append(stop_held(signer, signal.SIGINT))

    stopper = threading.Thread(target=stop_when_held)
    marker.unlink()
    stopper.start()
    with WebClient(appliance.link, response_timeout=30) as client:
        answer = sign_x509(client, demo_request(), "held")
    stopper.join()
    assert codes == [0]
    assert answer.ok, answer.reason
    assert_alone_holds(db_path, world_dir / "copy", [der(answer)], stops=1)
    wait_until(lambda: appliance.supervisor.restarts["signer-core"] == 1, 10, "a restart")
    wait_spool_settled(appliance.directory / "spool")
    assert spool_names(appliance.directory / "spool", "corrupt") == []
    verdict = audit_verdict(db_path)
    assert verdict.ok, verdict.problem


@pytest.mark.parametrize("held_at", ["certificate-signed"], indirect=True)
def test_both_stopped_mid_request_then_the_retry_gets_the_one_certificate(
    held_at, world_dir, retry
):
    """signer-comm stopped while it waits for the result, signer-core mid-request: the
    signer finishes and commits; after both restart, the web host's retry of the same
    bytes is answered with that certificate, and no second one is issued."""
    appliance, marker = held_at
    db_path = appliance.directory / "lib" / "ca.sqlite"
    supervisor = appliance.supervisor
    signer, comm = supervisor.processes["signer-core"], supervisor.processes["signer-comm"]
    codes: dict[str, int] = {}
    copied: list[list[tuple[str, bytes | None]]] = []

    def stop_both() -> None:
        wait_until(lambda: held(signer.pid), 20, "signer-core to hold at certificate-signed")
        codes["signer-comm"] = signal_and_wait(comm, signal.SIGTERM)
        codes["signer-core"] = stop_held(signer, signal.SIGTERM)
        copied.append(issued(database_alone(db_path, world_dir / "copy")))

    stopper = threading.Thread(target=stop_both)
    csr = demo_request()
    marker.unlink()
    stopper.start()
    with WebClient(appliance.link, response_timeout=8, ready_timeout=5) as client:
        outcome = retry(lambda: sign_x509(client, csr, "retried"))
    stopper.join()
    assert codes == {"signer-comm": 0, "signer-core": 0}
    assert outcome.response is not None and outcome.response.ok, outcome.failures
    assert outcome.tries >= 2 and outcome.failures[0].startswith("link: "), outcome.failures
    assert copied == [[der(outcome.response)]]  # committed before the signer stopped
    assert issued(db_path) == [der(outcome.response)]
    assert [state for _, _, state, _ in cert_rows(db_path)] == ["issued"]
    assert len(audit_events(db_path, "answered-again")) == 1
    assert len(audit_events(db_path, "stopped")) == 1
    assert supervisor.restarts == {"signer-core": 1, "signer-comm": 1}
    wait_spool_settled(appliance.directory / "spool")
    verdict = audit_verdict(db_path)
    assert verdict.ok, verdict.problem
