"""gpg for backups: the backup key, encryption to it, and what gpg said.

Trusted side tooling, run by an operator. ``archive`` encrypts to the backup
public key in a throw-away GnuPG home holding only that key
(``--trust-model always``: the operator chose the key; there is no web of
trust to consult offline). A key file that holds a secret key is refused:
the private half of the backup key is never on the signer. ``restore``
decrypts with the operator's own GnuPG home and asks ``decryption_problem``
why gpg failed, if it did. gpg's status lines are trusted as gpg's word; the
data it decrypts is not (``restore`` checks it).
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from signer_core.openpgp.gpg import stop_agent
from signerctl.backup.manifest import BackupError

MAX_KEY_FILE = 1 << 20


@dataclass(frozen=True)
class GpgRun:
    returncode: int
    status: tuple[str, ...]  # "[GNUPG:] " lines, prefix removed
    messages: str  # everything else gpg said

    def has(self, keyword: str) -> bool:
        return any(s.split(" ", 1)[0] == keyword for s in self.status)

    def reason(self) -> str:
        lines = [ln for ln in self.messages.splitlines() if ln.strip()]
        return lines[-1].strip() if lines else f"gpg exited with {self.returncode}"


def gpg_command(home: Path | None, *args: str) -> list[str]:
    home_args = ["--homedir", str(home)] if home is not None else []
    return ["gpg", *home_args, "--no-tty", "--status-fd", "2", *args]


def gpg_result(returncode: int, stderr: bytes) -> GpgRun:
    text = stderr.decode("utf-8", "replace").splitlines()
    status = tuple(ln[9:] for ln in text if ln.startswith("[GNUPG:] "))
    messages = "\n".join(ln for ln in text if not ln.startswith("[GNUPG:] "))
    return GpgRun(returncode, status, messages)


def run_gpg(home: Path | None, *args: str, data: bytes = b"") -> tuple[GpgRun, bytes]:
    proc = subprocess.run(
        gpg_command(home, "--batch", *args),
        input=data,
        capture_output=True,
        timeout=120,
        check=False,
    )
    return gpg_result(proc.returncode, proc.stderr), proc.stdout


@contextmanager
def throwaway_home() -> Iterator[Path]:
    """A fresh GnuPG home (0700), removed afterwards; never the signer's own."""
    home = Path(tempfile.mkdtemp(prefix="signer-gpg-"))
    try:
        yield home
    finally:
        try:
            stop_agent(home)
        finally:
            shutil.rmtree(home, ignore_errors=True)


def _backup_key_material(encrypt_to: str, keyring: Path | None) -> bytes:
    path = Path(encrypt_to)
    if path.is_file():
        if path.stat().st_size > MAX_KEY_FILE:
            raise BackupError(f"{path}: too large for a public key")
        return path.read_bytes()
    run, data = run_gpg(keyring, "--export", "--", encrypt_to)
    if not data:
        raise BackupError(f"no public key {encrypt_to!r} in the keyring: {run.reason()}")
    return data


def import_backup_key(home: Path, encrypt_to: str, keyring: Path | None = None) -> str:
    """Put the one backup public key into ``home``; return its fingerprint."""
    material = _backup_key_material(encrypt_to, keyring)
    _, listing = run_gpg(
        home, "--with-colons", "--import-options", "show-only", "--import", data=material
    )
    records = [line.split(":") for line in listing.decode("utf-8", "replace").splitlines()]
    if any(r[0] in ("sec", "ssb") for r in records):
        raise BackupError(
            f"{encrypt_to}: holds a secret key; the backup key's private"
            " half must never be on the signer"
        )
    primaries = [i for i, r in enumerate(records) if r[0] == "pub"]
    if len(primaries) != 1:
        raise BackupError(f"{encrypt_to}: expected exactly one public key, found {len(primaries)}")
    fingerprint = next(r[9] for r in records[primaries[0] :] if r[0] == "fpr")
    run, _ = run_gpg(home, "--import", data=material)
    if run.returncode != 0:
        raise BackupError(f"cannot import the backup key: {run.reason()}")
    return fingerprint


def encrypt_to_file(home: Path, fingerprint: str, fd: int, write) -> None:
    """Run ``write(stdin)`` into gpg, whose ciphertext lands in ``fd``."""
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(
            gpg_command(
                home,
                "--batch",
                "--trust-model",
                "always",
                "--no-auto-key-locate",
                "--recipient",
                fingerprint,
                "--encrypt",
                "--output",
                "-",
            ),
            stdin=subprocess.PIPE,
            stdout=fd,
            stderr=err,
        )
        assert proc.stdin is not None
        try:
            write(proc.stdin)
        except BrokenPipeError:
            pass  # gpg stopped early; its own message says why
        finally:
            # Whatever happened, gpg must see the end of its input to finish.
            try:
                proc.stdin.close()
            except BrokenPipeError:
                pass
            returncode = proc.wait(timeout=600)
        err.seek(0)
        run = gpg_result(returncode, err.read())
    if returncode != 0 or not run.has("END_ENCRYPTION"):
        raise BackupError(f"gpg could not encrypt: {run.reason()}")


def decryption_problem(run: GpgRun) -> str | None:
    """Why gpg did not decrypt, if its status lines say so.

    These come first: once gpg has failed, what the tar reader made of its
    output is a consequence, not the reason.
    """
    if run.has("DECRYPTION_OKAY"):
        return None
    if run.has("NO_SECKEY"):
        keys = [s.split()[1] for s in run.status if s.startswith("NO_SECKEY ")]
        return f"not encrypted to a key held here (encrypted to {', '.join(keys)})"
    if run.has("DECRYPTION_FAILED") or run.has("BADMDC"):
        return f"gpg could not decrypt it (damaged or truncated): {run.reason()}"
    if run.has("NODATA"):
        return "gpg found no encrypted data in it (damaged or truncated)"
    return None
