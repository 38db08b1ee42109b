"""tlog.note against the Go reference (golang.org/x/mod/sumdb/note) and hostile notes.

The known answers are the Go package's own: the key "PeterNeumann", its text
and signed note, and the second signer "EnochRoot", from golang/mod's
sumdb/note/note_test.go; a real checkpoint of the Go checksum database and
the key pairs of transparency-dev/formats' log/note_test.go; the checkpoint
texts of its log/checkpoint_test.go and of c2sp.org/tlog-checkpoint (whose
example names no key, so only its text is checked). Ed25519 is
deterministic: signing the Go text with the Go key must give the Go bytes.
"""

from __future__ import annotations

import base64
import time

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.support.examples import examples
from tlog.note import (
    MAX_NOTE,
    MAX_SIGNATURES,
    Checkpoint,
    NoteError,
    Verifier,
    key_hash,
    open_checkpoint,
    open_note,
    sign,
)

# --- golang/mod, sumdb/note/note_test.go ----------------------------------------------

PETER_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
PETER_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
ENOCH_VKEY = "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop"
TEXT = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n"
PETER_SIG = "— PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"
ENOCH_SIG = "— EnochRoot rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGwnWLox33WWd1RvMc+QQ=\n"
SIGNED = TEXT + "\n" + PETER_SIG

# --- transparency-dev/formats, log/note_test.go ---------------------------------------

KEY_PAIRS = [
    (PETER_SKEY, PETER_VKEY),
    ("PRIVATE+KEY+Log+2271c621+AdEIq9FLRQni54Wg68T96VJO+iayOaulswav2DUMKgvQ",
     "Log+2271c621+AemuH5ooBpEPcr+W8onrjA1NfuzBVHdezakU81Ekarvs"),
    ("PRIVATE+KEY+Known+451c786d+AQPRoE2+Z+Ed1HaHBA9F/FfracvcZ2rDU39kCecMEoci",
     "Known+451c786d+AXAQ0T7lbwuY4ABJ9/MYY9bWV3hmSyOGVt2x42NkmdUH"),
    ("PRIVATE+KEY+KnownAgain+4893b26c+ARhZda/l25zjGZswYLDZsLNRzNpmv5wYTN9IoTr1OJ2+",
     "KnownAgain+4893b26c+AQ+LR7BFF/F/dkpIBjBpSvT0crkteizuUkavAoGeaYMj"),
    ("PRIVATE+KEY+Unknown+fdbb2e08+Aav2knTC6orbhXX8pMWuNiWgO+Wwk2DB+h1eU2Q1W1nU",
     "Unknown+fdbb2e08+AWgRIYZ+8x1Vl+1Q+sR8zciNHiYI1SdlBjNw+RV0rots"),
]  # fmt: skip
SUMDB_VKEY = "sum.golang.org+033de0ae+Ac4zctda0e5eza+HJyk9SxEdh+s3Ux18htTTAD8OuAn8"
SUMDB_TEXT = "go.sum database tree\n6476701\nmb8QLQIs0Z0yP5Cstq6guj87oXWeC9gEM8oVikmm9Wk=\n"
SUMDB_NOTE = (
    SUMDB_TEXT + "\n— sum.golang.org "
    "Az3grsLX85Gz+s1SiTbgkuqxgItqFq7gsMUEyVnrsa9LM7Us9S+1xbFIGu95949rj4nPRYfvimWEPWL+o3GeoWwOoAw=\n"
)


def go_signer(skey: str) -> tuple[str, Ed25519PrivateKey]:
    """Go's private key string: PRIVATE+KEY+name+hash+base64(0x01 || seed); the base64 may hold "+"."""
    private, key, name, hex_hash, encoded = skey.split("+", 4)
    raw = base64.b64decode(encoded, validate=True)
    assert (private, key, len(raw), raw[0]) == ("PRIVATE", "KEY", 33, 1)
    signer = Ed25519PrivateKey.from_private_bytes(raw[1:])
    assert key_hash(name, signer.public_key()).hex() == hex_hash
    return name, signer


PETER = Verifier.parse(PETER_VKEY)
ENOCH = Verifier.parse(ENOCH_VKEY)


@pytest.mark.parametrize("vkey", [PETER_VKEY, ENOCH_VKEY, SUMDB_VKEY] + [v for _, v in KEY_PAIRS])
def test_go_verifier_keys_parse_and_print_back(vkey: str) -> None:
    assert Verifier.parse(vkey).text() == vkey


@pytest.mark.parametrize(("skey", "vkey"), KEY_PAIRS)
def test_go_private_keys_give_their_verifier_keys(skey: str, vkey: str) -> None:
    name, signer = go_signer(skey)
    assert Verifier(name, signer.public_key()).text() == vkey


