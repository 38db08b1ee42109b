"""One reader per configuration section: both daemons read [spool] and [comm] alike, and the
signer refuses at start, naming the key, every [openpgp] value its OpenPGP code would refuse."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from comm_handler.config import load_comm_config
from comm_handler.transfer import DEPLOYED_PACING, Pacing
from signer_core.config import load_config
from signer_core.openpgp.certify import OpenPGPSigner
from spool.settings import ConfigError

BASE = '[spool]\ndir = "spool"\n'
PACKAGED = Path(__file__).resolve().parents[2] / "packaging" / "debian" / "signer.toml"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "signer.toml"
    path.write_text(text, encoding="utf-8")
    return path


def as_the_comm_handler_sees_it(path: Path):
    """The signer's ``Config.comm`` rebuilt from what the comm handler loaded."""
    comm = load_comm_config(path)
    pacing = None if comm.pacing is None else dataclasses.asdict(comm.pacing)
    return comm.spool_dir, {
        "device": comm.device,
        "baud": comm.baud,
        "user": comm.user,
        "group": comm.group,
        "result_deadline": comm.result_deadline,
        "link": dataclasses.asdict(comm.link),
        "pacing": pacing,
    }


def assert_same_view(path: Path) -> None:
    signer = load_config(path)
    assert as_the_comm_handler_sees_it(path) == (signer.spool_dir, dataclasses.asdict(signer.comm))


@pytest.mark.parametrize(
    "comm",
    [
        "",  # no [comm] at all: every default
        "[comm]\n",
        '[comm]\nuser = ""\ngroup = ""\n',  # one user for both (development)
        '[comm]\ndevice = "loop://"\nbaud = 9600\nuser = "c"\ngroup = "cg"\nresult_deadline = 50\n',
        "[comm]\nresult_deadline = 1\nready_timeout = 2.5\nverdict_timeout = 1\n"
        "chunk_timeout = 0.5\nmax_resends = 0\nmax_naks = 20\nmax_message = 64\n",
        "[comm]\npace = true\npace_slice_bytes = 16\npace_per_byte = 0\npace_per_slice = 1\n",
        "[comm]\npace = false\npace_slice_bytes = 16\n",
    ],
)
def test_both_daemons_see_the_same_comm_values(tmp_path, comm) -> None:
    assert_same_view(write(tmp_path, BASE + comm))


def test_the_defaults_are_the_deployed_ones(tmp_path) -> None:
    path = write(tmp_path, BASE + "[comm]\npace = true\n")
    comm = load_config(path).comm
    assert (comm.device, comm.baud, comm.user, comm.group) == (
        "/dev/ttyUSB0",
        115200,
        "_signer-comm",
        "_signer-comm",
    )
    assert comm.result_deadline == 100.0
    assert load_comm_config(path).pacing == DEPLOYED_PACING == Pacing()


def test_the_packaged_file_reads_alike(tmp_path) -> None:
    assert_same_view(PACKAGED)


@pytest.mark.parametrize(
    "comm, key",
    [
        ('device = ""', "comm.device"),
        ("device = 1", "comm.device"),
        ("baud = 10", "comm.baud"),
        ("baud = true", "comm.baud"),
        ("user = 0", "comm.user"),
        ('group = ["g"]', "comm.group"),
        ("result_deadline = 0.5", "comm.result_deadline"),  # the signer took it, comm did not
        ("result_deadline = 118", "comm.result_deadline"),  # the signer took it, comm did not
        ("result_deadline = nan", "comm.result_deadline"),
        ('result_deadline = "100"', "comm.result_deadline"),
        ("ready_timeout = 0", "comm.ready_timeout"),
        ("verdict_timeout = 61", "comm.verdict_timeout"),
        ("chunk_timeout = true", "comm.chunk_timeout"),
        ("max_resends = 1.5", "comm.max_resends"),
        ("max_naks = 21", "comm.max_naks"),
        ("max_message = 16777216", "comm.max_message"),
        ("pace = 1", "comm.pace"),
        ("pace_slice_bytes = 0", "comm.pace_slice_bytes"),  # refused with pacing off too
        ("pace = true\npace_per_byte = 1.0", "comm.pace_per_byte"),
        ("pace_per_slice = -1", "comm.pace_per_slice"),
        ("chunk_timout = 1.0", "comm.chunk_timout"),
    ],
)
def test_a_bad_comm_value_is_refused_by_both_alike(tmp_path, comm, key) -> None:
    path = write(tmp_path, BASE + f"[comm]\n{comm}\n")
    with pytest.raises(ConfigError) as by_signer:
        load_config(path)
    with pytest.raises(ConfigError) as by_comm:
        load_comm_config(path)
    assert str(by_signer.value) == str(by_comm.value)
    assert str(by_signer.value).startswith(f"{key}: ")


