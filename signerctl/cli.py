"""What every signerctl command shares: the global options, the configuration, the
CA database, argument types, output, and the one way a bad input is answered.

Operator side, run on the console; it trusts the configuration file as the
daemons do (root owns it), and nothing an operator types: every argument is
checked here or by the command, and refused with one sentence of ours on
stderr and exit code 2 (``CtlError``, ``CtlParser.error``, ``problem``),
never with a library's text or a traceback. A module of its own so that the
command modules (signerctl.main, certs, audit, backup.command,
migrate.command) can share it without importing each other.
"""

from __future__ import annotations

import argparse
import datetime as dt
import errno
import json
import logging
import re
import sqlite3
import sys
from pathlib import Path
from typing import NoReturn

from signer_core.config import Config, load_config
from signer_core.store.schema import SchemaError, open_readonly

DEFAULT_CONFIG = Path("/etc/signer-appliance/signer.toml")
log = logging.getLogger("signerctl")


class CtlError(Exception):
    """A bad input, or a state the command cannot work on: its message is one
    sentence for the operator; signerctl prints it and exits with 2."""


class CtlParser(argparse.ArgumentParser):
    """signerctl's parsers: the global options on every (sub)command, so that
    ``--json`` and ``--config`` are accepted before or after it, and every
    usage error as one line on stderr with exit code 2."""

    def __init__(self, *args, top: bool = False, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        # Below the top, SUPPRESS: a subcommand sets the option only if it is given there,
        # and does not reset what was given before it.
        self.add_argument(
            "--config",
            type=Path,
            default=DEFAULT_CONFIG if top else argparse.SUPPRESS,
            help=f"the appliance's configuration (default {DEFAULT_CONFIG})",
        )
        self.add_argument(
            "--json",
            action="store_true",
            default=False if top else argparse.SUPPRESS,
            help="print JSON for scripts",
        )

    def error(self, message: str) -> NoReturn:
        choice = re.fullmatch(
            r"argument [^:]+: invalid choice: '(.*)' \(choose from (.*)\)", message
        )
        if choice is not None:
            given, options = choice.groups()
            text = f"{given!r} is not one of {options.replace(chr(39), '')}"
        else:
            text = re.sub(r"^argument (-[^:]+): ", r"\1 ", message)
            text = re.sub(r"^argument ([^:]+): ", r"\1: ", text)
        print(f"{self.prog}: {text} (see {self.prog} --help)", file=sys.stderr)
        sys.exit(2)


def read_config(args: argparse.Namespace) -> Config:
    """The configuration ``--config`` names: every signerctl command reads it here."""
    return load_config(args.config)


def open_database(cfg: Config) -> sqlite3.Connection:
    """The CA database, read-only; a missing or unreadable one is a CtlError."""
    path = Path(cfg.signer.database)
    try:
        with path.open("rb"):
            pass
    except OSError as exc:
        raise CtlError(problem(exc, "the CA database ")) from None
    try:
        return open_readonly(path)
    except SchemaError as exc:
        raise CtlError(str(exc)) from None
    except sqlite3.DatabaseError as exc:
        log.debug("opening %s: %s", path, exc)
        raise CtlError(f"{path} is not a CA database that SQLite can read") from None


def configured_root(cfg: Config, root: int) -> None:
    """CtlError unless ``root`` is one of the configured X.509 roots."""
    if root not in cfg.x509.roots:
        known = ", ".join(str(r) for r in sorted(cfg.x509.roots)) or "none"
        raise CtlError(f"root {root} is not in the configuration (its roots: {known})")


_OS_WORDS = {
    errno.ENOENT: "does not exist",
    errno.EACCES: "cannot be read or written by this user (run signerctl as root"
    " or as the signer user)",
    errno.EPERM: "may not be used by this user (run signerctl as root)",
    errno.EISDIR: "is a directory, not a file",
    errno.ENOTDIR: "is not there: a part of its path is not a directory",
    errno.ENOSPC: "cannot be written: its file system is full",
    errno.EROFS: "cannot be written: its file system is read-only",
    errno.EEXIST: "exists already",
    errno.ENOTEMPTY: "is a directory that is not empty",
}


def problem(exc: OSError, what: str = "") -> str:
    """An OSError as a sentence: ``what`` (e.g. "the root certificate ") and the file."""
    words = _OS_WORDS.get(exc.errno or 0)
    if words is None:
        log.debug("%s", exc)
        words = f"cannot be used ({(exc.strerror or 'error').lower()})"
    name = exc.filename if exc.filename is not None else "a file"
    return f"{what}{name} {words}"


# -- argument types: each refuses a bad value with a sentence of ours ---------


def serial_arg(text: str) -> int:
    """A certificate serial as operators write it: hex, with or without 0x or colons."""
    digits = text.strip().lower().removeprefix("0x").replace(":", "")
    if not digits or re.fullmatch(r"[0-9a-f]+", digits) is None:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a serial number: serials are hexadecimal, as certs find prints them"
        )
    return int(digits, 16)


def date_arg(text: str) -> dt.datetime:
    """YYYY-MM-DD, or a time YYYY-MM-DDTHH:MM[:SS], in UTC unless it says otherwise."""
    try:
        when = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a date: give it as YYYY-MM-DD or YYYY-MM-DDTHH:MM (UTC)"
        ) from None
    return when if when.tzinfo else when.replace(tzinfo=dt.UTC)


def root_arg(text: str) -> int:
    if re.fullmatch(r"[0-9]{1,6}", text.strip()) is None:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a root number: roots are numbered 0, 1, 2..."
        )
    return int(text)


def count_arg(text: str) -> int:
    if re.fullmatch(r"[0-9]{1,9}", text.strip()) is None or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a count: give a whole number from 1")
    return int(text)


def days_arg(text: str) -> float:
    if re.fullmatch(r"[0-9]{1,6}(\.[0-9]*)?", text.strip()) is None:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a number of days: give one like 7 or 0.5"
        )
    return float(text)


# -- output -------------------------------------------------------------------


def iso(ts: float | None) -> str | None:
    """A time of the database (seconds since the epoch) as operators read it, UTC."""
    if ts is None:
        return None
    return dt.datetime.fromtimestamp(ts, dt.UTC).isoformat(timespec="seconds")


def render(data, out=None, indent: str = "") -> None:
    """A dict as 'key: value' lines, a list of dicts as a table, a text of
    several lines as an indented block; on ``out``, stdout unless given."""
    out = sys.stdout if out is None else out
    if isinstance(data, dict):
        for key, value in data.items():
            if isinstance(value, (dict, list)) and value:
                print(f"{indent}{key}:", file=out)
                render(value, out, indent + "  ")
            elif isinstance(value, str) and "\n" in value.strip():
                print(f"{indent}{key}:", file=out)
                for line in value.strip().splitlines():
                    print(f"{indent}  {line}", file=out)
            else:
                print(f"{indent}{key}: {'-' if value is None else value}", file=out)
    elif isinstance(data, list) and data and isinstance(data[0], dict):
        columns = list(data[0])
        cells = [[("-" if r.get(c) is None else str(r.get(c))) for c in columns] for r in data]
        widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
        for row in [columns, *cells]:
            line = "  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True))
            print(indent + line.rstrip(), file=out)
    else:
        print(f"{indent}{data if data not in (None, []) else '(none)'}", file=out)


def emit(data, as_json: bool, out=None) -> None:
    out = sys.stdout if out is None else out
    if as_json:
        json.dump(data, out, indent=2, sort_keys=False)
        print(file=out)
    else:
        render(data, out)
