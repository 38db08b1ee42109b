"""OpenPGP key certification with the CA's OpenPGP key ("Sign OpenPGP", action 1 system 2).

Trusted side. ``key_data`` comes from a spool request and is hostile: it is
size-limited and its packets are walked (``packets``) before gpg sees
it, then checked again as gpg understood it after import. Each request runs
in a fresh private GnuPG home (``gpg``) that holds the user's key and
the CA secret key and nothing else, and is removed with its gpg-agent
afterwards, whatever happens. This module trusts the configuration, gpg,
python-gnupg, and the CA key material the operator installed.

``load_signer`` runs once at start: it reads the CA secret key (from an
exported key file, or exported from a GnuPG home), checks in a private home
that it is there, not expired or revoked, and unlocks with the configured
passphrase, and keeps that home's export of it (still passphrase-protected,
with a cheap S2K count) in memory, so that requests never touch the CA's
home again. It also keeps the CA's public key packets (primary and subkeys,
walked by ``packets`` from gpg's binary export), so that a key block
carrying any CA key is refused (``cakeys``) before gpg sees it.

The packet checks bound what gpg's own checks can cost (``PacketLimits``),
and gpg itself runs within a CPU and a wall-clock limit (``GpgLimits``).

The work directory, the parent of the private homes, is checked at start
(``load_signer``) and again for each request: it must be a real directory,
not a symbolic link, of the signer's own uid, that no one else may enter;
otherwise the OpenPGP root is not usable, and one sentence says why. It is
created 0700 if absent, so it belongs where only the signer can create
entries: a name another user could create first would shut the OpenPGP root
out. Without one (None), each private home is made by ``mkdtemp`` directly
in the system's temporary directory; the daemon's default is
``<state_dir>/gpg``.

Refusal codes: openpgp-too-large, -bad-armour, -bad-packets, -secret-key,
-no-key, -multiple-keys, -weak-key, -unsupported-key, -no-uid,
-too-many-packets, -too-many-uids, -too-many-subkeys, -too-many-signatures,
-too-many-uid-signatures, -key-too-large, -exponent-too-large (packet
checks); -ca-key, -bad-days; -cpu-limit, -timeout (gpg's limits);
-key-revoked, -key-expired, -no-valid-uid, -import-failed (after import);
-certify-failed, -export-failed (gpg's work checked); -root-missing (the CA
key). Bad settings raise ValueError; a broken environment (workdir not
private, a gpg that outlives SIGKILL) raises GpgError.
"""

from __future__ import annotations

import dataclasses
import itertools
import re
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import gnupg

from signer_core.cakeys import CaKeys
from signer_core.config.openpgp import CERT_DIGESTS, CERT_LEVELS, POLICY_URL, v4_fingerprint
from signer_core.openpgp.gpg import (
    DEFAULT_GPG_LIMITS,
    MAX_HOME_PATH,
    GpgLimits,
    checked_signatures,
    checked_workdir,
    colon_records,
    open_gpg,
    private_home,
    quick_sign_key,
    stop_agent,
)
from signer_core.openpgp.keyblock import KeyPacket, KeySummary, key_packets, summarise
from signer_core.openpgp.limits import DEFAULT_LIMITS, PacketLimits
from signer_core.openpgp.packets import TAG_PUBLIC_KEY, walk
from signer_core.refusal import Refusal

DEFAULT_POLICY_URL = "http://www.cacert.org/cps.php"
MAX_DAYS = 3660
# gpg stamps certifications itself; allow for a clock step between our reading and its.
_CLOCK_SLACK = 5
_GPG_FAILURE = re.compile(r"^gpg: [a-z ]+ failed: [A-Za-z ]+$")


@dataclass(frozen=True)
class CaSecret:
    """The CA secret key export (still passphrase-protected) and its passphrase."""

    key: bytes = field(repr=False)
    passphrase: str = field(repr=False)


