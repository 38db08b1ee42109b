"""The CA's long-lived GnuPG home: the CA secret key, imported once, and its running gpg-agent.

Trusted side. It trusts the configuration, gpg and the CA key material the
operator installed; nothing from a request ever enters it. ``CaHome.open``
(at start, ``load_signer``) makes a fresh 0700 directory with a short random
name (``c`` and 8 characters, so gpg-agent's socket path fits) in the work
directory, imports the CA secret key there (passphrase-protected by the
agent, with a cheap S2K count) and leaves its agent running, outside the
per-request limits: requests talk to that agent only, through a socket
redirection file in their own home (``redirect``), so gpg never opens the
CA home itself and the secret key is not written again. The agent caches
no passphrase (cache TTL 0): each request hands it the passphrase from the
signer's memory, so a request with a wrong one fails.

``close`` (at stop, and when the home is garbage-collected or the process
exits) stops the agent and removes the home. The directory holds a ``pid``
file; ``remove_stale`` (at start) removes a home whose process is gone.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import weakref
from pathlib import Path

import gnupg

from signer_core.openpgp.gpg import GpgError, open_gpg, stop_agent
from signer_core.openpgp.keyblock import KeyPacket, key_packets
from signer_core.openpgp.packets import TAG_PUBLIC_KEY, walk
from signer_core.refusal import Refusal

# No passphrase cache: each request brings it. No smartcard daemon: nothing here uses one.
_AGENT_CONF = "s2k-count 65536\ndisable-scdaemon\ndefault-cache-ttl 0\nmax-cache-ttl 0\n"
_PID_FILE = "pid"
log = logging.getLogger("signer-core")


class CaHome:
    """A CA home with the CA secret key imported and its agent running, until ``close``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.public: tuple[KeyPacket, ...] = ()  # the CA's public key packets, primary first
        self.public_raw = b""  # the same as gpg exported them: the start of each request keyring
        self._finalizer = weakref.finalize(self, _destroy, path)

    @classmethod
    def open(cls, parent: Path | None, fingerprint: str, key: bytes, passphrase: str) -> CaHome:
        """Import ``key`` into a new home under ``parent``; check it is there, valid, unlocking.

        ``Refusal("openpgp-root-missing", ...)`` otherwise, the home removed.
        """
        path = Path(os.path.abspath(tempfile.mkdtemp(prefix="c", dir=parent)))
        home = cls(path)
        try:
            (path / _PID_FILE).write_text(f"{os.getpid()}\n")
            (path / "gpg-agent.conf").write_text(_AGENT_CONF)
            home._import(fingerprint, key, passphrase)
        except BaseException:
            home.close()
            raise
        return home

    def _import(self, fingerprint: str, key: bytes, passphrase: str) -> None:
        gpg = open_gpg(self.path)
        # No passphrase here: a batch import keeps the key protected, and python-gnupg
        # would let gpg read an empty passphrase's line from the key data itself.
        gpg.import_keys(key)  # a secret key: gpg starts the agent, which then keeps running
        _check_secret(gpg, fingerprint)
        # The first unlock also lets the agent rewrite its key file once, now, not per request.
        if not gpg.export_keys(fingerprint, secret=True, armor=False, passphrase=passphrase):
            raise Refusal(
                "openpgp-root-missing",
                "CA OpenPGP key does not unlock with the configured passphrase",
            )
        self.public_raw = gpg.export_keys(fingerprint, armor=False)
        keys = key_packets(walk(self.public_raw))
        if not keys or keys[0].tag != TAG_PUBLIC_KEY or keys[0].fingerprint != fingerprint:
            raise Refusal("openpgp-root-missing", "gpg did not export the CA's public key")
        self.public = keys

    def redirect(self, home: Path) -> None:
        """Point the gpg of ``home`` (a request's) at this home's agent, and at nothing else."""
        socket = self.path / "S.gpg-agent"
        (home / "S.gpg-agent").write_text(f"%Assuan%\nsocket={socket}\n")

    def close(self) -> None:
        """Stop the agent and remove the home (once; later calls do nothing)."""
        self._finalizer()


def _check_secret(gpg: gnupg.GPG, fingerprint: str) -> None:
    records = [line.split(":") for line in gpg.list_keys(secret=True).data.decode().splitlines()]
    for record, following in zip(records, records[1:], strict=False):
        if record[0] == "sec" and following[0] == "fpr" and following[9:10] == [fingerprint]:
            if record[1] in ("r", "e"):
                raise Refusal("openpgp-root-missing", "CA OpenPGP key is revoked or expired")
            return
    raise Refusal("openpgp-root-missing", "CA OpenPGP secret key not found")


def _destroy(path: Path) -> None:
    """Stop the home's agent if gpgconf can, then remove the home whatever it said."""
    try:
        stop_agent(path)
    except GpgError as exc:
        log.warning("the CA home's gpg-agent could not be stopped: %s", exc)
    finally:
        shutil.rmtree(path, ignore_errors=True)


def remove_stale(parent: Path | None) -> None:
    """Remove the CA homes under ``parent`` whose process has gone (a crash), with their agents."""
    if parent is None:
        return
    for entry in parent.iterdir():
        try:
            pid = int((entry / _PID_FILE).read_text())
        except (OSError, ValueError):
            continue
        if not entry.name.startswith("c") or Path(f"/proc/{pid}").exists():
            continue
        _destroy(entry)
