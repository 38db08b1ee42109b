"""signerctl against a running appliance: what an operator sees is what happened."""

from __future__ import annotations

import json
import os
import time

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from webhost.client import WebClient


def test_status_reports_what_happened(appliance, world_dir, ctl, ctl_json, write_csr):
    write_csr(world_dir / "a.csr")
    cert = x509.load_pem_x509_certificate(appliance.sign(world_dir / "a.csr").stdout)
    with WebClient(appliance.link) as client:
        client.revoke(
            0,
            cert.public_bytes(serialization.Encoding.PEM),
            world_dir / "client.crl",
            appliance.root_cert(0),
        )
    status = ctl_json(appliance, "status")
    pids = {name: [d["pid"] for d in found] for name, found in status["daemons"].items()}
    assert pids == {
        name: [appliance.supervisor.pid(name)] for name in ("signer-core", "signer-comm")
    }
    assert status["database"]["certificates"] == 1
    assert [r["key_installed"] for r in status["roots"]] == [True, True, False, False, False]
    said = [r["at_last_start"] for r in status["roots"]]
    assert said[:2] == ["in service", "in service"]
    assert all(s.startswith("not in service: file missing: ") for s in said[2:]), said
    assert status["crls"][0]["root"] == 0 and status["crls"][0]["entries"] == 1
    assert {s["state"]: s["entries"] for s in status["spool"]}["incoming"] == 0
    verify = ctl_json(appliance, "audit", "verify")
    assert verify["ok"] and verify["head"] == status["audit"]["head"]
    assert verify["records"] == status["audit"]["records"]
    human = ctl(appliance, "status").stdout.decode()
    assert "class 1 root" in human and status["audit"]["head"] in human


def test_certs_find_and_crl_show(appliance, world_dir, ctl_json, write_csr):
    write_csr(world_dir / "b.csr")
    cert = x509.load_pem_x509_certificate(appliance.sign(world_dir / "b.csr").stdout)
    by_serial = ctl_json(appliance, "certs", "find", "--serial", format(cert.serial_number, "X"))
    assert [row["serial"] for row in by_serial] == [format(cert.serial_number, "x")]
    by_subject = ctl_json(appliance, "certs", "find", "--subject", "www.example")
    assert len(by_subject) == 1 and "CN=www.example.org" in by_subject[0]["subject"]
    assert ctl_json(appliance, "certs", "find", "--subject", "nobody%") == []
    assert ctl_json(appliance, "crl", "show", "0")["crl"] is None
    done = appliance.client(
        "refresh-crl",
        "--root",
        "0",
        "--crl",
        str(world_dir / "c.crl"),
        "--root-cert",
        str(appliance.root_cert(0)),
    )
    assert done.returncode == 0, done.stderr
    shown = ctl_json(appliance, "crl", "show", "0")
    crl = x509.load_der_x509_crl((world_dir / "c.crl").read_bytes())
    assert (
        shown["crl_number"]
        == crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    )
    assert shown["entries"] == 0


def test_time_after_keep_alives(appliance, ctl_json):
    assert appliance.client("nul").returncode == 0
    deadline = time.monotonic() + 10
    while (shown := ctl_json(appliance, "time"))["last"]["last_reading"] is None:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert abs(shown["last"]["drift_seconds"]) < 5
    assert len(shown["history"]) >= 1
    script = (appliance.directory / "lib" / "set-clock.sh").read_text()
    assert script.startswith("#!/bin/sh\n") and "hwclock --systohc" in script