@dataclass(frozen=True)
class OpenPGPSigner:
    """How to certify: which CA key, where it comes from, and what goes into a certification."""

    home: Path | None
    key_file: Path | None
    fingerprint: str
    passphrase_file: Path | None
    policy_url: str = DEFAULT_POLICY_URL
    cert_level: int = 2
    digest: str = "SHA256"
    workdir: Path | None = None
    limits: PacketLimits = DEFAULT_LIMITS
    gpg_limits: GpgLimits = DEFAULT_GPG_LIMITS
    ca_secret: CaSecret | None = field(default=None, repr=False, compare=False)
    # The CA's public key packets, primary first (load_signer); empty: not read yet.
    ca_public: tuple[KeyPacket, ...] = field(default=(), repr=False, compare=False)

    def __post_init__(self) -> None:
        # The rules are signer_core.config.openpgp's, so the configuration refuses the same.
        try:
            object.__setattr__(self, "fingerprint", v4_fingerprint(self.fingerprint))
        except ValueError as exc:
            raise ValueError(f"OpenPGP CA fingerprint {self.fingerprint!r} {exc}") from None
        object.__setattr__(self, "digest", self.digest.upper())
        if (self.home is None) == (self.key_file is None):
            raise ValueError("OpenPGP CA key: set exactly one of home and key_file")
        if self.digest not in CERT_DIGESTS:
            raise ValueError(
                f"OpenPGP cert digest {self.digest!r}: use one of {', '.join(CERT_DIGESTS)}"
            )
        if self.cert_level not in CERT_LEVELS:
            raise ValueError(f"OpenPGP cert level {self.cert_level!r}: use 0 to 3")
        if not POLICY_URL.fullmatch(self.policy_url):
            raise ValueError(
                f"OpenPGP policy URL {self.policy_url!r} is empty, too long or has spaces"
            )
        if len(str(self.workdir or tempfile.gettempdir())) > MAX_HOME_PATH:
            raise ValueError(
                f"OpenPGP workdir path over {MAX_HOME_PATH} characters (gpg-agent socket limit)"
            )

    @property
    def keyid(self) -> str:
        return self.fingerprint[-16:]


def load_signer(
    *,
    fingerprint: str,
    home: Path | None = None,
    key_file: Path | None = None,
    passphrase_file: Path | None = None,
    policy_url: str = DEFAULT_POLICY_URL,
    cert_level: int = 2,
    digest: str = "SHA256",
    workdir: Path | None = None,
    limits: PacketLimits = DEFAULT_LIMITS,
    gpg_limits: GpgLimits = DEFAULT_GPG_LIMITS,
) -> OpenPGPSigner:
    """Build the signer; check its work directory, and that the CA secret key is there and unlocks.

    Raises ``Refusal("openpgp-root-missing", ...)`` when the key is not usable,
    ``GpgError`` when the work directory is not the signer's alone,
    ``ValueError`` for a bad setting.
    """
    signer = OpenPGPSigner(
        home,
        key_file,
        fingerprint,
        passphrase_file,
        policy_url,
        cert_level,
        digest,
        workdir,
        limits,
        gpg_limits,
    )
    parent = checked_workdir(signer.workdir)
    secret = _read_ca_secret(signer)
    with private_home(parent, signer.gpg_limits) as private:
        gpg = private.gpg()
        _import_ca(gpg, signer, secret)
        unlocked = gpg.export_keys(
            signer.fingerprint, secret=True, armor=False, passphrase=secret.passphrase
        )
        if not unlocked:
            raise Refusal(
                "openpgp-root-missing",
                "CA OpenPGP key does not unlock with the configured passphrase",
            )
        public = _export_ca_public(gpg, signer)
    # Keep the re-export: protected with the home's cheap S2K count (see gpg.py).
    return dataclasses.replace(
        signer, ca_secret=CaSecret(unlocked, secret.passphrase), ca_public=public
    )


