"""What every signerctl command shares: reading the configuration ``--config`` names.

Operator side, run on the console; it trusts the configuration file as the
daemons do (root owns it). A module of its own so that the command modules
(signerctl.main, signerctl.backup.command, signerctl.migrate.command) can
share it without importing each other.
"""

from __future__ import annotations

import argparse

from signer_core.config import Config, load_config


def read_config(args: argparse.Namespace) -> Config:
    """The configuration ``--config`` names: every signerctl command reads it here."""
    return load_config(args.config)
