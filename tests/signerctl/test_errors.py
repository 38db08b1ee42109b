"""Every bad input to signerctl is answered with one sentence of ours on stderr and
exit code 2: no traceback, no Python or library text; and the global options
are accepted before or after the subcommand."""

from __future__ import annotations

import pytest

from signer_core.store.cadb import serial_text

# (arguments after --config, a word the one line must hold)
BAD_INPUTS = [
    (["certs", "find", "--serial", "zz"], "not a serial number"),
    (["certs", "find", "--since", "yesterday"], "not a date"),
    (["certs", "find", "--limit", "0"], "not a count"),
    (["certs", "find", "--bogus"], "unrecognized"),
    (["certs", "fnd"], "is not one of find, show"),
    (["certs", "show", "abc123"], "no certificate has serial abc123"),
    (["certs", "show", "abc123", "--root", "7"], "root 7 is not in the configuration"),
    (["spool", "show", "nosuch"], "no spool entry is named 'nosuch'"),
    (["spool", "show", "../etc"], "not the name of a spool entry"),
    (["spool", "requeue", "nosuch"], "no spool entry"),
    (["spool", "purge-corrupt", "--older-than-days", "-1"], "not a number of days"),
    (["crl", "show", "9"], "root 9 is not in the configuration (its roots: 0)"),
    (["crl", "show", "x"], "not a root number"),
    (["audit", "show", "--until", "tomorrow"], "not a date"),
    (["audit", "show", "--serial", "0xg"], "not a serial number"),
    (["time", "--limit", "many"], "not a count"),
    (["nosuch"], "is not one of status, certs"),
    (["import-openssl", "--root", "9", "--ca-dir", "/nonexistent", "--force"], "root 9"),
    (
        ["import-openssl", "--root", "0", "--ca-dir", "/x", "--ca-cert", "/nonexistent.pem"]
        + ["--force"],
        "root 0's certificate /nonexistent.pem does not exist",
    ),
]

PYTHON_WORDS = ("Traceback", "Errno", "invalid literal", "isoformat", "Error:", "int()", "KeyError")


def assert_one_sentence(code: int, out, err: str, words: str) -> None:
    assert code == 2, (out, err)
    assert len(err.splitlines()) == 1 and err.startswith("signerctl"), err
    assert words in err
    assert not any(w in err for w in PYTHON_WORDS), err


@pytest.mark.parametrize(("argv", "words"), BAD_INPUTS, ids=lambda v: " ".join(v)[:40])
def test_bad_input_is_one_sentence(site, signerctl, argv, words):
    assert_one_sentence(*signerctl("--config", str(site.config), *argv), words)
    # the same, with the global options after the subcommand and --json
    assert_one_sentence(*signerctl(*argv, "--json", "--config", str(site.config)), words)


def test_missing_configuration_and_database(site, signerctl, tmp_path):
    assert_one_sentence(
        *signerctl("--config", str(tmp_path / "none.toml"), "status"), "cannot read"
    )
    (site.config.parent / "lib" / "ca.sqlite").unlink()
    assert_one_sentence(*signerctl("certs", "find", "--config", str(site.config)), "does not exist")


def test_global_options_before_or_after(site, signerctl):
    where = ["--config", str(site.config)]
    serial = serial_text(site.serials[1])
    for argv in (
        [*where, "--json", "certs", "find", "--serial", serial],
        [*where, "certs", "find", "--serial", serial, "--json"],
        ["certs", "--json", "find", *where, "--serial", serial],
        ["certs", "find", "--serial", serial, "--json", *where],
    ):
        code, rows, err = signerctl(*argv)
        assert code == 0 and [r["serial"] for r in rows] == [serial], (argv, err)
    code, out, _ = signerctl(*where, "certs", "find", "--serial", serial)
    assert code == 0 and serial in out and not out.lstrip().startswith("[")
