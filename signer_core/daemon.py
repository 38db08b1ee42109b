"""signer-core: takes requests from the spool, decides, signs, answers.

Trusted side: the only process that reads the root keys and the CA database.
It runs as the signer user and trusts its configuration file and the files
that file names; it trusts nothing that arrives through the spool.

SECURITY: the spool is written by the comm handler, which may be
compromised. The spool layer refuses links, FIFOs, oversized and foreign
files and copies each valid request into a directory only this user can
reach before it is parsed; the dispatch table decides which kinds of request
exist at all. The watch on ``incoming/`` is added before the first scan and
every event worth it means "scan again", so no committed request is missed.

The comm handler cannot stall the signer: what it does to its own entries
is a refused entry, never a pause (only the signer's own storage faults
pause it); events that bring nothing (temporary files) cost a read at most
every ``SCAN_INTERVAL``; corrupt/ is bounded. Once a ``REPORT_INTERVAL`` the
loop logs and audits a storm of such events (``spool-storm``) and what
corrupt/ could not keep (``spool-dropped``); at start and every ``[audit]
integrity_interval_seconds`` it records its own files measured (``integrity``).

SIGTERM and SIGINT stop it cleanly (``StopRequest``): the request in hand is
finished, committed and answered, nothing more is claimed, the stop is
audited (``stopped``) and the database is checkpointed and closed, so that
``ca.sqlite`` alone holds everything; the exit status is 0.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import pwd
import signal
import sqlite3
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives import hashes

from hardening.process import HardeningError, harden
from signer_core.cakeys import CaKeys
from signer_core.config import Config, ConfigError, load_config
from signer_core.crl.revocation import Revocations
from signer_core.dispatch import SignerContext, dispatch, handle_receipt
from signer_core.integrity_records import IntegrityTimer, record_integrity
from signer_core.logkey import LogKey, start_log_key
from signer_core.openpgp.certify import OpenPGPSigner, close_signer, load_signer
from signer_core.openpgp.gpg import GpgError
from signer_core.refusal import Refusal
from signer_core.roots import RootStore
from signer_core.stopping import StopRequest
from signer_core.store.audit import AuditLog
from signer_core.store.cadb import CADatabase
from signer_core.store.schema import SchemaError
from signer_core.timesync import ClockRules, TimeReadings
from spool.corrupt import DropReport
from spool.crashpoint import crashpoint
from spool.queue import Spool
from spool.record import Receipt, Request
from spool.watch import COMMIT_MASK, DirWatcher

log = logging.getLogger("signer-core")

RESULT_MAX_AGE = 24 * 3600.0  # results nobody collected; a retry is answered from the database
TEMP_MAX_AGE = 3600.0  # a comm temp file this old was left by a crash, not a write in progress
# s between scans of incoming/ when no event comes: the bound on what a missed wake-up
# costs. Test runs (1 in about 4 full runs, a delivery receipt each time) have shown an
# entry left in incoming/ with the signer idle in poll, its event never seen, then taken
# at a later scan; the cause is not found. A listing every 5 s costs the idle signer nothing.
IDLE_WAKEUP = 5.0
STORAGE_RETRY = 5.0
START_REPORT_INTERVAL = 60.0  # s between two reports of the same reason the signer cannot start
SCAN_INTERVAL = 0.01  # s between reads of the watch after a burst: a storm costs one read each
REPORT_INTERVAL = 60.0  # s between two storm or drop reports (and prunings)
STORM_EVENTS = 600  # fruitless events per interval that make a storm (a real link: a tenth)


def comm_uid(cfg: Config) -> int | None:
    """The uid that must own incoming files; None when both run as one user (development)."""
    return pwd.getpwnam(cfg.comm.user).pw_uid if cfg.comm.user else None


def build_context(cfg: Config) -> SignerContext:
    db = CADatabase(cfg.signer.database)
    roots: RootStore | None = None
    openpgp: OpenPGPSigner | None = None
    log_key: LogKey | None = None
    try:
        audit = AuditLog(db.connection)
        audit.append(
            "started",
            config=str(cfg.path),
            config_sha256=hashlib.sha256(cfg.path.read_bytes()).hexdigest(),
        )
        record_integrity(audit, cfg)
        log_key, log_key_missing = start_log_key(cfg.audit, audit)
        roots = RootStore.load(cfg.x509)
        for root_id, root in sorted(roots.roots.items()):
            fingerprint = root.certificate.fingerprint(hashes.SHA256()).hex()
            audit.append("root-loaded", root=root_id, certificate_sha256=fingerprint)
        for root_id, why in sorted(roots.missing.items()):
            log.warning("root %d is not installed: %s", root_id, why)
            audit.append("root-missing", root=root_id, reason=why)
        openpgp, openpgp_missing = load_openpgp(cfg)
        audit.append("openpgp-root", loaded=openpgp is not None, reason=openpgp_missing)
        ca_keys = CaKeys.build(roots, openpgp)
        revocations = Revocations(
            db,
            validity_days=cfg.crl.validity_days,
            history=cfg.crl.history,
            prune_expired_after_days=cfg.crl.prune_expired_after_days,
        )
        return SignerContext(
            config=cfg,
            roots=roots,
            ca_keys=ca_keys,
            db=db,
            audit=audit,
            time_readings=TimeReadings(db, cfg.signer.state_dir, ClockRules.of(cfg.signer, roots)),
            revocations=revocations,
            openpgp=openpgp,
            openpgp_missing=openpgp_missing,
            log_key=log_key,
            log_key_missing=log_key_missing,
        )
    except BaseException:
        # A start that failed (a full disk...) is tried again: let go of what it
        # opened, token sessions above all, or each try would log in once more.
        if roots is not None:
            roots.close()
        if log_key is not None:
            log_key.close()
        if openpgp is not None:
            close_signer(openpgp)
        db.connection.close()
        raise


def load_openpgp(cfg: Config) -> tuple[OpenPGPSigner | None, str]:
    """The OpenPGP root, or None and the reason requests for it will be refused."""
    if cfg.openpgp is None:
        return None, "no OpenPGP root is configured"
    o = cfg.openpgp
    try:
        signer = load_signer(
            fingerprint=o.fingerprint,
            home=o.home,
            key_file=o.key_file,
            passphrase_file=o.passphrase_file,
            policy_url=o.policy_url,
            cert_level=o.cert_level,
            digest=o.digest,
            workdir=o.workdir or cfg.signer.state_dir / "gpg",
            limits=o.limits,
            gpg_limits=o.gpg_limits,
        )
    except (Refusal, GpgError, ValueError, OSError) as exc:
        log.warning("OpenPGP root not usable: %s", exc)
        return None, f"the OpenPGP root is not usable: {exc}"[:300]
    return signer, ""


def process(ctx: SignerContext, spool: Spool, entry: Request | Receipt) -> None:
    if isinstance(entry, Receipt):
        handle_receipt(ctx, entry)
    else:
        spool.finish(entry, dispatch(ctx, entry))


def serve_queue(ctx: SignerContext, spool: Spool, stop: StopRequest, *, recover: bool) -> int:
    """Finish what active/ holds (when asked), then every entry in incoming/; how many.

    A stop request ends it between two entries: what is left waits for the next start.
    """
    served = 0
    if recover:
        for request in spool.recover():
            if stop.requested:
                return served
            log.info("finishing request %s left by a crash or a storage failure", request.id)
            process(ctx, spool, request)
            served += 1
    while not stop.requested and (entry := spool.claim_next()) is not None:
        crashpoint("request-claimed")
        process(ctx, spool, entry)
        served += 1
    return served


@dataclass
class Tally:
    """What the wake-ups of one report interval brought."""

    length: float = REPORT_INTERVAL  # s from ``since`` to the interval's end
    since: float = field(default_factory=time.monotonic)
    served: int = 0
    fruitless: int = 0  # wake-ups by an event after which there was nothing to serve

    def add(self, woken: bool, served: int) -> None:
        self.served += served
        if woken and not served:
            self.fruitless += 1

    def left(self) -> float:
        return max(0.0, self.since + self.length - time.monotonic())


def end_interval(ctx: SignerContext, spool: Spool, watcher: DirWatcher, tally: Tally) -> Tally:
    """Prune the spool, report a storm and what corrupt/ could not keep; a fresh tally."""
    spool.prune_results(RESULT_MAX_AGE)
    spool.prune_temp(TEMP_MAX_AGE)
    seconds = round(time.monotonic() - tally.since)
    report_storm(ctx, watcher.take_ignored(), tally, seconds)
    report_drops(ctx, spool.drop_report(), seconds)
    return Tally()


def report_storm(ctx: SignerContext, ignored: int, tally: Tally, seconds: int) -> None:
    # Entries are published without a temporary name: every dot-file event is waste.
    wasted = ignored + tally.fruitless
    if wasted < STORM_EVENTS:
        return
    log.warning(
        "%d events on incoming/ in the last %d s brought no request (%d named temporary "
        "files, %d wake-ups found nothing to serve): the comm handler floods the spool",
        wasted,
        seconds,
        ignored,
        tally.fruitless,
    )
    with ctx.db.transaction():
        ctx.audit.append(
            "spool-storm",
            events=wasted,
            temporary=ignored,
            empty_wakeups=tally.fruitless,
            seconds=seconds,
        )


def report_drops(ctx: SignerContext, report: DropReport | None, seconds: int) -> None:
    if report is None:
        return
    removed = sum(report.counts.values())
    log.warning(
        "in the last %d s, %d refused entries (%d bytes) were removed instead of kept "
        "in corrupt/ and %d skipped; by reason: %s",
        seconds,
        removed,
        report.bytes,
        report.skipped,
        ", ".join(f"{k} {n}" for k, n in sorted(report.counts.items())),
    )
    with ctx.db.transaction():
        ctx.audit.append(
            "spool-dropped",
            removed=removed,
            reasons=report.counts,
            bytes=report.bytes,
            skipped=report.skipped,
            seconds=seconds,
        )


def start(cfg: Config, stop: StopRequest) -> SignerContext | None:
    """The context, once storage allows: a full disk at start waits, as it does later;
    None if a stop signal comes first (nothing is open then).

    It tries every ``STORAGE_RETRY`` s, but says why only when the reason is new
    or once per ``START_REPORT_INTERVAL``, with how often it failed meanwhile.
    """
    reported, since, failed = "", 0.0, 0  # the reason last logged, when, failures since
    while not stop.requested:
        try:
            return build_context(cfg)
        except (OSError, sqlite3.OperationalError) as exc:
            reason, now = str(exc), time.monotonic()
            if reason == reported and now - since < START_REPORT_INTERVAL:
                failed += 1
            else:
                again = ""
                if reason == reported:
                    again = (
                        f" (the same failure {failed + 1} times in the last {now - since:.0f} s)"
                    )
                log.error(
                    "cannot start: %s%s; trying again every %.0f s", reason, again, STORAGE_RETRY
                )
                reported, since, failed = reason, now, 0
            stop.idle(time.sleep, STORAGE_RETRY)
    log.info("stopping before start-up finished")
    return None


def run(cfg: Config, spool: Spool, stop: StopRequest) -> None:
    """Serve the spool until a stop signal; then audit the stop and close the database."""
    ctx = start(cfg, stop)
    if ctx is None:
        return
    ctx.spool_counts = spool.counts
    try:
        serve(ctx, spool, stop)
        assert stop.signum is not None  # serve returns on a stop request only
        record_stop(ctx, stop.signum)
    finally:
        try:
            ctx.close_keys()
        finally:
            close_database(ctx.db)


def serve(ctx: SignerContext, spool: Spool, stop: StopRequest) -> None:
    recover, woken = True, False
    tally = Tally(length=0.0)  # prune at once, and report what the first scan met
    integrity = IntegrityTimer(ctx.config.audit.integrity_interval_seconds)
    with DirWatcher(spool.incoming, mask=COMMIT_MASK, min_interval=SCAN_INTERVAL) as watcher:
        log.info("watching %s", spool.incoming)
        while not stop.requested:
            # A full disk or an I/O error is the machine's fault, not the request's: keep the
            # request where it is (incoming/ or active/) and try again, rather than refuse it
            # or exit into a restart storm. (The comm user's doings never raise: spool.queue.)
            try:
                served = serve_queue(ctx, spool, stop, recover=recover)
                tally.add(woken, served)
                if served:
                    watcher.credit_back()
                if not tally.left() and not stop.requested:
                    tally = end_interval(ctx, spool, watcher, tally)
                if not integrity.left() and not stop.requested:
                    integrity.run(ctx.db, ctx.audit, ctx.config)
                if not served and ctx.audit_check is not None:
                    ctx.audit_check.refresh()  # between requests: it may read the whole log
            except (OSError, sqlite3.OperationalError) as exc:
                log.error("storage failure: %s; trying again in %.0f s", exc, STORAGE_RETRY)
                recover, woken = True, False
                stop.idle(time.sleep, STORAGE_RETRY)
                continue
            recover = False
            woken = stop.idle(watcher.wait, min(IDLE_WAKEUP, tally.left(), integrity.left()))


def record_stop(ctx: SignerContext, signum: int) -> None:
    name = signal.Signals(signum).name
    log.info("stopping on %s", name)
    try:
        with ctx.db.transaction():
            ctx.audit.append("stopped", signal=name)
    except (OSError, sqlite3.OperationalError) as exc:
        log.error("the stop could not be recorded in the audit log: %s", exc)


def close_database(db: CADatabase) -> None:
    """Checkpoint and close; say so when the database file alone does not hold everything."""
    try:
        whole = db.close()
    except (OSError, sqlite3.OperationalError) as exc:
        log.error(
            "the database could not be checkpointed (%s): recent changes stay in its"
            " write-ahead log, which the next start reads; copy ca.sqlite-wal with it",
            exc,
        )
        return
    if not whole:
        log.warning(
            "the database could not be checkpointed: another process was reading it;"
            " recent changes stay in its write-ahead log, which the next start reads"
        )


def make_spool(cfg: Config) -> Spool:
    return Spool(cfg.spool_dir, comm_uid=comm_uid(cfg), corrupt_limits=cfg.spool_limits)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="signer-core", description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="signer-core: %(levelname)s %(message)s")
    try:
        cfg = load_config(args.config)
        harden("signer-core", cfg.signer.user, cfg.signer.group, dumpable=False)
        spool = make_spool(cfg)
    except (ConfigError, HardeningError, KeyError) as exc:
        print(f"signer-core: {exc}", file=sys.stderr)
        return 2
    stop = StopRequest()
    stop.install()
    try:
        run(cfg, spool, stop)
    except SchemaError as exc:  # a database from a newer release: nothing to do but say so
        print(f"signer-core: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