def certify_key(
    signer: OpenPGPSigner, key_data: bytes, days: int, ca_keys: CaKeys | None = None
) -> bytes:
    """Certify every valid user ID of the one public key in ``key_data``; return it armoured.

    ``ca_keys``: every CA key (``CaKeys.build`` at start, with this signer and
    the X.509 roots); by default this signer's own primary key and subkeys.
    A key block carrying one of them is refused before gpg sees it.
    """
    if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= MAX_DAYS:
        raise Refusal("openpgp-bad-days", f"certification lifetime must be 1 to {MAX_DAYS} days")
    summary = summarise(key_data, drop_certifier=signer.keyid, limits=signer.limits)
    secret = signer.ca_secret or _read_ca_secret(signer)
    if ca_keys is None:
        ca_keys = CaKeys.build(openpgp=_with_ca_public(signer, secret))
    ca_keys.check_openpgp(summary)
    with private_home(checked_workdir(signer.workdir), signer.gpg_limits) as private:
        gpg = private.gpg(_cert_options(signer, days))
        _import_user_key(gpg, summary)
        _import_ca(gpg, signer, secret)
        started = int(time.time()) - _CLOCK_SLACK
        result = quick_sign_key(gpg, signer.fingerprint, summary.fingerprint, secret.passphrase)
        _check_certified(gpg, signer, summary.fingerprint, started, result.stderr)
        armoured: str = gpg.export_keys(summary.fingerprint, armor=True)
    if not armoured.startswith("-----BEGIN PGP PUBLIC KEY BLOCK-----"):
        raise Refusal("openpgp-export-failed", "gpg did not export the certified key")
    return armoured.encode("ascii")


def _cert_options(signer: OpenPGPSigner, days: int) -> list[str]:
    return [
        "--no-ask-cert-level",
        "--default-cert-level",
        str(signer.cert_level),
        "--no-ask-cert-expire",
        "--default-cert-expire",
        f"{days}d",
        "--cert-policy-url",
        signer.policy_url,
        "--cert-digest-algo",
        signer.digest,
    ]


def _import_user_key(gpg: gnupg.GPG, summary: KeySummary) -> None:
    """Import the user's key into the empty home and check it as gpg sees it."""
    imported = gpg.import_keys(summary.packets)
    records = colon_records(gpg)
    fprs = [r[9] for r in records if r[0] == "fpr"]
    pubs = [r for r in records if r[0] == "pub"]
    if not pubs and getattr(imported, "no_user_id", None):
        raise Refusal("openpgp-no-valid-uid", "no user ID of the key has a valid self-signature")
    if len(pubs) != 1 or not fprs or fprs[0] != summary.fingerprint:
        raise Refusal("openpgp-import-failed", "gpg did not import the key that was inspected")
    validity = pubs[0][1]
    if validity == "r":
        raise Refusal("openpgp-key-revoked", "the key is revoked")
    if validity == "e":
        raise Refusal("openpgp-key-expired", "the key has expired")
    if all(r[1] in ("r", "e") for r in records if r[0] == "uid"):
        raise Refusal("openpgp-no-valid-uid", "every user ID of the key is revoked or expired")


def _import_ca(gpg: gnupg.GPG, signer: OpenPGPSigner, secret: CaSecret) -> None:
    # No passphrase here: a batch import keeps the key protected, and python-gnupg
    # would let gpg read an empty passphrase's line from the key data itself.
    gpg.import_keys(secret.key)
    for record in _key_records(colon_records(gpg, secret=True), signer.fingerprint, "sec"):
        if record[1] in ("r", "e"):
            raise Refusal("openpgp-root-missing", "CA OpenPGP key is revoked or expired")
        return
    raise Refusal("openpgp-root-missing", "CA OpenPGP secret key not found")


def _export_ca_public(gpg: gnupg.GPG, signer: OpenPGPSigner) -> tuple[KeyPacket, ...]:
    """The CA's public key packets from the home it was imported into, primary first."""
    keys = key_packets(walk(gpg.export_keys(signer.fingerprint, armor=False)))
    if not keys or keys[0].tag != TAG_PUBLIC_KEY or keys[0].fingerprint != signer.fingerprint:
        raise Refusal("openpgp-root-missing", "gpg did not export the CA's public key")
    return keys


