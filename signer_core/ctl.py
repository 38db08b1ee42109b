"""signerctl: the operator's command.

Trusted side tooling, run by an operator (root or the signer user) on the
appliance's console. It reads the configuration, the CA database and the
spool; it never talks to the link.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _demo(args: argparse.Namespace) -> int:
    from signer_core.demo import run_demo
    return run_demo(args.dir, args.serve)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="signerctl", description="Operate the signer appliance.")
    parser.add_argument("--config", type=Path, help="the appliance's configuration file")
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="run both daemons on a throwaway CA and sign one request")
    demo.add_argument("--dir", type=Path, required=True, help="where the demo CA lives")
    demo.add_argument("--serve", action="store_true", help="keep serving the link until interrupted")
    demo.set_defaults(func=_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
