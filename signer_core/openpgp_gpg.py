"""Throw-away GnuPG homes, driven through python-gnupg.

Trusted side. Each request gets its own private home (a fresh 0700 directory
with a short path, so gpg-agent's socket path fits), which is removed, with
its gpg-agent stopped, whatever happens. The CA secret key is imported into
that home only. Everything runs through python-gnupg (0.4.9 in Debian 12,
0.5.x from PyPI); commands it has no method for are run through its own
``_handle_io`` machinery rather than a second subprocess layer, so that
argument building, passphrase passing (loopback, fd 0) and status parsing
stay in one place. Only ``gpgconf`` (not gpg) is run directly, to stop the
agent.
"""

from __future__ import annotations

import io
import logging
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gnupg

# sun_path is 108 bytes; gpg-agent's longest socket name is S.gpg-agent.browser.
MAX_HOME_PATH = 107 - len("/S.gpg-agent.browser") - len("/g12345678")
_BASE_OPTIONS = ("--trust-model", "always", "--no-auto-check-trustdb", "--no-greeting")
_AGENT_EXIT_WAIT = 5.0
# The agent of a throw-away home protects the keys it stores (and exports)
# with the smallest S2K count: unlocking the CA key then costs milliseconds
# instead of seconds. The key lives there only for one request, in a 0700
# directory (on tmpfs by default), and its passphrase is in the signer's
# memory anyway. No smartcard daemon: nothing here uses one.
_AGENT_CONF = "s2k-count 65536\ndisable-scdaemon\n"


# python-gnupg logs, at DEBUG, the first bytes of what it imports and of gpg's
# output: that would put the CA secret key export into the logs.
logging.getLogger("gnupg").setLevel(logging.INFO)


class GpgError(RuntimeError):
    """gpg or gpgconf failed in a way that is not the request's fault."""


@contextmanager
def private_home(parent: Path) -> Iterator[Path]:
    """A fresh GnuPG home under ``parent``, removed with its agent afterwards."""
    home = Path(tempfile.mkdtemp(prefix="g", dir=parent))
    try:
        (home / "gpg-agent.conf").write_text(_AGENT_CONF)
        yield home
    finally:
        try:
            stop_agent(home)
        finally:
            _remove(home)


def _remove(home: Path) -> None:
    # A second pass covers gpg-agent unlinking its sockets while we remove the home.
    for _attempt in range(2):
        shutil.rmtree(home, ignore_errors=True)
        if not home.exists():
            return
        time.sleep(0.05)
    raise GpgError(f"could not remove the private GnuPG home {home}")


def stop_agent(home: Path) -> None:
    """Stop every daemon of ``home`` and wait until its sockets are gone."""
    try:
        subprocess.run(
            ["gpgconf", "--homedir", str(home), "--kill", "all"],
            stdin=subprocess.DEVNULL, capture_output=True, timeout=30, check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise GpgError(f"gpgconf --kill failed: {exc}") from exc
    deadline = time.monotonic() + _AGENT_EXIT_WAIT
    while any(home.glob("S.*")) and time.monotonic() < deadline:
        time.sleep(0.01)


def open_gpg(home: Path, options: Sequence[str] = ()) -> gnupg.GPG:
    """A python-gnupg handle on ``home`` with our fixed options first."""
    return gnupg.GPG(gnupghome=str(home), options=[*_BASE_OPTIONS, *options])


@dataclass(frozen=True)
class CommandResult:
    returncode: int | None
    stderr: str


def run_command(gpg: gnupg.GPG, args: Sequence[str], passphrase: str | None = None) -> CommandResult:
    """Run a gpg command that python-gnupg has no method for, via its own I/O."""
    # The "sign" status handler accepts (and ignores) any status line.
    result = gpg.result_map["sign"](gpg)
    gpg._handle_io(list(args), io.BytesIO(b""), result, passphrase=passphrase, binary=True)
    return CommandResult(getattr(result, "returncode", None), getattr(result, "stderr", ""))


def quick_sign_key(gpg: gnupg.GPG, certifier: str, target: str, passphrase: str) -> CommandResult:
    """``gpg --quick-sign-key`` through python-gnupg (0.5.x method, or the same args)."""
    if hasattr(gpg, "quick_sign_key"):
        result = gpg.quick_sign_key(certifier, target, passphrase)
        return CommandResult(getattr(result, "returncode", None), getattr(result, "stderr", ""))
    return run_command(gpg, ["--local-user", certifier, "--quick-sign-key", target], passphrase)


def colon_records(gpg: gnupg.GPG, *, secret: bool = False) -> list[list[str]]:
    """The ``--with-colons`` key listing of the home, one field list per line."""
    return _fields(gpg.list_keys(secret=secret))


def checked_signatures(gpg: gnupg.GPG, fingerprint: str) -> list[list[str]]:
    """``--check-sigs`` colon listing of one key: each signature verified, verdict in field 2."""
    # python-gnupg's list_keys(sigs=True) only lists; its list machinery runs the checking variant.
    process = gpg._open_subprocess(["--check-sigs", "--fingerprint", fingerprint])
    return _fields(gpg._get_list_output(process, "list"))


def _fields(listing: Any) -> list[list[str]]:
    text = listing.data.decode("utf-8", "replace")
    return [line.split(":") for line in text.splitlines() if line]
