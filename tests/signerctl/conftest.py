"""Fixtures of the signerctl tests: a small real CA on disk with one revocation, and
signerctl run in-process as an operator runs it.

Test tooling. The CA is tests.support.backup's (a real CA database made by
the store); the revocation is stored as the signer stores one, through
``signer_core.store.crls`` and the audit chain, in one transaction.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509

from signer_core.crl.encode import encode_entry
from signer_core.store import crls
from signer_core.store.audit import AuditLog
from signer_core.store.cadb import CADatabase, certificate_rows, serial_text
from signer_core.x509.compat import not_after
from signerctl import main as ctl
from spool.queue import Spool
from tests.support.backup import load, make_ca

REVOKED_AT = dt.datetime(2026, 3, 4, 5, 6, 7, tzinfo=dt.UTC)


@dataclass(frozen=True)
class Site:
    config: Path
    serials: list[int]  # issued, in order
    revoked: int  # the first one, revoked for keyCompromise at revoked_at
    revoked_at: dt.datetime
    spool: Spool


@pytest.fixture
def site(tmp_path) -> Site:
    config = make_ca(tmp_path / "ca", certificates=3)
    cfg = load(config)
    db = CADatabase(cfg.signer.database)
    try:
        rows = certificate_rows(db.connection)
        serials = [int(r[1], 16) for r in rows]
        der = rows[0][3]
        assert der is not None
        cert = x509.load_der_x509_certificate(der)
        with db.transaction() as conn:
            crls.add_revocation(
                conn,
                0,
                serials[0],
                int(REVOKED_AT.timestamp()),
                x509.ReasonFlags.key_compromise.value,
                int(not_after(cert).timestamp()),
                encode_entry(serials[0], REVOKED_AT, x509.ReasonFlags.key_compromise),
            )
            AuditLog(conn).append("revoked", root=0, serial=serial_text(serials[0]), crl_number=1)
    finally:
        db.close()
    spool = Spool(cfg.spool_dir)
    spool.create_dirs()
    return Site(config, serials, serials[0], REVOKED_AT, spool)


@pytest.fixture
def signerctl(capsys):
    """``signerctl(*argv)``: (exit code, stdout, stderr) of signerctl.main.main; with
    ``--json`` in argv, stdout parsed."""

    def run(*argv: str) -> tuple[int, object, str]:
        try:
            code = ctl.main(list(argv))
        except SystemExit as exc:  # argparse's usage errors and --help
            code = int(exc.code or 0)
        out, err = capsys.readouterr()
        if "--json" in argv and out.strip():
            return code, json.loads(out), err
        return code, out, err

    return run
