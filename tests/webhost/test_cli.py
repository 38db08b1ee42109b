"""``signer-client`` (webhost.cli) against a scripted server on a pty: what it prints, its
exit codes, and that it runs as a program of its own."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

from cryptography.hazmat.primitives import serialization

from signerctl.demo.nullmodem import NullModem
from webhost import cli as client_cli

# -- the command line --


def test_cli_sign_prints_payload1(link, tmp_path: Path, capsysbinary, spkac) -> None:
    link(lambda request: (b"-----BEGIN CERTIFICATE-----\nfake\n", b""))
    csr = tmp_path / "req.pem"
    csr.write_bytes(spkac)
    code = client_cli.main(
        [
            "--link",
            link.path,
            "--timeout",
            "5",
            "sign-x509",
            "--root",
            "0",
            "--profile",
            "5",
            "--md",
            "8",
            "--days",
            "365",
            "--csr",
            str(csr),
            "--san",
            "DNS:a.example",
            "--subject",
            "/CN=a.example",
        ]
    )
    out, err = capsysbinary.readouterr()
    assert (code, out, err) == (0, b"-----BEGIN CERTIFICATE-----\nfake\n", b"")


def test_cli_refusal_exits_1_with_reason(link, tmp_path: Path, capsys) -> None:
    link(lambda request: (b"", b"ERR bad-key: no user ID"))
    key = tmp_path / "key.asc"
    key.write_bytes(b"not a key")
    assert (
        client_cli.main(["--link", link.path, "--timeout", "5", "sign-openpgp", "--key", str(key)])
        == 1
    )
    assert "ERR bad-key: no user ID" in capsys.readouterr().err


def test_cli_refresh_crl_reports_the_file(link, tmp_path: Path, capsys, new_ca) -> None:
    ca = new_ca()
    root = ca.write_cert(tmp_path / "root.pem")
    link(lambda request: (ca.crl([3]).public_bytes(serialization.Encoding.PEM), b""))
    crl_path = tmp_path / "revoke.crl"
    code = client_cli.main(
        [
            "--link",
            link.path,
            "--timeout",
            "5",
            "refresh-crl",
            "--root",
            "0",
            "--crl",
            str(crl_path),
            "--root-cert",
            str(root),
        ]
    )
    assert code == 0
    digest = hashlib.sha1(crl_path.read_bytes()).hexdigest()
    assert capsys.readouterr().out == f"crl updated: {crl_path} sha1={digest}\n"


def test_cli_link_failure_exits_2(capsys) -> None:
    assert client_cli.main(["--link", "/dev/does-not-exist", "nul"]) == 2
    assert "link failure" in capsys.readouterr().err
    with NullModem() as modem:  # a cable with nobody at the other end
        code = client_cli.main(["--link", modem.a_path, "--ready-timeout", "0.3", "nul"])
    assert code == 2
    assert "no ready" in capsys.readouterr().err


def test_cli_runs_as_a_program() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "webhost.cli", "--link", "/dev/does-not-exist", "nul"],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert result.returncode == 2
    assert result.stderr.startswith("signer-client: link failure:")
