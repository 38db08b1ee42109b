"""``signer-client``: send one request from the command line (web side, untrusted).

Link protocol v1 by default, as the deployed client speaks it; v2 with
``--v2`` (``webhost.client_v2``), which adds the ``status`` request.

It trusts nothing of what it is given: every argument is checked, and every
input file read, before the link is opened, so that a bad one is a usage
error (exit 2) and nothing is sent. The digest and the profile are given by
name or number, the names from ``spool.header``'s tables, which the signer
issues by. The exit codes are the ``EXIT_*`` below, explained in ``EPILOG``
(the end of ``--help``) and in the man page: refusals, link failures and
unusable answers each have their own.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import logging
import sys
import textwrap
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, cast

import serial
from cryptography import x509

from comm_handler.frames import FrameError
from comm_handler.transfer import LinkError
from spool.header import BUILTIN_PROFILE_NAMES, DIGEST_IDS
from webhost.client import ClientError, Response, WebClient, nul_timestamp
from webhost.exits import EXIT_LINK, EXIT_OK, EXIT_REFUSED, EXIT_UNUSABLE, EXIT_USAGE

if TYPE_CHECKING:
    from webhost.client_v2 import V2Client

log = logging.getLogger("signer-client")

DESCRIPTION = "Send one request to the signer appliance over the serial link."


def _listed(names: Mapping[int, str]) -> str:
    return ", ".join(f"{name}|{i}" for i, name in names.items())


EPILOG = "\n\n".join(
    textwrap.fill(paragraph, 79, break_on_hyphens=False)
    for paragraph in (
        f"digests (--md): {_listed(DIGEST_IDS)}; 0 is the root's default digest.",
        f"built-in profiles (--profile): {_listed(BUILTIN_PROFILE_NAMES)}; a profile"
        " the appliance's configuration adds is given by its number.",
        "exit status: 0 success, 1 refused by the appliance, 2 bad usage or an"
        " unreadable input file (nothing sent), 3 link failure, 4 an answer that"
        " could not be used (the CRL file is unchanged), 5 the audit log failed a"
        " check (audit-sync, audit verify: the alarm, with its evidence kept).",
    )
)


def _number(text: str, low: int, high: int, what: str) -> int:
    if not (text.isascii() and text.isdigit() and low <= int(text) <= high):
        raise argparse.ArgumentTypeError(
            f"{what} must be a number from {low} to {high}, not {text!r}"
        )
    return int(text)


def _byte_or_name(names: Mapping[int, str], what: str) -> Callable[[str], int]:
    ids = {name: i for i, name in names.items()}

    def parse(text: str) -> int:
        key = text.strip().lower()
        if key in ids:
            return ids[key]
        if key.isascii() and key.isdigit() and int(key) <= 255:
            return int(key)
        known = ", ".join(names.values())
        raise argparse.ArgumentTypeError(
            f"{what} {text!r} is neither a number from 0 to 255 nor one of {known}"
        )

    return parse


def _root(text: str) -> int:
    return _number(text, 0, 255, "the root number")


def _days(text: str) -> int:
    return _number(text, 1, 0xFFFF, "the number of days")


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number")
    return value


def _baud(text: str) -> int:
    return _number(text, 1, 10_000_000, "the line speed")


def _unreadable(text: str, exc: OSError) -> argparse.ArgumentTypeError:
    return argparse.ArgumentTypeError(f"cannot read {text}: {exc.strerror}")


def _file_bytes(text: str) -> bytes:
    try:
        return Path(text).read_bytes()
    except OSError as exc:
        raise _unreadable(text, exc) from None


def _readable(text: str) -> Path:
    """A file read later (the root certificate, the CRL held): opened now to know it can be."""
    try:
        with Path(text).open("rb"):
            return Path(text)
    except OSError as exc:
        raise _unreadable(text, exc) from None


def _crl_file(text: str) -> Path:
    """The CRL held, readable if it exists (if not, the whole CRL is asked for), in a directory."""
    path = Path(text)
    if path.exists():
        return _readable(text)
    if not path.parent.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is not in an existing directory")
    return path


def _audit_commands(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    sync = sub.add_parser(
        "audit-sync", help="fetch and check the appliance's audit log into a copy (needs --v2)"
    )
    sync.add_argument("--state", type=Path, required=True, help="the copy's directory")
    sync.add_argument("--key", type=Path, help="the log's public key (first sync)")
    sync.add_argument(
        "--from", dest="export", type=Path, help="an export file (signerctl audit export)"
    )
    audit = sub.add_parser("audit", help="check a copy of the audit log offline")
    verify = audit.add_subparsers(dest="audit_command", required=True).add_parser(
        "verify", help="check every record and checkpoint of a copy with the log's public key"
    )
    verify.add_argument("--log", type=Path, required=True, help="the copy's directory")
    verify.add_argument("--key", type=Path, required=True, help="the log's public key")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="signer-client",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--link",
        metavar="PATH_OR_URL",
        help="device path or pyserial URL (loop://, socket://host:port); every command but"
        " audit verify and audit-sync --from needs it",
    )
    parser.add_argument(
        "--timeout",
        type=_positive,
        default=120.0,
        metavar="SECONDS",
        help="seconds to wait for the response (default 120)",
    )
    parser.add_argument(
        "--ready-timeout",
        type=_positive,
        default=20.0,
        metavar="SECONDS",
        help="seconds to wait for the appliance to be ready (default 20)",
    )
    parser.add_argument(
        "--baud", type=_baud, default=115200, metavar="BPS", help="line speed (default 115200)"
    )
    parser.add_argument(
        "--v2", action="store_true", help="speak link protocol v2 (the appliance's, not a bridge's)"
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log link events on stderr")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sub.add_parser("nul", help="keep-alive carrying the time; prints the time sent")
    sub.add_parser("status", help="what the appliance says of itself, as JSON (needs --v2)")
    _audit_commands(sub)
    x509 = sub.add_parser("sign-x509", help="sign a PKCS#10 or SPKAC request")
    x509.add_argument("--root", type=_root, required=True, metavar="N", help="root number, 0-255")
    x509.add_argument(
        "--profile",
        type=_byte_or_name(BUILTIN_PROFILE_NAMES, "the profile"),
        required=True,
        metavar="NAME|N",
        help=f"certificate profile: {', '.join(BUILTIN_PROFILE_NAMES.values())}, or a number",
    )
    x509.add_argument(
        "--md",
        type=_byte_or_name(DIGEST_IDS, "the digest"),
        required=True,
        metavar="NAME|N",
        help=f"signature digest: {', '.join(DIGEST_IDS.values())}, or a number (0: the root's)",
    )
    x509.add_argument(
        "--days", type=_days, required=True, metavar="N", help="validity in days, 1-65535"
    )
    x509.add_argument(
        "--csr", type=_file_bytes, required=True, metavar="FILE", help="PKCS#10 PEM or SPKAC block"
    )
    x509.add_argument(
        "--san", default="", metavar="LIST", help="subjectAltName list, OpenSSL syntax"
    )
    x509.add_argument("--subject", required=True, metavar="DN", help="/CN=.../emailAddress=...")
    pgp = sub.add_parser("sign-openpgp", help="certify an OpenPGP key")
    pgp.add_argument(
        "--key", type=_file_bytes, required=True, metavar="FILE", help="the OpenPGP public key"
    )
    pgp.add_argument(
        "--days", type=_days, default=366, metavar="N", help="validity in days (default 366)"
    )
    revoke = sub.add_parser("revoke", help="revoke a certificate and update the CRL")
    revoke.add_argument(
        "--cert", type=_file_bytes, required=True, metavar="FILE", help="the certificate, PEM"
    )
    refresh = sub.add_parser("refresh-crl", help="bring the CRL up to date")
    for crl_parser in (revoke, refresh):
        crl_parser.add_argument(
            "--root", type=_root, required=True, metavar="N", help="root number, 0-255"
        )
        crl_parser.add_argument(
            "--crl",
            type=_crl_file,
            required=True,
            metavar="FILE",
            help="the CRL held (DER), replaced by the new one; need not exist yet",
        )
        crl_parser.add_argument(
            "--root-cert",
            type=_readable,
            required=True,
            metavar="FILE",
            help="the root's certificate, to verify the new CRL",
        )
    return parser


def _run(client: WebClient, args: argparse.Namespace, now: datetime.datetime) -> Response:
    if args.command == "nul":
        return client.nul(now)
    if args.command == "sign-x509":
        return client.sign_x509(
            args.root, args.profile, args.md, args.days, args.csr, args.san, args.subject
        )
    if args.command == "sign-openpgp":
        return client.sign_openpgp(args.key, args.days)
    if args.command == "revoke":
        return client.revoke(args.root, args.cert, args.crl, args.root_cert)
    return client.refresh_crl(args.root, args.crl, args.root_cert)


def _held_crl(args: argparse.Namespace) -> bytes:
    """The CRL the web host holds before a revoke, to tell a new revocation from an old one."""
    if args.command != "revoke" or not args.crl.exists():
        return b""
    try:
        return bytes(args.crl.read_bytes())
    except OSError:
        return b""  # main's exchange reads it again, and says what is wrong


def _revocation_line(cert_pem: bytes, held: bytes) -> str:
    """Whether the appliance revoked the certificate now or had before (the held CRL lists it)."""
    try:
        serial_number = x509.load_pem_x509_certificate(cert_pem).serial_number
    except ValueError:  # the appliance read it; whatever we cannot, it is revoked
        return "certificate revoked"
    try:
        crl = x509.load_der_x509_crl(held)
    except ValueError:  # no CRL held yet, or not one we can read: nothing says it was before
        return f"certificate {serial_number:x} revoked"
    if crl.get_revoked_certificate_by_serial_number(serial_number) is not None:
        return f"certificate {serial_number:x} was already revoked"
    return f"certificate {serial_number:x} revoked"


def _status(client: V2Client) -> int:
    from comm_handler.v2messages import Kind, V2Request

    answer = client.exchange_v2(V2Request(Kind.STATUS))
    if not answer.ok:
        return _fail(EXIT_REFUSED, f"refused: {answer.v1_payloads()[1].decode(errors='replace')}")
    print(json.dumps(client.parse_status(answer), indent=2))
    return EXIT_OK


def _fail(code: int, sentence: str) -> int:
    print(f"signer-client: {sentence}", file=sys.stderr)
    return code


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if (
        args.command in ("status", "audit-sync")
        and not args.v2
        and not getattr(args, "export", None)
    ):
        parser.error(f"{args.command} is a request of link protocol v2: add --v2")
    if args.link is None and args.command != "audit" and not getattr(args, "export", None):
        parser.error("the link is needed: give --link")
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.ERROR, format="%(levelname)s %(message)s"
    )
    # The audit and v2 code is imported only where a command needs it: the web host
    # runs this client once per request, and most requests are v1 signs and keep-alives.
    if args.command in ("audit-sync", "audit"):
        from webhost import audit_cli

        run = audit_cli.sync_command if args.command == "audit-sync" else audit_cli.verify_command
        return run(args)
    opener: type[WebClient] = WebClient
    if args.v2:
        from webhost.client_v2 import V2Client

        opener = V2Client
    now = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
    held = _held_crl(args)
    try:
        with opener(
            args.link,
            baud=args.baud,
            response_timeout=args.timeout,
            ready_timeout=args.ready_timeout,
        ) as client:
            if args.command == "status":  # args.v2: checked above
                return _status(cast("V2Client", client))
            response = _run(client, args, now)
    except serial.SerialException as exc:
        log.info("pyserial: %s", exc)
        return _fail(EXIT_LINK, f"link failure: cannot open {args.link}")
    except (LinkError, FrameError) as exc:
        return _fail(EXIT_LINK, f"link failure: {exc}")
    except ClientError as exc:
        return _fail(EXIT_UNUSABLE, f"the answer could not be used: {exc}")
    except OSError as exc:  # the CRL file, gone or unreadable since the arguments were read
        return _fail(EXIT_USAGE, f"cannot read {exc.filename}: {exc.strerror}")
    if not response.ok:
        return _fail(EXIT_REFUSED, f"refused: {response.reason}")
    if args.command == "nul":
        sent = nul_timestamp(now).decode("ascii")
        print(f"time sent: {now:%Y-%m-%d %H:%M:%S} UTC ({sent})")
    elif args.command in ("revoke", "refresh-crl"):
        digest = hashlib.sha1(args.crl.read_bytes()).hexdigest()
        if args.command == "revoke":
            print(_revocation_line(args.cert, held))
        print(f"crl updated: {args.crl} sha1={digest}")
    else:
        sys.stdout.buffer.write(response.payload1)
        sys.stdout.flush()
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
