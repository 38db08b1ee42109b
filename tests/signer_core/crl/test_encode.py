"""The fast CRL encoder against cryptography's builder, openssl, and the real xdelta."""

from __future__ import annotations

import datetime as dt
import os

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from hypothesis import given, settings
from hypothesis import strategies as st

from signer_core.crl import xdelta
from signer_core.crl.encode import (
    CrlError,
    authority_key_id,
    build_crl,
    der_to_pem,
    encode_entry,
    pem_length,
)
from signer_core.crl.xdelta import XdeltaError, make_delta
from signer_core.roots import Root
from tests.support.crl import NOW, UTC, make_root, openssl_verify, xdelta_patch
from tests.support.examples import examples

_ROOTS = {kind: make_root(kind) for kind in ("rsa", "ec", "ed25519")}
REASONS = [None, *x509.ReasonFlags]


def reference(
    root: Root,
    number: int,
    this: dt.datetime,
    nxt: dt.datetime,
    entries: list[tuple[int, dt.datetime, x509.ReasonFlags | None]],
) -> x509.CertificateRevocationList:
    """The same CRL made by cryptography's (quadratic) builder."""
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(root.certificate.subject)
        .last_update(this)
        .next_update(nxt)
        .add_extension(
            x509.AuthorityKeyIdentifier(authority_key_id(root.certificate), None, None),
            critical=False,
        )
        .add_extension(x509.CRLNumber(number), critical=False)
    )
    for serial, when, reason in entries:
        entry = x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(when)
        if reason is not None:
            entry = entry.add_extension(x509.CRLReason(reason), critical=False)
        builder = builder.add_revoked_certificate(entry.build())
    algorithm = None if root is _ROOTS["ed25519"] else _hash(root)
    return builder.sign(root.private_key, algorithm)


# The digests cryptography's builder signs the reference CRLs with (only ours signs SHA-1).
BuilderHash = hashes.SHA224 | hashes.SHA256 | hashes.SHA384 | hashes.SHA512


def _hash(root: Root) -> BuilderHash:
    digests: dict[str, BuilderHash] = {
        "sha256": hashes.SHA256(),
        "sha384": hashes.SHA384(),
        "sha224": hashes.SHA224(),
        "sha512": hashes.SHA512(),
    }
    return digests[root.config.default_digest]


def ours(
    root: Root,
    number: int,
    this: dt.datetime,
    nxt: dt.datetime,
    entries: list[tuple[int, dt.datetime, x509.ReasonFlags | None]],
) -> bytes:
    return build_crl(
        root.certificate,
        root.private_key,
        root.config.default_digest,
        number,
        this,
        nxt,
        [encode_entry(*entry) for entry in entries],
    )


def fields(crl: x509.CertificateRevocationList) -> tuple:
    def reason(entry: x509.RevokedCertificate) -> x509.ReasonFlags | None:
        try:
            return entry.extensions.get_extension_for_class(x509.CRLReason).value.reason
        except x509.ExtensionNotFound:
            return None

    return (
        crl.issuer,
        _utc(crl, "last_update"),
        _utc(crl, "next_update"),
        crl.signature_algorithm_oid,
        list(crl.extensions),
        [(e.serial_number, _utc(e, "revocation_date"), reason(e)) for e in crl],
    )


def _utc(obj: object, name: str) -> dt.datetime:
    """cryptography 42+ has ``*_utc``; 38 only the naive accessor."""
    value = getattr(obj, f"{name}_utc", None) or getattr(obj, name)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


SMALL = [
    (1, NOW, None),
    (0xFF, NOW - dt.timedelta(days=3), x509.ReasonFlags.key_compromise),
    (2**159 - 1, dt.datetime(2050, 1, 1, tzinfo=UTC), x509.ReasonFlags.superseded),
    (0x80, dt.datetime(1950, 1, 1, tzinfo=UTC), x509.ReasonFlags.remove_from_crl),
]


@pytest.mark.parametrize("kind", ["rsa", "ec", "ed25519"])
@pytest.mark.parametrize("entries", [[], SMALL], ids=["empty", "small"])
def test_same_as_cryptography_builder_and_openssl_verifies(kind, entries, tmp_path):
    root = _ROOTS[kind]
    nxt = NOW + dt.timedelta(days=7)
    der = ours(root, 7, NOW, nxt, entries)
    mine = x509.load_der_x509_crl(der)
    theirs = reference(root, 7, NOW, nxt, entries)
    assert mine.tbs_certlist_bytes == theirs.tbs_certlist_bytes
    assert fields(mine) == fields(theirs)
    openssl_verify(der, root, tmp_path)


