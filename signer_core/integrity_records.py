"""The signer's "integrity" audit records: its own programs, configuration, roots and units
measured against the operator's baseline, at start and every ``[audit]
integrity_interval_seconds``.

Trusted side: the measurement is ``signer_core.integrity``'s, the same as
``signerctl integrity``'s, run as the signer user. A record carries the
digest over the whole set (what the operator writes down), the file count,
the baseline's digest, and which files changed, came or went (at most
``MAX_LABELS`` of each, with their counts), so that a changed program on
the signer is seen from outside through the audit log without a visit.
It holds file names and hashes only, nothing secret.

Measuring never stops the signer: a failure is logged and recorded as a
record with a ``problem``. The daemon's loop asks ``IntegrityTimer`` when
the next one is due (a time check at each wake-up, not a thread).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from pathlib import Path

from signer_core.config import Config
from signer_core.integrity import (
    NO_BASELINE,
    SCRIPT_DIRS,
    UNIT_DIRS,
    IntegrityError,
    compare,
    current_files,
    default_baseline,
    set_digest,
)
from signer_core.store.audit import AuditLog
from signer_core.store.cadb import CADatabase

log = logging.getLogger("signer-core")

MAX_LABELS = 50  # of each kind of difference in one record: the count says how many there are


def integrity_details(
    cfg: Config,
    *,
    programs: Mapping[str, Path] | None = None,
    unit_dirs: Iterable[Path] = UNIT_DIRS,
    script_dirs: Iterable[Path] = SCRIPT_DIRS,
) -> dict[str, object]:
    """The details of one "integrity" record. A file that cannot be read, or a
    baseline that cannot be used, is the record's ``problem``, not an exception.
    The keywords override where to look, as in ``current_files``."""
    try:
        files = current_files(cfg, programs=programs, unit_dirs=unit_dirs, script_dirs=script_dirs)
    except OSError as exc:
        return {"clean": False, "problem": f"the signer cannot read {exc.filename}: {exc.strerror}"}
    except IntegrityError as exc:
        return {"clean": False, "problem": f"the signer cannot measure its files: {exc}"}
    details: dict[str, object] = {
        "digest": set_digest(files),
        "files": len(files),
        "baseline_digest": None,
    }
    try:
        report = compare(files, default_baseline(cfg.signer.state_dir))
    except IntegrityError as exc:
        return {**details, "clean": False, "problem": f"the baseline cannot be used: {exc}"}
    details.update(baseline_digest=report.baseline_digest, clean=report.clean)
    for kind, labels in (
        ("changed", report.changed),
        ("added", report.added),
        ("removed", report.removed),
    ):
        details[kind] = list(labels[:MAX_LABELS])
        details[f"{kind}_count"] = len(labels)
    if report.baseline_digest is None:
        details["problem"] = NO_BASELINE
    return details


def record_integrity(audit: AuditLog, cfg: Config) -> None:
    """Measure, log the outcome, append the "integrity" record (in the caller's transaction)."""
    started = time.monotonic()
    try:
        details = integrity_details(cfg)
    except Exception as exc:  # a bug must not stop the signer: the record says so
        log.exception("the integrity measurement failed")
        details = {"clean": False, "problem": f"the integrity measurement failed: {exc}"}
    seconds = time.monotonic() - started
    if details["clean"]:
        log.info(
            "integrity: the %s files are as accepted (measured in %.2f s)",
            details["files"],
            seconds,
        )
    elif "problem" in details:
        log.warning("integrity: %s", details["problem"])
    else:
        log.warning(
            "integrity: the files differ from the accepted baseline (changed %s, added %s,"
            " removed %s)",
            details["changed_count"],
            details["added_count"],
            details["removed_count"],
        )
    audit.append("integrity", **details)


class IntegrityTimer:
    """When the next "integrity" record is due while the signer runs."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.due = time.monotonic() + interval  # the start made one already

    def left(self) -> float:
        return max(0.0, self.due - time.monotonic())

    def run(self, db: CADatabase, audit: AuditLog, cfg: Config) -> None:
        with db.transaction():
            record_integrity(audit, cfg)
        self.due = time.monotonic() + self.interval
