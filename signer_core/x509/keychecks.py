"""Policy checks on the public key of a certificate request.

Trusted side. The key comes from a hostile request (already parsed and its
self-signature verified). Accepted: RSA 2048-8192 bits with e = 65537; EC on
P-256, P-384, P-521; Ed25519 only when configured. RSA moduli are tested for
primality, small prime factors, Fermat-close primes and the ROCA fingerprint
with our own code; when the ``badkeys`` package is importable its RSA checks run as
well. A configured blocklist of SHA-256(SubjectPublicKeyInfo) is consulted
for every key type; an unreadable blocklist refuses (fails closed).
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from signer_core.config import X509Config
from signer_core.refusal import Refusal

if TYPE_CHECKING:
    from signer_core.x509.compat import PublicKeyTypes

try:  # optional: 5-15x faster modular exponentiation (Debian: python3-gmpy2)
    from gmpy2 import powmod as _powmod
except ImportError:
    _powmod = pow

try:  # optional: extra RSA checks (Wiener's small d, polynomial patterns...)
    from badkeys import checks as _badkeys
except Exception:  # noqa: BLE001 - any import failure just means "not available"
    _badkeys = None

MIN_RSA_BITS = 2048
MAX_RSA_BITS = 8192
SMALL_PRIME_BOUND = 20000
FERMAT_ROUNDS = 100
EC_CURVES = frozenset({"secp256r1", "secp384r1", "secp521r1"})
BADKEYS_CHECKS = ("roca", "fermat", "smallfactors", "rsainvalid", "smalld", "rsapoly")
_BADKEYS_CODES = {"roca": "roca-key", "fermat": "close-primes", "smallfactors": "small-factor"}

# The kinds of subject key ``check_public_key`` accepts.
SubjectKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey


def _primes_product(bound: int) -> int:
    sieve = bytearray([1]) * bound
    sieve[0:2] = b"\0\0"
    for i in range(2, math.isqrt(bound) + 1):
        if sieve[i]:
            sieve[i * i :: i] = bytes(len(range(i * i, bound, i)))
    return math.prod(i for i in range(bound) if sieve[i])


_SMALL_PRIMES = _primes_product(SMALL_PRIME_BOUND)


def spki_sha256(key: PublicKeyTypes) -> str:
    der = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(der).hexdigest()


def check_public_key(key: PublicKeyTypes, x509cfg: X509Config) -> SubjectKey:
    """Raise Refusal naming the first failed check; return an acceptable key as it came."""
    if isinstance(key, rsa.RSAPublicKey):
        _check_rsa(key.public_numbers())
    elif isinstance(key, ec.EllipticCurvePublicKey):
        if key.curve.name not in EC_CURVES:
            raise Refusal("unsupported-key", f"EC curve {key.curve.name} not allowed")
    elif isinstance(key, ed25519.Ed25519PublicKey):
        if not x509cfg.allow_ed25519:
            raise Refusal("unsupported-key", "Ed25519 keys are not enabled")
    else:
        raise Refusal("unsupported-key", f"key type {type(key).__name__} not allowed")
    blocklist = x509cfg.blocklist_file
    if blocklist is not None and spki_sha256(key) in load_blocklist(blocklist):
        raise Refusal("key-blocklisted", "the public key is on the blocklist")
    return key


def _check_rsa(numbers: rsa.RSAPublicNumbers) -> None:
    n, e = numbers.n, numbers.e
    bits = n.bit_length()
    if bits < MIN_RSA_BITS:
        raise Refusal("weak-key", f"RSA modulus of {bits} bits, at least {MIN_RSA_BITS} needed")
    if bits > MAX_RSA_BITS:
        raise Refusal("unsupported-key", f"RSA modulus of {bits} bits, at most {MAX_RSA_BITS}")
    if e != 65537:
        raise Refusal(
            "bad-exponent", f"RSA public exponent {e if e < 2**32 else 'huge'}, 65537 needed"
        )
    if _powmod(2, n - 1, n) == 1:  # a prime "modulus" makes phi(n) = n - 1 public
        raise Refusal("bad-key", "RSA modulus is prime")
    if math.gcd(n, _SMALL_PRIMES) != 1:
        raise Refusal("small-factor", f"RSA modulus has a prime factor below {SMALL_PRIME_BOUND}")
    if fermat_factor(n, FERMAT_ROUNDS) is not None:
        raise Refusal("close-primes", "RSA modulus has close primes (Fermat factorable)")
    if is_roca(n):
        raise Refusal("roca-key", "RSA modulus has the ROCA fingerprint (CVE-2017-15361)")
    if _badkeys is not None:
        found = _badkeys.checkrsa(n, e=e, checks=BADKEYS_CHECKS)
        for name in found:
            raise Refusal(_BADKEYS_CODES.get(name, "bad-key"), f"badkeys check {name} failed")


def fermat_factor(n: int, rounds: int) -> tuple[int, int] | None:
    """Fermat's method for ``rounds`` steps: (p, q) if |p - q| is tiny."""
    a = math.isqrt(n)
    if a * a < n:
        a += 1
    for _ in range(rounds):
        b2 = a * a - n
        b = math.isqrt(b2)
        if b * b == b2:
            return a - b, a + b
        a += 1
    return None


