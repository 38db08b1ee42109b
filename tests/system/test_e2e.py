"""End to end: signer-client -> pty cable -> signer-comm -> spool -> signer-core and back.

The two daemons are separate processes (under two uids when run as root);
every assertion is on what the client received and what the database holds.
"""

from __future__ import annotations

import os
import subprocess
import time

import pytest
import serial
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, ExtensionOID

from comm_handler.frames import decode_message
from comm_handler.transfer import receive_message, send_message
from signer_core.x509.compat import verify_issued_by


def proc_status(pid: int) -> dict[str, str]:
    with open(f"/proc/{pid}/status") as f:
        return dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)


def wait_until_dropped(appliance, name: str, uid: int) -> dict[str, str]:
    pid = appliance.supervisor.pid(name)
    for _ in range(100):
        status = proc_status(pid)
        if int(status["Uid"].split()[0]) == uid:
            return status
        time.sleep(0.05)
    raise AssertionError(f"{name} still runs as {status['Uid']}")


def test_daemons_run_as_two_users_without_privileges(appliance):
    if os.geteuid() != 0:
        pytest.skip("separate uids need root")
    core = wait_until_dropped(appliance, "signer-core", appliance.users.signer_uid)
    comm = wait_until_dropped(appliance, "signer-comm", appliance.users.comm_uid)
    assert appliance.users.signer_uid != appliance.users.comm_uid
    for status in (core, comm):
        assert set(status["Uid"].split()) == {
            status["Uid"].split()[0]
        }  # real, effective, saved, fs
        assert status["Groups"].strip() == ""
        for cap in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
            assert int(status[cap], 16) == 0, (cap, status[cap])
        assert status["NoNewPrivs"] == "1"
    # A non-dumpable process's /proc files belong to root, not to its own uid.
    assert os.stat(f"/proc/{appliance.supervisor.pid('signer-core')}/environ").st_uid == 0


def test_server_certificate_end_to_end(appliance, world_dir, write_csr):
    write_csr(world_dir / "req.csr")
    done = appliance.sign(world_dir / "req.csr")
    assert done.returncode == 0, done.stderr
    cert = x509.load_pem_x509_certificate(done.stdout)
    root = x509.load_pem_x509_certificate(appliance.root_cert(0).read_bytes())
    verify_issued_by(cert, root)
    assert (
        cert.subject.rfc4514_string() == "1.2.840.113549.1.9.1=admin@example.org,CN=www.example.org"
    )
    san = cert.extensions.get_extension_for_oid(ExtensionOID.SUBJECT_ALTERNATIVE_NAME).value
    assert san.get_values_for_type(x509.DNSName) == ["www.example.org", "example.org"]
    bc = cert.extensions.get_extension_for_oid(ExtensionOID.BASIC_CONSTRAINTS)
    assert bc.critical and not bc.value.ca
    eku = cert.extensions.get_extension_for_oid(ExtensionOID.EXTENDED_KEY_USAGE).value
    assert ExtendedKeyUsageOID.SERVER_AUTH in eku and ExtendedKeyUsageOID.CLIENT_AUTH in eku
    with appliance.db() as db:
        rows = db.execute("SELECT root, serial, state FROM certificates").fetchall()
    assert rows == [(0, format(cert.serial_number, "x"), "issued")]
    appliance.assert_alive()


@pytest.mark.parametrize(
    "change, code",
    [
        ({"root": "7"}, "unknown-root"),
        ({"profile": "42"}, "unknown-profile"),
        ({"subject": "/XX=nope"}, "bad-subject"),
    ],
)
def test_refusals_keep_daemons_running(appliance, world_dir, change, code, write_csr):
    write_csr(world_dir / "req.csr")
    refused = appliance.sign(world_dir / "req.csr", **change)
    assert refused.returncode == 1
    assert f"ERR {code}:" in refused.stderr.decode()
    appliance.assert_alive()
    assert appliance.sign(world_dir / "req.csr").returncode == 0


def test_csr_signed_by_another_key_is_refused(appliance, world_dir, write_csr):
    write_csr(world_dir / "bad.csr", signed_by_another_key=True)
    refused = appliance.sign(world_dir / "bad.csr")
    assert refused.returncode == 1
    assert "ERR bad-csr-signature:" in refused.stderr.decode()
    appliance.assert_alive()


def test_malformed_message_is_refused(appliance):
    """A frame that passes length, XOR and trailer but holds no valid message."""
    port = serial.serial_for_url(appliance.link, baudrate=115200)
    try:
        send_message(port, b"\x00\x00\x03abc")
        response = decode_message(receive_message(port, start_timeout=30))
    finally:
        port.close()
    assert response.header == bytes([1, 0, 0, 0])
    assert response.payloads[0] == b""
    assert response.payloads[1].startswith(b"ERR bad-message:")
    appliance.assert_alive()


def test_nul_is_answered_and_recorded(appliance):
    done = appliance.client("nul")
    assert done.returncode == 0, done.stderr
    for _ in range(50):
        with appliance.db() as db:
            row = db.execute("SELECT drift FROM time_last").fetchone()
        if row:
            break
        subprocess.run(["sleep", "0.1"])
    assert row is not None and abs(row[0]) < 5


def test_logs_hold_no_key_material_and_no_request(appliance, world_dir, write_csr):
    csr = write_csr(world_dir / "req.csr")
    assert appliance.sign(world_dir / "req.csr").returncode == 0
    refused = appliance.sign(world_dir / "req.csr", subject="/CN=secret-subject\\x0a")
    assert refused.returncode == 1
    logs = b"".join(p.read_bytes() for p in (world_dir / "log").glob("*.log"))
    assert b"issued serial" in logs  # the daemons do log
    key_lines = (appliance.directory / "keys" / "root1.key").read_bytes().splitlines()[1:-1]
    csr_lines = csr.splitlines()[1:-1]
    for secret in [b"PRIVATE KEY", *key_lines, *csr_lines]:
        assert secret not in logs
