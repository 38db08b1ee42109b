"""``signer-client``: send one v1 request from the command line (web side, untrusted).

Exit status: 0 success (payload 1 on stdout; for the CRL commands a line
naming the updated file), 1 refused or CRL not applicable (reason on stderr),
2 link failure, unreadable input file or bad usage.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import sys
from pathlib import Path

import serial

from comm_handler.frames import FrameError
from comm_handler.transfer import LinkError
from webhost.client import ClientError, Response, WebClient

EXIT_OK, EXIT_REFUSED, EXIT_LINK = 0, 1, 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="signer-client", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--link", required=True, help="device path or pyserial URL (loop://, socket://host:port)"
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=120.0,
        help="seconds to wait for the response (default 120)",
    )
    parser.add_argument(
        "--ready-timeout", type=float, default=20.0, help="seconds to wait for ready (default 20)"
    )
    parser.add_argument("--baud", type=int, default=115200)
    parser.add_argument("-v", "--verbose", action="store_true", help="log link events on stderr")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("nul", help="keep-alive carrying the time")
    x509 = sub.add_parser("sign-x509", help="sign a PKCS#10 or SPKAC request")
    for name in ("--root", "--profile", "--md", "--days"):
        x509.add_argument(name, type=int, required=True)
    x509.add_argument("--csr", type=Path, required=True, help="PKCS#10 PEM or SPKAC block")
    x509.add_argument("--san", default="", help="subjectAltName list, OpenSSL syntax")
    x509.add_argument("--subject", required=True, help="/CN=.../emailAddress=...")
    pgp = sub.add_parser("sign-openpgp", help="certify an OpenPGP key")
    pgp.add_argument("--key", type=Path, required=True)
    pgp.add_argument("--days", type=int, default=366)
    revoke = sub.add_parser("revoke", help="revoke a certificate and update the CRL")
    revoke.add_argument("--cert", type=Path, required=True)
    refresh = sub.add_parser("refresh-crl", help="bring the CRL up to date")
    for crl_parser in (revoke, refresh):
        crl_parser.add_argument("--root", type=int, required=True)
        crl_parser.add_argument("--crl", type=Path, required=True)
        crl_parser.add_argument("--root-cert", type=Path, required=True)
    return parser


def _run(client: WebClient, args: argparse.Namespace) -> Response:
    if args.command == "nul":
        return client.nul()
    if args.command == "sign-x509":
        return client.sign_x509(
            args.root,
            args.profile,
            args.md,
            args.days,
            args.csr.read_bytes(),
            args.san,
            args.subject,
        )
    if args.command == "sign-openpgp":
        return client.sign_openpgp(args.key.read_bytes(), args.days)
    if args.command == "revoke":
        return client.revoke(args.root, args.cert.read_bytes(), args.crl, args.root_cert)
    return client.refresh_crl(args.root, args.crl, args.root_cert)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.ERROR, format="%(levelname)s %(message)s"
    )
    try:
        with WebClient(
            args.link,
            baud=args.baud,
            response_timeout=args.timeout,
            ready_timeout=args.ready_timeout,
        ) as client:
            response = _run(client, args)
    except (LinkError, FrameError, serial.SerialException) as exc:
        print(f"signer-client: link failure: {exc}", file=sys.stderr)
        return EXIT_LINK
    except ClientError as exc:
        print(f"signer-client: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    except OSError as exc:  # an input file that cannot be read
        print(f"signer-client: {exc}", file=sys.stderr)
        return EXIT_LINK
    if not response.ok:
        print(f"signer-client: refused: {response.reason}", file=sys.stderr)
        return EXIT_REFUSED
    if args.command in ("revoke", "refresh-crl"):
        digest = hashlib.sha1(args.crl.read_bytes()).hexdigest()
        print(f"crl updated: {args.crl} sha1={digest}")
    else:
        sys.stdout.buffer.write(response.payload1)
        sys.stdout.flush()
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
