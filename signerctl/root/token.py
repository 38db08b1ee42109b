"""A root's key in a PKCS#11 token, as the ceremonies use it (the second ``RootKeyBackend``).

Trusted side tooling, run by the operator with the signer stopped or the root
not yet in service. The key is generated in the token and never leaves it
(``signer_core.tokens.generate``); signing goes through the same session
and key classes as the signer's (``signer_core.tokens``). The transcript
shows the token's URI and the key's attributes as the token reports them
(sensitive, never extractable), never key material. Every session is closed
before the command ends, so the module is finalised with its last user.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from signer_core.config import TokenKeyConfig
from signer_core.roots import RootKey
from signer_core.tokens import generate as token_ops
from signer_core.tokens.keys import open_token_key
from signer_core.tokens.pkcs11 import TokenError, TokenSession
from signerctl.cli import CtlError

if TYPE_CHECKING:
    from signer_core.x509.compat import PublicKeyTypes

T = TypeVar("T")


class TokenKey:
    """Root ``root``'s key, named by its URI in the token its configuration gives."""

    def __init__(self, root: int, cfg: TokenKeyConfig, owner: tuple[int, int] | None) -> None:
        self.root = root
        self.cfg = cfg
        self.pin_owner = None if owner is None else owner[0]  # run as root: the signer user
        self._signing: TokenSession | None = None  # open while a signing key is in use

    @property
    def where(self) -> str:
        return str(self.cfg.uri)

    def _with_session(self, work: Callable[[TokenSession], T]) -> T:
        session = self._session()
        try:
            return work(session)
        except TokenError as exc:
            raise CtlError(f"root {self.root}'s token key {self.where}: {exc}") from None
        finally:
            session.close()

    def _session(self) -> TokenSession:
        c = self.cfg
        return TokenSession(f"root {self.root}", c.uri, c.module, c.pin_file, self.pin_owner)

    def exists(self) -> bool:
        return self._with_session(token_ops.has_key)

    def describe(self) -> dict[str, object]:
        attributes = self._with_session(token_ops.key_attributes)
        return {
            "key": self.where,
            "module": str(self.cfg.module),
            "sensitive": attributes["CKA_SENSITIVE"] and attributes["CKA_ALWAYS_SENSITIVE"],
            "extractable": attributes["CKA_EXTRACTABLE"] or not attributes["CKA_NEVER_EXTRACTABLE"],
        }

    def generate(self, key_type: str) -> None:
        self._with_session(lambda session: token_ops.generate(session, key_type))

    def public_key(self) -> PublicKeyTypes:
        return self._with_session(lambda session: open_token_key(session).public_key())

    def signing_key(self) -> RootKey:
        """The token key; its session stays open until ``close`` (the command's end)."""
        self.close()
        session = self._session()
        try:
            key = open_token_key(session)
        except TokenError as exc:
            session.close()
            raise CtlError(f"root {self.root}'s token key {self.where}: {exc}") from None
        self._signing = session
        return key

    def close(self) -> None:
        if self._signing is not None:
            self._signing.close()
            self._signing = None
