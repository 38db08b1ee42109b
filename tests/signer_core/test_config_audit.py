"""``[audit]``: its defaults, paths, and a ConfigError naming each bad key."""

from __future__ import annotations

import re
import socket
from pathlib import Path

import pytest

from signer_core.config import load_config
from spool.settings import ConfigError

BASE = '[spool]\ndir = "sp"\n[signer]\nstate_dir = "/var/lib/x"\n'


def load(tmp_path: Path, audit: str = ""):
    path = tmp_path / "signer.toml"
    path.write_text(BASE + (f"[audit]\n{audit}" if audit else ""))
    return load_config(path).audit


def test_defaults(tmp_path, monkeypatch):
    monkeypatch.setattr(socket, "gethostname", lambda: "ca 1+old.example.org")
    a = load(tmp_path)
    assert a.log_key == Path("/var/lib/x/audit-log.key")
    assert a.origin == "ca1old.example.org/signer-appliance"
    assert a.integrity_interval_seconds == 86400.0


def test_values(tmp_path):
    a = load(
        tmp_path,
        'log_key = "keys/log.key"\norigin = "ca.example.org/log"\nintegrity_interval_seconds = 1\n',
    )
    assert a.log_key == tmp_path.resolve() / "keys/log.key"
    assert a.origin == "ca.example.org/log"
    assert a.integrity_interval_seconds == 1.0


@pytest.mark.parametrize(
    ("audit", "message"),
    [
        ('origin = "ca example"\n', "audit.origin: the key name 'ca example' is not printable"),
        ('origin = "ca+1"\n', "audit.origin: the key name 'ca+1' is not printable"),
        ('origin = ""\n', "audit.origin: the key name '' is not printable"),
        ('origin = "caf\u00e9"\n', "audit.origin: the key name 'caf\u00e9' is not printable"),
        ("origin = 3\n", "audit.origin: expected str"),
        ("integrity_interval_seconds = 0.5\n", "audit.integrity_interval_seconds: must be between"),
        ("integrity_interval_seconds = nan\n", "audit.integrity_interval_seconds: must be between"),
        (
            "integrity_interval_seconds = 604801\n",
            "audit.integrity_interval_seconds: must be between 1 and 604800 seconds",
        ),
        ('integrity_interval_seconds = "1"\n', "audit.integrity_interval_seconds: expected int"),
        ('log_key = ""\n', "audit.log_key: empty path"),
        ("colour = 1\n", "audit.colour: unknown key"),
    ],
)
def test_bad_value_is_named(tmp_path, audit, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        load(tmp_path, audit)
