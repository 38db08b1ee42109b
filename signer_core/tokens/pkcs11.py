"""PKCS#11 sessions for keys in tokens: each module loaded once, one session per key, logged in once.

Trusted side: the module is the operator's shared library, loaded into the
signer (``module`` in the root's settings, or the audit log key's); the token
and its key are named by a URI (``signer_core.tokens.uri``) and its PIN is
read from a file only the signer user may read. The key never leaves the
token: this module only asks it to sign, and reads the public half back
(``signer_core.tokens.publickey``): RSA, EC, or Ed25519 (the log key's).

Faults: whatever PyKCS11 raises is logged with its own text and becomes a
``TokenError`` (at start: the root is not installed, or the audit exchange
refused, with that sentence) or a ``Refusal`` (while serving:
``root-unavailable`` for a root, ``audit-unavailable`` for the log key). A session that fails
is re-opened, the module re-initialised and the PIN given again, on the next
request that needs it, at most once per signature, so that a token pulled
out and put back serves again without a restart. A PIN the token refuses is
never given again before a restart: each try would bring the token nearer
to locking itself.
"""

from __future__ import annotations

import hashlib
import logging
import os
import stat
from pathlib import Path
from typing import Any

from signer_core.refusal import Refusal
from signer_core.tokens import publickey
from signer_core.tokens.publickey import TokenPublicKey, UnsupportedCurve, spki
from signer_core.tokens.uri import TokenURI

log = logging.getLogger("signer-core")

MAX_PIN = 256
# Return values (CKR_*) that have a sentence of their own.
_REASONS = {
    "CKR_PIN_INCORRECT": "the token refused the PIN",
    "CKR_PIN_LEN_RANGE": "the token refused the PIN",
    "CKR_PIN_LOCKED": "the token is locked (too many wrong PINs)",
    "CKR_PIN_EXPIRED": "the token's PIN has expired",
    "CKR_TOKEN_NOT_PRESENT": "the token is not present",
    "CKR_TOKEN_NOT_RECOGNIZED": "the token is not recognised",
    "CKR_DEVICE_REMOVED": "the token was removed",
    "CKR_DEVICE_ERROR": "the token reports a device error",
    "CKR_SESSION_HANDLE_INVALID": "the session with the token was closed",
    "CKR_SESSION_CLOSED": "the session with the token was closed",
    "CKR_USER_NOT_LOGGED_IN": "the token no longer has us logged in",
    "CKR_OBJECT_HANDLE_INVALID": "the key is no longer in the token",
    "CKR_KEY_HANDLE_INVALID": "the key is no longer in the token",
    "CKR_MECHANISM_INVALID": "the token cannot sign with this digest",
}
_PIN_REFUSED = ("CKR_PIN_INCORRECT", "CKR_PIN_LEN_RANGE", "CKR_PIN_LOCKED", "CKR_PIN_EXPIRED")


class TokenError(Exception):
    """A token key cannot be used; the message is one sentence for a person."""


def _pykcs11() -> Any:
    try:
        import PyKCS11
    except ImportError:
        raise TokenError("PyKCS11 is not installed (Debian: python3-pykcs11)") from None
    return PyKCS11


def _ckr(exc: Exception) -> str:
    """The CKR_* name of a PyKCS11Error ("" when it has none)."""
    value = getattr(exc, "value", None)
    name = _pykcs11().CKR.get(value, "") if isinstance(value, int) else ""
    return name if isinstance(name, str) else ""


def _reason(exc: Exception, default: str) -> str:
    return _REASONS.get(_ckr(exc), default)


