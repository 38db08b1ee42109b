"""What a requester's OpenPGP key may cost, with the real gpg: gpg is killed at its CPU
and wall-clock limits, its agent with it, whatever exception ends the request (the
signer's budget alarm included), and nothing of the private home is left; a work
directory another user could have made is refused at start with one sentence; the
[openpgp] settings reach the signer, and without a workdir it is <state_dir>/gpg."""

from __future__ import annotations

import dataclasses
import logging
import os
import secrets
import signal
import subprocess
import time
from pathlib import Path

import pytest

from signer_core.config import load_config
from signer_core.daemon import load_openpgp
from signer_core.openpgp.certify import OpenPGPSigner, certify_key, close_signer, load_signer
from signer_core.openpgp.gpg import DEFAULT_GPG_LIMITS, GpgError, GpgLimits, private_home
from signer_core.openpgp.limits import DEFAULT_LIMITS, PacketLimits
from signer_core.refusal import Refusal
from spool.settings import ConfigError
from tests.support.openpgp import Homes, assert_clean, gen_key, gpg

# Lets a bomb past the packet checks, so that gpg's own limits are what stops it.
NO_SIZE_BOUNDS = PacketLimits(max_key_bits=16384, max_rsa_exponent_bits=16384)


@dataclasses.dataclass(frozen=True)
class Pgp:
    homes: Homes
    ca_home: Path
    ca_fpr: str
    user_home: Path
    workdir: Path
    signer: OpenPGPSigner


@pytest.fixture(scope="module")
def pgp():
    homes = Homes()
    ca_home = homes.new()
    ca_fpr = gen_key(ca_home, "Limits CA <ca@example.org>", usage="cert")
    workdir = homes.root / "w"
    try:
        signer = load_signer(fingerprint=ca_fpr, home=ca_home, workdir=workdir)
        yield Pgp(homes, ca_home, ca_fpr, homes.new(), workdir, signer)
        close_signer(signer)
    finally:
        homes.close()


def refused_in(signer: OpenPGPSigner, data: bytes) -> tuple[str, float]:
    start = time.monotonic()
    with pytest.raises(Refusal) as info:
        certify_key(signer, data, 30)
    return info.value.code, time.monotonic() - start


def ordinary_key(pgp: Pgp, name: str) -> bytes:
    fpr = gen_key(pgp.user_home, f"{name} <{name.lower()}@example.org>")
    return gpg(pgp.user_home, "--export", fpr)


def agent_of(home: Path) -> int:
    found = subprocess.run(
        ["pgrep", "-f", f"gpg-agent --homedir {home} "], capture_output=True, text=True
    )
    [pid] = found.stdout.split()
    return int(pid)


def cpu_limit(pid: int) -> tuple[str, str]:
    limits = Path(f"/proc/{pid}/limits").read_text().splitlines()
    line = next(x for x in limits if x.startswith("Max cpu time"))
    soft, hard = line.split()[3:5]
    return soft, hard


# --- gpg's CPU and wall-clock limits ------------------------------------------------------------


def test_gpg_is_killed_at_its_cpu_limit(pgp, rsa_bomb):
    signer = dataclasses.replace(pgp.signer, limits=NO_SIZE_BOUNDS, gpg_limits=GpgLimits(1, 120))
    code, seconds = refused_in(signer, rsa_bomb(16384, 16384, 6))
    assert code == "openpgp-cpu-limit"
    assert seconds < 30  # 1 s of CPU (RLIMIT_CPU counts whole seconds); gpg would need ~20 s
    assert_clean(pgp.workdir)


def test_gpg_is_killed_at_its_wall_clock_limit(pgp, rsa_bomb):
    signer = dataclasses.replace(pgp.signer, limits=NO_SIZE_BOUNDS, gpg_limits=GpgLimits(120, 0.5))
    code, seconds = refused_in(signer, rsa_bomb(16384, 16384, 6))
    assert code == "openpgp-timeout"
    assert 0.5 <= seconds < 10
    assert_clean(pgp.workdir)


