"""What each daemon has imported once it has served every kind of request.

The static rules are tests/test_layers.py's; this is the same question asked
of the running processes: Python's own import log (``PYTHONPROFILEIMPORTTIME``,
one line per module, on the daemons' stderr) names every module of ours that
signer-core and signer-comm loaded, lazy imports on the request paths included.
"""

from __future__ import annotations

from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from webhost.client import WebClient

OURS = {"spool", "hardening", "comm_handler", "signer_core", "signerctl", "webhost"}


def imported(log: Path) -> set[str]:
    """Every module in ``log``'s import-time lines ("import time: self | total | name")."""
    return {
        line.rsplit("|", 1)[1].strip()
        for line in log.read_text(errors="replace").splitlines()
        if line.startswith("import time:") and line.count("|") == 2
    }


def ours(names: set[str]) -> set[str]:
    return {name for name in names if name.split(".")[0] in OURS}


def test_each_daemon_runs_only_its_own_packages(appliance_with, world_dir, write_csr, monkeypatch):
    monkeypatch.setenv("PYTHONPROFILEIMPORTTIME", "1")
    with appliance_with() as appliance:
        write_csr(world_dir / "a.csr")
        signed = appliance.sign(world_dir / "a.csr")
        assert signed.returncode == 0, signed.stderr
        cert = x509.load_pem_x509_certificate(signed.stdout)
        with WebClient(appliance.link) as client:
            assert client.nul().ok
            revoked = client.revoke(
                0,
                cert.public_bytes(serialization.Encoding.PEM),
                world_dir / "client.crl",
                appliance.root_cert(0),
            )
            assert revoked.ok, revoked.reason
    signer = ours(imported(world_dir / "log" / "signer-core.log"))
    everything_comm = imported(world_dir / "log" / "signer-comm.log")
    comm = ours(everything_comm)
    # The request paths ran (so their lazy imports are in the log) ...
    assert {"signer_core.x509.issue", "signer_core.crl.revocation"} <= signer
    assert {"signer_core.openpgp.certify", "spool.queue", "hardening.process"} <= signer
    assert {"comm_handler.transfer", "spool.queue", "hardening.process"} <= comm
    # ... and nothing else of ours did.
    assert {name.split(".")[0] for name in signer} == {"signer_core", "spool", "hardening"}
    assert {name.split(".")[0] for name in comm} == {"comm_handler", "spool", "hardening"}
    # PyPI's crc32c package reads its version through importlib.metadata on import
    # (some 2 MiB resident); the comm daemon loads the library's extension alone.
    assert "comm_handler.v2frames" in comm
    assert "importlib.metadata" not in everything_comm
