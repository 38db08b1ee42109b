"""RFC 7512 ``pkcs11:`` URIs naming a root's or the log key in a token, parsed with size limits.

Trusted side: the URI is the operator's, from the configuration file; it is
still bounded and checked, so that a typo stops the signer at start with a
sentence naming what is wrong. Only the path attributes that choose a token
and a key are taken; the module and the PIN come from the root's own
settings (``module``, ``pin_file``), so a URI's query part (``pin-value``,
``module-path``) is refused rather than silently ignored.
"""

from __future__ import annotations

import dataclasses
import re
import string
from urllib.parse import unquote_to_bytes

MAX_URI = 1024
# CK_TOKEN_INFO's fixed fields (PKCS#11 2.40, 3.2): label and manufacturer 32
# bytes, model and serial number 16. CKA_LABEL and CKA_ID have no fixed size:
# bounded here well above what any token writes.
_LIMITS = {"token": 32, "manufacturer": 32, "model": 16, "serial": 16, "object": 255, "id": 128}
_TYPES = ("private",)
# RFC 7512 section 2.3: pk11-pchar is unreserved, pk11-res-avail and pct-encoded.
_PCHAR = frozenset(string.ascii_letters + string.digits + "-._~" + ":[]@!$'()*+,=&%")
_BROKEN_ESCAPE = re.compile("%(?![0-9A-Fa-f]{2})")


class TokenURIError(ValueError):
    """The URI is not one this signer takes; the message says why, in one sentence."""


@dataclasses.dataclass(frozen=True)
class TokenURI:
    """Which token (by its CK_TOKEN_INFO fields) and which private key in it."""

    token: str
    object: str | None = None
    id: bytes | None = None
    manufacturer: str | None = None
    model: str | None = None
    serial: str | None = None

    def token_fields(self) -> dict[str, str]:
        """The CK_TOKEN_INFO fields the token must show (label, manufacturerID, model, serial)."""
        fields = {
            "label": self.token,
            "manufacturerID": self.manufacturer,
            "model": self.model,
            "serialNumber": self.serial,
        }
        return {k: v for k, v in fields.items() if v is not None}

    def __str__(self) -> str:
        parts = [f"token={self.token}"]
        if self.object is not None:
            parts.append(f"object={self.object}")
        if self.id is not None:
            parts.append("id=" + "".join(f"%{b:02x}" for b in self.id))
        return "pkcs11:" + ";".join(parts)


def is_token_uri(value: str) -> bool:
    return value[:7].lower() == "pkcs11:"


def parse_uri(value: str) -> TokenURI:
    """A ``pkcs11:`` URI into a ``TokenURI``; TokenURIError when it is not one we take."""
    if len(value) > MAX_URI:
        raise TokenURIError(f"the pkcs11 URI is longer than {MAX_URI} characters")
    if not is_token_uri(value):
        raise TokenURIError("the key is not a pkcs11: URI")
    path, query = value[7:], None
    if "?" in path:
        path, query = path.split("?", 1)
    if query is not None:
        raise TokenURIError(
            "the pkcs11 URI has a query part: give the module and the PIN as module and pin_file"
        )
    seen: dict[str, bytes] = {}
    for attribute in path.split(";") if path else ():
        name, sep, raw = attribute.partition("=")
        if not sep:
            raise TokenURIError(f"the pkcs11 URI's attribute {name[:40]!r} has no value")
        if name not in _LIMITS and name != "type":
            raise TokenURIError(f"the pkcs11 URI's attribute {name[:40]!r} is not one we take")
        if name in seen:
            raise TokenURIError(f"the pkcs11 URI names {name} twice")
        seen[name] = _decode(name, raw)
    if "token" not in seen:
        raise TokenURIError("the pkcs11 URI names no token (token=...)")
    if "object" not in seen and "id" not in seen:
        raise TokenURIError("the pkcs11 URI names no key (object=... or id=...)")
    kind = seen.pop("type", b"private").decode("ascii", "replace")
    if kind not in _TYPES:
        raise TokenURIError("the pkcs11 URI must name a private key (type=private)")
    text = {}
    for name, data in seen.items():
        if name == "id":
            continue
        try:
            text[name] = data.decode("utf-8")
        except UnicodeDecodeError:
            raise TokenURIError(f"the pkcs11 URI's {name} is not UTF-8") from None
    return TokenURI(
        token=text["token"],
        object=text.get("object"),
        id=seen.get("id"),
        manufacturer=text.get("manufacturer"),
        model=text.get("model"),
        serial=text.get("serial"),
    )


def _decode(name: str, raw: str) -> bytes:
    if not set(raw) <= _PCHAR:
        raise TokenURIError(f"the pkcs11 URI's {name} holds a character that must be %-encoded")
    if _BROKEN_ESCAPE.search(raw):
        raise TokenURIError(f"the pkcs11 URI's {name} has a broken %-escape")
    data = unquote_to_bytes(raw)
    limit = _LIMITS.get(name, 16)
    if not data:
        raise TokenURIError(f"the pkcs11 URI's {name} is empty")
    if len(data) > limit:
        raise TokenURIError(f"the pkcs11 URI's {name} is longer than {limit} bytes")
    return data
