"""The ``root`` subcommands: generate, csr, sign-subroot, install (wiring only).

Trusted side tooling, run by the operator; every argument is checked here
(``signerctl.cli``'s types) or by the step it goes to, which refuses with one
sentence of ours. Each step prints its transcript (``--json`` for scripts).
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from signerctl.cli import count_arg, read_config, root_arg
from signerctl.root.keys import KEY_TYPES

CEREMONY = (
    " A step of a key ceremony: run it with signer-core stopped, or for a root not yet in"
    " service. It prints what it did (when, the SHA-256 of the key and of what it wrote)"
    " and appends the same to the audit chain."
)


def _ceremony(args):
    from signerctl.root.ceremony import Ceremony

    return Ceremony.of(read_config(args))


def cmd_generate(args) -> tuple[object, int]:
    from signerctl.root.ceremony import generate

    return generate(_ceremony(args), args.root, args.type), 0


def cmd_csr(args) -> tuple[object, int]:
    from signerctl.root.ceremony import csr

    return csr(_ceremony(args), args.root, args.subject, args.out), 0


def cmd_sign_subroot(args) -> tuple[object, int]:
    from signerctl.root.subroot import sign_subroot

    return sign_subroot(
        _ceremony(args),
        args.root,
        args.csr,
        args.out,
        path_length=args.path_length,
        permitted_dns=args.permitted_dns,
        days=args.days,
    ), 0


def cmd_install(args) -> tuple[object, int]:
    from signerctl.root.ceremony import install

    return install(_ceremony(args), args.root, args.cert), 0


def _path_length_arg(text: str) -> int:
    if re.fullmatch(r"[0-9]{1,2}", text.strip()) is None or int(text) > 16:
        raise argparse.ArgumentTypeError(f"{text!r} is not a path length: give 0 to 16")
    return int(text)


def add_commands(commands: argparse._SubParsersAction) -> None:
    """Add ``root`` and its subcommands to signerctl's parser."""
    root = commands.add_parser(
        "root", help="key ceremonies: generate a root key, its CSR, sign a subroot, install"
    ).add_subparsers(
        dest="subcommand", metavar="{generate,csr,sign-subroot,install}", required=True
    )
    gen = root.add_parser(
        "generate",
        help="make a root's key where the configuration says",
        description="Make root N's key at the path its configuration names (mode 0600,"
        " owned by the signer user; encrypted with its passphrase_file when it has one)."
        " An existing key is never replaced." + CEREMONY,
    )
    gen.add_argument("--root", type=root_arg, required=True)
    gen.add_argument("--type", choices=KEY_TYPES, default="rsa4096", help="default rsa4096")
    gen.set_defaults(func=cmd_generate)

    req = root.add_parser(
        "csr",
        help="write a CSR for a root's key",
        description="Write a PKCS#10 request for root N's key, to be signed by its parent"
        " (signerctl root sign-subroot on this appliance, or another CA)." + CEREMONY,
    )
    req.add_argument("--root", type=root_arg, required=True)
    req.add_argument("--subject", required=True, help="as /O=Example CA/CN=Example subroot")
    req.add_argument("--out", type=Path, required=True, help="the CSR file to write (PEM)")
    req.set_defaults(func=cmd_csr)

    sub = root.add_parser(
        "sign-subroot",
        help="sign a subordinate CA certificate with a configured root",
        description="Sign the CSR as a subordinate CA of the root --root names: basicConstraints CA"
        " with a path length, keyCertSign and cRLSign, key identifiers, optional DNS name"
        " constraints; the validity is --days or profile 11's max_days, and ends with the"
        " parent's at the latest. The certificate is recorded in the CA database under the"
        " parent, as the signer records one, and can be revoked like any other." + CEREMONY,
    )
    sub.add_argument("--root", type=root_arg, required=True, help="the parent root")
    sub.add_argument("--csr", type=Path, required=True, help="the subroot's CSR (PEM or DER)")
    sub.add_argument("--out", type=Path, required=True, help="the certificate file to write")
    sub.add_argument("--path-length", type=_path_length_arg, help="default: profile 11's")
    sub.add_argument(
        "--permitted-dns", nargs="+", metavar="NAME", help="DNS subtrees the subroot may name"
    )
    sub.add_argument("--days", type=count_arg, help="default: profile 11's max_days")
    sub.set_defaults(func=cmd_sign_subroot)

    ins = root.add_parser(
        "install",
        help="check a root's certificate and put it in place",
        description="Check that the certificate is for root N's key, is a CA certificate,"
        " is valid now and, when its issuer is a configured root, was signed by it; then"
        " put it at root N's configured certificate path (atomically). signer-core puts"
        " the root in service at its next start." + CEREMONY,
    )
    ins.add_argument("--root", type=root_arg, required=True)
    ins.add_argument("--cert", type=Path, required=True, help="the certificate (PEM)")
    ins.set_defaults(func=cmd_install)