def test_spool_list_show_requeue_purge(appliance, ctl, ctl_json):
    incoming = appliance.directory / "spool" / "incoming"
    name = f"{time.time_ns():020d}-{'ab' * 16}.req"
    # Written as the comm handler commits (a dot-file, then renamed), so that the
    # signer, watching already, never sees it before it belongs to the comm user.
    temporary = incoming / f".{name}"
    temporary.write_bytes(b"not a spool record")
    if appliance.users.comm_uid is not None:
        os.chown(temporary, appliance.users.comm_uid, appliance.users.comm_gid)
    temporary.rename(incoming / name)
    deadline = time.monotonic() + 10
    while not (listed := ctl_json(appliance, "spool", "list", "--state", "corrupt")):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert [e["name"] for e in listed] == [name] and listed[0]["reason"]
    shown = ctl_json(appliance, "spool", "show", name)
    assert shown["state"] == "corrupt" and shown["readable"].startswith("no:")
    assert ctl(appliance, "spool", "requeue", name).returncode == 0
    deadline = time.monotonic() + 10
    while not ctl_json(appliance, "spool", "list", "--state", "corrupt"):  # refused again
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert ctl_json(appliance, "spool", "purge-corrupt")["purged"] == 1
    assert ctl_json(appliance, "spool", "list", "--state", "corrupt") == []
    appliance.assert_alive()


def _json_after(appliance, ctl, *args: str):
    """signerctl with --json after the subcommand and its arguments."""
    done = ctl(appliance, *args, "--json")
    assert done.returncode in (0, 1), done.stderr
    return json.loads(done.stdout)


def test_a_revocation_is_shown(appliance, world_dir, ctl, ctl_json, write_csr):
    write_csr(world_dir / "r.csr")
    cert = x509.load_pem_x509_certificate(appliance.sign(world_dir / "r.csr").stdout)
    serial = format(cert.serial_number, "x")
    with WebClient(appliance.link) as client:
        client.revoke(
            0,
            cert.public_bytes(serialization.Encoding.PEM),
            world_dir / "client.crl",
            appliance.root_cert(0),
        )
    entry = x509.load_der_x509_crl(
        (world_dir / "client.crl").read_bytes()
    ).get_revoked_certificate_by_serial_number(cert.serial_number)
    assert entry is not None
    for shown in (
        ctl_json(appliance, "certs", "show", serial),
        _json_after(appliance, ctl, "certs", "show", serial),
    ):
        assert shown["status"] == "revoked" and shown["revoked"] is not None
        assert x509.load_pem_x509_certificate(shown["pem"].encode()) == cert
    human = ctl(appliance, "certs", "show", serial.upper()).stdout.decode()
    assert "status: revoked" in human and f"revoked: {shown['revoked']}" in human
    for found in (
        ctl_json(appliance, "certs", "find", "--serial", serial),
        _json_after(appliance, ctl, "certs", "find", "--serial", serial),
    ):
        assert [(r["serial"], r["status"]) for r in found] == [(serial, "revoked")]
    for records in (
        ctl_json(appliance, "audit", "show", "--kind", "revoked"),
        _json_after(appliance, ctl, "audit", "show", "--kind", "revoked"),
    ):
        assert [r["details"]["serial"] for r in records] == [serial]
    human = ctl(appliance, "audit", "show", "--serial", serial).stdout.decode()
    assert "issued" in human and "revoked" in human and f"serial={serial}" in human


BAD_INPUTS = [
    ("certs", "find", "--serial", "zz"),
    ("certs", "find", "--since", "yesterday"),
    ("certs", "show", "abc"),
    ("spool", "show", "nosuch"),
    ("crl", "show", "9"),
    ("audit", "show", "--since", "soon"),
]


def test_bad_inputs_are_one_sentence(appliance, ctl):
    for argv in BAD_INPUTS:
        for done in (
            ctl(appliance, *argv),
            ctl(appliance, "--json", *argv),
            ctl(appliance, *argv, "--json"),
        ):
            err = done.stderr.decode()
            assert done.returncode == 2 and done.stdout == b"", (argv, err)
            assert len(err.splitlines()) == 1 and err.startswith("signerctl"), (argv, err)
            assert "Traceback" not in err and "Error" not in err and "Errno" not in err


def test_spool_shows_results(appliance, world_dir, ctl_json, write_csr):
    write_csr(world_dir / "s.csr")
    assert appliance.sign(world_dir / "s.csr").returncode == 0
    deadline = time.monotonic() + 10
    while not (results := ctl_json(appliance, "spool", "list", "--state", "results")):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    shown = ctl_json(appliance, "spool", "show", results[0]["name"])
    assert shown["kind"] == "result" and shown["readable"] == "yes", shown
    assert shown["answer"] == "given" and "BEGIN CERTIFICATE" in shown["payload1_start"]
