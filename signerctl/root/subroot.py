"""The ceremony step ``sign-subroot``: a subordinate CA certificate signed by a configured root.

Trusted side tooling, run by the operator. It trusts the configuration and
the parent root as the signer loads it (``signer_core.roots.Root.load``:
key and certificate agree, a CA that signs); the CSR is the subroot
operator's, checked (its signature, its key's kind and size) before it is
signed. The certificate is issued as the signer issues one: a random serial
reserved in the CA database first, then the certificate recorded as
``issued`` under the parent with profile 11 (``subca``), in the same
transaction as the audit record ``ceremony-sign-subroot``; a failure in
between releases the serial. So the subroot is in ``certs find``, and can be
revoked through the link like any other certificate of the parent's.

What it contains: basicConstraints CA with a path length (profile 11's,
``--path-length`` to change it, within what the parent's own allows),
keyUsage from profile 11 (keyCertSign and cRLSign at least, critical), the
subject key identifier, the parent's key identifier, the parent's CRL
distribution point and the CA's certificate policy, and name constraints
when ``--permitted-dns`` gives them. Its validity is ``--days`` or profile
11's ``max_days``, never more than that, and ends with the parent's at the
latest.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa

from signer_core.refusal import Refusal
from signer_core.roots import Root
from signer_core.x509.compat import not_after, not_before, verify_issued_by
from signer_core.x509.issue import key_usage, new_serial
from signer_core.x509.keychecks import spki_sha256
from signer_core.x509.profiles import Profile
from signerctl.cli import CtlError, iso
from signerctl.root.ceremony import Ceremony, der_sha256, load_root, now, read_csr
from spool.safeio import commit_file

SUBROOT_PROFILE = 11  # "subca" in spool.header.BUILTIN_PROFILE_NAMES
SERIAL_ATTEMPTS = 8
_Hash = hashes.SHA256 | hashes.SHA384 | hashes.SHA512
_HASHES: dict[str, type[_Hash]] = {
    "sha256": hashes.SHA256,
    "sha384": hashes.SHA384,
    "sha512": hashes.SHA512,
}
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_DNS_CONSTRAINT = re.compile(rf"\.?{_LABEL}(?:\.{_LABEL})*")


def dns_constraint(text: str) -> str:
    """A permitted DNS subtree as RFC 5280 writes it (``example.org``, ``.example.org``)."""
    name = text.strip().lower()
    if len(name) > 253 or _DNS_CONSTRAINT.fullmatch(name) is None:
        raise CtlError(
            f"--permitted-dns {text!r} is not a DNS name (give an international name"
            " in its ASCII form, xn--...)"
        )
    return name


def request_digest(request: x509.CertificateSigningRequest) -> bytes:
    """The row's request digest: no request of the link hashes to it (its first
    four bytes would be a header's length)."""
    return hashlib.sha256(b"ceremony-sign-subroot\0" + der_of(request)).digest()


def der_of(request: x509.CertificateSigningRequest) -> bytes:
    return request.public_bytes(serialization.Encoding.DER)


def _check_key(request: x509.CertificateSigningRequest, parent: Root, path: Path):
    key = request.public_key()
    if not isinstance(
        key,
        (
            rsa.RSAPublicKey,
            ec.EllipticCurvePublicKey,
            ed25519.Ed25519PublicKey,
            ed448.Ed448PublicKey,
        ),
    ):
        raise CtlError(f"the CSR in {path} carries a kind of key that cannot sign certificates")
    if isinstance(key, rsa.RSAPublicKey) and key.key_size < 2048:
        raise CtlError(f"the CSR in {path} carries an RSA key of {key.key_size} bits, under 2048")
    if spki_sha256(key) == spki_sha256(parent.certificate.public_key()):
        raise CtlError(f"the CSR in {path} carries root {parent.id}'s own key")
    return key


def _path_length(parent: Root, profile: Profile, asked: int | None) -> int | None:
    try:
        limit = parent.certificate.extensions.get_extension_for_class(
            x509.BasicConstraints
        ).value.path_length
    except x509.ExtensionNotFound:
        limit = None
    length = profile.path_length if asked is None else asked
    if limit is None:
        return length
    if limit == 0:
        raise CtlError(f"root {parent.id}'s certificate has path length 0: it may sign no CA")
    if length is None or length > limit - 1:
        raise CtlError(
            f"root {parent.id}'s path length ({limit}) allows a subroot's of {limit - 1}"
            " at most: give --path-length"
        )
    return length


def _validity(
    parent: Root, profile: Profile, days: int | None, start: dt.datetime
) -> tuple[dt.datetime, str | None]:
    """The end of the validity, and why it is shorter than asked if it is."""
    days = profile.max_days if days is None else days
    if not 1 <= days <= profile.max_days:
        raise CtlError(
            f"--days {days} is not allowed: profile {SUBROOT_PROFILE} ([x509.profiles."
            f"{SUBROOT_PROFILE}] max_days) allows 1 to {profile.max_days} days"
        )
    if start < not_before(parent.certificate) or start >= not_after(parent.certificate):
        raise CtlError(f"root {parent.id}'s certificate is not valid now")
    wanted = start + dt.timedelta(days=days)
    end = min(wanted, not_after(parent.certificate))
    return end, None if end == wanted else f"root {parent.id} expires first"


