"""X.509 issuance: check a Sign X.509 request against policy, then sign it.

Trusted side. ``plan_certificate`` takes the hostile parts of a request
(header fields and three payloads) and does every check, returning a
``CertificatePlan`` that holds only validated values; ``sign_certificate``
turns a plan and a serial number (chosen and recorded by the caller's CA
database) into a certificate signed by the root, after a pre-issuance check
of the signed certificate against the plan. Nothing here touches disk.
"""

from __future__ import annotations

import dataclasses
import functools
import secrets
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtensionOID

from signer_core.config import Config, X509Config
from signer_core.refusal import Refusal
from signer_core.roots import Root, RootStore
from signer_core.x509.compat import not_after, not_before, verify_signature
from signer_core.x509.keychecks import SubjectKey, check_public_key
from signer_core.x509.names import certificate_names
from signer_core.x509.profiles import KEY_USAGE_NAMES, Profile
from signer_core.x509.request import parse_request
from signer_core.x509.subject import parse_spkac_subject, parse_subject, policy_order
from spool.header import DIGEST_IDS

WEAK_DIGESTS = frozenset({"md5", "sha1", "ripemd160"})
_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "md5": hashes.MD5,
    "sha1": hashes.SHA1,
    "sha256": hashes.SHA256,
    "sha384": hashes.SHA384,
    "sha512": hashes.SHA512,
}
MAX_DAYS = 0xFFFF
MAX_CERT_BYTES = 32768
_SERIAL_BITS = 127  # top bit set below: 126 random bits, DER always 16 octets


@dataclasses.dataclass(frozen=True)
class SignRequest:
    """The header fields and payloads of a Sign X.509 request, as received."""

    root: int
    profile: int
    md: int
    days: int
    spkac: bool
    payload1: bytes
    payload2: bytes
    payload3: bytes


@dataclasses.dataclass(frozen=True)
class CertificatePlan:
    """Everything a certificate will contain, every value already checked."""

    root: Root
    profile: Profile
    x509cfg: X509Config
    public_key: SubjectKey
    subject: x509.Name
    sans: tuple[x509.GeneralName, ...]
    digest: str | None  # None for Ed25519/Ed448 roots
    not_before: datetime
    not_after: datetime

    # Made once per certificate, for the builder and the pre-issuance check alike:
    # under cryptography 38 each key encoding costs a few tenths of a millisecond.
    @functools.cached_property
    def extensions(self) -> list[x509.Extension[x509.ExtensionType]]:
        return expected_extensions(self)

    @functools.cached_property
    def spki(self) -> bytes:
        return self.public_key.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )


def new_serial() -> int:
    """A fresh positive serial: 126 random bits from the OS CSPRNG, 16 DER octets."""
    return (1 << (_SERIAL_BITS - 1)) | secrets.randbits(_SERIAL_BITS - 1)


def plan_certificate(
    cfg: Config, roots: RootStore, req: SignRequest, now: datetime
) -> CertificatePlan:
    """Check every part of ``req``; raise Refusal on the first failure."""
    root = roots.get(req.root)
    profile = _profile(cfg.x509, req.profile)
    digest = _digest(cfg.x509, root, req.md)
    not_before_, not_after_ = _validity(root, profile, req.days, now)
    parsed = parse_request(req.payload1, req.spkac)
    public_key = check_public_key(parsed.public_key, cfg.x509)
    key_usage(profile, public_key)  # refuses a key type the profile has no use for
    if parsed.spkac_subject_lines is not None:
        subject = parse_spkac_subject(parsed.spkac_subject_lines)
    else:
        subject = parse_subject(req.payload3)
    if cfg.x509.subject_order == "policy":
        subject = policy_order(subject)  # the DN string the old CA's `openssl ca` wrote
    sans = certificate_names(profile, subject, req.payload2)
    return CertificatePlan(
        root, profile, cfg.x509, public_key, subject, sans, digest, not_before_, not_after_
    )


def _profile(x509cfg: X509Config, profile_id: int) -> Profile:
    profile = x509cfg.profiles.get(profile_id)
    if profile is None:
        raise Refusal("unknown-profile", f"no profile {profile_id}")
    if not profile.enabled:
        raise Refusal("profile-disabled", f"profile {profile_id} ({profile.name}) is disabled")
    return profile


