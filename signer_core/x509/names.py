"""The subjectAltName a profile gives a certificate: where its names come from,
which kinds it takes, and that a server's commonName is one of them.

Trusted side. ``payload2`` is the request's hostile name list; san.py parses
it within its bounds, and this module applies the profile's rules to what
was parsed, so that the parser stays free of policy.
"""

from __future__ import annotations

from cryptography import x509
from cryptography.x509.oid import NameOID

from signer_core.refusal import Refusal
from signer_core.x509.profiles import XMPP_ADDR, Profile, SanSource
from signer_core.x509.san import MAX_SAN_ENTRIES, parse_san, xmpp_address


def certificate_names(
    profile: Profile, subject: x509.Name, payload2: bytes
) -> tuple[x509.GeneralName, ...]:
    """Payload 2's names plus the subject's e-mail addresses, which RFC 5280
    4.1.2.6 requires in the SAN too: first for EMAIL_AND_PAYLOAD profiles,
    after the payload's names otherwise; a profile without SAN refuses both.
    Then the profile's name rules: which kinds of name it takes, and for a
    server profile that the commonName is among the names."""
    requested = parse_san(payload2)
    emails: list[x509.GeneralName] = [
        x509.RFC822Name(str(a.value)) for a in subject.get_attributes_for_oid(NameOID.EMAIL_ADDRESS)
    ]
    if profile.san_source is SanSource.NONE:
        if requested or emails:
            raise Refusal("bad-san", f"profile {profile.id} takes no subjectAltName or e-mail")
        return ()
    ordered = (
        emails + requested
        if profile.san_source is SanSource.EMAIL_AND_PAYLOAD
        else requested + emails
    )
    names: list[x509.GeneralName] = []
    for name in ordered:
        if name not in names:
            names.append(name)
    if len(names) > MAX_SAN_ENTRIES:
        raise Refusal("bad-san", f"more than {MAX_SAN_ENTRIES} subjectAltName entries")
    if profile.require_san and not names:
        raise Refusal("bad-san", f"profile {profile.id} needs a subjectAltName")
    if profile.require_xmpp and not any(_is_xmpp(n) for n in names):
        raise Refusal("bad-san", f"profile {profile.id} needs an XMPP address")
    for name in names:
        _check_name_kind(profile, name)
    if profile.server_names:
        _check_cn_among(subject, names)
    return tuple(names)


def _is_xmpp(name: x509.GeneralName) -> bool:
    return isinstance(name, x509.OtherName) and name.type_id.dotted_string == XMPP_ADDR


def _check_name_kind(profile: Profile, name: x509.GeneralName) -> None:
    """A wildcard only where the profile names servers: any other certificate
    stands for one holder, never for a pattern of hosts. No IP address where
    it names a person (an e-mail profile): an address is no person's name."""
    if isinstance(name, x509.DNSName) and name.value.startswith("*.") and not profile.server_names:
        raise Refusal(
            "wildcard-not-allowed",
            f"profile {profile.id} takes no wildcard name (DNS:{name.value[:60]})",
        )
    if isinstance(name, x509.IPAddress) and profile.email_names:
        raise Refusal(
            "ip-not-allowed", f"profile {profile.id} takes no IP address (IP:{name.value})"
        )


def _check_cn_among(subject: x509.Name, names: list[x509.GeneralName]) -> None:
    """Each commonName of a server certificate is one of its names: a dNSName
    (case-insensitively), the text of an IP address or an XMPP address. The
    web host sends both from the names it validated, so a mismatch means an
    inconsistent request, and clients that still read the CN would trust a
    name the SAN does not vouch for."""
    dns = {n.value.lower() for n in names if isinstance(n, x509.DNSName)}
    exact = {str(n.value) for n in names if isinstance(n, x509.IPAddress)}
    exact |= {xmpp_address(n) for n in names if isinstance(n, x509.OtherName) and _is_xmpp(n)}
    for attribute in subject.get_attributes_for_oid(NameOID.COMMON_NAME):
        cn = str(attribute.value)
        if cn.lower() not in dns and cn not in exact:
            raise Refusal(
                "cn-not-in-san", f"commonName {cn[:60]!r} is not among the subjectAltName entries"
            )
