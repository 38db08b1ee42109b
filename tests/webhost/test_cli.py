"""``signer-client`` (webhost.cli) against a scripted server on a pty: what it prints, its
exit codes, names and numbers for the digest and profile, and that it runs as a program
of its own. Bad input is in test_cli_input.py."""

from __future__ import annotations

import argparse
import datetime
import hashlib
import re
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from signer_core.x509 import issue
from signer_core.x509.profiles import BUILTIN_PROFILES
from signerctl.demo.nullmodem import NullModem
from spool.header import BUILTIN_PROFILE_NAMES, DIGEST_IDS, RequestHeader
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


def _sign_args(path: str, csr: Path, profile: str, md: str) -> list[str]:
    return [
        *("--link", path, "--timeout", "5", "sign-x509", "--root", "1"),
        *("--profile", profile, "--md", md, "--days", "730"),
        *("--csr", str(csr), "--san", "DNS:a.example", "--subject", "/CN=a.example"),
    ]


@pytest.mark.parametrize(
    ("profile", "md", "header"),
    [
        ("server", "sha256", (5, 8)),
        ("5", "8", (5, 8)),
        ("Server-XMPP", "SHA384", (7, 9)),
        ("200", "0", (200, 0)),  # a profile of the configuration's; the root's digest
    ],
)
def test_cli_takes_names_and_numbers(link, tmp_path: Path, spkac, profile, md, header) -> None:
    _, server = link(lambda request: (b"cert", b""))
    csr = tmp_path / "req.pem"
    csr.write_bytes(spkac)
    assert client_cli.main(_sign_args(link.path, csr, profile, md)) == 0
    [request] = server.finish()
    sent = RequestHeader.from_bytes(request.header)
    assert (sent.root, sent.profile, sent.md, sent.days, sent.spkac) == (1, *header, 730, True)


def test_help_lists_the_signers_tables(capsys) -> None:
    with pytest.raises(SystemExit) as done:
        client_cli.main(["--help"])
    assert done.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    for number, name in [*DIGEST_IDS.items(), *BUILTIN_PROFILE_NAMES.items()]:
        assert f"{name}|{number}" in text
    assert "exit status: 0 success, 1 refused by the appliance, 2 bad usage" in text
    assert "``" not in text  # no raw markup in the description


def test_the_tables_are_the_signers() -> None:
    assert vars(issue)["DIGEST_IDS"] is DIGEST_IDS  # imported, not a copy
    assert {p.id: p.name for p in BUILTIN_PROFILES.values()} == dict(BUILTIN_PROFILE_NAMES)


def test_the_man_page_lists_the_tables_and_exit_codes() -> None:
    man = (Path(__file__).resolve().parents[2] / "packaging/man/signer-client.1").read_text()
    text = " ".join(re.sub(r'^\.[A-Z]+ |"', "", man.replace("\\-", "-"), flags=re.M).split())
    for number, name in [*DIGEST_IDS.items(), *BUILTIN_PROFILE_NAMES.items()]:
        assert re.search(rf"(^|[ ,]){re.escape(name)} {number}[,;.]", text), name
    codes = (client_cli.EXIT_REFUSED, client_cli.EXIT_USAGE, client_cli.EXIT_LINK)
    assert codes == (1, 2, 3) and client_cli.EXIT_UNUSABLE == 4
    assert ".B 4\nThe answer could not be used" in man


def test_every_option_has_help() -> None:
    parser = client_cli._parser()
    [commands] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    parsers = {"signer-client": parser, **commands.choices}
    missing = [
        f"{name} {action.option_strings[0]}"
        for name, each in parsers.items()
        for action in each._actions
        if action.option_strings and not action.help
    ]
    assert missing == []
    assert [choice.help for choice in commands._get_subactions() if not choice.help] == []


def test_cli_nul_prints_the_time_sent(link, capsys) -> None:
    _, server = link(lambda request: (b"", b""))
    before = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
    assert client_cli.main(["--link", link.path, "--timeout", "5", "nul"]) == 0
    after = datetime.datetime.now(datetime.UTC)
    [request] = server.finish()
    out = capsys.readouterr().out
    found = re.fullmatch(r"time sent: (\S+ \S+) UTC \((\S+)\)\n", out)
    assert found, out
    shown = datetime.datetime.strptime(found[1], "%Y-%m-%d %H:%M:%S").replace(tzinfo=datetime.UTC)
    assert before <= shown <= after
    assert found[2].encode() == request.payloads[0] == shown.strftime("%m%d%H%M%Y.%S").encode()


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


def test_cli_unusable_crl_answer_exits_4(link, tmp_path: Path, capsys, new_ca) -> None:
    root = new_ca().write_cert(tmp_path / "root.pem")
    link(lambda request: (b"-----BEGIN X509 CRL-----\nnot base64\n", b""))
    crl_path = tmp_path / "revoke.crl"
    args = ["--link", link.path, "--timeout", "5", "refresh-crl", "--root", "0"]
    code = client_cli.main([*args, "--crl", str(crl_path), "--root-cert", str(root)])
    err = capsys.readouterr().err
    assert code == client_cli.EXIT_UNUSABLE == 4
    assert (
        err == "signer-client: the answer could not be used: the PEM CRL received does not parse\n"
    )
    assert not crl_path.exists()


def test_cli_link_failure_exits_3(capsys) -> None:
    assert client_cli.main(["--link", "/dev/does-not-exist", "nul"]) == client_cli.EXIT_LINK == 3
    assert capsys.readouterr().err == (
        "signer-client: link failure: cannot open /dev/does-not-exist\n"
    )
    with NullModem() as modem:  # a cable with nobody at the other end
        code = client_cli.main(["--link", modem.a_path, "--ready-timeout", "0.3", "nul"])
    assert code == 3
    assert "no ready" in capsys.readouterr().err


def test_cli_runs_as_a_program() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "webhost.cli", "--link", "/dev/does-not-exist", "nul"],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert result.returncode == 3
    assert result.stderr == "signer-client: link failure: cannot open /dev/does-not-exist\n"