@pytest.mark.parametrize("kind", ["rsa", "ec"])
@pytest.mark.parametrize("digest", ["sha1", "sha224", "sha384", "sha512"])
def test_other_digests(kind, digest, tmp_path):
    root = make_root(kind, digest=digest, key=_ROOTS[kind].private_key)
    der = ours(root, 1, NOW, NOW + dt.timedelta(days=1), SMALL)
    mine = x509.load_der_x509_crl(der)
    assert mine.signature_hash_algorithm.name == digest
    openssl_verify(der, root, tmp_path)
    if digest != "sha1":  # recent cryptography neither signs nor verifies SHA-1
        assert mine.is_signature_valid(root.certificate.public_key())
        theirs = reference(root, 1, NOW, NOW + dt.timedelta(days=1), SMALL)
        assert mine.tbs_certlist_bytes == theirs.tbs_certlist_bytes


_dates = st.datetimes(
    min_value=dt.datetime(1950, 1, 1), max_value=dt.datetime(9999, 12, 31), timezones=st.just(UTC)
).map(lambda d: d.replace(microsecond=0))


@settings(max_examples=examples(80), deadline=None)
@given(
    entries=st.lists(
        st.tuples(st.integers(1, 2**159 - 1), _dates, st.sampled_from(REASONS)), max_size=12
    ),
    number=st.integers(0, 2**159 - 1),
    this=_dates,
    kind=st.sampled_from(["rsa", "ec"]),
)
def test_property_equal_to_builder(entries, number, this, kind):
    root = _ROOTS[kind]
    nxt = min(this + dt.timedelta(days=7), dt.datetime(9999, 12, 31, tzinfo=UTC))
    mine = x509.load_der_x509_crl(ours(root, number, this, nxt, entries))
    theirs = reference(root, number, this, nxt, entries)
    assert mine.tbs_certlist_bytes == theirs.tbs_certlist_bytes
    assert fields(mine) == fields(theirs)
    assert mine.is_signature_valid(root.certificate.public_key())


def test_concatenated_entries_equal_a_list():
    root = _ROOTS["ec"]
    entries = [encode_entry(*e) for e in SMALL]
    one = x509.load_der_x509_crl(
        build_crl(
            root.certificate, root.private_key, "sha256", 1, NOW, NOW, bytearray(b"".join(entries))
        )
    )
    two = x509.load_der_x509_crl(
        build_crl(root.certificate, root.private_key, "sha256", 1, NOW, NOW, entries)
    )
    assert one.tbs_certlist_bytes == two.tbs_certlist_bytes


def test_pem_round_trip_and_predicted_length():
    root = _ROOTS["rsa"]
    for count in (0, 1, 2, 3, 47, 48, 49, 500):
        der = ours(root, 1, NOW, NOW, [(s + 1, NOW, None) for s in range(count)])
        text = der_to_pem(der)
        assert len(text) == pem_length(len(der))
        assert all(len(line) <= 64 for line in text.splitlines())
        assert (
            x509.load_pem_x509_crl(text).tbs_certlist_bytes
            == x509.load_der_x509_crl(der).tbs_certlist_bytes
        )


def test_refusals_of_the_encoder():
    root = _ROOTS["rsa"]
    with pytest.raises(CrlError):
        build_crl(root.certificate, root.private_key, "md5", 1, NOW, NOW, b"")
    with pytest.raises(CrlError):
        encode_entry(1, dt.datetime(2026, 1, 1))


def test_xdelta_round_trip_and_private_temp_dir(tmp_path):
    old = os.urandom(200_000)
    new = b"head" + old[4:100_000] + b"middle" + old[100_000:] + b"tail"
    work = tmp_path / "work"
    work.mkdir()
    patch = make_delta(old, new, tmp_dir=work)
    assert patch.startswith(b"%XDZ") and len(patch) < 2000
    assert list(work.iterdir()) == []
    apply_dir = tmp_path / "apply"
    apply_dir.mkdir()
    assert xdelta_patch(old, patch, apply_dir) == new
    assert xdelta_patch(b"", make_delta(b"", new), apply_dir) == new
    assert xdelta_patch(new, make_delta(new, new), apply_dir) == new


def test_xdelta_failures_raise(tmp_path, monkeypatch):
    monkeypatch.setattr(xdelta, "XDELTA", str(tmp_path / "no-such-xdelta"))
    with pytest.raises(XdeltaError):
        make_delta(b"a", b"b", tmp_dir=tmp_path)
    fake = tmp_path / "fake-xdelta"
    # The stand-in reports the mode of the directory holding its files, then fails.
    fake.write_text('#!/bin/sh\necho "broken $(stat -c %a "$(dirname "$3")")" >&2\nexit 2\n')
    fake.chmod(0o755)
    monkeypatch.setattr(xdelta, "XDELTA", str(fake))
    with pytest.raises(XdeltaError, match="exited 2: broken 700"):
        make_delta(b"a", b"b", tmp_dir=tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fake-xdelta"]
