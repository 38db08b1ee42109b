"""The CA's own keys are refused in every request that carries one.

Identities are checked across containers with real keys: gpg makes a key,
its unprotected secret export is taken apart here, and the ``cryptography``
key rebuilt from the secret values alone must have the identity of gpg's
public packet (so the public side is never copied from one container to the
other). Then each configured X.509 root (installed, or with only its
certificate or only its key left) in a CSR and an SPKAC, and the OpenPGP
root's primary key and subkeys in CSRs and in user key blocks, are refused
with their codes; ordinary keys pass. Real gpg, real openssl, no mocks.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa, x25519
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from signer_core.cakeys import CaKeys, key_identity, openpgp_identity
from signer_core.config import load_config
from signer_core.openpgp.certify import OpenPGPSigner, certify_key, load_signer
from signer_core.openpgp.keyblock import summarise
from signer_core.openpgp.packets import walk
from signer_core.refusal import Refusal
from signer_core.roots import RootStore
from signer_core.x509.request import parse_request
from tests.support.examples import examples
from tests.support.openpgp import (
    CREATED,
    ED25519_OID,
    Ed25519Key,
    Homes,
    assert_clean,
    gen_key,
    gpg,
    key_body,
    key_pairs,
    mpi,
    packet,
    rebuilt,
)
from tests.support.x509 import csr_pem, spkac_line

CV25519_OID = bytes.fromhex("2b060104019755010501")
P256_OID = bytes.fromhex("2a8648ce3d030107")
P384_OID = bytes.fromhex("2b81040022")
CURVES = {"nistp256": ec.SECP256R1(), "nistp384": ec.SECP384R1(), "nistp521": ec.SECP521R1()}
FUZZ = settings(
    max_examples=examples(400), deadline=2000, suppress_health_check=[HealthCheck.too_slow]
)


# --- taking gpg's keys apart ------------------------------------------------------


@pytest.mark.parametrize("algo", ["ed25519", "rsa2048", "nistp256", "nistp384", "nistp521"])
def test_identity_is_the_same_in_gpg_and_in_cryptography(homes, algo):
    home = homes.new()
    fpr = gen_key(home, f"{algo} <{algo}@example.org>", algo=algo)
    if algo == "ed25519":
        gpg(home, "--passphrase", "", "--quick-add-key", fpr, "cv25519", "encr")
    pairs = key_pairs(home, fpr)
    for public_body, secret in pairs:
        key = rebuilt(public_body, secret, CURVES.get(algo)).public_key()
        assert openpgp_identity(public_body) == key_identity(key) is not None
    other = gen_key(home, f"other {algo} <o@example.org>", algo=algo)
    assert openpgp_identity(key_pairs(home, other)[0][0]) != openpgp_identity(pairs[0][0])


def uncompressed_edwards(raw: bytes) -> bytes:
    """0x04 || x || y (big-endian) of an RFC 8032 Ed25519 public key: x recovered from y."""
    p = 2**255 - 19
    y = int.from_bytes(raw, "little") & ((1 << 255) - 1)
    d = -121665 * pow(121666, -1, p) % p
    u, v = (y * y - 1) % p, (d * y * y + 1) % p
    x = pow(u * pow(v, p - 2, p), (p + 3) // 8, p)
    if (v * x * x - u) % p:
        x = x * pow(2, (p - 1) // 4, p) % p
    if x & 1 != raw[31] >> 7:
        x = p - x
    return b"\x04" + x.to_bytes(32, "big") + y.to_bytes(32, "big")


def test_gpg_accepts_an_uncompressed_ed25519_point_and_it_is_the_same_key(homes):
    """gpg 2.2 verifies a self-signature made on a key whose point is 0x04||x||y: a request
    could carry a CA key that way, with another fingerprint."""
    seed = bytes(range(32))
    raw = (
        ed25519.Ed25519PrivateKey.from_private_bytes(seed)
        .public_key()
        .public_bytes(Encoding.Raw, PublicFormat.Raw)
    )
    usual = key_body(22, bytes([len(ED25519_OID)]) + ED25519_OID + mpi(b"\x40" + raw))
    odd = key_body(22, bytes([len(ED25519_OID)]) + ED25519_OID + mpi(uncompressed_edwards(raw)))
    home = homes.new()
    self_signed = Ed25519Key(odd, seed).uid_with_self_sig(b"Odd", CREATED)
    gpg(home, "--import", data=packet(6, odd) + self_signed)
    sigs = [
        r
        for r in gpg(home, "--with-colons", "--check-sigs").decode().splitlines()
        if r.startswith("sig:")
    ]
    assert len(sigs) == 1 and sigs[0].split(":")[1] == "!"
    assert (
        openpgp_identity(odd)
        == openpgp_identity(usual)
        == key_identity(ed25519.Ed25519PublicKey.from_public_bytes(raw))
    )


def ec_key_with_y_parity(parity: int) -> ec.EllipticCurvePublicKey:
    while True:
        key = ec.generate_private_key(ec.SECP256R1()).public_key()
        if key.public_numbers().y & 1 == parity:
            return key


KDF = bytes([3, 1, 8, 7])  # ECDH's KDF parameters: SHA-256, AES-128


@pytest.mark.parametrize("parity", [0, 1])
def test_every_encoding_of_an_ec_key_has_one_identity(parity):
    ec_key = ec_key_with_y_parity(parity)
    point = ec_key.public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
    short = ec_key.public_bytes(Encoding.X962, PublicFormat.CompressedPoint)
    curve = bytes([len(P256_OID)]) + P256_OID
    assert {
        openpgp_identity(key_body(19, curve + mpi(point))),
        openpgp_identity(key_body(19, curve + mpi(short), created=CREATED + 1)),
        openpgp_identity(key_body(18, curve + mpi(point) + KDF)),
        key_identity(ec_key),
    } == {key_identity(ec_key)}
    other = ec_key_with_y_parity(1 - parity).public_bytes(
        Encoding.X962, PublicFormat.UncompressedPoint
    )
    same_x = point[:33] + other[33:]  # same x, a y of the other parity
    assert openpgp_identity(key_body(19, curve + mpi(same_x))) != key_identity(ec_key)


def test_every_encoding_of_other_keys_has_one_identity():
    rsa_key = rsa.generate_private_key(65537, 2048).public_key()
    n = rsa_key.public_numbers().n.to_bytes(256, "big")
    zero_padded = (2056).to_bytes(2, "big") + b"\0" + n  # an MPI whose stated size lies
    identities = {openpgp_identity(key_body(a, mpi(n) + mpi(b"\x01\x00\x01"))) for a in (1, 2, 3)}
    identities.add(openpgp_identity(key_body(1, zero_padded + mpi(b"\x01\x00\x01"))))
    assert identities == {key_identity(rsa_key)}
    ed = ed25519.Ed25519PrivateKey.generate().public_key()
    raw = ed.public_bytes(Encoding.Raw, PublicFormat.Raw)
    assert openpgp_identity(key_body(27, raw)) == key_identity(ed)  # RFC 9580 native Ed25519
    x = x25519.X25519PrivateKey.generate().public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    flipped = x[:31] + bytes([x[31] ^ 0x80])  # X25519 ignores the top bit
    cv = bytes([len(CV25519_OID)]) + CV25519_OID
    assert (
        openpgp_identity(key_body(18, cv + mpi(b"\x40" + flipped) + KDF))
        == openpgp_identity(key_body(25, x))
        == key_identity(x25519.X25519PublicKey.from_public_bytes(x))
    )


def test_unreadable_bodies_have_no_identity():
    raw = bytes(32)
    p256 = bytes([len(P256_OID)]) + P256_OID
    for body in (
        b"",
        b"\x04",
        key_body(1, b"\x08\x00"),
        key_body(1, b"\xff\xff" + b"\1" * 100),
        key_body(22, bytes([9]) + ED25519_OID + mpi(b"\x40" + b"\1" * 31)),
        key_body(22, b"\xff"),
        key_body(19, p256 + mpi(b"\x04" + raw)),
        key_body(19, p256 + b"\x01\x08\x01"),
        key_body(99, raw),
        key_body(27, raw[:31]),
        bytes([5]) + key_body(27, raw)[1:],
    ):
        assert openpgp_identity(body) is None, body


@FUZZ
@given(st.binary(max_size=600))
def test_hostile_bodies_never_raise(data):
    for algorithm in (1, 17, 18, 19, 22, 25, 28):
        result = openpgp_identity(key_body(algorithm, data))
        assert result is None or len(result) == 32


def test_a_key_packet_too_long_for_a_fingerprint_is_refused_not_a_crash():
    big = key_body(1, mpi(b"\xff" * 256) + mpi(b"\x01\x00\x01") + bytes(70000))
    with pytest.raises(Refusal) as info:
        summarise(packet(6, big) + packet(13, b"u"))
    assert info.value.code == "openpgp-bad-packets"


# --- X.509 roots ----------------------------------------------------------------


def refused_x509(ca: CaKeys, key: object) -> str:
    with pytest.raises(Refusal) as info:
        ca.check_x509(key)
    assert info.value.code == "ca-key"
    return info.value.text


@pytest.mark.parametrize("rid", [0, 1, 3])
def test_a_csr_carrying_a_root_key_is_refused(world, rid):
    ca = CaKeys.build(world.store)
    key = parse_request(csr_pem(world.root_keys[rid]), False).public_key
    assert refused_x509(ca, key) == f"the request's public key is X.509 root {rid}'s key"


@pytest.mark.parametrize("rid", [0, 1])
def test_an_spkac_carrying_a_root_key_is_refused(world, rid):
    line = spkac_line(world.root_keys[rid], world.dir)
    refused_x509(CaKeys.build(world.store), parse_request(line, True).public_key)


def test_ordinary_keys_pass(world):
    ca = CaKeys.build(world.store)
    for key in (world.rsa_key, world.ec_key, ed25519.Ed25519PrivateKey.generate()):
        ca.check_x509(parse_request(csr_pem(key), False).public_key)
    for kind in ("rsa", "ec"):
        ca.check_x509(parse_request(world.spkac[kind], True).public_key)
    CaKeys().check_x509(world.root_keys[0].public_key())  # nothing known, nothing refused


def test_roots_that_did_not_load_still_have_their_keys_refused(world, tmp_path):
    for f in world.dir.iterdir():
        if f.suffix in (".key", ".crt", ".pass", ".toml"):
            shutil.copy(f, tmp_path / f.name)
    (tmp_path / "root1.key").unlink()  # certificate left
    (tmp_path / "root3.crt").unlink()  # key left
    (tmp_path / "root0.pass").write_text("wrong\n")  # certificate left, key does not open
    store = RootStore.load(load_config(tmp_path / "signer.toml").x509)
    assert sorted(store.missing) == [0, 1, 2, 3] and not store.roots
    assert store.public_keys[2] == ()
    ca = CaKeys.build(store)
    for rid in (0, 1, 3):
        assert len(store.public_keys[rid]) == 1
        refused_x509(ca, world.root_keys[rid].public_key())


def test_a_root_store_made_without_public_keys_still_names_its_roots(world):
    store = RootStore(world.store.roots, world.store.missing)
    assert store.public_keys == {}
    refused_x509(CaKeys.build(store), world.root_keys[1].public_key())


# --- the OpenPGP root -------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Pgp:
    homes: Homes
    ca_home: Path
    ca_fpr: str
    user_home: Path
    workdir: Path
    signer: OpenPGPSigner
    no_gpg: OpenPGPSigner  # the same signer, with a workdir gpg cannot use: a refusal came first


@pytest.fixture(scope="module")
def pgp(homes):
    ca_home = homes.new()
    ca_fpr = gen_key(ca_home, "Test CA <ca@example.org>", usage="cert")
    for algo, usage in (("ed25519", "sign"), ("cv25519", "encr")):
        gpg(ca_home, "--passphrase", "", "--quick-add-key", ca_fpr, algo, usage)
    workdir = homes.root / "w"
    signer = load_signer(fingerprint=ca_fpr, home=ca_home, workdir=workdir)
    (homes.root / "file").write_text("")
    no_gpg = dataclasses.replace(signer, workdir=homes.root / "file" / "w")
    return Pgp(homes, ca_home, ca_fpr, homes.new(), workdir, signer, no_gpg)


def test_load_signer_keeps_the_ca_public_keys_as_gpg_lists_them(pgp):
    listing = gpg(pgp.ca_home, "--with-colons", "--list-keys", pgp.ca_fpr).decode().splitlines()
    fprs = [r.split(":")[9] for r in listing if r.startswith("fpr:")]
    assert [k.fingerprint for k in pgp.signer.ca_public] == fprs and len(fprs) == 3
    assert [k.tag for k in pgp.signer.ca_public] == [6, 14, 14]
    assert "ca_public" not in repr(pgp.signer)


def user_block(pgp: Pgp, name: str) -> list:
    fpr = gen_key(pgp.user_home, f"{name} <{name.lower()}@example.org>")
    return walk(gpg(pgp.user_home, "--export", fpr))


def refused_openpgp(pgp: Pgp, data: bytes, ca: CaKeys | None = None) -> str:
    with pytest.raises(Refusal) as info:
        (ca or CaKeys.build(openpgp=pgp.signer)).check_openpgp(summarise(data))
    assert info.value.code == "openpgp-ca-key"
    with pytest.raises(Refusal) as info:  # no GnuPG home could be made: gpg never saw it
        certify_key(pgp.no_gpg, data, 366, ca_keys=ca)
    assert info.value.code == "openpgp-ca-key"
    return info.value.text


def test_the_ca_key_itself_is_refused(pgp):
    text = refused_openpgp(pgp, gpg(pgp.ca_home, "--export", pgp.ca_fpr))
    assert text == "the key is the OpenPGP root's primary key"


@pytest.mark.parametrize("index", [1, 2])
def test_a_user_key_carrying_a_ca_subkey_is_refused(pgp, index):
    ca = walk(gpg(pgp.ca_home, "--export", pgp.ca_fpr))
    at = [i for i, p in enumerate(ca) if p.tag == 14][index - 1]
    stolen = ca[at].raw + ca[at + 1].raw  # the subkey and the CA's binding signature
    data = b"".join(p.raw for p in user_block(pgp, f"Thief{index}")) + stolen
    assert len(summarise(data).keys) == 2
    subkey = pgp.signer.ca_public[index].fingerprint[-16:]
    assert refused_openpgp(pgp, data) == f"subkey {subkey} is OpenPGP root subkey {subkey}"


def test_a_ca_key_redated_as_a_user_subkey_is_refused_by_its_material(pgp):
    """Another creation time, another fingerprint: only the key material tells."""
    user = b"".join(p.raw for p in user_block(pgp, "Redater"))
    for ca_key in pgp.signer.ca_public:
        body = bytearray(ca_key.body)
        body[1:5] = (CREATED + 7).to_bytes(4, "big")
        text = refused_openpgp(pgp, user + packet(14, bytes(body)))
        assert text.endswith(("the OpenPGP root's primary key", ca_key.fingerprint[-16:]))


def test_x509_root_keys_in_an_openpgp_key_are_refused(pgp, world):
    numbers = world.root_keys[0].public_key().public_numbers()
    p384 = (
        world.root_keys[1].public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
    )
    ed = world.root_keys[3].public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    n, e = numbers.n.to_bytes(256, "big"), numbers.e.to_bytes(3, "big")
    bodies = {
        0: key_body(1, mpi(n) + mpi(e)),
        1: key_body(19, bytes([len(P384_OID)]) + P384_OID + mpi(p384)),
        3: key_body(22, bytes([len(ED25519_OID)]) + ED25519_OID + mpi(b"\x40" + ed)),
    }
    ca = CaKeys.build(world.store, pgp.signer)
    user = b"".join(p.raw for p in user_block(pgp, "Rooty"))
    for rid, body in bodies.items():
        assert refused_openpgp(pgp, user + packet(14, body), ca).endswith(f"X.509 root {rid}'s key")


def test_a_csr_carrying_an_openpgp_root_key_is_refused(pgp, world):
    """The demo's OpenPGP root is Ed25519: so may an X.509 request be."""
    ca = CaKeys.build(world.store, pgp.signer)
    (primary, seed_fields), (signing, sub_fields), _ = key_pairs(pgp.ca_home, pgp.ca_fpr)
    for body, fields, label in (
        (primary, seed_fields, "the OpenPGP root's primary key"),
        (signing, sub_fields, "OpenPGP root subkey"),
    ):
        key = parse_request(csr_pem(rebuilt(body, fields)), False).public_key
        assert label in refused_x509(ca, key)


def test_an_ordinary_key_is_certified_with_every_ca_key_checked(pgp, world):
    fpr = gen_key(pgp.user_home, "Plain <plain@example.org>")
    result = certify_key(
        pgp.signer,
        gpg(pgp.user_home, "--export", fpr),
        30,
        ca_keys=CaKeys.build(world.store, pgp.signer),
    )
    assert result.startswith(b"-----BEGIN PGP PUBLIC KEY BLOCK-----")
    assert_clean(pgp.workdir)


def test_a_signer_not_made_by_load_signer_reads_its_public_keys_first(pgp):
    bare = OpenPGPSigner(pgp.ca_home, None, pgp.ca_fpr, None, workdir=pgp.workdir)
    ca = walk(gpg(pgp.ca_home, "--export", pgp.ca_fpr))
    at = next(i for i, p in enumerate(ca) if p.tag == 14)
    data = b"".join(p.raw for p in user_block(pgp, "Bare")) + ca[at].raw + ca[at + 1].raw
    with pytest.raises(Refusal) as info:
        certify_key(bare, data, 366)
    assert info.value.code == "openpgp-ca-key"
    assert_clean(pgp.workdir)