def _digest(x509cfg: X509Config, root: Root, md: int) -> str | None:
    if md == 0:
        name = root.config.default_digest
    elif md in DIGEST_IDS:
        name = DIGEST_IDS[md]
    else:
        raise Refusal("unknown-digest", f"digest id {md} is not defined")
    if isinstance(root.private_key, (ed25519.Ed25519PrivateKey, ed448.Ed448PrivateKey)):
        return None
    if name in WEAK_DIGESTS and not x509cfg.allow_weak_digests:
        raise Refusal("weak-digest", f"digest {name} is not allowed")
    if name not in _HASHES or not _can_sign(type(root.private_key).__name__, name):
        raise Refusal("unsupported-digest", f"digest {name} is not supported by the signer")
    return name


@functools.cache
def _can_sign(key_kind: str, digest: str) -> bool:
    """Whether this cryptography build signs certificates with ``digest`` for
    this kind of key (cryptography 50 dropped MD5 and SHA-1), probed once with
    a throwaway key, never with a root key."""
    if digest not in WEAK_DIGESTS:
        return True
    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
    if "RSA" in key_kind:
        key = rsa.generate_private_key(65537, 1024)
    else:
        key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([])
    start = datetime(2000, 1, 1, tzinfo=UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .serial_number(1)
        .public_key(key.public_key())
        .not_valid_before(start)
        .not_valid_after(start + timedelta(days=1))
    )
    try:
        builder.sign(key, _HASHES[digest]())  # type: ignore[arg-type]  # see sign_certificate
    except (UnsupportedAlgorithm, ValueError):
        return False
    return True


def _validity(root: Root, profile: Profile, days: int, now: datetime) -> tuple[datetime, datetime]:
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    if not 0 < days <= MAX_DAYS:
        raise Refusal("bad-days", f"validity of {days} days")
    start = now.astimezone(UTC).replace(microsecond=0)
    root_start, root_end = not_before(root.certificate), not_after(root.certificate)
    if start < root_start:
        raise Refusal("root-not-yet-valid", f"root {root.id} is not valid yet")
    end = min(start + timedelta(days=min(days, profile.max_days)), root_end)
    if end <= start:
        raise Refusal("root-expired", f"root {root.id} has expired")
    return start, end


_AGREEMENT_ONLY = frozenset({"encipher_only", "decipher_only"})


def key_usage(profile: Profile, public_key: SubjectKey) -> x509.KeyUsage:
    """The profile's keyUsage minus the bits the subject key's algorithm forbids:
    RFC 3279 2.3.1 (no keyAgreement for RSA), RFC 5480 3 (no encipherment for
    EC), RFC 8410 5 (signature bits only for EdDSA)."""
    bits = set(profile.key_usage)
    if isinstance(public_key, rsa.RSAPublicKey):
        bits -= {"key_agreement", "encipher_only", "decipher_only"}
    elif isinstance(public_key, ec.EllipticCurvePublicKey):
        bits -= {"key_encipherment", "data_encipherment"}
    else:
        bits &= {"digital_signature", "content_commitment", "key_cert_sign", "crl_sign"}
    if not bits:
        raise Refusal("unsupported-key", f"profile {profile.id} has no key usage for this key type")
    agreement = "key_agreement" in bits
    # encipher_only and decipher_only mean something only with key_agreement.
    flags = {name: name in bits for name in KEY_USAGE_NAMES - _AGREEMENT_ONLY}
    return x509.KeyUsage(
        encipher_only=agreement and "encipher_only" in bits,
        decipher_only=agreement and "decipher_only" in bits,
        **flags,
    )