def _authority_key_id(parent: Root) -> x509.AuthorityKeyIdentifier:
    try:
        ski = parent.certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    except x509.ExtensionNotFound:
        return x509.AuthorityKeyIdentifier.from_issuer_public_key(
            parent.certificate.public_key()  # type: ignore[arg-type]  # a root key's kind
        )
    return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski.value)


def _algorithm(parent: Root) -> _Hash | None:
    if isinstance(parent.private_key, (ed25519.Ed25519PrivateKey, ed448.Ed448PrivateKey)):
        return None
    name = parent.config.default_digest
    if name not in _HASHES:
        raise CtlError(
            f"root {parent.id}'s default_digest is {name}, too weak for a CA certificate"
        )
    return _HASHES[name]()


def sign_subroot(
    c: Ceremony,
    parent_id: int,
    csr_path: Path,
    out: Path,
    *,
    path_length: int | None = None,
    permitted_dns: list[str] | None = None,
    days: int | None = None,
) -> dict:
    """Sign the CSR in ``csr_path`` as a subordinate CA of root ``parent_id``; write it to ``out``."""
    parent = load_root(c.root(parent_id), f"root {parent_id} cannot sign", c.owner)
    try:
        return _sign_with(c, parent, csr_path, out, path_length, permitted_dns or [], days)
    finally:
        parent.close()  # a token root's session, on every path


def _sign_with(
    c: Ceremony,
    parent: Root,
    csr_path: Path,
    out: Path,
    path_length: int | None,
    permitted_dns: list[str],
    days: int | None,
) -> dict:
    parent_id = parent.id
    profile = c.cfg.x509.profiles[SUBROOT_PROFILE]
    request = read_csr(csr_path)
    public_key = _check_key(request, parent, csr_path)
    length = _path_length(parent, profile, path_length)
    names = [dns_constraint(n) for n in permitted_dns]
    start = now()
    end, cut = _validity(parent, profile, days, start)
    algorithm = _algorithm(parent)
    try:
        usage = key_usage(profile, public_key)
    except Refusal as exc:
        raise CtlError(f"profile {SUBROOT_PROFILE}: {exc.text}") from None
    if not (usage.key_cert_sign and usage.crl_sign):
        raise CtlError(
            f"profile {SUBROOT_PROFILE}'s key_usage lacks key_cert_sign or crl_sign,"
            " which a subroot needs"
        )
    x509cfg = c.cfg.x509
    builder = (
        x509.CertificateBuilder()
        .subject_name(request.subject)
        .issuer_name(parent.certificate.subject)
        .public_key(public_key)
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=length), critical=True)
        .add_extension(usage, critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(_authority_key_id(parent), critical=False)
        .add_extension(
            x509.CRLDistributionPoints(
                [
                    x509.DistributionPoint(
                        [x509.UniformResourceIdentifier(parent.config.crl_url)], None, None, None
                    )
                ]
            ),
            critical=False,
        )
        .add_extension(
            x509.CertificatePolicies(
                [
                    x509.PolicyInformation(
                        x509.ObjectIdentifier(x509cfg.policy_oid), [x509cfg.cps_url]
                    )
                ]
            ),
            critical=False,
        )
    )
    if names:
        builder = builder.add_extension(
            x509.NameConstraints([x509.DNSName(n) for n in names], None), critical=True
        )
    digest = request_digest(request)
    with c.database() as db:
        for _ in range(SERIAL_ATTEMPTS):
            serial = new_serial()
            if db.reserve(parent_id, serial, digest, SUBROOT_PROFILE):
                break
        else:
            raise CtlError("no free serial number was found; try again")
        try:
            cert = builder.serial_number(serial).sign(parent.private_key, algorithm)
            verify_issued_by(cert, parent.certificate)
            with db.transaction():
                db.record_issued(digest, cert, None, int(start.timestamp()))
                transcript = c.record(
                    db,
                    "sign-subroot",
                    start,
                    root=parent_id,
                    serial=format(serial, "x"),
                    profile=SUBROOT_PROFILE,
                    subject=cert.subject.rfc4514_string(),
                    issuer=cert.issuer.rfc4514_string(),
                    csr_sha256=hashlib.sha256(der_of(request)).hexdigest(),
                    key_sha256=spki_sha256(public_key),
                    parent_key_sha256=spki_sha256(parent.certificate.public_key()),
                    certificate_sha256=der_sha256(cert),
                    not_before=iso(not_before(cert).timestamp()),
                    not_after=iso(not_after(cert).timestamp()),
                    path_length=length,
                    permitted_dns=", ".join(names) or None,
                    **({"cut": cut} if cut else {}),
                    certificate=str(out),
                )
        except InvalidSignature:
            db.release(parent_id, serial)
            raise CtlError(
                f"root {parent_id}'s key made a signature its certificate does not verify"
            ) from None
        except Refusal as exc:  # a token key that cannot sign now
            db.release(parent_id, serial)
            raise CtlError(exc.text) from None
        except BaseException:
            db.release(parent_id, serial)
            raise
    # After the commit: the certificate is in the database whatever happens to the file
    # (signerctl certs show prints it again).
    commit_file(out.parent, out.name, cert.public_bytes(serialization.Encoding.PEM), 0o644)
    return transcript
