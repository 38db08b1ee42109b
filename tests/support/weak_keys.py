"""Deliberately weak RSA keys for the refusal tests: real primes from ``openssl prime``,
a factor that is small, primes that are close, primes of the ROCA structure.

Test tooling; plain functions, used by the refusal table (tests/conftest.py)
and by the key-check tests.
"""

from __future__ import annotations

import random
import subprocess

from cryptography.hazmat.primitives.asymmetric import rsa


def openssl_prime(bits: int) -> int:
    out = subprocess.run(
        ["openssl", "prime", "-generate", "-bits", str(bits)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return int(out.strip())


def is_probable_prime(n: int, rounds: int = 20) -> bool:
    if n < 2 or any(n % p == 0 for p in (2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37)):
        return n in (2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37)
    d, s = n - 1, 0
    while d % 2 == 0:
        d, s = d // 2, s + 1
    rng = random.Random(n)
    for _ in range(rounds):
        x = pow(rng.randrange(2, n - 1), d, n)
        if x in (1, n - 1):
            continue
        for _ in range(s - 1):
            x = pow(x, 2, n)
            if x == n - 1:
                break
        else:
            return False
    return True


def next_prime(n: int) -> int:
    n += 1 + n % 2
    while not is_probable_prime(n):
        n += 2
    return n


def rsa_from_primes(p: int, q: int, e: int = 65537) -> rsa.RSAPrivateKey:
    d = pow(e, -1, (p - 1) * (q - 1))
    pub = rsa.RSAPublicNumbers(e, p * q)
    return rsa.RSAPrivateNumbers(
        p, q, d, rsa.rsa_crt_dmp1(d, p), rsa.rsa_crt_dmq1(d, q), rsa.rsa_crt_iqmp(p, q), pub
    ).private_key()


ROCA_M = 0x924CBA6AE99DFA084537FACC54948DF0C23DA044D8CABE0EDD75BC6


def roca_prime(bits: int, rng: random.Random) -> int:
    """A prime of the structure of the vulnerable Infineon library: k*M + 65537^a mod M."""
    low, high = (3 << (bits - 2)) // ROCA_M + 1, (1 << bits) // ROCA_M - 1
    while True:  # p in [0.75, 1) * 2**bits, so that n = p*q has exactly 2*bits bits
        p = rng.randrange(low, high) * ROCA_M + pow(65537, rng.getrandbits(60), ROCA_M)
        if p % 65537 != 1 and is_probable_prime(p):
            return p