@pytest.mark.parametrize(
    "text, key",
    [
        ("[spool]\n", "spool.dir"),
        ('[spool]\ndir = ""\n', "spool.dir"),
        (BASE + "corrupt_max_entries = -1\n", "spool.corrupt_max_entries"),
        (BASE + "extra = 1\n", "spool.extra"),
        (BASE + "[comm]\n[comm.sub]\n", "comm.sub"),
        ("comm = 1\n" + BASE, "[comm]"),
    ],
)
def test_a_bad_spool_value_is_refused_by_both_alike(tmp_path, text, key) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as by_signer:
        load_config(path)
    with pytest.raises(ConfigError) as by_comm:
        load_comm_config(path)
    assert str(by_signer.value) == str(by_comm.value)
    assert key in str(by_signer.value)


def test_an_unreadable_file_is_refused_by_both_alike(tmp_path) -> None:
    for content in (b"[spool\n", b'[spool]\ndir = "\xff"\n'):
        (tmp_path / "signer.toml").write_bytes(content)
        messages = set()
        for load in (load_config, load_comm_config):
            with pytest.raises(ConfigError, match="not valid TOML") as info:
                load(tmp_path / "signer.toml")
            messages.add(str(info.value))
        assert len(messages) == 1


# -- [openpgp]: what the config takes, the OpenPGP code can use ----------------------------

FPR = "0123456789ABCDEF0123456789ABCDEF01234567"
STATE = "/var/lib/signer-test"  # short: the sockets' paths under <state_dir>/gpg are bounded


def openpgp(tmp_path: Path, extra: str, fpr: str = FPR) -> Path:
    return write(
        tmp_path,
        BASE
        + f'[signer]\nstate_dir = "{STATE}"\n[openpgp]\nhome = "g"\nfingerprint = "{fpr}"\n{extra}',
    )


def signer_of(cfg) -> OpenPGPSigner:
    """The OpenPGPSigner the daemon builds from this configuration (load_signer's first step)."""
    o = cfg.openpgp
    return OpenPGPSigner(
        o.home,
        o.key_file,
        o.fingerprint,
        o.passphrase_file,
        policy_url=o.policy_url,
        cert_level=o.cert_level,
        digest=o.digest,
        workdir=o.workdir or Path(STATE, "gpg"),
    )


@pytest.mark.parametrize(
    "extra, fpr",
    [
        ("", FPR),
        ("", "0123 4567 89ab cdef 0123  4567 89AB CDEF 0123 4567"),
        ('digest = "sha384"\ncert_level = 0\n', FPR),
        ('digest = "SHA512"\ncert_level = 3\npolicy_url = "https://example.org/p"\n', FPR),
        ('home = ""\nkey_file = "k.asc"\n', FPR),
    ],
)
def test_what_the_config_takes_the_openpgp_code_takes(tmp_path, extra, fpr) -> None:
    text = openpgp(tmp_path, "", fpr).read_text(encoding="utf-8")
    if "home = " in extra:
        text = text.replace('home = "g"\n', "")
    write(tmp_path, text + extra)
    cfg = load_config(tmp_path / "signer.toml")
    assert cfg.openpgp is not None
    signer = signer_of(cfg)
    assert signer.fingerprint == cfg.openpgp.fingerprint == FPR


@pytest.mark.parametrize(
    "extra, fpr, key",
    [
        ("", "A" * 64, "openpgp.fingerprint"),  # v5: neither our packets code nor gpg 2.2
        ("", "A" * 39, "openpgp.fingerprint"),
        ("", "G" * 40, "openpgp.fingerprint"),
        ("", "", "openpgp.fingerprint"),
        ('digest = "SHA224"\n', FPR, "openpgp.digest"),  # gpg: "Invalid length" for P-256
        ('digest = "SHA1"\n', FPR, "openpgp.digest"),
        ('digest = "MD5"\n', FPR, "openpgp.digest"),
        ("cert_level = 4\n", FPR, "openpgp.cert_level"),
        (f'policy_url = "http://example.org/{"p" * 190}"\n', FPR, "openpgp.policy_url"),
        ('policy_url = "http://example.org/é"\n', FPR, "openpgp.policy_url"),
        ('key_file = "k.asc"\n', FPR, "openpgp.home"),  # home and key_file both
        (f'workdir = "/tmp/{"w" * 80}"\n', FPR, "openpgp.workdir"),
    ],
)
def test_what_the_openpgp_code_refuses_the_config_refuses(tmp_path, extra, fpr, key) -> None:
    path = openpgp(tmp_path, extra, fpr)
    with pytest.raises(ConfigError, match=f"^{key}: "):
        load_config(path)


@pytest.mark.parametrize(
    "change",
    [
        dict(fingerprint="A" * 64),
        dict(digest="SHA224"),
        dict(cert_level=4),
        dict(policy_url="http://example.org/\n"),
    ],
)
def test_the_openpgp_code_refuses_the_same(tmp_path, change) -> None:
    """The rules are one: what the config refuses above, OpenPGPSigner refuses too."""
    signer = signer_of(load_config(openpgp(tmp_path, "")))
    with pytest.raises(ValueError):
        dataclasses.replace(signer, **change)
