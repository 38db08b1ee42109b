"""The one way the signer says no.

Trusted side. Every handler and every parser of untrusted input raises
``Refusal(code, text)``; the dispatcher turns it into a v1 response with an
empty payload 1 and ``ERR <code>: <text>`` in payload 2, logs it and audits it.
The text must never contain key material or a whole request: it is sent back
over the link and written to logs.
"""

from __future__ import annotations

import re

from spool.record import error_payload

_CODE = re.compile(r"^[a-z0-9][a-z0-9-]{0,39}$")
MAX_TEXT = 200


class Refusal(Exception):
    """A request the signer will not carry out, with a short machine code."""

    def __init__(self, code: str, text: str) -> None:
        if not _CODE.match(code):
            raise ValueError(f"bad refusal code {code!r}")
        text = "".join(c if c.isprintable() else "?" for c in text)[:MAX_TEXT]
        super().__init__(f"{code}: {text}")
        self.code = code
        self.text = text

    def payload2(self) -> bytes:
        return error_payload(self.code, self.text)
