"""``signerctl integrity``'s files: the baseline an operator accepts, and the last check's result.

Trusted side tooling, run by an operator (as root) on the console. The
measurement and the comparison are ``signer_core.integrity``'s, the same
code the signer runs for its "integrity" audit records; this module writes
what only the operator's check writes: a new baseline on ``--accept``, and
the time and result of the last check, kept in the state directory for
``signerctl status``.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Mapping
from pathlib import Path

from signer_core.integrity import (
    NO_BASELINE,
    SCRIPT_DIRS,
    UNIT_DIRS,
    IntegrityError,
    Report,
    compare,
    current_files,
    default_baseline,
    set_digest,
)
from spool.safeio import commit_file

LAST_CHECK_NAME = "integrity-last.json"


def _write_json(path: Path, data: dict) -> None:
    text = (json.dumps(data, indent=1, sort_keys=True) + "\n").encode()
    commit_file(path.parent, path.name, text, 0o644)


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def check(
    cfg,
    *,
    baseline: Path | None = None,
    accept: bool = False,
    programs: Mapping[str, Path] | None = None,
    unit_dirs: Iterable[Path] = UNIT_DIRS,
    script_dirs: Iterable[Path] = SCRIPT_DIRS,
) -> Report:
    """Hash, compare with the baseline, record the result; with ``accept``, make
    the current set the new baseline (the differences are still reported)."""
    state_dir = Path(cfg.signer.state_dir)
    baseline = Path(baseline) if baseline is not None else default_baseline(state_dir)
    files = current_files(cfg, programs=programs, unit_dirs=unit_dirs, script_dirs=script_dirs)
    digest = set_digest(files)
    try:
        report = compare(files, baseline, accepted=accept)
    except IntegrityError as exc:
        _write_json(
            state_dir / LAST_CHECK_NAME,
            {
                "at": _now(),
                "clean": False,
                "accepted": False,
                "digest": digest,
                "baseline": str(baseline),
                "problem": str(exc),
            },
        )
        raise
    now = _now()
    unmatched = report.baseline_digest is None and not report.clean  # nothing to compare with
    if accept:
        _write_json(baseline, {"accepted_at": now, "digest": digest, "files": files})
    _write_json(
        state_dir / LAST_CHECK_NAME,
        {
            "at": now,
            "clean": report.clean,
            "accepted": accept,
            "digest": digest,
            "baseline": str(baseline),
            "baseline_digest": report.baseline_digest,
            "changed": len(report.changed),
            "added": len(report.added),
            "removed": len(report.removed),
            **({"problem": NO_BASELINE} if unmatched else {}),
        },
    )
    return report


def last_check(state_dir: Path) -> dict | None:
    """The last check's time and result for ``signerctl status``; None if never run."""
    path = Path(state_dir) / LAST_CHECK_NAME
    try:
        data = json.loads(path.read_bytes()[: 1 << 16])
    except FileNotFoundError:
        return None
    except ValueError:
        return {"at": None, "clean": False, "problem": f"{path} is unreadable"}
    if not isinstance(data, dict) or not isinstance(data.get("clean"), bool):
        return {"at": None, "clean": False, "problem": f"{path} is malformed"}
    return data
