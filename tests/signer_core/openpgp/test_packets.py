"""The bounded OpenPGP packet walker and key-block checks, on hand-made and
fuzzed input: every header form round-trips, every malformed input is a
``Refusal`` (never another exception, never a hang), and the algorithm,
secret-packet and issuer rules hold."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from signer_core.openpgp import keyblock
from signer_core.openpgp import limits as packet_limits
from signer_core.openpgp import packets as op
from signer_core.refusal import Refusal
from tests.support.openpgp import (
    CA,
    CA_KEYID,
    CREATED,
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
    many = packet(6, KEY.public_body) + packet(13, b"u") * (
        packet_limits.DEFAULT_LIMITS.max_user_ids + 1
    )
    assert code(many) == "openpgp-too-many-uids"
    assert (
        code(packet(12, b"") * (packet_limits.DEFAULT_LIMITS.max_packets + 1))
        == "openpgp-too-many-packets"
    )


@pytest.mark.parametrize("tag", [5, 7])
def test_secret_packets_anywhere_are_refused(tag):
    assert code(VALID + packet(tag, KEY.public_body + b"\x00")) == "openpgp-secret-key"
    assert code(armour(VALID + packet(tag, b"x"))) == "openpgp-secret-key"


# --- algorithms and sizes ------------------------------------------------------------------


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
