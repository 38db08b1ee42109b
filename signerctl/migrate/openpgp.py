"""Bring the old signer's OpenPGP keyrings in as the appliance's OpenPGP root.

Trusted side tooling, run by an operator. The old signer kept GnuPG 1
keyrings per root (``secring<N>.gpg``, ``pubring<N>.gpg``); GnuPG 2.2 imports
both formats, handing the secret key to its agent, which re-protects it in
its own format (so a protected key needs its passphrase, read from a file).
The result is a new GnuPG home, mode 0700, holding exactly one secret primary
key (or the one the operator names), checked by making a signature with it
and the passphrase the signer will use, and the ``[openpgp]`` lines that make
the signer use it. On any failure the new home is removed: there is no
half-imported root.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from signer_core.openpgp.gpg import stop_agent

GPG = "gpg"
TIMEOUT = 120.0
_VERSION = re.compile(r"gpg \(GnuPG\) (\d+)\.(\d+)")


class OpenPGPImportError(RuntimeError):
    """The keyrings could not be imported; the new home was not left behind."""


@dataclass(frozen=True)
class OpenPGPImport:
    home: Path
    fingerprint: str
    secret_keys: tuple[str, ...]  # every secret primary key found
    public_keys: int

    def config_lines(self, passphrase_file: Path | None = None) -> str:
        lines = ["[openpgp]", f'home = "{self.home}"', f'fingerprint = "{self.fingerprint}"']
        if passphrase_file is not None:
            lines.append(f'passphrase_file = "{passphrase_file}"')
        return "\n".join(lines) + "\n"


def _gpg(home: Path, *args: str) -> str:
    try:
        done = subprocess.run(
            [GPG, "--homedir", str(home), "--batch", "--no-tty", *args],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise OpenPGPImportError(f"cannot run {GPG}: {exc}") from exc
    if done.returncode != 0:
        raise OpenPGPImportError(
            f"{GPG} {args[-2] if len(args) > 1 else args[0]} failed: {done.stderr.strip()[-400:]}"
        )
    return done.stdout


def _check_version(home: Path) -> None:
    match = _VERSION.search(_gpg(home, "--version"))
    if match is None or (int(match[1]), int(match[2])) < (2, 2):
        raise OpenPGPImportError("GnuPG 2.2 or later is needed")


def _secret_fingerprints(home: Path) -> list[str]:
    """Primary secret keys whose secret part is here (not a stub or a card)."""
    found, want_fpr = [], False
    for line in _gpg(home, "--with-colons", "--list-secret-keys").splitlines():
        fields = line.split(":")
        if fields[0] == "sec":
            want_fpr = len(fields) <= 14 or fields[14] in ("", "+")
        elif fields[0] == "fpr" and want_fpr:
            found.append(fields[9])
            want_fpr = False
    return found


def _chown_tree(home: Path, owner: tuple[int, int]) -> None:
    for path in (home, *home.rglob("*")):
        os.chown(path, *owner, follow_symlinks=False)


def _new_home(home: Path) -> None:
    if home.exists() and (not home.is_dir() or any(home.iterdir())):
        raise OpenPGPImportError(f"{home} exists and is not an empty directory")
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    home.chmod(0o700)


def import_openpgp(
    keyring_dir: Path,
    root_id: int,
    home: Path,
    *,
    passphrase_file: Path | None = None,
    fingerprint: str | None = None,
    owner: tuple[int, int] | None = None,
) -> OpenPGPImport:
    """Import ``secring<root>.gpg`` (and ``pubring<root>.gpg``) into a new GnuPG home."""
    secring = keyring_dir / f"secring{root_id}.gpg"
    pubring = keyring_dir / f"pubring{root_id}.gpg"
    if not secring.is_file():
        raise OpenPGPImportError(f"{secring} is missing")
    _new_home(home)
    try:
        _check_version(home)
        if pubring.is_file():
            _gpg(home, "--import", str(pubring))
        secret = ["--pinentry-mode", "loopback"]
        secret += (
            ["--passphrase-file", str(passphrase_file)] if passphrase_file else ["--passphrase", ""]
        )
        _gpg(home, *secret, "--import", str(secring))
        secrets = _secret_fingerprints(home)
        chosen = _choose(secrets, fingerprint)
        _check_signs(home, chosen, secret)
        listing = _gpg(home, "--with-colons", "--list-keys").splitlines()
        public = sum(line.startswith("pub:") for line in listing)
    except BaseException:
        stop_agent(home)
        shutil.rmtree(home, ignore_errors=True)
        raise
    stop_agent(home)
    if owner is not None:
        _chown_tree(home, owner)
    return OpenPGPImport(home, chosen, tuple(secrets), public)


def _check_signs(home: Path, fingerprint: str, secret: list[str]) -> None:
    """The root must sign with the passphrase the signer will have, as the signer will."""
    try:
        done = subprocess.run(
            [
                GPG,
                "--homedir",
                str(home),
                "--batch",
                "--no-tty",
                *secret,
                "--status-fd",
                "1",
                "--local-user",
                fingerprint,
                "--detach-sign",
                "--output",
                "-",
            ],
            input=b"import check",
            capture_output=True,
            timeout=TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise OpenPGPImportError(f"cannot run {GPG}: {exc}") from exc
    if done.returncode != 0 or b"[GNUPG:] SIG_CREATED" not in done.stdout:
        raise OpenPGPImportError(
            f"the imported key {fingerprint} cannot sign with the passphrase given"
            " (a protected key needs --passphrase-file)"
        )


def _choose(secrets: list[str], fingerprint: str | None) -> str:
    if fingerprint is not None:
        wanted = fingerprint.replace(" ", "").upper()
        if wanted not in secrets:
            raise OpenPGPImportError(
                f"no secret key {wanted} in the keyring (found: {', '.join(secrets) or 'none'})"
            )
        return wanted
    if len(secrets) != 1:
        raise OpenPGPImportError(
            f"{len(secrets)} secret keys in the keyring"
            f" ({', '.join(secrets) or 'none'}): name one with --fingerprint"
        )
    return secrets[0]