class _Module:
    """One PKCS#11 library, loaded once for every key that uses it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lib: Any = None
        self.generation = 0  # a re-initialisation ends every session opened before it
        self.users = 0
        # slot -> SHA-256 of the PIN it was logged in with: PKCS#11 logs an
        # application in per token, so a second key's PIN is compared with it.
        self.logins: dict[int, bytes] = {}

    def load(self) -> Any:
        if self.lib is not None:
            return self.lib
        pykcs11 = _pykcs11()
        if not self.path.is_file():
            raise TokenError(f"the PKCS#11 module {self.path} does not exist")
        lib = pykcs11.PyKCS11Lib()
        try:
            lib.load(str(self.path))
        except pykcs11.PyKCS11Error as exc:
            log.warning("PKCS#11 module %s: %s", self.path, exc)
            raise TokenError(
                f"the PKCS#11 module {self.path} did not start (is its token there?)"
            ) from None
        self.lib = lib
        return lib

    def unload(self) -> None:
        """C_Finalize and unload: the next ``load`` sees the tokens as they are now."""
        lib, self.lib = self.lib, None
        self.generation += 1
        self.logins.clear()
        if lib is None:
            return
        try:
            if hasattr(lib, "unload"):  # PyKCS11 1.5.13 on; before, the object's lifetime
                lib.unload()
            else:
                lib.lib.Unload()
        except Exception as exc:  # noqa: BLE001  # the module is going away in any case
            log.warning("PKCS#11 module %s did not unload cleanly: %s", self.path, exc)


_MODULES: dict[Path, _Module] = {}
# (token label, SHA-256 of a PIN) -> the token's refusal: never given again in this process,
# whatever session asks (a start tried again after a storage fault makes new ones).
_REFUSED_PINS: dict[tuple[str, bytes], str] = {}


def _module(path: Path) -> _Module:
    module = _MODULES.get(path)
    if module is None:
        module = _MODULES[path] = _Module(path)
    return module


def read_pin(path: Path, owner: int | None = None) -> str:
    """The PIN in ``path``: a file of the signer user's (``owner``, by default this
    process's user) that no one else may read."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except FileNotFoundError:
        raise TokenError(f"the PIN file {path} does not exist") from None
    except OSError as exc:
        raise TokenError(f"cannot read the PIN file {path}: {exc.strerror}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise TokenError(f"the PIN file {path} is not a regular file")
        if st.st_uid != (os.geteuid() if owner is None else owner):
            raise TokenError(f"the PIN file {path} does not belong to the signer user")
        if st.st_mode & 0o077:
            raise TokenError(
                f"the PIN file {path} is readable by others than the signer user "
                f"(mode {stat.S_IMODE(st.st_mode):04o}, must be 0600 or 0400)"
            )
        data = os.read(fd, MAX_PIN + 2)
    finally:
        os.close(fd)
    pin = data.rstrip(b"\r\n")
    if not pin or len(pin) > MAX_PIN:
        raise TokenError(f"the PIN file {path} holds no PIN of 1 to {MAX_PIN} bytes")
    try:
        return pin.decode("utf-8")
    except UnicodeDecodeError:
        raise TokenError(f"the PIN file {path} is not UTF-8") from None


class TokenSession:
    """The session of one key with its token: opened at start, re-opened after a fault."""

    def __init__(
        self,
        name: str,
        uri: TokenURI,
        module: Path,
        pin_file: Path,
        pin_owner: int | None = None,
        refusal: str = "root-unavailable",
    ) -> None:
        self.name = name  # "root 2", "the audit log": for messages
        self.uri, self.pin_file, self.pin_owner = uri, pin_file, pin_owner  # owner: for root
        self.refusal = refusal  # the code of a signature the token cannot give now
        self._module = _module(module)
        self._module.users += 1
        self._session: Any = None
        self._key: Any = None
        self._generation = -1
        self._pin_refused = ""
        self.public_key: TokenPublicKey | None = None

    @property
    def signing(self) -> bool:
        """Whether the session is open now (a fault closes it until the next request)."""
        return self._session is not None

    # -- opening -----------------------------------------------------------

    def open(self) -> TokenPublicKey:
        """Log in and find the key; its public half. TokenError with the reason if not."""
        pykcs11 = _pykcs11()
        lib = self._module.load()
        try:
            slot = self._slot(lib)
            session = lib.openSession(slot, pykcs11.CKF_SERIAL_SESSION)
        except pykcs11.PyKCS11Error as exc:
            log.warning("%s: opening a session with its token: %s", self.name, exc)
            raise TokenError(_reason(exc, "the token does not answer")) from None
        try:
            self._login(session, int(slot), pykcs11)
            key, public = self._find_key(session, pykcs11)
        except BaseException:
            _close(session)
            raise
        if self.public_key is not None and spki(public) != spki(self.public_key):
            _close(session)
            raise TokenError("the token now holds another key under this URI")
        self._session, self._key, self.public_key = session, key, public
        self._generation = self._module.generation
        return public

    def _slot(self, lib: Any) -> Any:
        wanted = self.uri.token_fields()
        for slot in lib.getSlotList(tokenPresent=True):
            info = lib.getTokenInfo(slot)
            shown = {f: str(getattr(info, f, "")).rstrip(" \0") for f in wanted}
            if shown == wanted:
                flags = int(getattr(info, "flags", 0))
                if flags & _pykcs11().CKF_USER_PIN_LOCKED:
                    raise TokenError("the token is locked (too many wrong PINs)")
                return slot
        raise TokenError(f"no token labelled {self.uri.token!r} is present")

    def _login(self, session: Any, slot: int, pykcs11: Any) -> None:
        pin = read_pin(self.pin_file, self.pin_owner)
        digest = hashlib.sha256(pin.encode("utf-8")).digest()
        self._pin_refused = self._pin_refused or _REFUSED_PINS.get((self.uri.token, digest), "")
        if self._pin_refused:
            raise TokenError(self._pin_refused)
        try:
            session.login(pin)
        except pykcs11.PyKCS11Error as exc:
            ckr = _ckr(exc)
            if ckr == "CKR_USER_ALREADY_LOGGED_IN":  # another key's session on this token
                if self._module.logins.get(slot) != digest:
                    raise TokenError(
                        "the PIN differs from the one another key logged in to this token with"
                    ) from None
                return
            log.warning("%s: logging in to its token: %s", self.name, exc)
            reason = _reason(exc, "the token refused the login")
            if ckr in _PIN_REFUSED:
                self._pin_refused = _REFUSED_PINS[(self.uri.token, digest)] = reason
            raise TokenError(reason) from None
        self._module.logins[slot] = digest

    def _find_key(self, session: Any, pykcs11: Any) -> tuple[Any, TokenPublicKey]:
        template = self._template(pykcs11, pykcs11.CKO_PRIVATE_KEY)
        try:
            found = session.findObjects(template)
            if len(found) != 1:
                raise TokenError(
                    f"the token holds {'no' if not found else 'more than one'} private key "
                    "matching the URI"
                )
            key = found[0]
            (kind,) = session.getAttributeValue(key, [pykcs11.CKA_KEY_TYPE])
            public: TokenPublicKey
            if kind == pykcs11.CKK_RSA:
                public = publickey.rsa_public(
                    *session.getAttributeValue(
                        key, [pykcs11.CKA_MODULUS, pykcs11.CKA_PUBLIC_EXPONENT]
                    )
                )
            elif kind in (pykcs11.CKK_EC, pykcs11.CKK_EC_EDWARDS):
                params, point = self._ec_attributes(session, pykcs11)
                curve_public = (
                    publickey.ec_public if kind == pykcs11.CKK_EC else publickey.ed25519_public
                )
                public = curve_public(params, point)
            else:
                raise TokenError("the token's key is not an RSA, EC or Ed25519 key")
        except pykcs11.PyKCS11Error as exc:
            log.warning("%s: reading its key from the token: %s", self.name, exc)
            raise TokenError(_reason(exc, "the token did not show the key")) from None
        except UnsupportedCurve as exc:
            raise TokenError(str(exc)) from None
        except ValueError as exc:
            log.warning("%s: the token's public key does not parse: %s", self.name, exc)
            raise TokenError("the token's public key does not parse") from None
        return key, public

    def _ec_attributes(self, session: Any, pykcs11: Any) -> tuple[Any, Any]:
        """CKA_EC_PARAMS and CKA_EC_POINT of the public key beside the private one."""
        found = session.findObjects(self._template(pykcs11, pykcs11.CKO_PUBLIC_KEY))
        if len(found) != 1:
            raise TokenError("the token holds no public key beside its private key")
        params, point = session.getAttributeValue(
            found[0], [pykcs11.CKA_EC_PARAMS, pykcs11.CKA_EC_POINT]
        )
        return params, point

    def _template(self, pykcs11: Any, cls: int) -> list[tuple[int, Any]]:
        template: list[tuple[int, Any]] = [(pykcs11.CKA_CLASS, cls)]
        if self.uri.object is not None:
            template.append((pykcs11.CKA_LABEL, self.uri.object))
        if self.uri.id is not None:
            template.append((pykcs11.CKA_ID, tuple(self.uri.id)))
        return template

    # -- signing -----------------------------------------------------------

    def sign(self, mechanism: str, data: bytes) -> bytes:
        """The token's signature of ``data`` with ``mechanism`` (a CKM_* name).

        Refusal ``self.refusal`` when the token cannot sign; the session is
        then re-opened on the next call, at most once per call.
        """
        pykcs11 = _pykcs11()
        reopened = False
        if self._session is None or self._generation != self._module.generation:
            self._reopen()
            reopened = True
        try:
            return self._sign(pykcs11, mechanism, data)
        except pykcs11.PyKCS11Error as exc:
            log.warning("%s: the token did not sign: %s", self.name, exc)
            if reopened or _ckr(exc) == "CKR_MECHANISM_INVALID":
                raise self._unavailable(_reason(exc, "the token did not sign")) from None
        self._reopen()
        try:
            return self._sign(pykcs11, mechanism, data)
        except pykcs11.PyKCS11Error as exc:
            log.warning("%s: the token did not sign after re-opening: %s", self.name, exc)
            self._drop()
            raise self._unavailable(_reason(exc, "the token did not sign")) from None

    def _sign(self, pykcs11: Any, mechanism: str, data: bytes) -> bytes:
        mech = pykcs11.Mechanism(getattr(pykcs11, mechanism), None)
        return bytes(self._session.sign(self._key, data, mech))

    def _reopen(self) -> None:
        self._drop()
        if self._pin_refused:
            raise self._unavailable(self._pin_refused + "; not tried again before a restart")
        if self._generation == self._module.generation:
            self._module.unload()  # C_Initialize again: a token put back is seen only then
        try:
            self.open()
        except TokenError as exc:
            self._drop()
            raise self._unavailable(str(exc)) from None
        log.info("%s: session with its token re-opened", self.name)

    def _unavailable(self, reason: str) -> Refusal:
        return Refusal(self.refusal, f"{self.name}'s token key cannot sign now: {reason}")

    def _drop(self) -> None:
        session, self._session, self._key = self._session, None, None
        # A session of a module since finalised is gone with it: closing it would
        # call into a library no longer there.
        if session is not None and self._generation == self._module.generation:
            _close(session)

    def close(self) -> None:
        """End the session; the module is unloaded with its last user."""
        self._drop()
        self._module.users -= 1
        if self._module.users <= 0:
            self._module.unload()
            _MODULES.pop(self._module.path, None)


def _close(session: Any) -> None:
    try:
        session.closeSession()
    except Exception as exc:  # noqa: BLE001  # a session of a token gone: nothing to close
        log.debug("closing a token session: %s", exc)
