"""``signer-client`` given bad input: each answered, before the link is opened, with its
sentence and exit status 2, never a traceback; run as the program it is."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
NO_LINK = "/dev/does-not-exist"  # a link failure (3) would mean the input was not checked first


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "webhost.cli", "--link", NO_LINK, *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )


def sign_args(request: Path, **change: str) -> list[str]:
    options = {"root": "0", "profile": "server", "md": "sha256", "days": "365", "csr": str(request)}
    options.update(change)
    pairs = [(f"--{name}", value) for name, value in options.items()]
    return ["sign-x509", *(word for pair in pairs for word in pair), "--subject", "/CN=a.example"]


@pytest.mark.parametrize(
    ("change", "sentence"),
    [
        (
            {"md": "sha999"},
            "argument --md: the digest 'sha999' is neither a number from 0 to 255 nor one of"
            " md5, sha1, ripemd160, sha256, sha384, sha512",
        ),
        ({"md": "256"}, "argument --md: the digest '256' is neither a number from 0 to 255"),
        (
            {"profile": "webserver"},
            "argument --profile: the profile 'webserver' is neither a number from 0 to 255 nor"
            " one of client, client-org,",
        ),
        (
            {"root": "300"},
            "argument --root: the root number must be a number from 0 to 255, not '300'",
        ),
        (
            {"root": "one"},
            "argument --root: the root number must be a number from 0 to 255, not 'one'",
        ),
        (
            {"days": "-1"},
            "argument --days: the number of days must be a number from 1 to 65535, not '-1'",
        ),
        (
            {"days": "0"},
            "argument --days: the number of days must be a number from 1 to 65535, not '0'",
        ),
        ({"days": "65536"}, "argument --days: the number of days must be a number from 1 to 65535"),
        (
            {"csr": "/nonexistent/req.pem"},
            "argument --csr: cannot read /nonexistent/req.pem: No such file or directory",
        ),
    ],
)
def test_bad_sign_x509_input(tmp_path: Path, change: dict[str, str], sentence: str) -> None:
    csr = tmp_path / "req.pem"
    csr.write_text("SPKAC = MIIB\n")
    done = run(*sign_args(csr, **change))
    assert done.returncode == 2, done.stderr
    assert done.stdout == ""
    assert "Traceback" not in done.stderr
    lines = done.stderr.splitlines()
    assert lines[0].startswith("usage: signer-client sign-x509 ")
    assert lines[-1].startswith(f"signer-client sign-x509: error: {sentence}"), lines[-1]


@pytest.mark.parametrize(
    ("args", "sentence"),
    [
        (
            ["sign-openpgp", "--key", "/nonexistent.asc"],
            "argument --key: cannot read /nonexistent.asc",
        ),
        (
            ["sign-openpgp", "--key", "/etc/hostname", "--days", "x"],
            "argument --days: the number of days",
        ),
        (["revoke", "--cert", "/nonexistent.pem"], "argument --cert: cannot read /nonexistent.pem"),
        (
            [
                "refresh-crl",
                "--root",
                "0",
                "--crl",
                "/nonexistent/dir/r.crl",
                "--root-cert",
                "/etc/hostname",
            ],
            "argument --crl: /nonexistent/dir/r.crl is not in an existing directory",
        ),
        (
            [
                "refresh-crl",
                "--root",
                "0",
                "--crl",
                "/etc/hostname",
                "--root-cert",
                "/nonexistent.pem",
            ],
            "argument --root-cert: cannot read /nonexistent.pem",
        ),
        (["sign-x509"], "the following arguments are required: --root, --profile, --md"),
        (["fetch"], "argument COMMAND: invalid choice: 'fetch'"),
    ],
)
def test_bad_input_of_the_other_commands(args: list[str], sentence: str) -> None:
    done = run(*args)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert f"error: {sentence}" in done.stderr.splitlines()[-1]


@pytest.mark.parametrize(
    ("option", "value"), [("--timeout", "-1"), ("--ready-timeout", "soon"), ("--baud", "0")]
)
def test_bad_link_options(option: str, value: str) -> None:
    done = run(option, value, "nul")
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert f"signer-client: error: argument {option}: " in done.stderr
