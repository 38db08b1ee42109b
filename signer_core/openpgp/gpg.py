"""Throw-away GnuPG homes and the gpg runs in them, within CPU and wall-clock limits.

Trusted side. Each request gets its own private home (a fresh 0700 directory
with a random, short name, so gpg-agent's socket path fits), which is
removed, with every process that runs for it, whatever happens. A request's
one gpg is run directly (``run_gpg``, why there); python-gnupg (0.4.9 in
Debian 12, 0.5.x from PyPI) drives the homes that import keys: the CA's own
(``cahome``), and private homes with their own agent (``private_home``'s
default). Only ``gpgconf`` (not gpg) is run directly besides, by
``stop_agent``: the one way the project stops the agent of a GnuPG home (the
CA's own here; signerctl's and the benchmarks' homes too).

Limits (``GpgLimits``): each gpg of a private home is started as ``prlimit
--cpu=N:N+1 --core=0 -- gpg ...`` (``run_gpg``; for python-gnupg, which builds
the command line in ``make_args``, ``_LimitedGPG`` extends it): prlimit sets RLIMIT_CPU on
itself and execs gpg, so no ``preexec_fn`` runs in this threaded process, and
the gpg-agent that gpg forks inherits the limit. A timer kills every gpg of
the home, and its agent, when the home's wall-clock limit has passed.
Refusal codes: openpgp-cpu-limit (a gpg died of SIGXCPU, or of SIGKILL at the
hard limit), openpgp-timeout. Any exception leaving a ``private_home`` block,
a ``BaseException`` such as the signer's budget alarm included, kills the
home's gpg processes (those we started, by their handles) and
everything else whose command line names the home (its gpg-agent, which
daemonises out of our reach: the home is random and private, so that name is
ours alone), then removes the home.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import stat
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gnupg

from signer_core import procfs
from signer_core.refusal import Refusal

# sun_path is 108 bytes; gpg-agent's longest socket name is S.gpg-agent.browser.
MAX_HOME_PATH = 107 - len("/S.gpg-agent.browser") - len("/g12345678")
_BASE_OPTIONS = ("--trust-model", "always", "--no-auto-check-trustdb", "--no-greeting")
_REAP_WAIT = 5.0  # seconds a SIGKILLed gpg child may take to exit
_AGENT_EXIT_WAIT = 5.0  # seconds the CA home's agent may take to remove its sockets
# The agent of a throw-away home protects the keys it stores (and exports)
# with the smallest S2K count: unlocking the CA key then costs milliseconds
# instead of seconds. The key lives there only for one request, in a 0700
# directory, and its passphrase is in the signer's memory anyway. No
# smartcard daemon: nothing here uses one.
_AGENT_CONF = "s2k-count 65536\ndisable-scdaemon\n"


# python-gnupg logs, at DEBUG, the first bytes of what it imports and of gpg's
# output: that would put the CA secret key export into the logs.
logging.getLogger("gnupg").setLevel(logging.INFO)


class GpgError(RuntimeError):
    """gpg or gpgconf failed in a way that is not the request's fault."""


@dataclass(frozen=True)
class GpgLimits:
    """What gpg may spend on one request: CPU seconds per process, wall-clock seconds in all."""

    cpu_seconds: int = 5
    wall_seconds: float = 10.0


DEFAULT_GPG_LIMITS = GpgLimits()


