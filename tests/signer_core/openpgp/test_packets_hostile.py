"""The OpenPGP packet walker on hostile key blocks: fuzzed input gives only a
``Refusal``, quickly; the bounds on what gpg would be asked to check (packets, user IDs,
subkeys, signatures, key sizes) hold; and the time taken is linear in the input up to
the size limit."""

from __future__ import annotations

import random
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from signer_core.openpgp import keyblock
from signer_core.openpgp import limits as packet_limits
from signer_core.openpgp import packets as op
from signer_core.refusal import Refusal
from tests.support.examples import examples
from tests.support.openpgp import (
    CA_KEYID,
    ED25519_OID,
    FUZZ,
    KEY,
    UID_BLOCK,
    VALID,
    armour,
    certification,
    code,
    key_body,
    mpi,
    packet,
)

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
    return keyblock.summarise(data, limits=packet_limits.PacketLimits(**limits))


def refused(data: bytes, **limits) -> str:
    return code(data, limits=packet_limits.PacketLimits(**limits))


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

BIG = settings(
    max_examples=examples(40), deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


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


@pytest.mark.timing
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