def test_signing_the_go_text_gives_the_go_note() -> None:
    name, signer = go_signer(PETER_SKEY)
    assert sign(TEXT, name, signer) == SIGNED


def test_the_go_note_opens() -> None:
    assert open_note(SIGNED, PETER) == TEXT
    assert open_note(SIGNED.encode(), PETER) == TEXT


def test_a_cosigned_note_opens_for_either_signer() -> None:
    both = TEXT + "\n" + PETER_SIG + ENOCH_SIG
    assert open_note(both, PETER) == open_note(both, ENOCH) == TEXT
    # note_test.go: duplicated signatures, and a corrupt one of a key not asked for.
    mixed = TEXT + "\n" + PETER_SIG * 2 + ENOCH_SIG * 2 + ENOCH_SIG[:60] + "ABCD" + ENOCH_SIG[60:]
    assert open_note(mixed, PETER) == TEXT


GO_REFUSED = [
    (TEXT, "no signature block"),
    (TEXT + "\n", "no signature block"),
    (TEXT + "\n" + PETER_SIG[:-1], "no signature block"),
    ("\x01" + SIGNED, "control character"),
    (TEXT + "\n— Bad Name x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n", "not base64"),
    (SIGNED + "Unexpected line.\n", "does not start with an em dash"),
    (TEXT + "\n" + PETER_SIG * 101, "longer than 4096 bytes"),
    (TEXT + "\n" + PETER_SIG * 17, "more than 16 signatures"),
    (TEXT + "\n" + PETER_SIG[:60] + "ABCD" + PETER_SIG[60:], "signature by PeterNeumann does not verify"),
    (TEXT + "\n" + PETER_SIG.replace("PeterNeumann", "CarmenSandiego"), "no signature by PeterNeumann"),
    (TEXT + "\n" + PETER_SIG.replace("x08g", "xxxx"), "no signature by PeterNeumann"),
    (TEXT + "\n" + ENOCH_SIG, "no signature by PeterNeumann"),
    # "AM=" and "AN=" decode alike ("N" sets a spare bit): the same signature, another note.
    (TEXT + "\n" + PETER_SIG.replace("AM=", "AN="), "signature is not in canonical base64"),
]  # fmt: skip


@pytest.mark.parametrize(("note", "why"), GO_REFUSED)
def test_notes_go_refuses_are_refused(note: str, why: str) -> None:
    with pytest.raises(NoteError, match=why):
        open_note(note, PETER)


def test_a_note_that_is_not_utf8_is_refused() -> None:
    with pytest.raises(NoteError, match="not UTF-8"):
        open_note(b"\xff" + SIGNED.encode(), PETER)
    with pytest.raises(NoteError, match="not UTF-8"):
        open_note("\ud800" + SIGNED, PETER)  # a lone surrogate: a str no UTF-8 can hold


def test_go_verifier_key_manglings_are_refused() -> None:
    """note_test.go's TestNewVerifier: every part of the key, and every character changed."""
    key, n = PETER_VKEY, len(PETER_VKEY)
    manglings = {key[i:j] for i in range(n) for j in range(i + 1, n + 1)}
    manglings |= {key[:i] + chr(ord(c) + 1) + key[i + 1 :] for i, c in enumerate(key)}
    manglings |= {
        "PeterNeumann+cc469956+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TWBADKEY==",  # key length
        "PeterNeumann+173116ae+ZRpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",  # algorithm
    }
    manglings.discard(PETER_VKEY)
    accepted = []
    for mangled in manglings:
        try:
            Verifier.parse(mangled)
            accepted.append(mangled)
        except NoteError as e:
            assert str(e)
    assert accepted == []


# --- checkpoints ------------------------------------------------------------------------


def test_the_go_checksum_database_checkpoint() -> None:
    """A real checkpoint; its key is named otherwise than its origin, which ours never are."""
    verifier = Verifier.parse(SUMDB_VKEY)
    assert open_note(SUMDB_NOTE, verifier) == SUMDB_TEXT
    checkpoint = Checkpoint.parse(SUMDB_TEXT)
    root = base64.b64decode("mb8QLQIs0Z0yP5Cstq6guj87oXWeC9gEM8oVikmm9Wk=")
    assert checkpoint == Checkpoint("go.sum database tree", 6476701, root)
    assert checkpoint.text() == SUMDB_TEXT
    with pytest.raises(NoteError, match="is of log 'go.sum database tree', not 'sum.golang.org'"):
        open_checkpoint(SUMDB_NOTE, verifier)


