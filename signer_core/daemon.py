"""signer-core: takes requests from the spool, decides, signs, answers.

Trusted side: the only process that reads the root keys and the CA database.
It runs as the signer user and trusts its configuration file and the files
that file names; it trusts nothing that arrives through the spool.

SECURITY: the spool is written by the comm handler, which may be
compromised. The spool layer refuses links, FIFOs, oversized and foreign
files and copies each valid request into a directory only this user can
reach before it is parsed; the dispatch table decides which kinds of request
exist at all. The watch on ``incoming/`` is added before the first scan and
every event means "scan again", so no committed request is missed.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import pwd
import sqlite3
import sys
import time
from pathlib import Path

from cryptography.hazmat.primitives import hashes

from signer_core.audit import AuditLog
from signer_core.cadb import CADatabase
from signer_core.cakeys import CaKeys
from signer_core.config import Config, ConfigError, load_config
from signer_core.dispatch import SignerContext, dispatch, handle_receipt
from signer_core.openpgp import OpenPGPSigner, load_signer
from signer_core.openpgp_gpg import GpgError
from signer_core.refusal import Refusal
from signer_core.revocation import Revocations
from signer_core.roots import RootStore
from signer_core.timesync import TimeReadings
from spool.crashpoint import crashpoint
from spool.hardening import HardeningError, harden
from spool.queue import Spool
from spool.record import Receipt, Request
from spool.watch import DirWatcher

log = logging.getLogger("signer-core")

RESULT_MAX_AGE = 24 * 3600.0  # results nobody collected; a retry is answered from the database
TEMP_MAX_AGE = 3600.0  # a comm temp file this old was left by a crash, not a write in progress
IDLE_WAKEUP = 60.0
STORAGE_RETRY = 5.0


def comm_uid(cfg: Config) -> int | None:
    """The uid that must own incoming files; None when both run as one user (development)."""
    return pwd.getpwnam(cfg.comm.user).pw_uid if cfg.comm.user else None


def build_context(cfg: Config) -> SignerContext:
    db = CADatabase(cfg.signer.database)
    audit = AuditLog(db.connection)
    audit.append("started", config=str(cfg.path),
                 config_sha256=hashlib.sha256(cfg.path.read_bytes()).hexdigest())
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
    revocations = Revocations(db, validity_days=cfg.crl.validity_days, history=cfg.crl.history,
                              prune_expired_after_days=cfg.crl.prune_expired_after_days)
    return SignerContext(config=cfg, roots=roots, ca_keys=ca_keys, db=db, audit=audit,
                         time_readings=TimeReadings(db, cfg.signer.state_dir),
                         revocations=revocations, openpgp=openpgp,
                         openpgp_missing=openpgp_missing)


def load_openpgp(cfg: Config) -> tuple[OpenPGPSigner | None, str]:
    """The OpenPGP root, or None and the reason requests for it will be refused."""
    if cfg.openpgp is None:
        return None, "no OpenPGP root is configured"
    o = cfg.openpgp
    try:
        signer = load_signer(fingerprint=o.fingerprint, home=o.home, key_file=o.key_file,
                             passphrase_file=o.passphrase_file, policy_url=o.policy_url,
                             cert_level=o.cert_level, digest=o.digest, workdir=o.workdir)
    except (Refusal, GpgError, ValueError, OSError) as exc:
        log.warning("OpenPGP root not usable: %s", exc)
        return None, f"the OpenPGP root is not installed ({exc})"[:150]
    return signer, ""


def process(ctx: SignerContext, spool: Spool, entry: Request | Receipt) -> None:
    if isinstance(entry, Receipt):
        handle_receipt(ctx, entry)
    else:
        spool.finish(entry, dispatch(ctx, entry))


def serve_queue(ctx: SignerContext, spool: Spool, *, recover: bool) -> None:
    """Finish what active/ holds (when asked), then every request in incoming/."""
    if recover:
        for request in spool.recover():
            log.info("finishing request %s left by a crash or a storage failure", request.id)
            process(ctx, spool, request)
    while (entry := spool.claim_next()) is not None:
        crashpoint("request-claimed")
        process(ctx, spool, entry)
    spool.prune_results(RESULT_MAX_AGE)
    spool.prune_temp(TEMP_MAX_AGE)


def start(cfg: Config) -> SignerContext:
    """The context, once storage allows: a full disk at start waits, as it does later."""
    while True:
        try:
            return build_context(cfg)
        except (OSError, sqlite3.OperationalError) as exc:
            log.error("cannot start: %s; trying again in %.0f s", exc, STORAGE_RETRY)
            time.sleep(STORAGE_RETRY)


def run(cfg: Config, spool: Spool) -> None:
    ctx = start(cfg)
    recover = True
    with DirWatcher(spool.root / "incoming") as watcher:
        log.info("watching %s", spool.root / "incoming")
        while True:
            # A full disk or an I/O error is the machine's fault, not the
            # request's: keep the request where it is (incoming/ or active/)
            # and try again, rather than refuse it or exit into a restart storm.
            try:
                serve_queue(ctx, spool, recover=recover)
            except (OSError, sqlite3.OperationalError) as exc:
                log.error("storage failure: %s; trying again in %.0f s", exc, STORAGE_RETRY)
                recover = True
                time.sleep(STORAGE_RETRY)
                continue
            recover = False
            watcher.wait(IDLE_WAKEUP)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="signer-core", description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="signer-core: %(levelname)s %(message)s")
    try:
        cfg = load_config(args.config)
        harden("signer-core", cfg.signer.user, cfg.signer.group, dumpable=False)
        spool = Spool(cfg.spool_dir, comm_uid=comm_uid(cfg))
    except (ConfigError, HardeningError, KeyError) as exc:
        print(f"signer-core: {exc}", file=sys.stderr)
        return 2
    run(cfg, spool)
    return 0


if __name__ == "__main__":
    sys.exit(main())