def _with_ca_public(signer: OpenPGPSigner, secret: CaSecret) -> OpenPGPSigner:
    """``signer`` knowing its public keys: a signer not made by ``load_signer`` reads them now."""
    if signer.ca_public:
        return signer
    with private_home(checked_workdir(signer.workdir), signer.gpg_limits) as private:
        gpg = private.gpg()
        _import_ca(gpg, signer, secret)
        return dataclasses.replace(signer, ca_public=_export_ca_public(gpg, signer))


def _key_records(records: list[list[str]], fingerprint: str, kind: str) -> list[list[str]]:
    """The ``kind`` (pub/sec) records whose following fpr record is ``fingerprint``."""
    return [
        r
        for r, nxt in itertools.pairwise(records)
        if r[0] == kind and nxt[0] == "fpr" and len(nxt) > 9 and nxt[9] == fingerprint
    ]


def _check_certified(
    gpg: gnupg.GPG, signer: OpenPGPSigner, fpr: str, started: int, stderr: str
) -> None:
    """Every valid user ID must now carry a fresh, verifying certification by the CA key."""
    level = f"1{signer.cert_level}x"
    valid = certified = 0
    current: str | None = None
    for record in checked_signatures(gpg, fpr):
        if record[0] == "uid":
            current = record[1]
            valid += current not in ("r", "e")
        elif record[0] == "uat":
            current = None
        elif record[0] == "sig" and current not in (None, "r", "e"):
            fresh = (
                record[1] == "!"
                and record[4] == signer.keyid
                and record[10] == level
                and int(record[5] or 0) >= started
            )
            if fresh:
                certified += 1
                current = None  # count each user ID once
        elif record[0] == "sub":
            current = None
    if valid == 0 or certified != valid:
        # Only gpg's own failure lines: others quote user IDs, which are the requester's text.
        failures = [line for line in stderr.splitlines() if _GPG_FAILURE.match(line)]
        detail = f": {failures[-1]}" if failures else ""
        raise Refusal(
            "openpgp-certify-failed", f"{certified} of {valid} user IDs certified{detail}"
        )


def _read_ca_secret(signer: OpenPGPSigner) -> CaSecret:
    """Read the passphrase and the CA secret key export (from key_file or home)."""
    passphrase = _read_passphrase(signer.passphrase_file)
    if signer.key_file is not None:
        try:
            return CaSecret(signer.key_file.read_bytes(), passphrase)
        except OSError as exc:
            raise Refusal("openpgp-root-missing", f"CA OpenPGP key file: {exc.strerror}") from None
    assert signer.home is not None
    if not signer.home.is_dir():
        raise Refusal("openpgp-root-missing", "CA GnuPG home not found")
    gpg = open_gpg(signer.home)
    try:
        key = gpg.export_keys(signer.fingerprint, secret=True, armor=False, passphrase=passphrase)
    finally:
        # The export started an agent there that caches the passphrase: stop it.
        stop_agent(signer.home)
    if not key:
        raise Refusal(
            "openpgp-root-missing",
            "CA OpenPGP secret key not exported from its home (absent, or wrong passphrase)",
        )
    return CaSecret(key, passphrase)


def _read_passphrase(path: Path | None) -> str:
    if path is None:
        return ""
    try:
        text = path.read_text("utf-8")
    except OSError as exc:
        raise Refusal(
            "openpgp-root-missing", f"CA OpenPGP passphrase file unreadable: {exc.strerror}"
        ) from None
    except UnicodeDecodeError as exc:
        raise Refusal(
            "openpgp-root-missing", f"CA OpenPGP passphrase file is not UTF-8 at byte {exc.start}"
        ) from None
    passphrase = text.rstrip("\r\n")
    if "\n" in passphrase or "\r" in passphrase:
        raise ValueError("OpenPGP passphrase file must hold one line")
    return passphrase
