"""The bounded OpenPGP packet walker and key-block checks, on hand-made and
fuzzed input: every header form round-trips, every malformed input is a
``Refusal`` (never another exception, never a hang), and the algorithm,
secret-packet and issuer rules hold."""

from __future__ import annotations

import base64
import hashlib
import random
import time

import pytest
from conftest_openpgp import Ed25519Key, mpi, packet
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from signer_core.openpgp import keyblock
from signer_core.openpgp import packets as op
from signer_core.openpgp.limits import DEFAULT_LIMITS, PacketLimits
from signer_core.refusal import Refusal

CREATED = 1_700_000_000
ED25519_OID = bytes.fromhex("2b06010401da470f01")
FUZZ = settings(max_examples=400, deadline=2000, suppress_health_check=[HealthCheck.too_slow])


def make_key(seed: bytes = b"\x07" * 32) -> Ed25519Key:
    public = (
        Ed25519PrivateKey.from_private_bytes(seed)
        .public_key()
        .public_bytes(Encoding.Raw, PublicFormat.Raw)
    )
    body = (
        bytes([4])
        + CREATED.to_bytes(4, "big")
        + bytes([22, len(ED25519_OID)])
        + ED25519_OID
        + mpi(b"\x40" + public)
    )
    return Ed25519Key(body, seed)


KEY = make_key()
UID_BLOCK = KEY.uid_with_self_sig(b"Alice <alice@example.org>", CREATED + 10)
VALID = packet(6, KEY.public_body) + UID_BLOCK


def armour(
    data: bytes, label: str = "PUBLIC KEY BLOCK", headers: str = "Comment: test\n", crc: bool = True
) -> bytes:
    b64 = base64.b64encode(data).decode()
    lines = [b64[i : i + 64] for i in range(0, len(b64), 64)]
    tail = ["=AAAA"] if crc else []
    text = "\n".join(
        [f"-----BEGIN PGP {label}-----", headers, *lines, *tail, f"-----END PGP {label}-----", ""]
    )
    return text.encode()


def code(data: bytes, **kw) -> str:
    with pytest.raises(Refusal) as info:
        keyblock.summarise(data, **kw)
    return info.value.code


# --- header forms ------------------------------------------------------------------


def old_header(tag: int, n: int, size: int) -> bytes:
    kind = {1: 0, 2: 1, 4: 2}[size]
    return bytes([0x80 | tag << 2 | kind]) + n.to_bytes(size, "big")


def new_header(tag: int, n: int, form: int) -> bytes:
    if form == 1 and n < 192:
        return bytes([0xC0 | tag, n])
    if form == 2 and 192 <= n < 8384:
        return bytes([0xC0 | tag, ((n - 192) >> 8) + 192, (n - 192) & 0xFF])
    return bytes([0xC0 | tag, 0xFF]) + n.to_bytes(4, "big")


@st.composite
def encoded_packets(draw):
    out, expect = b"", []
    for _ in range(draw(st.integers(0, 6))):
        tag = draw(st.sampled_from(sorted(keyblock._KEY_BLOCK_TAGS)))
        body = draw(st.binary(max_size=400))
        if tag < 16 and draw(st.booleans()):  # the old format has 4 bits of tag
            size = draw(st.sampled_from([s for s in (1, 2, 4) if len(body) < 256**s]))
            head = old_header(tag, len(body), size)
        else:
            head = new_header(tag, len(body), draw(st.sampled_from([1, 2, 5])))
        out += head + body
        expect.append((tag, head + body, body))
    return out, expect


@FUZZ
@given(encoded_packets())
def test_every_header_form_round_trips(case):
    data, expect = case
    assert [(p.tag, p.raw, p.body) for p in op.walk(data)] == expect