# The ROCA fingerprint (Nemec et al., CCS 2017), as reduced by badkeys (MIT):
# the modulus of an affected key lies in the subgroup generated by 65537
# modulo M; tested by a discrete log in each small prime-power subgroup.
_ROCA_M = 0x924CBA6AE99DFA084537FACC54948DF0C23DA044D8CABE0EDD75BC6
_ROCA_ORDER = 2454106387091158800
_ROCA_PRIME_POWERS = (16, 81, 25, 7, 11, 13, 17, 23, 29, 37, 41, 53, 83)


def is_roca(n: int) -> bool:
    if n <= 2 or pow(n, _ROCA_ORDER, _ROCA_M) != 1:
        return False
    for pp in _ROCA_PRIME_POWERS:
        cofactor = _ROCA_ORDER // pp
        g = pow(65537, cofactor, _ROCA_M)
        h = pow(n, cofactor, _ROCA_M)
        if all(pow(g, i, _ROCA_M) != h for i in range(pp)):
            return False
    return True


_BLOCKLIST_CACHE: dict[Path, tuple[tuple[int, int], frozenset[str]]] = {}


def load_blocklist(path: Path) -> frozenset[str]:
    """Hex SHA-256 digests, one per line (``#`` comments); cached by mtime and size."""
    try:
        st = os.stat(path)
        stamp = (st.st_mtime_ns, st.st_size)
        cached = _BLOCKLIST_CACHE.get(path)
        if cached is not None and cached[0] == stamp:
            return cached[1]
        with open(path, encoding="ascii") as f:
            entries = frozenset(_blocklist_entries(f))
    except OSError as exc:
        raise Refusal(
            "blocklist-unavailable", f"key blocklist unreadable: {exc.strerror}"
        ) from None
    except UnicodeDecodeError:
        raise Refusal("blocklist-unavailable", "key blocklist is not ASCII") from None
    except ValueError as exc:  # ours: _blocklist_entries
        raise Refusal("blocklist-unavailable", f"key blocklist unusable: {exc}") from None
    _BLOCKLIST_CACHE[path] = (stamp, entries)
    return entries


def _blocklist_entries(lines: Iterable[str]) -> list[str]:
    out = []
    for line in lines:
        entry = line.split("#", 1)[0].strip().lower()
        if not entry:
            continue
        if len(entry) != 64 or any(c not in "0123456789abcdef" for c in entry):
            raise ValueError("blocklist line is not a hex SHA-256")
        out.append(entry)
    return out