def test_the_agent_inherits_the_cpu_limit_and_dies_at_the_wall_clock_limit(pgp, rsa_bomb):
    with pytest.raises(Refusal) as info:
        with private_home(pgp.workdir, GpgLimits(7, 1.0)) as home:
            private = home.gpg()
            private.import_keys(pgp.signer.ca_secret.key)  # a secret key: gpg starts the agent
            assert cpu_limit(agent_of(home.path)) == ("7", "8")
            private.import_keys(rsa_bomb(16384, 16384, 6))
    assert info.value.code == "openpgp-timeout"
    assert_clean(pgp.workdir)


class Interrupted(BaseException):
    """What the signer's budget alarm raises: not an Exception."""


@pytest.fixture
def alarm():
    """``alarm(seconds)`` raises ``Interrupted`` in the main thread, as the signer's budget does."""

    def interrupt(signum, frame):
        raise Interrupted

    previous = signal.signal(signal.SIGALRM, interrupt)
    yield lambda seconds: signal.setitimer(signal.ITIMER_REAL, seconds)
    signal.setitimer(signal.ITIMER_REAL, 0)
    signal.signal(signal.SIGALRM, previous)


def test_a_base_exception_during_a_wait_for_gpg_kills_gpg_and_its_agent(pgp, alarm, rsa_bomb):
    start = time.monotonic()
    with pytest.raises(Interrupted):
        with private_home(pgp.workdir, GpgLimits(120, 120)) as home:
            private = home.gpg()
            private.import_keys(pgp.signer.ca_secret.key)
            agent_of(home.path)
            alarm(0.5)
            private.import_keys(rsa_bomb(16384, 16384, 6))
    assert time.monotonic() - start < 10  # interrupted in the wait, not after gpg's ~20 s
    assert_clean(pgp.workdir)


def test_a_base_exception_during_a_certification_leaves_nothing(pgp, alarm, rsa_bomb):
    signer = dataclasses.replace(pgp.signer, limits=NO_SIZE_BOUNDS, gpg_limits=GpgLimits(120, 120))
    alarm(0.5)
    with pytest.raises(Interrupted):
        certify_key(signer, rsa_bomb(16384, 16384, 6), 30)
    assert_clean(pgp.workdir)


@pytest.mark.timing
def test_an_ordinary_key_is_certified_well_within_the_default_limits(pgp):
    assert pgp.signer.gpg_limits == DEFAULT_GPG_LIMITS and pgp.signer.limits == DEFAULT_LIMITS
    start = time.monotonic()
    assert certify_key(pgp.signer, ordinary_key(pgp, "Plain"), 30).startswith(b"-----BEGIN PGP")
    assert time.monotonic() - start < DEFAULT_GPG_LIMITS.wall_seconds / 2
    assert_clean(pgp.workdir)


# --- the work directory, checked at start ---------------------------------------------------------


def squat(kind: str, path: Path, users) -> None:
    if kind == "foreign":
        if users.comm_uid is None:
            pytest.skip("needs root: a directory of another user")
        path.mkdir(mode=0o700)
        os.chown(path, users.comm_uid, users.comm_gid)
    elif kind == "open":
        path.mkdir()
        path.chmod(0o777)
    elif kind == "symlink":
        (path.parent / "elsewhere").mkdir(mode=0o700, exist_ok=True)
        path.symlink_to(path.parent / "elsewhere")
    else:
        path.write_text("")


SENTENCES = {
    "foreign": "belongs to uid {uid}, not to the signer (uid {me}):"
    " another user may have created it first.",
    "open": "has mode 0777; it must be 0700, reachable by the signer alone.",
    "symlink": "is a symbolic link; it must be a directory of the signer's own.",
    "file": "is not a directory.",
}


@pytest.mark.parametrize("kind", sorted(SENTENCES))
def test_a_squatted_workdir_is_refused_at_start(pgp, users, kind):
    path = pgp.homes.root / f"squat-{kind}"
    squat(kind, path, users)
    with pytest.raises(GpgError) as info:
        load_signer(fingerprint=pgp.ca_fpr, home=pgp.ca_home, workdir=path)
    sentence = SENTENCES[kind].format(uid=users.comm_uid, me=os.geteuid())
    assert str(info.value) == f"OpenPGP workdir {path} {sentence}"
    if kind in ("foreign", "open"):
        assert list(path.iterdir()) == []  # refused before any home was made there