def test_checkpoint_texts_of_the_references() -> None:
    # transparency-dev/formats, log/checkpoint_test.go (TestMarshal); roots of other lengths.
    assert Checkpoint("Log", 123, b"bananas").text() == "Log\n123\nYmFuYW5hcw==\n"
    tops = b"the view from the tree tops is great!"
    assert Checkpoint("Banana", 9944, tops).text() == (
        "Banana\n9944\ndGhlIHZpZXcgZnJvbSB0aGUgdHJlZSB0b3BzIGlzIGdyZWF0IQ==\n"
    )
    # c2sp.org/tlog-checkpoint's example.
    example = (
        "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
    )
    parsed = Checkpoint.parse(example)
    assert (parsed.origin, parsed.size) == ("example.com/behind-the-sofa", 20852163)
    assert parsed.text() == example


LOG_NAME, LOG_KEY = go_signer(KEY_PAIRS[1][0])
LOG = Verifier(LOG_NAME, LOG_KEY.public_key())
ROOT = bytes(range(32))
GOOD = Checkpoint(LOG_NAME, 10, ROOT)


def test_a_checkpoint_round_trips() -> None:
    assert open_checkpoint(GOOD.sign(LOG_KEY), LOG) == GOOD
    extended = sign(GOOD.text() + "an extension\n", LOG_NAME, LOG_KEY)
    assert open_checkpoint(extended, LOG) == GOOD


def test_a_checkpoint_of_another_origin_is_refused() -> None:
    note = sign(Checkpoint("another.example/log", 10, ROOT).text(), LOG_NAME, LOG_KEY)
    with pytest.raises(NoteError, match="is of log 'another.example/log', not 'Log'"):
        open_checkpoint(note, LOG)


B64_ROOT = base64.b64encode(ROOT).decode()
BAD_TEXTS = [
    (f"Log\n01\n{B64_ROOT}\n", "tree size is not well formed"),
    (f"Log\n-1\n{B64_ROOT}\n", "tree size is not well formed"),
    (f"Log\n{2**63}\n{B64_ROOT}\n", "tree size is not well formed"),
    (f"Log\n{10**19}\n{B64_ROOT}\n", "tree size is not well formed"),
    (f"Log\n+1\n{B64_ROOT}\n", "tree size is not well formed"),
    (f"Log\n\n{B64_ROOT}\n", "tree size is not well formed"),
    (f"\n1\n{B64_ROOT}\n", "origin or tree size is not well formed"),
    (f"Log\n1\n{base64.b64encode(ROOT[:31]).decode()}\n", "root hash is not 32 bytes"),
    (f"Log\n1\n{base64.b64encode(ROOT + b'!').decode()}\n", "root hash is not 32 bytes"),
    ("Log\n1\nThisIsn'tBase64\n", "root hash is not base64"),
    # "9=" is "8=" with a spare bit set: the same root, written otherwise.
    (f"Log\n1\n{B64_ROOT[:-2]}9=\n", "root hash is not in canonical base64"),
    (f"Log\n1\n{B64_ROOT}\n\nafter an empty line\n", "empty extension line"),
    (f"Log\n1\n{B64_ROOT}", "one per line"),
    ("Log\n1\n", "one per line"),
]


@pytest.mark.parametrize(("text", "why"), BAD_TEXTS)
def test_bad_checkpoint_texts_are_refused(text: str, why: str) -> None:
    with pytest.raises(NoteError, match=why):
        Checkpoint.parse(text)


def test_the_largest_tree_size_is_accepted() -> None:
    assert Checkpoint.parse(f"Log\n{2**63 - 1}\n{B64_ROOT}\n").size == 2**63 - 1


# --- hostile notes ----------------------------------------------------------------------

FUZZ = settings(max_examples=examples(100), deadline=None)
SIGNED_GOOD = GOOD.sign(LOG_KEY).encode()


@FUZZ
@given(st.one_of(st.binary(max_size=300), st.text(max_size=200)))
def test_random_notes_only_raise_note_error(note: bytes | str) -> None:
    with pytest.raises(NoteError):
        open_checkpoint(note, LOG)


@st.composite
def mutations(draw: st.DrawFn, good: bytes) -> bytes:
    """Up to three byte edits of ``good``: a change, an insertion or a deletion."""
    note = bytearray(good)
    for _ in range(draw(st.integers(1, 3))):
        at = draw(st.integers(0, len(note)))
        edit = draw(st.sampled_from(["change", "insert", "delete"]))
        byte = draw(st.sampled_from(b"\n +-=A\xe2\x80\x94") | st.integers(0, 255))  # of the syntax
        if edit == "insert":
            note[at:at] = bytes([byte])
        elif at < len(note):
            note[at : at + 1] = bytes([byte]) if edit == "change" else b""
    return bytes(note)


