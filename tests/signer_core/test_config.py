"""signer_core.config: a real TOML file on disk, defaults, path resolution,
overrides of the built-in profiles, and a ConfigError naming every bad key."""

from __future__ import annotations

from pathlib import Path

import pytest

from signer_core.config import load_config
from signer_core.x509.profiles import BUILTIN_PROFILES, SanSource
from spool.settings import ConfigError

FULL = """
[spool]
dir = "/var/spool/signer-appliance"

[comm]
device = "socket://127.0.0.1:9000"
baud = 9600
user = "c"
group = "cg"
result_deadline = 50

[signer]
user = "s"
group = "sg"
database = "db/ca.sqlite"
state_dir = "/var/lib/x"

[x509]
ocsp_url = "http://ocsp.example.org/"
cps_url = "https://example.org/cps"
policy_oid = "1.2.3.4"
allow_weak_digests = true
allow_ed25519 = true
blocklist_file = "blocked.txt"

[x509.roots.0]
name = "class 1 root"
key = "keys/root0.key"
certificate = "certs/root0.crt"
passphrase_file = ""
crl_url = "http://crl.cacert.org/revoke.crl"
default_digest = "SHA-384"

[x509.roots.4]
name = "new"
key = "/abs/root4.key"
certificate = "root4.crt"
passphrase_file = "pass/root4"
crl_url = "http://crl.cacert.org/root4.crl"

[x509.profiles.5]
enabled = false
max_days = 365
policy_oids = ["2.23.140.1.2.1"]

[x509.profiles.11]
enabled = true

[x509.profiles.20]
name = "custom"
enabled = true
key_usage = ["digital_signature"]
extended_key_usage = ["1.3.6.1.5.5.7.3.2"]
san_source = "payload"
max_days = 90

[openpgp]
home = "gpg"
fingerprint = "0123 4567 89AB CDEF 0123 4567 89AB CDEF 0123 4567"

[crl]
validity_days = 3
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "signer.toml"
    path.write_text(text)
    return path


def test_full_config(tmp_path):
    cfg = load_config(write(tmp_path, FULL))
    base = tmp_path.resolve()
    assert cfg.path == tmp_path / "signer.toml"
    assert cfg.spool_dir == Path("/var/spool/signer-appliance")
    assert (cfg.comm.device, cfg.comm.baud, cfg.comm.user, cfg.comm.group) == (
        "socket://127.0.0.1:9000",
        9600,
        "c",
        "cg",
    )
    assert cfg.comm.result_deadline == 50.0
    assert cfg.signer.database == base / "db/ca.sqlite"
    assert cfg.signer.state_dir == Path("/var/lib/x")
    x = cfg.x509
    assert (x.ocsp_url, x.cps_url, x.policy_oid) == (
        "http://ocsp.example.org/",
        "https://example.org/cps",
        "1.2.3.4",
    )
    assert x.allow_weak_digests and x.allow_ed25519
    assert x.blocklist_file == base / "blocked.txt"
    assert sorted(x.roots) == [0, 4]
    r0, r4 = x.roots[0], x.roots[4]
    assert (r0.id, r0.name, r0.key, r0.certificate, r0.passphrase_file) == (
        0,
        "class 1 root",
        base / "keys/root0.key",
        base / "certs/root0.crt",
        None,
    )
    assert r0.default_digest == "sha384"
    assert (r4.key, r4.passphrase_file, r4.default_digest) == (
        Path("/abs/root4.key"),
        base / "pass/root4",
        "sha256",
    )
    assert not x.profiles[5].enabled and x.profiles[5].max_days == 365
    assert x.profiles[5].extra_policy_oids == ("2.23.140.1.2.1",)
    assert x.profiles[5].extended_key_usage == BUILTIN_PROFILES[5].extended_key_usage
    assert x.profiles[11].enabled and x.profiles[11].ca
    assert not x.profiles[10].enabled
    assert x.profiles[0] == BUILTIN_PROFILES[0]
    p20 = x.profiles[20]
    assert (p20.name, p20.key_usage, p20.san_source, p20.max_days, p20.ca) == (
        "custom",
        frozenset({"digital_signature"}),
        SanSource.PAYLOAD,
        90,
        False,
    )
    o = cfg.openpgp
    assert o.home == base / "gpg" and o.key_file is None
    assert o.fingerprint == "0123456789ABCDEF0123456789ABCDEF01234567"
    assert (o.policy_url, o.cert_level, o.digest) == ("https://example.org/cps", 2, "SHA256")
    assert (cfg.crl.validity_days, cfg.crl.history, cfg.crl.prune_expired_after_days) == (3, 16, 0)


def test_minimal_config_defaults(tmp_path):
    cfg = load_config(write(tmp_path, '[spool]\ndir = "sp"\n'))
    assert cfg.spool_dir == tmp_path.resolve() / "sp"
    assert cfg.comm.device == "/dev/ttyUSB0" and cfg.comm.baud == 115200
    assert cfg.comm.result_deadline == 100.0
    assert cfg.x509.roots == {} and cfg.openpgp is None
    assert cfg.x509.ocsp_url == "http://ocsp.cacert.org/"
    assert cfg.x509.cps_url == "http://www.cacert.org/cps.php"
    assert cfg.x509.policy_oid == "1.3.6.1.4.1.18506.4.4"
    assert not cfg.x509.allow_weak_digests and not cfg.x509.allow_ed25519
    assert cfg.x509.blocklist_file is None
    assert dict(cfg.x509.profiles) == dict(BUILTIN_PROFILES)
    assert (cfg.crl.validity_days, cfg.crl.history) == (7, 16)


def test_builtin_profiles_table():
    assert sorted(BUILTIN_PROFILES) == list(range(12))
    assert [p.id for p in BUILTIN_PROFILES.values() if not p.enabled] == [10, 11]
    assert BUILTIN_PROFILES[8].ocsp_nocheck and BUILTIN_PROFILES[9].eku_critical
    assert BUILTIN_PROFILES[11].ca and BUILTIN_PROFILES[11].path_length == 0
    assert BUILTIN_PROFILES[11].extended_key_usage == ()
    assert BUILTIN_PROFILES[7].require_xmpp


@pytest.mark.parametrize(
    "text,key",
    [
        ("[spool]\ndir = 3\n", "spool.dir"),
        ("[spool]\n", "spool.dir"),
        ('[spool]\ndir = "x"\nextra = 1\n', "spool.extra"),
        ('[spool]\ndir = "x"\n[bogus]\n', "bogus"),
        ('[spool]\ndir = "x"\n[comm]\nbaud = true\n', "comm.baud"),
        ('[spool]\ndir = "x"\n[comm]\nbaud = 10\n', "comm.baud"),
        ('[spool]\ndir = "x"\n[comm]\nresult_deadline = 200\n', "comm.result_deadline"),
        ('[spool]\ndir = "x"\n[x509]\nocsp_url = "ftp://x"\n', "x509.ocsp_url"),
        ('[spool]\ndir = "x"\n[x509]\npolicy_oid = "nope"\n', "x509.policy_oid"),
        ('[spool]\ndir = "x"\n[x509]\nallow_weak_digests = 1\n', "x509.allow_weak_digests"),
        ('[spool]\ndir = "x"\n[x509.roots.0]\nname = "r"\n', "x509.roots.0.key"),
        ('[spool]\ndir = "x"\n[x509.roots.x]\nname = "r"\n', "x509.roots.x"),
        (
            (
                '[spool]\ndir = "x"\n[x509.roots.0]\nname="r"\nkey="k"\ncertificate="c"\n'
                'crl_url="http://c"\ndefault_digest="md4"\n'
            ),
            "x509.roots.0.default_digest",
        ),
        (
            (
                '[spool]\ndir = "x"\n[x509.roots.0]\nname="r"\nkey=""\ncertificate="c"\n'
                'crl_url="http://c"\n'
            ),
            "x509.roots.0.key",
        ),
        ('[spool]\ndir = "x"\n[x509.profiles.5]\nenabled = "yes"\n', "x509.profiles.5.enabled"),
        ('[spool]\ndir = "x"\n[x509.profiles.5]\nmax_days = 0\n', "x509.profiles.5"),
        ('[spool]\ndir = "x"\n[x509.profiles.5]\ncolour = "red"\n', "x509.profiles.5.colour"),
        (
            '[spool]\ndir = "x"\n[x509.profiles.5]\nkey_usage = ["sing"]\n',
            "x509.profiles.5.key_usage",
        ),
        (
            '[spool]\ndir = "x"\n[x509.profiles.5]\nextended_key_usage = ["1.x"]\n',
            "x509.profiles.5.extended_key_usage",
        ),
        (
            '[spool]\ndir = "x"\n[x509.profiles.5]\nsan_source = "dns"\n',
            "x509.profiles.5.san_source",
        ),
        ('[spool]\ndir = "x"\n[x509.profiles.5]\npath_length = 2\n', "x509.profiles.5"),
        ('[spool]\ndir = "x"\n[x509.profiles.30]\nenabled = true\n', "x509.profiles.30.name"),
        ('[spool]\ndir = "x"\n[openpgp]\nhome = "g"\n', "openpgp.fingerprint"),
        ('[spool]\ndir = "x"\n[openpgp]\nhome = "g"\nfingerprint = "12"\n', "openpgp.fingerprint"),
        ('[spool]\ndir = "x"\n[openpgp]\nfingerprint = "' + "A" * 40 + '"\n', "openpgp.home"),
        (
            '[spool]\ndir = "x"\n[openpgp]\nhome="g"\nfingerprint = "'
            + "A" * 40
            + '"\ncert_level = 4\n',
            "openpgp.cert_level",
        ),
        (
            '[spool]\ndir = "x"\n[openpgp]\nhome="g"\nfingerprint = "'
            + "A" * 40
            + '"\ndigest = "MD5"\n',
            "openpgp.digest",
        ),
        ('[spool]\ndir = "x"\n[crl]\nvalidity_days = 0\n', "crl.validity_days"),
        ('[spool]\ndir = "x"\n[crl]\nhistory = "16"\n', "crl.history"),
    ],
)
def test_config_errors_name_the_key(tmp_path, text, key):
    with pytest.raises(ConfigError) as exc:
        load_config(write(tmp_path, text))
    assert str(exc.value).startswith(key), str(exc.value)


def test_unreadable_and_invalid_files(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.toml")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(write(tmp_path, "[spool\n"))
    assert issubclass(ConfigError, ValueError)


@pytest.mark.parametrize(
    "extra, key",
    [
        ("[signer]\nrequest_budget_seconds = 100.5\n", "signer.request_budget_seconds"),
        (
            "[signer]\nrequest_budget_seconds = 50\n[comm]\nresult_deadline = 40.0\n",
            "signer.request_budget_seconds",
        ),
        (
            f'[openpgp]\nfingerprint = "{"A" * 40}"\nhome = "gnupg"\ngpg_wall_seconds = 30\n',
            "openpgp.gpg_wall_seconds",
        ),
    ],
)
def test_time_limits_nest(tmp_path, extra, key):
    from signer_core.config import load_config
    from spool.settings import ConfigError

    (tmp_path / "signer.toml").write_text('[spool]\ndir = "spool"\n' + extra)
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config(tmp_path / "signer.toml")


def test_unset_time_limits_fit_inside_the_ones_around_them(tmp_path):
    from signer_core.config import load_config

    (tmp_path / "signer.toml").write_text(
        '[spool]\ndir = "spool"\n[comm]\nresult_deadline = 2.0\n'
        f'[openpgp]\nfingerprint = "{"A" * 40}"\nhome = "g"\n'
    )
    cfg = load_config(tmp_path / "signer.toml")
    assert cfg.signer.request_budget_seconds == 1.0
    assert cfg.openpgp.gpg_limits.wall_seconds == 0.5
    (tmp_path / "signer.toml").write_text('[spool]\ndir = "spool"\n')
    assert load_config(tmp_path / "signer.toml").signer.request_budget_seconds == 20.0
