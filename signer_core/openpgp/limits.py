"""Bounds on a requester's key block that cap what gpg's own checks of it cost.

Trusted side. Its input is the packets ``openpgp.packets`` walked from a
hostile key block: their tags and the MPIs of their key bodies, of which it
trusts nothing. gpg verifies every self-signature (on import and again in
``--check-sigs``) and an RSA verification costs one modular squaring per
exponent bit, each quadratic in the modulus size: a 16384-bit modulus with a
16384-bit exponent takes seconds per signature. Hence a largest modulus (and
DSA/ElGamal prime), a largest RSA exponent, a DSA subgroup no larger than
FIPS 186-4's 256 bits, for the primary key and every subkey alike, and
counts of packets, user IDs (with user attributes), subkeys and signatures,
in all and per user ID (the hash of a user ID is computed again for each of
its signatures). Refusal codes: openpgp-too-many-packets (from ``walk``),
-too-many-uids, -too-many-subkeys, -too-many-signatures,
-too-many-uid-signatures, -key-too-large, -exponent-too-large.
"""

from __future__ import annotations

from dataclasses import dataclass

from signer_core.openpgp.packets import (
    ALGO_DSA,
    ALGO_ELGAMAL,
    ALGO_RSA,
    MAX_PACKETS,
    TAG_PUBLIC_KEY,
    TAG_PUBLIC_SUBKEY,
    TAG_SIGNATURE,
    TAG_TRUST,
    TAG_USER_ATTRIBUTE,
    TAG_USER_ID,
    Packet,
    mpi_sizes,
)
from signer_core.refusal import Refusal

# FIPS 186-4 DSA subgroups are 160, 224 or 256 bits; a larger q only makes verifying dearer.
MAX_DSA_Q_BITS = 256


@dataclass(frozen=True)
class PacketLimits:
    """What one key block may hold before gpg sees it (see the module docstring for why)."""

    max_packets: int = MAX_PACKETS
    max_user_ids: int = 100  # user IDs and user attributes
    max_subkeys: int = 32
    max_signatures: int = 1000  # in the whole block
    max_signatures_per_uid: int = 200  # on one user ID or user attribute
    max_key_bits: int = 8192  # RSA modulus, DSA and ElGamal prime, of any key
    max_rsa_exponent_bits: int = 32  # 65537 has 17


DEFAULT_LIMITS = PacketLimits()


def check_counts(tags: list[int], limits: PacketLimits) -> None:
    """Refuse a block with more user IDs, subkeys or signatures than ``limits`` allow."""
    names = sum(t in (TAG_USER_ID, TAG_USER_ATTRIBUTE) for t in tags)
    if names > limits.max_user_ids:
        raise Refusal(
            "openpgp-too-many-uids",
            f"{names} user IDs and attributes; at most {limits.max_user_ids}",
        )
    subkeys = tags.count(TAG_PUBLIC_SUBKEY)
    if subkeys > limits.max_subkeys:
        raise Refusal(
            "openpgp-too-many-subkeys", f"{subkeys} subkeys; at most {limits.max_subkeys}"
        )
    signatures = tags.count(TAG_SIGNATURE)
    if signatures > limits.max_signatures:
        raise Refusal(
            "openpgp-too-many-signatures",
            f"{signatures} signatures; at most {limits.max_signatures}",
        )
    most = max(_signatures_per_name(tags), default=0)
    if most > limits.max_signatures_per_uid:
        raise Refusal(
            "openpgp-too-many-uid-signatures",
            f"{most} signatures on one user ID; at most {limits.max_signatures_per_uid}",
        )


def _signatures_per_name(tags: list[int]) -> list[int]:
    """The number of signatures following each user ID or user attribute packet."""
    counts: list[int] = []
    on_name = False
    for tag in tags:
        if tag == TAG_SIGNATURE:
            if on_name:
                counts[-1] += 1
        elif tag != TAG_TRUST:  # gpg skips trust packets: the next signatures are the same name's
            on_name = tag in (TAG_USER_ID, TAG_USER_ATTRIBUTE)
            if on_name:
                counts.append(0)
    return counts


def check_key_numbers(packets: list[Packet], limits: PacketLimits) -> None:
    """Refuse a primary key or subkey whose numbers would make gpg's checks of it costly."""
    index = 0
    for p in packets:
        if p.tag in (TAG_PUBLIC_KEY, TAG_PUBLIC_SUBKEY):
            _check_numbers(p.body, limits, f"subkey {index}" if index else "the primary key")
            index += 1


def _check_numbers(body: bytes, limits: PacketLimits, which: str) -> None:
    # Only v4 keys: gpg 2.2 and 2.4 skip the others and never compute with them.
    if len(body) < 6 or body[0] != 4:
        return
    algorithm = body[5]
    if algorithm in ALGO_RSA:
        n, e = mpi_sizes(body[6:], 2, which)
        _at_most(n, limits.max_key_bits, f"{which} has a {n}-bit RSA modulus")
        if e > limits.max_rsa_exponent_bits:
            most = limits.max_rsa_exponent_bits
            raise Refusal(
                "openpgp-exponent-too-large", f"{which} has a {e}-bit RSA exponent; at most {most}"
            )
    elif algorithm == ALGO_DSA:
        p, q, g, y = mpi_sizes(body[6:], 4, which)
        largest = max(p, g, y)
        _at_most(largest, limits.max_key_bits, f"{which} has a {largest}-bit DSA number")
        _at_most(q, MAX_DSA_Q_BITS, f"{which} has a {q}-bit DSA subgroup")
    elif algorithm in ALGO_ELGAMAL:
        p, g, y = mpi_sizes(body[6:], 3, which)
        largest = max(p, g, y)
        _at_most(largest, limits.max_key_bits, f"{which} has a {largest}-bit ElGamal number")


def _at_most(bits: int, most: int, what: str) -> None:
    if bits > most:
        raise Refusal("openpgp-key-too-large", f"{what}; at most {most} bits")
