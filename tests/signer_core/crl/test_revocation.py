"""Revocations end to end: real SQLite, real xdelta patch, real openssl crl -verify."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import logging
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from signer_core.crl import revocation
from signer_core.crl.encode import encode_entry
from signer_core.crl.revocation import Revocations
from signer_core.refusal import Refusal
from signer_core.store.cadb import CADatabase, serial_text
from signer_core.x509.compat import crl_last_update
from tests.support.crl import (
    EMPTY_SHA1,
    NOW,
    Root,
    WebHost,
    crl_number,
    issue,
    leaf,
    make_root,
    new_key,
    pem,
    serials,
)
from tests.support.examples import examples

KINDS = ["rsa", "ec"]
_ROOTS: dict[str, Root] = {}


@pytest.fixture(params=KINDS)
def root(request: pytest.FixtureRequest) -> Root:
    if request.param not in _ROOTS:
        _ROOTS[request.param] = make_root(request.param)
    return _ROOTS[request.param]


@pytest.fixture
def db(tmp_path: Path) -> Iterator[CADatabase]:
    database = CADatabase(tmp_path / "ca.sqlite")
    yield database
    database.close()


@pytest.fixture
def revs(db: CADatabase) -> Revocations:
    return Revocations(db)


def refused(code: str, call, *args, **kwargs) -> Refusal:
    with pytest.raises(Refusal) as info:
        call(*args, **kwargs)
    assert info.value.code == code, info.value
    return info.value


def test_revoke_answers_with_a_delta_the_client_applies(root, db, revs, tmp_path):
    client = WebHost(root, tmp_path)
    first = client.apply(revs.refresh(root, client.sha1, NOW))
    assert serials(first) == []
    cert_pem = issue(db, root, 0x1234567890ABCDEF)
    outcome = revs.revoke(
        root,
        cert_pem,
        client.sha1,
        NOW + dt.timedelta(minutes=5),
        reason=x509.ReasonFlags.key_compromise,
    )
    assert outcome.answer.startswith(b"%XDZ")
    crl = client.apply(outcome.answer)
    assert serials(crl) == [0x1234567890ABCDEF] == [outcome.serial]
    assert outcome.crl_number == crl_number(crl)
    entry = crl.get_revoked_certificate_by_serial_number(0x1234567890ABCDEF)
    assert (
        entry.extensions.get_extension_for_class(x509.CRLReason).value.reason
        == x509.ReasonFlags.key_compromise
    )
    assert crl_number(crl) == crl_number(first) + 1
    assert crl.is_signature_valid(root.certificate.public_key())
    assert revs.current_crl(root.id) == client.der
    next_update = getattr(crl, "next_update_utc", None) or crl.next_update
    assert next_update.replace(tzinfo=dt.UTC) - crl_last_update(crl) == dt.timedelta(days=7)


def test_many_revocations_keep_the_client_in_sync(root, db, revs, tmp_path):
    client = WebHost(root, tmp_path)
    client.apply(revs.refresh(root, EMPTY_SHA1, NOW))
    revoked = []
    for serial in range(100, 105):
        revoked.append(serial)
        crl = client.apply(revs.revoke(root, issue(db, root, serial), client.sha1, NOW).answer)
        assert serials(crl) == revoked


@pytest.mark.parametrize("client_hash", [EMPTY_SHA1, b"0" * 40, b"ab" * 20])
def test_out_of_sync_client_gets_the_whole_crl_in_pem(root, db, revs, tmp_path, client_hash):
    revs.refresh(root, EMPTY_SHA1, NOW)
    answer = revs.revoke(root, issue(db, root, 77), client_hash, NOW).answer
    assert answer.startswith(b"-----BEGIN X509 CRL-----\n")
    crl = WebHost(root, tmp_path).apply(answer)
    assert serials(crl) == [77]


def test_refresh_changes_this_update_and_number(root, revs, tmp_path):
    client = WebHost(root, tmp_path)
    refreshed = revs.revoke(root, b"", EMPTY_SHA1, NOW)
    one = client.apply(refreshed.answer)
    assert refreshed.serial is None and refreshed.crl_number == crl_number(one)
    two = client.apply(revs.refresh(root, client.sha1, NOW + dt.timedelta(hours=1)))
    assert crl_number(two) == crl_number(one) + 1
    assert crl_last_update(two) == crl_last_update(one) + dt.timedelta(hours=1)


def test_revoking_twice_is_harmless(root, db, revs, tmp_path):
    client = WebHost(root, tmp_path)
    cert_pem = issue(db, root, 4242)
    old_sha1 = client.sha1
    first = client.apply(revs.revoke(root, cert_pem, old_sha1, NOW).answer)
    # The answer was lost: the client retries with the hash it still holds.
    again = WebHost(root, tmp_path / "retry")
    retried = again.apply(
        revs.revoke(root, cert_pem, old_sha1, NOW + dt.timedelta(minutes=1)).answer
    )
    assert again.der == client.der
    # The client that did get it asks again: a delta onto the same CRL.
    outcome = revs.revoke(root, cert_pem, client.sha1, NOW + dt.timedelta(minutes=2))
    assert outcome.answer.startswith(b"%XDZ")
    assert serials(client.apply(outcome.answer)) == [4242] == serials(retried) == serials(first)
    assert (outcome.serial, outcome.crl_number) == (4242, crl_number(first))
    # Once the current CRL has expired, asking again issues a fresh one.
    late = client.apply(revs.revoke(root, cert_pem, client.sha1, NOW + dt.timedelta(days=8)).answer)
    assert crl_number(late) == crl_number(first) + 1 and serials(late) == [4242]


def test_hostile_inputs_are_refused(root, db, revs):
    other = make_root("ec", name="Other Root")
    good = issue(db, root, 555)
    refused("bad-crl-hash", revs.revoke, root, good, b"A" * 40, NOW)
    refused("bad-crl-hash", revs.revoke, root, good, b"a" * 39, NOW)
    refused("bad-crl-hash", revs.revoke, root, good, b"g" * 40, NOW)
    refused("bad-crl-hash", revs.revoke, root, good, EMPTY_SHA1 + b"\n", NOW)
    refused("bad-crl-hash", revs.refresh, root, b"", NOW)
    refused("bad-certificate", revs.revoke, root, b"garbage", EMPTY_SHA1, NOW)
    refused(
        "bad-certificate",
        revs.revoke,
        root,
        b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        EMPTY_SHA1,
        NOW,
    )
    refused("cert-too-large", revs.revoke, root, good + b" " * 70000, EMPTY_SHA1, NOW)
    refused("wrong-issuer", revs.revoke, root, pem(leaf(other, 555)), EMPTY_SHA1, NOW)
    forged = leaf(root, 555, signing_key=other.private_key)
    refused("bad-cert-signature", revs.revoke, root, pem(forged), EMPTY_SHA1, NOW)
    refused("unknown-certificate", revs.revoke, root, pem(leaf(root, 556)), EMPTY_SHA1, NOW)
    # Same serial, signed by the root, but not the certificate on record.
    refused(
        "unknown-certificate", revs.revoke, root, pem(leaf(root, 555, days=10)), EMPTY_SHA1, NOW
    )
    assert revs.current_crl(root.id) is None


def test_reserved_certificate_is_not_revocable(root, db, revs):
    db.reserve(root.id, 999, b"d" * 32, 5)
    refused("unknown-certificate", revs.revoke, root, pem(leaf(root, 999)), EMPTY_SHA1, NOW)


def test_certificate_of_another_root_index_is_unknown(db, revs):
    # The same root certificate configured under index 1: its database rows are index 0's.
    first = make_root("ec", 0)
    cert_pem = issue(db, first, 31337)
    refused(
        "unknown-certificate",
        revs.revoke,
        dataclasses.replace(first, id=1),
        cert_pem,
        EMPTY_SHA1,
        NOW,
    )


@settings(
    max_examples=examples(60),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    payload=st.one_of(
        st.binary(max_size=3000),
        st.binary(max_size=2000).map(
            lambda b: b"-----BEGIN CERTIFICATE-----\n" + b + b"\n-----END"
        ),
    ),
    client_hash=st.binary(max_size=45),
)
def test_random_inputs_only_ever_refuse(root, revs, payload, client_hash):
    try:
        answer = revs.revoke(root, payload, client_hash, NOW).answer
    except Refusal:
        return
    assert payload == b"" and answer


def test_history_is_bounded(root, db, tmp_path):
    revs = Revocations(db, history=3)
    hashes = []
    for hour in range(6):
        der = x509.load_pem_x509_crl(revs.refresh(root, EMPTY_SHA1, NOW + dt.timedelta(hours=hour)))
        hashes.append(hashlib.sha1(revs.current_crl(root.id)).hexdigest().encode())
        assert der.public_bytes(serialization.Encoding.DER) == revs.current_crl(root.id)
    count = db.connection.execute("SELECT count(*) FROM crls WHERE root = ?", (root.id,))
    assert count.fetchone()[0] == 3
    assert revs.refresh(root, hashes[-3], NOW + dt.timedelta(hours=7)).startswith(b"%XDZ")
    assert revs.refresh(root, hashes[0], NOW + dt.timedelta(hours=8)).startswith(b"-----BEGIN")


def test_add_known_crl_gives_a_delta_and_numbers_continue(root, db, revs, tmp_path):
    legacy = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(root.certificate.subject)
        .last_update(NOW - dt.timedelta(days=1))
        .next_update(NOW + dt.timedelta(days=1))
        .add_extension(x509.CRLNumber(1000), critical=False)
        .add_revoked_certificate(
            x509.RevokedCertificateBuilder()
            .serial_number(5)
            .revocation_date(NOW - dt.timedelta(days=9))
            .build()
        )
        .sign(root.private_key, hashes.SHA256())
    )
    client = WebHost(root, tmp_path)
    client.der = legacy.public_bytes(serialization.Encoding.DER)
    revs.add_known_crl(root.id, client.der)
    revs.add_known_crl(root.id, client.der)  # importing twice is harmless
    assert revs.current_crl(root.id) is None
    answer = revs.revoke(root, issue(db, root, 6), client.sha1, NOW).answer
    assert answer.startswith(b"%XDZ")
    crl = client.apply(answer)
    assert serials(crl) == [6] and crl_number(crl) == 1001
    refused("bad-crl", revs.add_known_crl, root.id, b"\x30\x03junk")


def test_too_large_for_one_message_is_refused_but_delta_works(
    root, db, revs, tmp_path, monkeypatch, caplog
):
    _seed(db, root.id, [(s, NOW, None) for s in range(1, 3001)])
    client = WebHost(root, tmp_path)
    client.apply(revs.refresh(root, EMPTY_SHA1, NOW))
    monkeypatch.setattr(revocation, "MAX_ANSWER", len(revs.current_crl(root.id)))
    with caplog.at_level(logging.WARNING, logger="signer_core.crl.revocation"):
        refused("crl-too-large", revs.revoke, root, issue(db, root, 5000), EMPTY_SHA1, NOW)
    assert "protocol limit" in caplog.text
    # The revocation stands; a client with a known CRL is brought up to date.
    assert serials(client.apply(revs.refresh(root, client.sha1, NOW)))[-1] == 5000


def _seed(db: CADatabase, root_id: int, rows: list[tuple[int, dt.datetime, int]]) -> None:
    with db.connection:
        db.connection.execute("BEGIN")
        db.connection.executemany(
            "INSERT INTO revocations (root, serial, revoked_at, reason, not_after, entry)"
            " VALUES (?, ?, ?, NULL, ?, ?)",
            [
                (root_id, serial_text(s), int(when.timestamp()), expires, encode_entry(s, when))
                for s, when, expires in rows
            ],
        )


def test_expired_entries_are_pruned_when_asked(root, db, tmp_path):
    revs = Revocations(db, prune_expired_after_days=30)
    day = dt.timedelta(days=1)
    expired = int((NOW - 31 * day).timestamp())
    recent = int((NOW - 29 * day).timestamp())
    _seed(db, root.id, [(1, NOW - 100 * day, expired), (2, NOW - 100 * day, recent)])
    client = WebHost(root, tmp_path)
    assert serials(client.apply(revs.refresh(root, EMPTY_SHA1, NOW))) == [2]
    # The cached entries follow the clock: entry 2 goes once it is old enough.
    later = client.apply(revs.refresh(root, client.sha1, NOW + 2 * day))
    assert serials(later) == []
    unpruned = Revocations(db).refresh(root, EMPTY_SHA1, NOW + 2 * day)
    assert serials(x509.load_pem_x509_crl(unpruned)) == [1, 2]


def test_failed_signing_rolls_back_the_revocation(root, db, revs, tmp_path):
    bad_root = dataclasses.replace(
        root, config=dataclasses.replace(root.config, default_digest="md4")
    )
    cert_pem = issue(db, root, 1001)
    refused("crl-signing-failed", revs.revoke, bad_root, cert_pem, EMPTY_SHA1, NOW)
    assert revs.current_crl(root.id) is None
    client = WebHost(root, tmp_path)
    assert serials(client.apply(revs.refresh(root, EMPTY_SHA1, NOW))) == []
    assert serials(client.apply(revs.revoke(root, cert_pem, client.sha1, NOW).answer)) == [1001]


def test_revocations_by_another_connection_are_listed(root, db, revs, tmp_path):
    client = WebHost(root, tmp_path)
    client.apply(revs.refresh(root, EMPTY_SHA1, NOW))
    other_db = CADatabase(tmp_path / "ca.sqlite")
    try:
        Revocations(other_db).revoke(root, issue(db, root, 12), EMPTY_SHA1, NOW)
    finally:
        other_db.close()
    assert serials(
        client.apply(revs.revoke(root, issue(db, root, 13), client.sha1, NOW).answer)
    ) == [
        12,
        13,
    ]


def test_roots_have_separate_crls(db, revs, tmp_path):
    first, second = make_root("ec", 0), make_root("rsa", 1, name="Second Root")
    a, b = WebHost(first, tmp_path), WebHost(second, tmp_path)
    assert serials(a.apply(revs.revoke(first, issue(db, first, 1), a.sha1, NOW).answer)) == [1]
    assert serials(b.apply(revs.revoke(second, issue(db, second, 2), b.sha1, NOW).answer)) == [2]
    assert crl_number(x509.load_der_x509_crl(b.der)) == 1


def test_large_seeded_set_plus_one(root, db, revs, tmp_path):
    when = NOW - dt.timedelta(days=3)
    _seed(db, root.id, [(s, when, None) for s in range(10**12, 10**12 + 20000)])
    client = WebHost(root, tmp_path)
    client.apply(revs.refresh(root, EMPTY_SHA1, NOW))
    crl = client.apply(revs.revoke(root, issue(db, root, 7), client.sha1, NOW).answer)
    got = serials(crl)
    assert len(got) == 20001 and got[-1] == 7 and got[0] == 10**12


def test_ed25519_root(db, revs, tmp_path):
    root = make_root("ed25519", 3, name="Edwards Root", key=new_key("ed25519"))
    client = WebHost(root, tmp_path)
    assert serials(
        client.apply(revs.revoke(root, issue(db, root, 9), client.sha1, NOW).answer)
    ) == [9]


@pytest.mark.slow
def test_real_protocol_limit_at_400k_entries(db, revs, tmp_path, caplog):
    """Past 2^24-1 bytes of PEM the whole CRL is refused; deltas still flow, fast."""
    root = make_root("ec", 4, name="Big Root")
    when = NOW - dt.timedelta(days=1)
    _seed(db, root.id, [((1 << 126) + s * 7919, when, None) for s in range(400_000)])
    with caplog.at_level(logging.WARNING, logger="signer_core.crl.revocation"):
        refused("crl-too-large", revs.refresh, root, EMPTY_SHA1, NOW)
    assert "protocol limit" in caplog.text
    client = WebHost(root, tmp_path)
    client.der = revs.current_crl(root.id)
    assert len(client.der) > 12_000_000
    cert_pem = issue(db, root, 5)
    start = time.perf_counter()
    answer = revs.revoke(root, cert_pem, client.sha1, NOW + dt.timedelta(minutes=1)).answer
    elapsed = time.perf_counter() - start
    assert answer.startswith(b"%XDZ") and len(answer) < 4096
    crl = client.apply(answer)
    assert len(crl) == 400_001
    assert crl.get_revoked_certificate_by_serial_number(5) is not None
    assert elapsed < 10, f"one more revocation took {elapsed:.1f} s"  # quadratic: minutes
