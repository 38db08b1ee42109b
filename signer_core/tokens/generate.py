"""Making a key in its token: a root's for the key ceremonies (``signerctl root generate``),
the audit log's Ed25519 key (``signerctl audit key --generate``).

Trusted side, run by the operator with the signer stopped or the key not yet
in service; it trusts the configuration and the token as ``pkcs11`` does. The
key pair is generated inside the token: private half sensitive, never
extractable, kept on the token, usable for signing only; nothing of it ever
reaches this process but its public half. It is named by its URI
(``object=`` as its label, ``id=`` as its id when given), and never made where
a key answering that URI exists already. These operations open sessions of
their own, through the same module, slot choice and PIN rules as the
signer's session (``TokenSession``), and close them when done.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from signer_core.tokens.pkcs11 import TokenError, TokenSession, _close, _pykcs11, _reason
from signer_core.tokens.publickey import ED25519_PARAMS

# CKA_EC_PARAMS of P-256 (the namedCurve OID, DER); RSA keys get the exponent 65537.
_P256 = bytes.fromhex("06082a8648ce3d030107")
KINDS = ("rsa4096", "p256", "ed25519")  # ed25519: the audit log key's only
ATTRIBUTES = ("CKA_SENSITIVE", "CKA_EXTRACTABLE", "CKA_ALWAYS_SENSITIVE", "CKA_NEVER_EXTRACTABLE")


@contextmanager
def _logged_in(token: TokenSession, *, rw: bool) -> Iterator[tuple[Any, Any]]:
    """(PyKCS11, a logged-in session of its own on ``token``'s token), closed afterwards."""
    pykcs11 = _pykcs11()
    lib = token._module.load()
    flags = pykcs11.CKF_SERIAL_SESSION | (pykcs11.CKF_RW_SESSION if rw else 0)
    try:
        slot = token._slot(lib)
        session = lib.openSession(slot, flags)
    except pykcs11.PyKCS11Error as exc:
        raise TokenError(_reason(exc, "the token does not answer")) from None
    try:
        token._login(session, int(slot), pykcs11)
        yield pykcs11, session
    except pykcs11.PyKCS11Error as exc:
        raise TokenError(_reason(exc, "the token refused the operation")) from None
    finally:
        _close(session)


def has_key(token: TokenSession) -> bool:
    """Whether a private key answering the URI is in the token."""
    with _logged_in(token, rw=False) as (p, session):
        return bool(session.findObjects(token._template(p, p.CKO_PRIVATE_KEY)))


def key_attributes(token: TokenSession) -> dict[str, bool]:
    """The private key's sensitivity and extractability, as the token reports them."""
    with _logged_in(token, rw=False) as (p, session):
        found = session.findObjects(token._template(p, p.CKO_PRIVATE_KEY))
        if len(found) != 1:
            raise TokenError("the token holds no single private key matching the URI")
        values = session.getAttributeValue(found[0], [getattr(p, name) for name in ATTRIBUTES])
    return {name: bool(value) for name, value in zip(ATTRIBUTES, values, strict=True)}


def generate(token: TokenSession, kind: str) -> None:
    """Generate a ``kind`` key pair in the token under its URI; TokenError if not."""
    if kind not in KINDS:
        raise TokenError(f"{kind!r} is not a key type: the types are {', '.join(KINDS)}")
    uri = token.uri
    if uri.object is None:
        raise TokenError("the URI names no object= to label the new key with")
    with _logged_in(token, rw=True) as (p, session):
        if session.findObjects(token._template(p, p.CKO_PRIVATE_KEY)):
            raise TokenError("the token already holds a key under the URI")
        named = [(p.CKA_TOKEN, True), (p.CKA_LABEL, uri.object)]
        if uri.id is not None:
            named.append((p.CKA_ID, tuple(uri.id)))
        private = [
            (p.CKA_CLASS, p.CKO_PRIVATE_KEY),
            (p.CKA_PRIVATE, True),
            (p.CKA_SENSITIVE, True),
            (p.CKA_EXTRACTABLE, False),
            (p.CKA_SIGN, True),
            (p.CKA_DECRYPT, False),
            *named,
        ]
        public = [(p.CKA_CLASS, p.CKO_PUBLIC_KEY), (p.CKA_VERIFY, True), *named]
        if kind == "rsa4096":
            public += [(p.CKA_MODULUS_BITS, 4096), (p.CKA_PUBLIC_EXPONENT, (1, 0, 1))]
            mechanism = p.CKM_RSA_PKCS_KEY_PAIR_GEN
        elif kind == "p256":
            public.append((p.CKA_EC_PARAMS, tuple(_P256)))
            mechanism = p.CKM_EC_KEY_PAIR_GEN
        else:
            public.append((p.CKA_EC_PARAMS, tuple(ED25519_PARAMS)))
            mechanism = p.CKM_EC_EDWARDS_KEY_PAIR_GEN
        session.generateKeyPair(public, private, mecha=p.Mechanism(mechanism, None))
