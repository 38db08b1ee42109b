"""``[openpgp]``: the OpenPGP root, and what the OpenPGP code can use.

Trusted side; the file is the operator's (see ``signer_core.config``). The
rules below are the ones ``signer_core.openpgp.certify`` holds its settings
to (it imports them): a value the config accepts is one the OpenPGP code
can use, so a bad value is a ``ConfigError`` naming its key at start, not
an OpenPGP root refused as missing.

- The fingerprint is a v4 key's (40 hex digits): ``signer_core.openpgp.packets``
  computes v4 fingerprints only and refuses other key versions, the key ID
  is its last 16 digits, and the deployed gpg (2.2) knows no v5 keys.
- The certification digest is SHA-256 or longer: gpg refuses a shorter
  hash for an ECDSA P-256 CA key ("signing failed: Invalid length"), and
  SHA-1 is weak.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from signer_core.config.x509 import url
from signer_core.openpgp.gpg import DEFAULT_GPG_LIMITS, MAX_HOME_PATH, GpgLimits
from signer_core.openpgp.limits import DEFAULT_LIMITS, PacketLimits
from spool.settings import ConfigError, Table

CERT_DIGESTS = ("SHA256", "SHA384", "SHA512")
CERT_LEVELS = range(4)
POLICY_URL = re.compile(r"[!-~]{1,200}")  # printable ASCII: it goes into gpg's arguments
_V4_FINGERPRINT = re.compile(r"[0-9A-F]{40}")


def v4_fingerprint(text: str) -> str:
    """``text`` as a v4 fingerprint (spaces removed, upper case); ValueError if it is not one."""
    fpr = text.replace(" ", "").upper()
    if not _V4_FINGERPRINT.fullmatch(fpr):
        raise ValueError("must be a v4 key's fingerprint, 40 hex digits")
    return fpr


@dataclasses.dataclass(frozen=True)
class OpenPGPConfig:
    home: Path | None
    key_file: Path | None
    fingerprint: str
    passphrase_file: Path | None
    policy_url: str
    cert_level: int = 2
    digest: str = "SHA256"
    workdir: Path | None = None  # parent of the per-request GnuPG homes; <state_dir>/gpg if None
    # Bounds on a requester's key block before gpg sees it, and on gpg's work on one
    # request: the OpenPGP code's own types, whose defaults are the defaults here.
    limits: PacketLimits = DEFAULT_LIMITS
    gpg_limits: GpgLimits = DEFAULT_GPG_LIMITS


def read_openpgp(top: Table, cps_url: str) -> OpenPGPConfig | None:
    """The OpenPGP root's settings; None without an ``[openpgp]`` table."""
    if "openpgp" not in top.data:
        top.used.add("openpgp")
        return None
    t = top.sub("openpgp")
    try:
        fpr = v4_fingerprint(t.str_("fingerprint"))
    except ValueError as exc:
        raise ConfigError(f"openpgp.fingerprint: {exc}") from None
    # Integer bounds, each with its default from PacketLimits and its allowed range.
    limits = PacketLimits(
        **{
            name: t.int_(name, getattr(DEFAULT_LIMITS, name), lo, hi)
            for name, lo, hi in (
                ("max_packets", 10, 100_000),
                ("max_user_ids", 1, 10_000),
                ("max_subkeys", 0, 10_000),
                ("max_signatures", 1, 100_000),
                ("max_signatures_per_uid", 1, 100_000),
                ("max_key_bits", 2048, 16384),
                ("max_rsa_exponent_bits", 17, 16384),
            )
        }
    )
    gpg_limits = GpgLimits(
        cpu_seconds=t.int_("gpg_cpu_seconds", DEFAULT_GPG_LIMITS.cpu_seconds, 1, 600),
        wall_seconds=t.number("gpg_wall_seconds", DEFAULT_GPG_LIMITS.wall_seconds),
    )
    o = OpenPGPConfig(
        home=t.opt_path("home"),
        key_file=t.opt_path("key_file"),
        fingerprint=fpr,
        passphrase_file=t.opt_path("passphrase_file"),
        policy_url=url(t, "policy_url", cps_url),
        cert_level=t.int_("cert_level", OpenPGPConfig.cert_level, CERT_LEVELS[0], CERT_LEVELS[-1]),
        digest=t.str_("digest", OpenPGPConfig.digest).upper(),
        workdir=t.opt_path("workdir"),
        limits=limits,
        gpg_limits=gpg_limits,
    )
    _check(o)
    t.finish()
    return o


def _check(o: OpenPGPConfig) -> None:
    """What ``OpenPGPSigner`` would refuse, refused here with the key named."""
    if not 0 < o.gpg_limits.wall_seconds <= 600:
        raise ConfigError("openpgp.gpg_wall_seconds: must be above 0 and at most 600")
    if o.digest not in CERT_DIGESTS:
        raise ConfigError(f"openpgp.digest: one of {', '.join(CERT_DIGESTS)}")
    if not POLICY_URL.fullmatch(o.policy_url):
        raise ConfigError("openpgp.policy_url: at most 200 printable ASCII characters")
    if (o.home is None) == (o.key_file is None):
        raise ConfigError("openpgp.home: give exactly one of home and key_file")
    # The per-request homes hold gpg-agent's sockets, whose paths have a length limit. The
    # default, <state_dir>/gpg, is left to the daemon: signerctl reads this file where it is
    # staged (restore), and the path there says nothing of the signer's.
    if o.workdir is not None and len(str(o.workdir)) > MAX_HOME_PATH:
        raise ConfigError(f"openpgp.workdir: a path of at most {MAX_HOME_PATH} characters")
