"""Backup while both daemons run and a request is in flight; restore into an empty
directory; the restored appliance answers the web host's next revoke with a delta."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import threading

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from signer_core.store.audit import AuditLog
from signerctl.demo.run import daemons, start_cable, wait_until_served
from spool.queue import Spool
from tests.support.backup import make_gpg_key, remove_gpg_home
from tests.support.openpgp import gen_key, gpg
from webhost.client import WebClient

TABLES = ("certificates", "revocations", "crls", "crl_numbers", "audit")


def ctl(config, *args: str) -> dict:
    done = subprocess.run(
        [sys.executable, "-m", "signerctl.main", "--config", str(config), "--json", *args],
        capture_output=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(done.stdout)


# What a row says once it is written; answer_id and delivered_at of a certificate
# change later (a retry answered from it, the web host's ACK) and are left out.
COLUMNS = {
    "certificates": "id, root, serial, request_digest, profile, state, reserved_at,"
    " issued_at, subject, not_before, not_after, der"
}


def dump(database) -> dict[str, list[tuple]]:
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as conn:
        return {
            t: conn.execute(f"SELECT {COLUMNS.get(t, '*')} FROM {t} ORDER BY 1").fetchall()
            for t in TABLES
        }


def test_backup_in_flight_restore_and_delta(appliance, world_dir, write_csr):
    pems = []
    for name in ("a", "b", "c"):
        write_csr(world_dir / f"{name}.csr")
        done = appliance.sign(
            world_dir / f"{name}.csr",
            subject=f"/CN={name}.example.org",
            san=f"DNS:{name}.example.org",
        )
        assert done.returncode == 0, done.stderr
        pems.append(done.stdout)
    client_crl = world_dir / "webhost-root0.crl"
    with WebClient(appliance.link) as client:
        assert client.revoke(0, pems[0], client_crl, appliance.root_cert(0)).ok
        home = world_dir / "user-gnupg"
        home.mkdir(mode=0o700)
        assert client.sign_openpgp(gpg(home, "--export", gen_key(home, "U <u@example.org>")), 30).ok

    backup_key = make_gpg_key("CA backup <backup@example.org>")
    try:
        write_csr(world_dir / "flight.csr")
        in_flight = threading.Thread(target=appliance.sign, args=(world_dir / "flight.csr",))
        in_flight.start()
        archive = world_dir / "ca.backup"
        made = ctl(
            appliance.config,
            "backup",
            "--encrypt-to",
            str(backup_key.public_file),
            "--out",
            str(archive),
            "--include-keys",
        )
        in_flight.join()
        target = world_dir / "restored" / "signer.toml"
        restored = ctl(target, "restore", "--in", str(archive), "--gnupghome", str(backup_key.home))
    finally:
        remove_gpg_home(backup_key.home)
    assert restored["audit"]["head"] == made["audit"]["head"]

    before, after = (
        dump(appliance.directory / "lib" / "ca.sqlite"),
        dump(target.parent / "lib" / "ca.sqlite"),
    )
    snapshot = after["audit"]
    assert snapshot == before["audit"][: len(snapshot)]  # a consistent prefix of the live chain
    for table in ("certificates", "revocations", "crls", "crl_numbers"):
        assert after[table] == [r for r in before[table] if r in after[table]]
    assert {r[2] for r in after["certificates"]} >= {
        format(x509.load_pem_x509_certificate(p).serial_number, "x") for p in pems
    }
    assert len(after["revocations"]) == 1
    assert any(r[2] == "openpgp-certified" for r in snapshot)
    with sqlite3.connect(target.parent / "lib" / "ca.sqlite") as conn:
        assert AuditLog(conn).verify().ok

    # The restored appliance, on a new cable: the web host still holds the CRL it had.
    cable = start_cable()
    users = appliance.users
    if users.comm_uid is not None:
        os.chown(cable.appliance_end, users.comm_uid, users.comm_gid)
    config = target
    old_device = f'device = "{appliance.cable.appliance_end}"'
    config.write_text(config.read_text().replace(old_device, f'device = "{cable.appliance_end}"'))
    Spool(target.parent / "spool").create_dirs(users.signer_uid, users.signer_gid, users.comm_gid)
    (target.parent / "log").mkdir()
    supervisor = daemons(config, target.parent / "log")
    supervisor.start()
    try:
        wait_until_served(cable.web_end)
        with WebClient(cable.web_end) as client:
            response = client.revoke(0, pems[1], client_crl, target.parent / "certs" / "root0.crt")
        assert response.ok and not response.payload1.startswith(b"-----BEGIN")
        crl = x509.load_der_x509_crl(client_crl.read_bytes())
        assert {e.serial_number for e in crl} == {
            x509.load_pem_x509_certificate(p).serial_number for p in pems[:2]
        }
        cert = x509.load_pem_x509_certificate(pems[2])
        assert cert.public_bytes(serialization.Encoding.PEM) == pems[2]
    finally:
        supervisor.stop()
        cable.process.terminate()
        cable.process.wait()