class PrivateHome:
    """A fresh GnuPG home under ``parent`` (the system's temporary directory if None).

    Every gpg started through ``gpg()`` is held to ``limits``; ``close`` kills
    whatever still runs for the home and removes it.
    """

    def __init__(self, parent: Path | None, limits: GpgLimits, *, agent: bool = True) -> None:
        # Absolute, as gpg passes it to the agent it starts: the kill matches that argument.
        self.path = Path(os.path.abspath(tempfile.mkdtemp(prefix="g", dir=parent)))
        self.limits = limits
        self.agent = agent  # False: no gpg of the home may start a daemon (``run_gpg``)
        # RLIMIT_CPU's hard limit a second later: SIGKILL if SIGXCPU were ever ignored.
        cpu = limits.cpu_seconds
        self.prlimit = ("prlimit", f"--cpu={cpu}:{cpu + 1}", "--core=0", "--")
        self.expired = False
        self._processes: list[subprocess.Popen[bytes]] = []
        self._lock = threading.Lock()  # between starting a gpg and the timer killing them
        self._timer = threading.Timer(limits.wall_seconds, self._expire)
        self._timer.daemon = True
        self._timer.start()

    def gpg(self, options: Sequence[str] = ()) -> gnupg.GPG:
        """A python-gnupg handle on this home with our fixed options first."""
        return _LimitedGPG(self, options)

    def spawn(
        self, start: Callable[..., subprocess.Popen[bytes]], *args: Any
    ) -> subprocess.Popen[bytes]:
        """``start(*args)``, a gpg the timer will kill; none once the time is up."""
        with self._lock:
            if self.expired:
                raise self._timeout()
            process = start(*args)
            self._processes.append(process)
            return process

    def check(self, process: subprocess.Popen[bytes]) -> None:
        """Refuse the request if ``process`` (finished) was stopped by a limit."""
        if self.expired:
            raise self._timeout()
        if process.returncode in (-signal.SIGXCPU, -signal.SIGKILL):
            raise Refusal(
                "openpgp-cpu-limit",
                f"gpg needed more than {self.limits.cpu_seconds} s of CPU time for this key",
            )

    def _timeout(self) -> Refusal:
        return Refusal(
            "openpgp-timeout", f"gpg needed more than {self.limits.wall_seconds:g} s for this key"
        )

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            self._kill()

    def _kill(self) -> None:
        """SIGKILL the home's gpg processes and whatever else names the home (its agent)."""
        for process in self._processes:
            if process.poll() is None:
                process.kill()
        if self.agent:
            _kill_naming(self.path)

    def close(self) -> None:
        """Stop the timer, kill every process of the home, reap our gpg children, remove the home.

        The agent is not our child and is not waited for: once SIGKILLed it runs
        no more code, and ``_remove`` takes a second pass for a socket it left.
        """
        self._timer.cancel()
        with self._lock:
            self._kill()
        for process in self._processes:
            try:
                process.wait(_REAP_WAIT)
            except subprocess.TimeoutExpired:
                raise GpgError(f"gpg {process.pid} of {self.path} outlived SIGKILL") from None
        _remove(self.path)


# python-gnupg ships no types: GPG is Any to mypy.
class _LimitedGPG(gnupg.GPG):  # type: ignore[misc]
    """python-gnupg's GPG whose every gpg process is held to its private home's limits."""

    def __init__(self, home: PrivateHome, options: Sequence[str]) -> None:
        self._home = home  # first: GPG.__init__ already runs gpg (--version, --list-config)
        super().__init__(gnupghome=str(home.path), options=[*_BASE_OPTIONS, *options])

    def make_args(self, args: list[str], passphrase: bool) -> list[str]:
        return [*self._home.prlimit, *super().make_args(args, passphrase)]

    def _open_subprocess(
        self, args: list[str], passphrase: bool = False
    ) -> subprocess.Popen[bytes]:
        return self._home.spawn(super()._open_subprocess, args, passphrase)

    def _collect_output(
        self, process: subprocess.Popen[bytes], result: Any, writer: Any = None, stdin: Any = None
    ) -> int:
        returncode: int = super()._collect_output(process, result, writer, stdin)
        self._home.check(process)
        return returncode


def _kill_naming(home: Path) -> None:
    """SIGKILL each process we may signal that has ``home`` as one of its arguments."""
    needle = os.fsencode(home)
    for pid in procfs.pids():
        if needle not in procfs.argv(pid):
            continue
        try:
            pidfd = os.pidfd_open(pid)
        except OSError:  # exited meanwhile
            continue
        try:
            # Looked at again through the pidfd's process: the pid may have been reused meanwhile.
            if needle in procfs.argv(pid):
                signal.pidfd_send_signal(pidfd, signal.SIGKILL)
        except OSError:  # exited, or not ours to signal
            pass
        finally:
            os.close(pidfd)


@contextmanager
def private_home(
    parent: Path | None, limits: GpgLimits = DEFAULT_GPG_LIMITS, *, agent: bool = True
) -> Iterator[PrivateHome]:
    """A fresh GnuPG home under ``parent``, removed with all its processes afterwards.

    ``agent=False``: a request's home, whose gpg uses the CA home's agent (``cahome``).
    """
    home = PrivateHome(parent, limits, agent=agent)
    try:
        if agent:
            (home.path / "gpg-agent.conf").write_text(_AGENT_CONF)
        yield home
    finally:
        # Also on BaseException: the signer's budget alarm may interrupt a wait for gpg.
        home.close()