@FUZZ
@given(mutations(SIGNED_GOOD))
def test_a_changed_note_is_refused_with_note_error(note: bytes) -> None:
    """Every field is strict (base64 canonical too), so any change of our signed note fails."""
    try:
        checkpoint = open_checkpoint(note, LOG)
    except NoteError as e:
        assert str(e)
    else:
        assert note == SIGNED_GOOD and checkpoint == GOOD


COSIGNED = (GOOD.sign(LOG_KEY) + ENOCH_SIG).encode()


@FUZZ
@given(mutations(COSIGNED))
def test_a_changed_cosigned_note_gives_the_signed_text_or_note_error(note: bytes) -> None:
    """Another key's signature is not checked: changing it may leave the note good, never its text."""
    try:
        checkpoint = open_checkpoint(note, LOG)
    except NoteError:
        return
    assert checkpoint == GOOD


def test_a_signature_that_is_not_ascii_is_a_note_error() -> None:
    # Found by the fuzzing above: a line break turned into a space joins two signature
    # lines, and base64 of a str that is not ASCII raised ValueError, not NoteError.
    joined = COSIGNED.replace(b"=\n\xe2\x80\x94 EnochRoot", b"= \xe2\x80\x94 EnochRoot")
    assert joined != COSIGNED
    with pytest.raises(NoteError, match="not base64"):
        open_checkpoint(joined, LOG)


def test_the_size_limit_is_on_bytes_and_exact() -> None:
    padding = MAX_NOTE - len(SIGNED_GOOD) - len("\n")
    longest = sign(GOOD.text() + "x" * padding + "\n", LOG_NAME, LOG_KEY)
    assert len(longest.encode()) == MAX_NOTE
    assert open_checkpoint(longest, LOG) == GOOD
    too_long = sign(GOOD.text() + "x" * (padding + 1) + "\n", LOG_NAME, LOG_KEY)
    wide = sign(GOOD.text() + "é" * (padding // 2 + 1) + "\n", LOG_NAME, LOG_KEY)
    for note in (too_long, too_long.encode(), wide):  # wide: fewer characters than bytes
        with pytest.raises(NoteError, match=f"longer than {MAX_NOTE} bytes"):
            open_checkpoint(note, LOG)


def test_at_most_16_signatures() -> None:
    others = [sign(GOOD.text(), f"witness{i}", Ed25519PrivateKey.generate()) for i in range(16)]
    lines = [o.rpartition("\n\n")[2] for o in others]
    ours = GOOD.sign(LOG_KEY).rpartition("\n\n")[2]
    assert open_checkpoint(GOOD.text() + "\n" + "".join(lines[:15]) + ours, LOG) == GOOD
    with pytest.raises(NoteError, match=f"more than {MAX_SIGNATURES} signatures"):
        open_checkpoint(GOOD.text() + "\n" + "".join(lines) + ours, LOG)


def test_another_keys_signature_alone_is_refused() -> None:
    note = sign(GOOD.text(), LOG_NAME, Ed25519PrivateKey.generate())  # same name, other key
    with pytest.raises(NoteError, match="no signature by Log"):
        open_checkpoint(note, LOG)


def test_a_foreign_cosigner_with_a_non_ascii_name_does_not_spoil_the_note() -> None:
    """signed-note allows any name without spaces or "+"; a witness may pick one."""
    witness = sign(GOOD.text(), "Señor-1", Ed25519PrivateKey.generate()).rpartition("\n\n")[2]
    assert open_checkpoint(GOOD.sign(LOG_KEY) + witness, LOG) == GOOD


def worst_notes(size: int) -> list[bytes]:
    """Notes of ``size`` bytes that make the parser work longest: lines, names, base64."""
    sig = base64.b64encode(bytes(68)).decode()
    return [
        b"\n" * size,
        (GOOD.text() + "\n" + f"— {'n' * (size - len(GOOD.text()) - 100)} {sig}\n").encode()[:size],
        (GOOD.text() + "\n— Log " + "A" * size).encode()[: size - 1] + b"\n",
        ("x\n" * (size // 2)).encode(),
    ]


def parse_time(notes: list[bytes]) -> float:
    best = float("inf")
    for _ in range(20):
        started = time.perf_counter()
        for note in notes:
            try:
                open_note(note, LOG)
            except NoteError:
                pass
        best = min(best, time.perf_counter() - started)
    return best


@pytest.mark.timing
def test_parsing_time_is_linear_and_a_long_note_costs_nothing() -> None:
    small, large = parse_time(worst_notes(MAX_NOTE // 4)), parse_time(worst_notes(MAX_NOTE))
    assert large < 10 * small + 1e-4  # four times the bytes: four times the work, not sixteen
    huge = b"\n" * (64 * 2**20)
    assert parse_time([huge]) < 1e-3  # refused on its length, unread
