"""OpenPGP key certification with the CA's OpenPGP key ("Sign OpenPGP", action 1 system 2).

Trusted side. ``key_data`` comes from a spool request and is hostile: it is
size-limited and its packets are walked (``packets``) before gpg sees it.
This module trusts the configuration, gpg, python-gnupg, and the CA key
material the operator installed.

``load_signer`` runs once at start: it reads the CA secret key (from an
exported key file, or exported from a GnuPG home) and imports it, once, into
the signer's own long-lived CA home (``cahome``) in the work directory,
checking that it is there, not expired or revoked, and unlocks with the
configured passphrase; that home's agent keeps running until ``close_signer``
(at stop). It keeps the CA's public key packets, so that a key block
carrying any CA key is refused (``cakeys``) before gpg sees it, and the
re-export of the secret key (still passphrase-protected) in memory, for a
signer not made by ``load_signer`` (a CA home for that one request then).

Each request gets a fresh private home (``gpg.private_home``) holding only a
legacy keyring file: the CA's public key block and the walked packets of
the user's key (without trust packets, which gpg would take as its
signature cache), and a socket redirection to the CA home's agent. ONE gpg
process runs there (``--quick-sign-key``, within ``GpgLimits``); gpg checks
the key itself as it reads it (revoked, expired, user IDs without a valid
self-signature: it will not sign them). The certified key is read back from
that keyring with our own packet code and checked (``certified``); the home
is removed whatever happens. Nothing of a request reaches the CA home: gpg
never opens it, and its agent only signs.

The packet checks bound what gpg's own checks can cost (``PacketLimits``),
and gpg itself runs within a CPU and a wall-clock limit (``GpgLimits``).

The work directory, the parent of the homes, is checked at start
(``load_signer``) and again for each request: it must be a real directory,
not a symbolic link, of the signer's own uid, that no one else may enter;
otherwise the OpenPGP root is not usable, and one sentence says why. It is
created 0700 if absent, so it belongs where only the signer can create
entries: a name another user could create first would shut the OpenPGP root
out. Without one (None), each home is made by ``mkdtemp`` directly in the
system's temporary directory; the daemon's default is ``<state_dir>/gpg``.

Refusal codes: openpgp-too-large, -bad-armour, -bad-packets, -secret-key,
-no-key, -multiple-keys, -weak-key, -unsupported-key, -no-uid,
-too-many-packets, -too-many-uids, -too-many-subkeys, -too-many-signatures,
-too-many-uid-signatures, -key-too-large, -exponent-too-large (packet
checks); -ca-key, -bad-days; -cpu-limit, -timeout (gpg's limits);
-key-revoked, -key-expired, -no-valid-uid, -import-failed, -certify-failed
(gpg's work, ``certified``); -root-missing (the CA key). Bad settings raise
ValueError; a broken environment (workdir not private, a gpg that outlives
SIGKILL) raises GpgError.
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from signer_core.cakeys import CaKeys
from signer_core.config.openpgp import CERT_DIGESTS, CERT_LEVELS, POLICY_URL, v4_fingerprint
from signer_core.openpgp.cahome import CaHome, remove_stale
from signer_core.openpgp.certified import Asked, certified_key
from signer_core.openpgp.gpg import (
    DEFAULT_GPG_LIMITS,
    MAX_HOME_PATH,
    GpgLimits,
    checked_workdir,
    open_gpg,
    private_home,
    run_gpg,
    stop_agent,
)
from signer_core.openpgp.keyblock import KeyPacket, summarise
from signer_core.openpgp.limits import DEFAULT_LIMITS, PacketLimits
from signer_core.openpgp.packets import TAG_TRUST, walk
from signer_core.refusal import Refusal

DEFAULT_POLICY_URL = "http://www.cacert.org/cps.php"
MAX_DAYS = 3660
# gpg stamps certifications itself; allow for a clock step between our reading and its.
_CLOCK_SLACK = 5
_KEYRING = "user.gpg"


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
    # The long-lived CA home (load_signer); None: one is made for each request.
    ca_home: CaHome | None = field(default=None, repr=False, compare=False)

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
    """Build the signer and its CA home: the CA secret key imported, checked, unlocking.

    Raises ``Refusal("openpgp-root-missing", ...)`` when the key is not usable,
    ``GpgError`` when the work directory is not the signer's alone,
    ``ValueError`` for a bad setting. ``close_signer`` ends it.
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
    remove_stale(parent)
    secret = _read_ca_secret(signer)
    ca_home = CaHome.open(parent, signer.fingerprint, secret.key, secret.passphrase)
    return dataclasses.replace(signer, ca_secret=secret, ca_public=ca_home.public, ca_home=ca_home)


def close_signer(signer: OpenPGPSigner) -> None:
    """Stop the CA home's agent and remove the home (at stop)."""
    if signer.ca_home is not None:
        signer.ca_home.close()


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
    if ca_keys is None and signer.ca_public:
        ca_keys = CaKeys.build(openpgp=signer)
    if ca_keys is not None:  # before any home is made: gpg never sees a CA key
        ca_keys.check_openpgp(summary)
    parent = checked_workdir(signer.workdir)
    secret = signer.ca_secret or _read_ca_secret(signer)
    with _ca_home_of(signer, parent, secret) as ca_home:
        if ca_keys is None:  # a signer not made by load_signer: its public keys are known now
            public = dataclasses.replace(signer, ca_public=ca_home.public)
            CaKeys.build(openpgp=public).check_openpgp(summary)
        sent = [p.raw for p in walk(summary.packets) if p.tag != TAG_TRUST]
        with private_home(parent, signer.gpg_limits, agent=False) as private:
            keyring = private.path / _KEYRING
            keyring.write_bytes(ca_home.public_raw + b"".join(sent))
            ca_home.redirect(private.path)
            started = int(time.time()) - _CLOCK_SLACK
            run = run_gpg(
                private,
                [
                    "--no-default-keyring",
                    "--keyring",
                    str(keyring),
                    "--pinentry-mode",
                    "loopback",
                    "--passphrase-fd",
                    "0",
                    *_cert_options(signer, days),
                    "--local-user",
                    signer.fingerprint,
                    "--quick-sign-key",
                    summary.fingerprint,
                ],
                secret.passphrase.encode("utf-8") + b"\n",
            )
            asked = Asked(
                signer.keyid, signer.cert_level, days, signer.policy_url, signer.digest, started
            )
            return certified_key(
                keyring.read_bytes(), summary.fingerprint, set(sent), asked, run.stdout, run.stderr
            )


@contextmanager
def _ca_home_of(signer: OpenPGPSigner, parent: Path | None, secret: CaSecret) -> Iterator[CaHome]:
    """The signer's CA home; for a signer not made by ``load_signer``, one for this request."""
    if signer.ca_home is not None:
        yield signer.ca_home
        return
    ca_home = CaHome.open(parent, signer.fingerprint, secret.key, secret.passphrase)
    try:
        yield ca_home
    finally:
        ca_home.close()


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
