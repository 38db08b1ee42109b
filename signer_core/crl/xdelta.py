"""Binary deltas with the real ``xdelta`` 1.x tool, the format the web host applies.

Trusted side. Both inputs are CRLs the signer made itself; nothing here
comes from the link. The deployed client runs ``xdelta patch PATCH OLD NEW``
with xdelta 1.1.3, so the patch is made by that same tool rather than by a
reimplementation of its format.

xdelta 1.1.3's ``delta`` command exits like ``diff``: 0 or 1 after writing
a patch (1 means the files differ; 1.1.3 answers 1 for equal files too),
2 on trouble. So a non-zero status alone is not a failure. Temporary files live in a
private directory (mode 0700, from ``tempfile.mkdtemp``) removed afterwards.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

XDELTA = "xdelta"
TIMEOUT = 120.0
_SUCCESS = (0, 1)


class XdeltaError(RuntimeError):
    """The xdelta tool failed or is missing."""


def make_delta(old: bytes, new: bytes, *, tmp_dir: Path | None = None) -> bytes:
    """An xdelta 1.x patch turning ``old`` into ``new``."""
    with tempfile.TemporaryDirectory(prefix="xdelta-", dir=tmp_dir) as work:
        base = Path(work)
        os.chmod(base, 0o700)
        old_path, new_path, patch_path = base / "old", base / "new", base / "patch"
        old_path.write_bytes(old)
        new_path.write_bytes(new)
        try:
            done = subprocess.run(
                [XDELTA, "delta", "-q", str(old_path), str(new_path), str(patch_path)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                timeout=TIMEOUT,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise XdeltaError(f"cannot run {XDELTA}: {exc}") from exc
        if done.returncode not in _SUCCESS:
            reason = done.stderr.decode("utf-8", "replace").strip()[:200]
            raise XdeltaError(f"{XDELTA} delta exited {done.returncode}: {reason}")
        patch = patch_path.read_bytes() if patch_path.exists() else b""
    if not patch:
        raise XdeltaError(f"{XDELTA} delta wrote no patch")
    return patch