def expected_extensions(plan: CertificatePlan) -> list[x509.Extension[x509.ExtensionType]]:
    """Every extension of the certificate, in order, as the profile says."""
    p, root, cfg = plan.profile, plan.root, plan.x509cfg
    ext = x509.Extension
    out = [
        ext(
            ExtensionOID.BASIC_CONSTRAINTS,
            True,
            x509.BasicConstraints(ca=p.ca, path_length=p.path_length if p.ca else None),
        ),
        ext(ExtensionOID.KEY_USAGE, True, key_usage(p, plan.public_key)),
    ]
    if p.extended_key_usage:
        out.append(
            ext(
                ExtensionOID.EXTENDED_KEY_USAGE, p.eku_critical, x509.ExtendedKeyUsage(p.eku_oids())
            )
        )
    out += [
        ext(
            ExtensionOID.SUBJECT_KEY_IDENTIFIER,
            False,
            x509.SubjectKeyIdentifier.from_public_key(plan.public_key),
        ),
        ext(ExtensionOID.AUTHORITY_KEY_IDENTIFIER, False, _aki(root)),
        ext(
            ExtensionOID.AUTHORITY_INFORMATION_ACCESS,
            False,
            x509.AuthorityInformationAccess(
                [
                    x509.AccessDescription(
                        AuthorityInformationAccessOID.OCSP,
                        x509.UniformResourceIdentifier(cfg.ocsp_url),
                    )
                ]
            ),
        ),
        ext(
            ExtensionOID.CRL_DISTRIBUTION_POINTS,
            False,
            x509.CRLDistributionPoints(
                [
                    x509.DistributionPoint(
                        [x509.UniformResourceIdentifier(root.config.crl_url)], None, None, None
                    )
                ]
            ),
        ),
        ext(
            ExtensionOID.CERTIFICATE_POLICIES,
            False,
            x509.CertificatePolicies(
                [x509.PolicyInformation(x509.ObjectIdentifier(cfg.policy_oid), [cfg.cps_url])]
                + [
                    x509.PolicyInformation(x509.ObjectIdentifier(o), None)
                    for o in p.extra_policy_oids
                ]
            ),
        ),
    ]
    if p.ocsp_nocheck:
        out.append(ext(ExtensionOID.OCSP_NO_CHECK, False, x509.OCSPNoCheck()))
    if plan.sans:
        out.append(
            ext(
                ExtensionOID.SUBJECT_ALTERNATIVE_NAME,
                False,
                x509.SubjectAlternativeName(list(plan.sans)),
            )
        )
    return out


def _aki(root: Root) -> x509.AuthorityKeyIdentifier:
    try:
        ski = root.certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    except x509.ExtensionNotFound:
        # The root key's public half: the certificate's, as Root.load checked.
        return x509.AuthorityKeyIdentifier.from_issuer_public_key(root.private_key.public_key())
    return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski.value)


def sign_certificate(plan: CertificatePlan, serial: int) -> x509.Certificate:
    """Build, sign and pre-issuance-check the certificate of ``plan``."""
    if not 0 < serial < 2**159:
        raise ValueError("serial must be positive and fit 20 DER octets")
    builder = (
        x509.CertificateBuilder()
        .subject_name(plan.subject)
        .issuer_name(plan.root.certificate.subject)
        .public_key(plan.public_key)
        .serial_number(serial)
        .not_valid_before(plan.not_before)
        .not_valid_after(plan.not_after)
    )
    for e in plan.extensions:
        builder = builder.add_extension(e.value, e.critical)
    algorithm = None if plan.digest is None else _HASHES[plan.digest]()
    # cryptography 50's types name only the digests it still signs with; 38 and 43
    # sign with MD5 and SHA-1 too, where allowed (``_digest``, ``_can_sign``).
    cert = builder.sign(plan.root.private_key, algorithm)  # type: ignore[arg-type]
    check_certificate(cert, plan, serial)
    return cert


def check_certificate(cert: x509.Certificate, plan: CertificatePlan, serial: int) -> None:
    """Pre-issuance check: the signed certificate says exactly what the plan says."""
    problems = _problems(cert, plan, serial)
    if problems:
        raise Refusal("pre-issuance-check", "; ".join(problems))


def _problems(cert: x509.Certificate, plan: CertificatePlan, serial: int) -> list[str]:
    root_cert = plan.root.certificate
    start, end = not_before(cert), not_after(cert)
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    der = serialization.Encoding.DER
    checks = [
        (cert.version == x509.Version.v3, "not version 3"),
        (cert.serial_number == serial, "serial differs"),
        (cert.issuer == root_cert.subject, "issuer is not the root's subject"),
        (cert.subject == plan.subject, "subject differs from the plan"),
        (cert.public_key().public_bytes(der, spki) == plan.spki, "public key differs"),
        ((start, end) == (plan.not_before, plan.not_after), "validity differs from the plan"),
        (
            not_before(root_cert) <= start < end <= not_after(root_cert),
            "validity outside the root's",
        ),
        (
            end - start <= timedelta(days=plan.profile.max_days),
            "validity above the profile maximum",
        ),
        (list(cert.extensions) == plan.extensions, "extensions differ from the profile"),
        (len(cert.public_bytes(der)) <= MAX_CERT_BYTES, "certificate too large"),
    ]
    problems = [text for ok, text in checks if not ok]
    try:
        verify_signature(cert, plan.root.public_key)
    except InvalidSignature:
        problems.append("signature does not verify with the root key")
    return problems