def test_refused_length_forms():
    assert code(bytes([0x80 | 6 << 2 | 3]) + b"\0" * 10) == "openpgp-bad-packets"  # indeterminate
    assert code(bytes([0xC0 | 6, 224]) + b"\0" * 10) == "openpgp-bad-packets"  # partial body
    assert code(bytes([0xC0 | 6, 0xFF, 0, 0])) == "openpgp-bad-packets"  # truncated length
    assert code(bytes([0xC0 | 6, 10, 1])) == "openpgp-bad-packets"  # body past the end
    assert code(VALID + b"\x00") == "openpgp-bad-packets"  # trailing non-packet byte


@pytest.mark.parametrize("tag", [1, 3, 8, 9, 11, 18, 60])
def test_non_key_block_packets_are_refused(tag):
    assert code(VALID + packet(tag, b"\x01\x02")) == "openpgp-bad-packets"


# --- the key block ---------------------------------------------------------------------


def test_valid_key_summary():
    summary = keyblock.summarise(VALID)
    body = KEY.public_body
    assert (
        summary.fingerprint
        == hashlib.sha1(b"\x99" + len(body).to_bytes(2, "big") + body).hexdigest().upper()
    )
    assert (summary.algorithm, summary.curve, summary.bits, summary.user_ids) == (
        22,
        "ed25519",
        255,
        1,
    )
    assert summary.packets == VALID


def test_armour_forms_give_the_same_packets():
    for data in (
        armour(VALID),
        armour(VALID, crc=False, headers=""),
        armour(VALID).replace(b"\n", b"\r\n"),
        b"junk before\n" + armour(VALID) + b"junk after\n",
    ):
        assert keyblock.summarise(data).packets == VALID


def test_armour_refusals():
    assert code(armour(VALID, label="MESSAGE")) == "openpgp-bad-armour"
    assert code(armour(VALID, label="PRIVATE KEY BLOCK")) == "openpgp-secret-key"
    assert code(armour(VALID)[:-30]) == "openpgp-bad-armour"  # no END line
    assert (
        code(armour(VALID).replace(b"Comment: test\n", b"Comment: test\n!!!!\n"))
        == "openpgp-bad-armour"
    )
    assert code(armour(VALID).replace(b"=AAAA\n", b"=AAAA\nAAAA\n")) == "openpgp-bad-armour"
    end_mismatch = armour(VALID).replace(b"END PGP PUBLIC KEY BLOCK", b"END PGP MESSAGE")
    assert code(end_mismatch) == "openpgp-bad-armour"
    assert code(armour(VALID) * (op.MAX_ARMOUR_BLOCKS + 1)) == "openpgp-bad-armour"


def test_size_limit_is_checked_first():
    assert code(b"\x00" * (op.MAX_INPUT + 1)) == "openpgp-too-large"
    assert code(VALID + b"\x00" * (op.MAX_INPUT - len(VALID))) == "openpgp-bad-packets"


def test_key_counts():
    assert code(b"") == "openpgp-no-key"
    assert code(UID_BLOCK) == "openpgp-no-key"
    assert code(VALID + VALID) == "openpgp-multiple-keys"
    assert code(armour(VALID) + armour(VALID)) == "openpgp-multiple-keys"
    assert code(UID_BLOCK + VALID) == "openpgp-bad-packets"
    assert code(packet(6, KEY.public_body)) == "openpgp-no-uid"
    assert code(packet(6, KEY.public_body) + packet(17, b"\x01photo")) == "openpgp-no-uid"
    many = packet(6, KEY.public_body) + packet(13, b"u") * (DEFAULT_LIMITS.max_user_ids + 1)
    assert code(many) == "openpgp-too-many-uids"
    assert code(packet(12, b"") * (DEFAULT_LIMITS.max_packets + 1)) == "openpgp-too-many-packets"


@pytest.mark.parametrize("tag", [5, 7])
def test_secret_packets_anywhere_are_refused(tag):
    assert code(VALID + packet(tag, KEY.public_body + b"\x00")) == "openpgp-secret-key"
    assert code(armour(VALID + packet(tag, b"x"))) == "openpgp-secret-key"


# --- algorithms and sizes ------------------------------------------------------------------


