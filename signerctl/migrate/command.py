"""signerctl's migration commands: import-openssl, import-openpgp, export-openssl.

Trusted side tooling, run by an operator on the appliance's console. The two
imports write the signer's state, so they refuse to run while a process
named ``signer-core`` runs (``--force`` overrides, for a signer known to be
idle); export only reads the CA database. Files created as root are given to
the signer user, who must be able to open them once the daemon restarts.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import pwd
import sys
from pathlib import Path

from signerctl.cli import CtlError, configured_root, problem, read_config, root_arg

STOP_FIRST = (
    "Stop signer-core first (systemctl stop signer-core): the import writes the"
    " signer's state and refuses to run while a signer-core process runs,"
    " unless --force."
)


def _refuse_if_signer_runs(args) -> None:
    from signerctl.overview import daemons

    running = daemons(args.config)["signer-core"]
    if running and not args.force:
        pids = ", ".join(str(p["pid"]) for p in running)
        raise CtlError(f"signer-core is running (pid {pids}): stop it first, or use --force")


def _signer_owner(user: str) -> tuple[int, int] | None:
    """Who should own what we create: the signer user, when we are root and it exists."""
    if os.geteuid() != 0 or not user:
        return None
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        return None
    return entry.pw_uid, entry.pw_gid


def _give_back(database: Path, owner: tuple[int, int] | None) -> None:
    """Keep the database and its WAL files owned as before (or by the signer user)."""
    if owner is None:
        return
    for suffix in ("", "-wal", "-shm"):
        path = database.with_name(database.name + suffix)
        if path.exists():
            os.chown(path, *owner)


def cmd_import_openssl(args) -> tuple[object, int]:
    from cryptography import x509

    from signer_core.store.cadb import CADatabase
    from signerctl.migrate.openssl_ca import MigrationError, import_openssl

    _refuse_if_signer_runs(args)
    cfg = read_config(args)
    configured_root(cfg, args.root)
    ca_cert = args.ca_cert or cfg.x509.roots[args.root].certificate
    try:
        root_cert = x509.load_pem_x509_certificate(ca_cert.read_bytes())
    except OSError as exc:
        raise CtlError(problem(exc, f"root {args.root}'s certificate ")) from None
    except ValueError:
        raise CtlError(f"{ca_cert} holds no PEM certificate (root {args.root}'s)") from None
    database = cfg.signer.database
    owner = _signer_owner(cfg.signer.user)
    if database.exists() and owner is not None:
        owner = (database.stat().st_uid, database.stat().st_gid)
    db = CADatabase(database)
    try:
        totals = import_openssl(
            db,
            args.root,
            args.ca_dir,
            root_cert,
            crl=args.crl,
            crl_dir=args.crl_dir,
            progress=None if getattr(args, "json", False) else sys.stderr,
        )
    except MigrationError as exc:
        return {"imported": False, "problems": [dataclasses.asdict(p) for p in exc.problems]}, 1
    finally:
        db.close()
        _give_back(database, owner)
    return {"imported": True, **dataclasses.asdict(totals)}, 0


def cmd_import_openpgp(args) -> tuple[object, int]:
    from signerctl.migrate.openpgp import OpenPGPImportError, import_openpgp

    _refuse_if_signer_runs(args)
    user = args.signer_user
    if user is None:
        user = read_config(args).signer.user if args.config.exists() else "_signer"
    try:
        done = import_openpgp(
            args.keyring_dir,
            args.root,
            args.home.absolute(),
            passphrase_file=args.passphrase_file,
            fingerprint=args.fingerprint,
            owner=_signer_owner(user),
        )
    except OpenPGPImportError as exc:
        return {"imported": False, "problem": str(exc)}, 1
    print(done.config_lines(args.passphrase_file), file=sys.stderr)
    return {
        "imported": True,
        "home": str(done.home),
        "fingerprint": done.fingerprint,
        "secret_keys": len(done.secret_keys),
        "public_keys": done.public_keys,
        "config": done.config_lines(args.passphrase_file),
    }, 0


def cmd_export_openssl(args) -> tuple[object, int]:
    from signer_core.store.schema import open_readonly
    from signerctl.migrate.export import ExportError, export_openssl

    cfg = read_config(args)
    with open_readonly(cfg.signer.database) as conn:
        try:
            totals = export_openssl(conn, args.root, args.out)
        except ExportError as exc:
            return {"exported": False, "problem": str(exc)}, 1
    return {"exported": True, "dir": str(args.out), **dataclasses.asdict(totals)}, 0


def add_commands(commands: argparse._SubParsersAction) -> None:
    """Add the migration subcommands to signerctl's parser."""
    imp = commands.add_parser(
        "import-openssl",
        help="import an OpenSSL CA directory (index, certificates, CRLs)",
        description="Import one root's OpenSSL CA directory into the CA database, in one"
        " transaction: every problem is listed with its line and nothing is written unless"
        " all is well. Running it again skips what is already there. " + STOP_FIRST,
    )
    imp.add_argument("--root", type=root_arg, required=True, help="the appliance's root id")
    imp.add_argument(
        "--ca-dir",
        type=Path,
        required=True,
        help="holds index.txt, serial, crlnumber, newcerts/ or certs/",
    )
    imp.add_argument("--crl", type=Path, help="the current CRL as the web host holds it (DER)")
    imp.add_argument("--crl-dir", type=Path, help="older CRLs named <sha1>.crl (DER)")
    imp.add_argument(
        "--ca-cert", type=Path, help="the root certificate (default: the configured root's)"
    )
    imp.add_argument("--force", action="store_true", help="run even if signer-core runs")
    imp.set_defaults(func=cmd_import_openssl)

    pgp = commands.add_parser(
        "import-openpgp",
        help="import the old GnuPG keyrings as the OpenPGP root",
        description="Import secring<N>.gpg and pubring<N>.gpg into a new GnuPG home"
        " (mode 0700, owned by the signer user) and print the [openpgp] configuration"
        " lines. " + STOP_FIRST,
    )
    pgp.add_argument("--keyring-dir", type=Path, required=True)
    pgp.add_argument("--root", type=root_arg, default=0, help="keyring number (default 0)")
    pgp.add_argument("--home", type=Path, required=True, help="the new GnuPG home")
    pgp.add_argument("--passphrase-file", type=Path, help="the secret key's passphrase")
    pgp.add_argument("--fingerprint", help="which secret key, if the keyring holds several")
    pgp.add_argument("--signer-user", help="owner of the new home (default: from the config)")
    pgp.add_argument("--force", action="store_true", help="run even if signer-core runs")
    pgp.set_defaults(func=cmd_import_openpgp)

    exp = commands.add_parser(
        "export-openssl",
        help="write a root's state as an OpenSSL CA index",
        description="Write index.txt, index.txt.attr, serial and crlnumber for one root,"
        " readable by openssl ca (-status, -updatedb, -gencrl). Read-only on the database.",
    )
    exp.add_argument("--root", type=root_arg, required=True)
    exp.add_argument("--out", type=Path, required=True, help="an empty or new directory")
    exp.set_defaults(func=cmd_export_openssl)
