"""C2SP signed notes with Ed25519 keys, and tlog checkpoints in them.

Pure code, no I/O, used on both sides: the signer signs a checkpoint of its
audit log with the log key (never a root key), and the web host, or anyone
with the public key, verifies it. Parsing trusts nothing: a note is at most
``MAX_NOTE`` bytes of UTF-8 without control characters, refused on its length
before any other work, every field is checked (base64 in its one canonical
form, so that a changed note never passes), and any fault raises
``NoteError`` with a sentence saying what is wrong.

Formats (c2sp.org/signed-note, c2sp.org/tlog-checkpoint)::

    note      = text "\\n" 1*("\\u2014 " name " " base64(key hash (4) || signature) "\\n")
    text      = origin "\\n" tree size (decimal) "\\n" base64(root hash) "\\n" *(extension "\\n")
    key hash  = SHA-256(name "\\n" 0x01 public key)[:4]    (0x01: Ed25519)
    verifier  = name "+" hex(key hash) "+" base64(0x01 public key)

The signature covers the text, its last newline included. A checkpoint's
key name is its origin, which names the appliance.
"""

from __future__ import annotations

import base64
import hashlib
import re
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

ALG_ED25519 = 1
MAX_NOTE = 4096
MAX_SIGNATURES = 16
MAX_SIZE = 2**63 - 1
_DASH = "\u2014 "
# signed-note's rule: non-empty, no Unicode space, no "+" (and no control character,
# which no part of a note may hold). Others' names follow it too, and a cosignature
# under a name we would not choose must not make us refuse the note.
_NAME = re.compile(r"[^\s+\x00-\x1f]+")
NAME_CHARS = "!-*,-~"  # a class of printable ASCII without space and "+": the names we choose
_DECIMAL = re.compile(r"0|[1-9][0-9]{0,18}")
_KEY_HASH = re.compile(r"[0-9a-f]{8}")
_CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f]")


class NoteError(ValueError):
    """A note, checkpoint or key that cannot be used; the message says why."""


def check_name(name: str) -> str:
    """``name`` if it may name a key (a log's origin is its key's name); NoteError if not."""
    if not _NAME.fullmatch(name):
        raise NoteError(f"the key name {name!r} is empty or has a space, '+' or control character")
    return name


def _b64(encoded: str, what: str) -> bytes:
    """Strict base64: one encoding per value, so that a changed note is never a valid one."""
    try:
        raw = base64.b64decode(encoded, validate=True)
    except ValueError:  # binascii.Error, or a str that is not ASCII
        raise NoteError(f"{what} is not base64") from None
    if base64.b64encode(raw).decode() != encoded:
        raise NoteError(f"{what} is not in canonical base64")
    return raw


def _raw(public: Ed25519PublicKey) -> bytes:
    return public.public_bytes(Encoding.Raw, PublicFormat.Raw)


def key_hash(name: str, public: Ed25519PublicKey) -> bytes:
    return hashlib.sha256(name.encode() + b"\n" + bytes([ALG_ED25519]) + _raw(public)).digest()[:4]


@dataclass(frozen=True)
class Verifier:
    name: str
    public: Ed25519PublicKey

    @property
    def key_hash(self) -> bytes:
        return key_hash(self.name, self.public)

    def text(self) -> str:
        """The verifier key as one line, as ``signerctl audit key`` prints it."""
        encoded = base64.b64encode(bytes([ALG_ED25519]) + _raw(self.public)).decode()
        return f"{self.name}+{self.key_hash.hex()}+{encoded}"

    @classmethod
    def parse(cls, text: str) -> Verifier:
        # The key's base64 may hold "+": the name cannot, so the first two split it.
        parts = text.strip().split("+", 2)
        if len(parts) != 3:
            raise NoteError("a verifier key is name+keyhash+key, in three parts")
        name, hex_hash, encoded = parts
        if not _KEY_HASH.fullmatch(hex_hash):
            raise NoteError("the verifier key's hash is not eight lower-case hex digits")
        raw = _b64(encoded, "the verifier key")
        if len(raw) != 33 or raw[0] != ALG_ED25519:
            raise NoteError("the verifier key is not an Ed25519 key")
        verifier = cls(check_name(name), Ed25519PublicKey.from_public_bytes(raw[1:]))
        if verifier.key_hash != bytes.fromhex(hex_hash):
            raise NoteError("the verifier key's hash does not match its name and key")
        return verifier