def key_body(algo: int, fields: bytes, version: int = 4) -> bytes:
    return bytes([version]) + CREATED.to_bytes(4, "big") + bytes([algo]) + fields


def rsa_fields(bits: int) -> bytes:
    n = (1 << (bits - 1)) | 1
    return bits.to_bytes(2, "big") + n.to_bytes((bits + 7) // 8, "big") + mpi(b"\x01\x00\x01")


def strength(body: bytes) -> tuple[int, int, str]:
    return keyblock.key_strength(body)


@pytest.mark.parametrize(
    "algo,fields,expect",
    [
        (1, rsa_fields(2048), (1, 2048, "")),
        (3, rsa_fields(4096), (3, 4096, "")),
        (17, rsa_fields(3072), (17, 3072, "")),
        (
            19,
            bytes([8]) + bytes.fromhex("2a8648ce3d030107") + mpi(b"\x04" + b"\1" * 64),
            (19, 256, "nistp256"),
        ),
        (
            19,
            bytes([5]) + bytes.fromhex("2b81040022") + mpi(b"\x04" + b"\1" * 96),
            (19, 384, "nistp384"),
        ),
        (
            19,
            bytes([5]) + bytes.fromhex("2b81040023") + mpi(b"\x04" + b"\1" * 132),
            (19, 521, "nistp521"),
        ),
        (22, bytes([9]) + ED25519_OID + mpi(b"\x40" + b"\1" * 32), (22, 255, "ed25519")),
    ],
)
def test_accepted_primary_keys(algo, fields, expect):
    assert strength(key_body(algo, fields)) == expect


@pytest.mark.parametrize(
    "algo,fields",
    [
        (1, rsa_fields(1024)),
        (1, rsa_fields(2047)),
        (17, rsa_fields(1024)),
        (
            1,
            (2048).to_bytes(2, "big") + bytes(128) + rsa_fields(1024)[2:],
        ),  # zero-padded: 1024 bits really
        (2, rsa_fields(4096)),  # RSA encrypt-only
        (16, rsa_fields(4096)),
        (20, rsa_fields(4096)),  # ElGamal
        (
            18,
            bytes([10]) + bytes.fromhex("2b060104019755010501") + mpi(b"\x40" + b"\1" * 32),
        ),  # ECDH
        (
            19,
            bytes([9]) + bytes.fromhex("2b2403030208010107") + mpi(b"\x04" + b"\1" * 64),
        ),  # brainpoolP256r1
        (19, bytes([5]) + bytes.fromhex("2b8104000a") + mpi(b"\x04" + b"\1" * 64)),  # secp256k1
        (
            22,
            bytes([8]) + bytes.fromhex("2a8648ce3d030107") + mpi(b"\x04" + b"\1" * 64),
        ),  # EdDSA on P-256
        (27, b"\1" * 32),
        (99, b""),  # not known to gpg 2.2 / unknown
    ],
)
def test_weak_or_unknown_primary_keys(algo, fields):
    with pytest.raises(Refusal) as info:
        strength(key_body(algo, fields))
    assert info.value.code == "openpgp-weak-key"


def test_key_versions():
    with pytest.raises(Refusal) as info:
        strength(key_body(1, rsa_fields(2048), version=3))
    assert info.value.code == "openpgp-weak-key"
    with pytest.raises(Refusal) as info:
        strength(key_body(22, b"", version=5))
    assert info.value.code == "openpgp-unsupported-key"


def test_stated_rsa_size_is_not_trusted_for_truncation():
    fields = rsa_fields(2048)
    with pytest.raises(Refusal) as info:
        strength(key_body(1, fields[:100]))
    assert info.value.code == "openpgp-bad-packets"


# --- dropping earlier CA certifications ------------------------------------------------------

CA = make_key(b"\x09" * 32)
CA_KEYID = CA.fpr[-8:].hex().upper()


def certification(sigclass: int, issuer_in: str, issuer: bytes = CA.fpr) -> bytes:
    sub16 = bytes([9, 16]) + issuer[-8:]
    sub33 = bytes([22, 33, 4]) + issuer
    hashed = (
        bytes([5, 2]) + CREATED.to_bytes(4, "big") + (sub33 if issuer_in == "hashed33" else b"")
    )
    unhashed = sub16 if issuer_in == "unhashed16" else b""
    body = bytes([4, sigclass, 22, 8]) + len(hashed).to_bytes(2, "big") + hashed
    return packet(
        2, body + len(unhashed).to_bytes(2, "big") + unhashed + b"\0\0" + mpi(b"\1") + mpi(b"\1")
    )


def v3_certification(sigclass: int, issuer: bytes = CA.fpr) -> bytes:
    return packet(
        2, bytes([3, 5, sigclass]) + CREATED.to_bytes(4, "big") + issuer[-8:] + bytes([22, 8, 0, 0])
    )


@pytest.mark.parametrize(
    "sig",
    [certification(0x10, "hashed33"), certification(0x13, "unhashed16"), v3_certification(0x12)],
)
def test_earlier_ca_certifications_are_dropped(sig):
    assert keyblock.summarise(VALID + sig, drop_certifier=CA_KEYID).packets == VALID
    assert keyblock.summarise(VALID + sig).packets == VALID + sig


@pytest.mark.parametrize(
    "sig",
    [
        certification(0x30, "hashed33"),  # a revocation stays
        certification(0x10, "hashed33", issuer=KEY.fpr),  # another issuer
        certification(0x12, "none"),
    ],
)  # no issuer at all
def test_other_signatures_are_kept(sig):
    assert keyblock.summarise(VALID + sig, drop_certifier=CA_KEYID).packets == VALID + sig


# --- fuzzing: only Refusal escapes, quickly --------------------------------------------------------


def summarise_or_refuse(data: bytes) -> None:
    start = time.monotonic()
    try:
        keyblock.summarise(data, drop_certifier=CA_KEYID)
    except Refusal:
        pass
    assert time.monotonic() - start < 1.0


@FUZZ
@given(st.binary(max_size=2048))
def test_fuzz_random_bytes(data):
    summarise_or_refuse(data)
    summarise_or_refuse(b"\x99" + data)
    summarise_or_refuse(b"-----BEGIN PGP PUBLIC KEY BLOCK-----\n\n" + data)


SAMPLE = VALID + certification(0x12, "hashed33") + certification(0x13, "unhashed16")


@FUZZ
@given(
    st.lists(st.tuples(st.integers(0, len(SAMPLE) - 1), st.integers(0, 255)), max_size=8),
    st.integers(0, len(SAMPLE)),
    st.binary(max_size=16),
)
def test_fuzz_mutated_key(flips, cut, insert):
    data = bytearray(SAMPLE)
    for pos, value in flips:
        data[pos] = value
    summarise_or_refuse(bytes(data[:cut]) + insert + bytes(data[cut:]))
    summarise_or_refuse(armour(bytes(data[:cut])))


@FUZZ
@given(
    st.lists(
        st.sampled_from(
            [
                b"-----BEGIN PGP PUBLIC KEY BLOCK-----",
                b"-----END PGP PUBLIC KEY BLOCK-----",
                b"",
                b"=AAAA",
                b"Version: x",
                b"mQINBF",
                b"====",
                b"\r",
                b"-----BEGIN PGP X-----",
            ]
        ),
        max_size=20,
    )
)
def test_fuzz_armour_structure(lines):
    summarise_or_refuse(b"\n".join(lines))


# --- bounds on what gpg will be asked to check ---------------------------------------------------

SIG = certification(0x10, "unhashed16", issuer=KEY.fpr)
ED_SUBKEY = packet(14, key_body(22, bytes([9]) + ED25519_OID + mpi(b"\x40" + b"\2" * 32)))


def rsa_numbers(n_bits: int, e_bits: int = 17) -> bytes:
    return mpi(((1 << (n_bits - 1)) | 1).to_bytes((n_bits + 7) // 8, "big")) + mpi(
        ((1 << (e_bits - 1)) | 1).to_bytes((e_bits + 7) // 8, "big")
    )


def dsa_numbers(p_bits: int, q_bits: int) -> bytes:
    return b"".join(
        mpi(((1 << (bits - 1)) | 1).to_bytes((bits + 7) // 8, "big"))
        for bits in (p_bits, q_bits, p_bits - 1, p_bits - 1)
    )


def with_primary(algo: int, fields: bytes) -> bytes:
    return packet(6, key_body(algo, fields)) + UID_BLOCK


def with_subkey(algo: int, fields: bytes) -> bytes:
    return VALID + packet(14, key_body(algo, fields)) + SIG


def summarised(data: bytes, **limits) -> keyblock.KeySummary:
    return keyblock.summarise(data, limits=PacketLimits(**limits))


def refused(data: bytes, **limits) -> str:
    return code(data, limits=PacketLimits(**limits))


def test_packet_count_bound():
    data = VALID + packet(12, b"") * 7  # 10 packets
    assert len(summarised(data, max_packets=10).packets) == len(data)
    assert refused(data + packet(12, b""), max_packets=10) == "openpgp-too-many-packets"


def test_user_id_bound_counts_user_attributes_too():
    data = VALID + packet(13, b"Bob") + packet(17, b"\x01photo")
    assert summarised(data, max_user_ids=3).user_ids == 2
    assert refused(data, max_user_ids=2) == "openpgp-too-many-uids"


def test_subkey_bound():
    data = VALID + (ED_SUBKEY + SIG) * 3
    assert len(summarised(data, max_subkeys=3).keys) == 4
    assert refused(data, max_subkeys=2) == "openpgp-too-many-subkeys"


def test_signature_bounds_in_all_and_per_user_id():
    # 1 + 2 and 3 on the two user IDs, 2 on the subkey
    spread = VALID + SIG * 2 + packet(13, b"Bob") + SIG * 3 + ED_SUBKEY + SIG * 2
    assert summarised(spread, max_signatures=8, max_signatures_per_uid=3)
    assert refused(spread, max_signatures=7) == "openpgp-too-many-signatures"
    assert refused(spread, max_signatures_per_uid=2) == "openpgp-too-many-uid-signatures"
    # Signatures of the primary key (before any user ID) and of subkeys count in all only.
    keyed = packet(6, KEY.public_body) + SIG * 5 + UID_BLOCK + ED_SUBKEY + SIG * 5
    assert summarised(keyed, max_signatures_per_uid=1)
    attribute = VALID + packet(17, b"\x01photo") + SIG * 4
    assert refused(attribute, max_signatures_per_uid=3) == "openpgp-too-many-uid-signatures"
    trusted = VALID + SIG * 2 + packet(12, b"\0\0") + SIG * 2  # gpg skips the trust packet
    assert refused(trusted, max_signatures_per_uid=4) == "openpgp-too-many-uid-signatures"


@pytest.mark.parametrize("where", [with_primary, with_subkey])
def test_rsa_modulus_and_exponent_bounds(where):
    assert summarised(where(1, rsa_numbers(8192, 32)))
    assert refused(where(1, rsa_numbers(8193))) == "openpgp-key-too-large"
    assert refused(where(1, rsa_numbers(4096, 33))) == "openpgp-exponent-too-large"
    assert refused(where(1, rsa_numbers(16384, 16384))) == "openpgp-key-too-large"
    assert summarised(
        where(1, rsa_numbers(16384, 16384)), max_key_bits=16384, max_rsa_exponent_bits=16384
    )


def test_the_refusal_names_the_subkey():
    data = with_subkey(2, rsa_numbers(2048, 64))  # an encrypt-only RSA subkey is bounded too
    with pytest.raises(Refusal) as info:
        keyblock.summarise(data)
    assert (info.value.code, info.value.text) == (
        "openpgp-exponent-too-large",
        "subkey 1 has a 64-bit RSA exponent; at most 32",
    )


@pytest.mark.parametrize("where", [with_primary, with_subkey])
def test_dsa_bounds(where):
    assert summarised(where(17, dsa_numbers(3072, 256)))
    assert refused(where(17, dsa_numbers(3072, 257))) == "openpgp-key-too-large"
    assert refused(where(17, dsa_numbers(8200, 256))) == "openpgp-key-too-large"


@pytest.mark.parametrize("algo", [16, 20])
def test_elgamal_subkey_bound(algo):
    numbers = b"".join(
        mpi(((1 << (bits - 1)) | 1).to_bytes((bits + 7) // 8, "big")) for bits in (8192, 2, 8191)
    )
    assert summarised(with_subkey(algo, numbers))
    assert refused(with_subkey(algo, numbers), max_key_bits=4096) == "openpgp-key-too-large"


def test_a_truncated_subkey_is_refused_and_other_subkeys_are_left_to_gpg():
    assert refused(with_subkey(1, rsa_numbers(2048)[:-1])) == "openpgp-bad-packets"
    assert summarised(with_subkey(18, b"\x01"))  # ECDH, too short to use: gpg skips it
    assert summarised(VALID + packet(14, key_body(1, b"", version=5)) + SIG)


# --- only Refusal, in time linear in the input, up to the size limit ------------------------------

BIG = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def wide_signatures(size: int) -> bytes:
    """A key whose signatures are as large as the input allows, each hashed area full of
    one-byte subpackets: every byte is walked and every subpacket read (drop_certifier)."""
    hashed = bytes([1, 99]) * 4000
    body = bytes([4, 0x10, 22, 8]) + len(hashed).to_bytes(2, "big") + hashed + b"\0\0\0\0"
    count = max(1, (size - len(VALID)) // (len(body) + 6))
    return VALID + packet(2, body) * count


def wide_armour(size: int) -> bytes:
    return armour(wide_signatures(int(size * 0.74) - 200))


def fastest(data: bytes, runs: int = 5) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        try:
            keyblock.summarise(data, drop_certifier=CA_KEYID)
        except Refusal:
            pass
        times.append(time.perf_counter() - start)
    return min(times)


@pytest.mark.parametrize("shape", [wide_signatures, wide_armour])
def test_summarise_is_linear_up_to_the_size_limit(shape):
    large, small = shape(op.MAX_INPUT), shape(op.MAX_INPUT // 8)
    assert len(large) <= op.MAX_INPUT and 6 < len(large) / len(small) < 10
    ratio = fastest(large) / fastest(small)
    # Linear: about 8; quadratic would be about 64. Generous for a busy machine.
    assert ratio < 24, ratio


def summarise_big_or_refuse(data: bytes) -> None:
    start = time.monotonic()
    try:
        keyblock.summarise(data, drop_certifier=CA_KEYID)
    except Refusal:
        pass
    assert time.monotonic() - start < 5.0


@BIG
@given(
    st.integers(0, 2**64), st.integers(0, op.MAX_INPUT), st.sampled_from([b"", b"\x99", b"\xc6"])
)
def test_fuzz_random_bytes_up_to_the_limit(seed, size, prefix):
    # Bytes from a drawn seed: drawing a megabyte through Hypothesis itself is slow.
    data = prefix + random.Random(seed).randbytes(max(0, size - len(prefix)))
    summarise_big_or_refuse(data)
    summarise_big_or_refuse(armour(data[: size * 3 // 4]))


LARGE = (
    wide_signatures(op.MAX_INPUT)
    + (ED_SUBKEY + SIG) * 4
    + packet(14, key_body(1, rsa_numbers(4096)))
)


@BIG
@given(
    st.lists(st.tuples(st.integers(0, len(LARGE) - 1), st.integers(0, 255)), max_size=16),
    st.integers(0, len(LARGE)),
    st.binary(max_size=64),
)
def test_fuzz_mutated_large_key(flips, cut, insert):
    data = bytearray(LARGE)
    for pos, value in flips:
        data[pos] = value
    summarise_big_or_refuse(bytes(data[:cut]) + insert + bytes(data[cut:]))