def write_config(directory: Path, pgp: Pgp, extra: str = "") -> Path:
    (directory / "lib").mkdir(mode=0o700)
    config = directory / "signer.toml"
    config.write_text(
        '[spool]\ndir = "spool"\n\n[comm]\nuser = ""\n\n'
        '[signer]\ndatabase = "lib/ca.sqlite"\nstate_dir = "lib"\n\n'
        f'[openpgp]\nhome = "{pgp.ca_home}"\nfingerprint = "{pgp.ca_fpr}"\n{extra}'
    )
    return config


def test_the_daemon_reports_a_squatted_workdir_in_one_sentence(pgp, users, caplog):
    directory = pgp.homes.root / "daemon-squat"
    directory.mkdir()
    squat("open", directory / "gpg", users)
    config = write_config(directory, pgp, f'workdir = "{directory / "gpg"}"\n')
    signer, reason = load_openpgp(load_config(config))
    sentence = f"OpenPGP workdir {directory / 'gpg'} {SENTENCES['open']}"
    assert signer is None and reason == f"the OpenPGP root is not usable: {sentence}"
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING] == [
        f"OpenPGP root not usable: {sentence}"
    ]


def test_without_a_workdir_the_daemon_uses_its_state_directory(pgp):
    directory = pgp.homes.root / "daemon-default"
    directory.mkdir()
    signer, reason = load_openpgp(load_config(write_config(directory, pgp)))
    assert reason == "" and signer.workdir == directory / "lib" / "gpg"
    info = signer.workdir.lstat()
    assert info.st_uid == os.geteuid() and info.st_mode & 0o777 == 0o700
    assert not str(signer.workdir).startswith("/dev/shm")
    assert certify_key(signer, ordinary_key(pgp, "Stateful"), 30).startswith(b"-----BEGIN PGP")
    assert_clean(signer.workdir)


# --- the [openpgp] settings -----------------------------------------------------------------------

LIMIT_KEYS = [f.name for f in dataclasses.fields(PacketLimits)]


def test_the_configuration_defaults_are_the_code_defaults(pgp):
    directory = pgp.homes.root / "defaults"
    directory.mkdir()
    o = load_config(write_config(directory, pgp)).openpgp
    assert o.limits == DEFAULT_LIMITS and o.gpg_limits == DEFAULT_GPG_LIMITS


def test_configured_limits_reach_the_signer(pgp, rsa_bomb):
    directory = pgp.homes.root / "configured"
    directory.mkdir()
    values = dict(zip(LIMIT_KEYS, (50, 3, 4, 60, 7, 4096, 17), strict=True))
    extra = "".join(f"{k} = {v}\n" for k, v in values.items())
    config = write_config(directory, pgp, extra + "gpg_cpu_seconds = 2\ngpg_wall_seconds = 3.5\n")
    signer, reason = load_openpgp(load_config(config))
    assert reason == "" and signer.limits == PacketLimits(**values)
    assert signer.gpg_limits == GpgLimits(2, 3.5)
    with pytest.raises(Refusal) as info:
        certify_key(signer, rsa_bomb(8192, 17, 1), 30)
    assert info.value.code == "openpgp-key-too-large"


@pytest.mark.parametrize(
    "setting",
    [
        "max_key_bits = 1024",
        "max_rsa_exponent_bits = 16",
        "max_packets = 0",
        "max_signatures = true",
        "gpg_cpu_seconds = 0",
        "gpg_cpu_seconds = 1.5",
        "gpg_wall_seconds = 0",
        "gpg_wall_seconds = 601",
    ],
)
def test_bad_limit_settings_name_their_key(pgp, setting):
    directory = pgp.homes.root / f"bad-{secrets.token_hex(4)}"
    directory.mkdir()
    with pytest.raises(ConfigError) as info:
        load_config(write_config(directory, pgp, setting + "\n"))
    assert str(info.value).startswith(f"openpgp.{setting.split()[0]}:")