def sign(text: str, name: str, key: Ed25519PrivateKey) -> str:
    """The signed note of ``text`` (which must end in a newline) by ``key`` under ``name``."""
    if not text.endswith("\n") or "\n\n" in text:
        raise NoteError("a note's text ends in one newline and has no empty line")
    signature = key_hash(check_name(name), key.public_key()) + key.sign(text.encode())
    return f"{text}\n{_DASH}{name} {base64.b64encode(signature).decode()}\n"


def open_note(note: str | bytes, verifier: Verifier) -> str:
    """The text of ``note`` if ``verifier`` signed it; NoteError otherwise."""
    # A character is at least a byte: the length is refused before any work on the rest.
    if len(note) > MAX_NOTE:
        raise NoteError(f"the note is longer than {MAX_NOTE} bytes")
    try:
        raw = note if isinstance(note, bytes) else note.encode()
        note = raw.decode()
    except UnicodeError:
        raise NoteError("the note is not UTF-8") from None
    if len(raw) > MAX_NOTE:
        raise NoteError(f"the note is longer than {MAX_NOTE} bytes")
    if _CONTROL.search(note):
        raise NoteError("the note holds a control character other than newline")
    text, sep, block = note.rpartition("\n\n")
    if not sep or not block.endswith("\n"):
        raise NoteError("the note has no signature block")
    text += "\n"
    lines = block[:-1].split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise NoteError(f"the note has more than {MAX_SIGNATURES} signatures")
    # Every line is read before any is believed: a good signature does not excuse a bad line.
    for name, signature in [_signature_line(line) for line in lines]:
        if name != verifier.name or signature[:4] != verifier.key_hash:
            continue  # another key's signature: not ours to check
        try:
            verifier.public.verify(signature[4:], text.encode())
        except InvalidSignature:
            raise NoteError(f"the signature by {name} does not verify") from None
        return text
    raise NoteError(f"the note has no signature by {verifier.name}")


def _signature_line(line: str) -> tuple[str, bytes]:
    if not line.startswith(_DASH):
        raise NoteError("a signature line does not start with an em dash")
    name, _, encoded = line[len(_DASH) :].partition(" ")
    signature = _b64(encoded, "a signature")
    if len(signature) < 5:
        raise NoteError("a signature is too short")
    return check_name(name), signature


@dataclass(frozen=True)
class Checkpoint:
    origin: str
    size: int
    root: bytes
    # Extension lines, signed with the rest; left out of equality, as a reader that
    # knows none of them sees the same checkpoint.
    extensions: tuple[str, ...] = field(default=(), compare=False)

    def text(self) -> str:
        lines = (
            self.origin,
            str(self.size),
            base64.b64encode(self.root).decode(),
            *self.extensions,
        )
        return "".join(line + "\n" for line in lines)

    def sign(self, key: Ed25519PrivateKey) -> str:
        return sign(self.text(), self.origin, key)

    @classmethod
    def parse(cls, text: str) -> Checkpoint:
        """The checkpoint in a note's (verified) text; extension lines are allowed and left."""
        lines = text.split("\n")
        if len(lines) < 4 or lines[-1] != "":
            raise NoteError("a checkpoint has an origin, a size and a root hash, one per line")
        origin, size, root = lines[:3]
        if not origin or not _DECIMAL.fullmatch(size) or int(size) > MAX_SIZE:
            raise NoteError("the checkpoint's origin or tree size is not well formed")
        if "" in lines[3:-1]:
            raise NoteError("the checkpoint has an empty extension line")
        raw = _b64(root, "the checkpoint's root hash")
        if len(raw) != 32:
            raise NoteError("the checkpoint's root hash is not 32 bytes")
        return cls(origin, int(size), raw, tuple(lines[3:-1]))


def open_checkpoint(note: str | bytes, verifier: Verifier) -> Checkpoint:
    """The checkpoint in ``note``, signed by ``verifier`` and of its origin; NoteError otherwise."""
    checkpoint = Checkpoint.parse(open_note(note, verifier))
    if checkpoint.origin != verifier.name:
        raise NoteError(f"the checkpoint is of log {checkpoint.origin!r}, not {verifier.name!r}")
    return checkpoint