def _remove(home: Path) -> None:
    # A second pass covers a process unlinking its sockets while we remove the home.
    for _attempt in range(2):
        shutil.rmtree(home, ignore_errors=True)
        if not home.exists():
            return
        time.sleep(0.05)
    raise GpgError(f"could not remove the private GnuPG home {home}")


def stop_agent(home: Path) -> None:
    """Stop every daemon of ``home`` and wait until its sockets are gone.

    ``GpgError`` if gpgconf cannot be run or hangs; a home without an agent is no error.
    """
    try:
        subprocess.run(
            ["gpgconf", "--homedir", str(home), "--kill", "all"],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise GpgError(f"gpgconf --kill failed: {exc}") from exc
    deadline = time.monotonic() + _AGENT_EXIT_WAIT
    while any(home.glob("S.*")) and time.monotonic() < deadline:
        time.sleep(0.01)


def open_gpg(home: Path, options: Sequence[str] = ()) -> gnupg.GPG:
    """A python-gnupg handle on ``home`` (the CA's own) with our fixed options first, no limits."""
    return gnupg.GPG(gnupghome=str(home), options=[*_BASE_OPTIONS, *options])


@dataclass(frozen=True)
class GpgRun:
    returncode: int
    stdout: str
    stderr: str


def run_gpg(home: PrivateHome, args: Sequence[str], stdin: bytes) -> GpgRun:
    """One ``gpg --homedir <home> --batch ...``, held to the home's limits; English messages.

    ``home`` must be made with ``agent=False``: its gpg starts no daemon, so
    closing it kills our own children only, without a look through /proc.

    Run directly, not through python-gnupg: its ``GPG`` runs gpg itself when
    made (``--version``), one more process start per request, and it has no
    way to give gpg a request's own keyring file. No agent is started
    (``--no-autostart``): the home's ``S.gpg-agent`` names the CA's.
    """
    command = [
        *home.prlimit,
        "gpg",
        "--homedir",
        str(home.path),
        "--batch",
        "--no-tty",
        "--no-options",
        "--no-autostart",
        "--no-random-seed-file",
        "--no-permission-warning",
        *_BASE_OPTIONS,
        *args,
    ]
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C"}

    def start() -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            close_fds=True,
        )

    if home.agent:
        raise ValueError("run_gpg needs a home made with agent=False")
    process = home.spawn(start)
    stdout, stderr = process.communicate(stdin)
    home.check(process)
    return GpgRun(
        process.returncode, stdout.decode("utf-8", "replace"), stderr.decode("utf-8", "replace")
    )


def checked_workdir(path: Path | None) -> Path | None:
    """``path``, the parent of the private homes, made if need be and checked: a
    real directory of the signer's own that no one else may enter (a squatted
    or shared one would let another user watch or swap the homes); None: the
    system's temporary directory."""
    if path is None:
        return None
    try:
        path.mkdir(mode=0o700)
    except FileExistsError:
        pass
    except OSError as exc:
        raise GpgError(f"OpenPGP workdir {path} cannot be created: {exc.strerror}.") from exc
    try:
        info = os.lstat(path)
    except OSError as exc:
        raise GpgError(f"OpenPGP workdir {path} cannot be examined: {exc.strerror}.") from exc
    _check_private(path, info)
    return path


def _check_private(path: Path, info: os.stat_result) -> None:
    uid = os.geteuid()
    if stat.S_ISLNK(info.st_mode):
        raise GpgError(
            f"OpenPGP workdir {path} is a symbolic link;"
            " it must be a directory of the signer's own."
        )
    if not stat.S_ISDIR(info.st_mode):
        raise GpgError(f"OpenPGP workdir {path} is not a directory.")
    if info.st_uid != uid:
        raise GpgError(
            f"OpenPGP workdir {path} belongs to uid {info.st_uid}, not to the signer"
            f" (uid {uid}): another user may have created it first."
        )
    if info.st_mode & 0o077:
        raise GpgError(
            f"OpenPGP workdir {path} has mode {stat.S_IMODE(info.st_mode):04o};"
            " it must be 0700, reachable by the signer alone."
        )
