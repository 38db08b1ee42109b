"""Damaged old-CA state: each problem is named with its line, and nothing is written.

The database already holds state of its own (an issued certificate, a
revocation, a CRL, audit records) so that "unchanged" means something; after
each refused import a dump of every table must be identical.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import given, settings
from hypothesis import strategies as st

from signer_core.crl.revocation import Revocations
from signer_core.store.audit import AuditLog
from signer_core.store.cadb import CADatabase
from signerctl.migrate.index import IndexLineError, format_line, parse_line
from signerctl.migrate.openssl_ca import MigrationError, Problem, import_openssl
from tests.support.crl import EMPTY_SHA1, NOW, issue, make_root
from tests.support.examples import examples


@pytest.fixture
def old_ca(old_ca, tmp_path):
    """A private copy of the session's old CA, free to damage."""
    ca = old_ca
    copy = tmp_path / "copy"
    shutil.copytree(ca.dir.parent, copy)

    def rebase(p):
        return copy / p.relative_to(ca.dir.parent)

    return dataclasses.replace(
        ca, dir=rebase(ca.dir), current_crl=rebase(ca.current_crl), crl_dir=rebase(ca.crl_dir)
    )


@pytest.fixture
def db(tmp_path: Path, old_ca) -> Iterator[CADatabase]:
    """A database with state of its own in root 0 and root 1."""
    database = CADatabase(tmp_path / "ca.sqlite")
    other = make_root("ec", 1, "Appliance root 1")
    cert_pem = issue(database, other, 0xABCDEF)
    revs = Revocations(database)
    revs.revoke(other, cert_pem, EMPTY_SHA1, NOW)
    AuditLog(database.connection).append("test", note="before the import")
    yield database
    database.close()


def dump(db: CADatabase) -> str:
    return "\n".join(db.connection.iterdump())


def refused(db: CADatabase, ca) -> list[Problem]:
    before = dump(db)
    with pytest.raises(MigrationError) as info:
        import_openssl(
            db,
            0,
            ca.dir,
            ca.root.certificate,
            crl=ca.current_crl,
            crl_dir=ca.crl_dir,
            progress=None,
        )
    assert dump(db) == before, "a refused import must change nothing"
    assert not db.connection.in_transaction
    return list(info.value.problems)


def edit_index(ca, line: int, change) -> str:
    path = ca.dir / "index.txt"
    lines = path.read_text().splitlines()
    old = lines[line - 1]
    lines[line - 1 : line] = change(old)
    path.write_text("".join(ln + "\n" for ln in lines))
    return old


def only(problems: list[Problem], line: int | None, *words: str) -> Problem:
    assert len(problems) == 1, problems
    problem = problems[0]
    assert problem.line == line, problem
    for word in words:
        assert word in problem.text, problem
    return problem


@pytest.mark.parametrize(
    "damage, line, words",
    [
        (lambda ln: [ln.replace("\t", " ", 1)], 7, ["malformed", "fields"]),
        (lambda ln: ["X" + ln[1:]], 7, ["malformed", "status"]),
        (lambda ln: [ln.replace("Z\t", "Q\t", 1)], 7, ["malformed", "time"]),
        (lambda ln: [ln.replace("\t\t", "\t240101000000Z,fellOff\t", 1)], 7, ["malformed"]),
        (lambda ln: [ln.replace("\t10", "\t1G", 1)], 7, ["malformed", "serial"]),
        (lambda ln: [ln, ""], 8, ["malformed"]),
    ],
)
def test_malformed_line(db, old_ca, damage, line, words):
    edit_index(old_ca, 7, damage)
    only(refused(db, old_ca), line, *words)


def test_overlong_and_non_utf8_lines(db, old_ca):
    path = old_ca.dir / "index.txt"
    lines = path.read_bytes().splitlines(keepends=True)
    lines[4] = lines[4].replace(b"user 4", b"user \xff")
    lines[6] = b"V\t" + b"x" * 200_000 + b"\n"
    path.write_bytes(b"".join(lines))
    problems = refused(db, old_ca)
    assert [(p.line, "malformed" in p.text) for p in problems] == [(5, True), (7, True)]


def test_missing_index_and_bad_counter_files(db, old_ca):
    (old_ca.dir / "serial").write_text("not hex\n")
    (old_ca.dir / "index.txt").unlink()
    problems = refused(db, old_ca)
    assert [(Path(p.file).name, p.line) for p in problems] == [("serial", 1), ("index.txt", None)]


def test_missing_certificate(db, old_ca):
    (old_ca.dir / "newcerts" / "1009.pem").unlink()
    only(refused(db, old_ca), 10, "missing", "1009.pem")


def test_index_disagrees_with_certificate(db, old_ca):
    edit_index(old_ca, 3, lambda ln: [ln.replace("user 2/", "user two/")])
    edit_index(old_ca, 5, lambda ln: [ln.replace("271", "281", 1)])
    shutil.copy(old_ca.dir / "newcerts" / "1007.pem", old_ca.dir / "newcerts" / "1006.pem")
    problems = refused(db, old_ca)
    assert [(p.line, p.text.split()[1]) for p in problems] == [
        (3, "subject"),
        (5, "expires"),
        (7, "has"),
        (7, "subject"),
    ]
    assert "serial 1007" in problems[2].text and "index says 1006" in problems[2].text
    assert all(p.file.endswith("index.txt") for p in problems)


def test_duplicate_serial(db, old_ca):
    path = old_ca.dir / "index.txt"
    third = path.read_text().splitlines()[2]
    path.write_text(path.read_text() + third + "\n")
    only(refused(db, old_ca), 201, "duplicate serial 1002", "first on line 3")


def _forged(genuine: x509.Certificate) -> x509.Certificate:
    """The same fields, signed by a key that is not the root's."""
    key = ec.generate_private_key(ec.SECP256R1())
    nb = getattr(genuine, "not_valid_before_utc", None) or genuine.not_valid_before
    na = getattr(genuine, "not_valid_after_utc", None) or genuine.not_valid_after
    return (
        x509.CertificateBuilder()
        .subject_name(genuine.subject)
        .issuer_name(genuine.issuer)
        .public_key(genuine.public_key())
        .serial_number(genuine.serial_number)
        .not_valid_before(nb)
        .not_valid_after(na)
        .sign(key, hashes.SHA256())
    )


def test_certificate_from_another_ca(db, old_ca):
    path = old_ca.dir / "newcerts" / "100B.pem"
    forged = _forged(x509.load_pem_x509_certificate(path.read_bytes()))
    path.write_bytes(forged.public_bytes(serialization.Encoding.PEM))
    only(refused(db, old_ca), 12, "not signed by this root")


def test_unreadable_certificate(db, old_ca):
    (old_ca.dir / "newcerts" / "1010.pem").write_bytes(b"-----BEGIN CERTIFICATE-----\nAAAA\n")
    only(refused(db, old_ca), 17, "unreadable certificate 1010.pem")


def test_every_problem_is_listed(db, old_ca):
    (old_ca.dir / "newcerts" / "1009.pem").unlink()
    edit_index(old_ca, 3, lambda ln: [ln.replace("user 2/", "user two/")])
    edit_index(old_ca, 100, lambda ln: ["garbage"])
    assert [p.line for p in refused(db, old_ca)] == [3, 10, 100]


def test_current_crl_bit_flipped(db, old_ca):
    data = bytearray(old_ca.current_crl.read_bytes())
    data[-5] ^= 1
    old_ca.current_crl.write_bytes(bytes(data))
    problem = only(refused(db, old_ca), None, "bad CRL")
    assert problem.file == str(old_ca.current_crl)


def test_crl_of_another_root(db, old_ca):
    stranger = make_root("ec", 0, "Old OpenSSL Root")  # same name, other key
    crl = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(stranger.certificate.subject)
        .last_update(NOW)
        .next_update(NOW + dt.timedelta(days=1))
        .sign(stranger.private_key, hashes.SHA256())
    )
    der = crl.public_bytes(serialization.Encoding.DER)
    (old_ca.crl_dir / f"{hashlib.sha1(der).hexdigest()}.crl").write_bytes(der)
    only(refused(db, old_ca), None, "bad CRL", "not signed by this root")


def test_crl_whose_name_is_not_its_hash(db, old_ca):
    first = sorted(old_ca.crl_dir.iterdir())[0]
    first.rename(first.with_name("0" * 40 + ".crl"))
    only(refused(db, old_ca), None, "bad CRL", "SHA-1")


def test_pem_crl_is_refused(db, old_ca):
    der = old_ca.current_crl.read_bytes()
    old_ca.current_crl.write_bytes(
        x509.load_der_x509_crl(der).public_bytes(serialization.Encoding.PEM)
    )
    only(refused(db, old_ca), None, "bad CRL", "DER")


def test_crl_listing_a_certificate_the_index_has_valid(db, old_ca):
    revoked_line = next(
        i
        for i, ln in enumerate((old_ca.dir / "index.txt").read_text().splitlines(), 1)
        if ln.startswith("R")
    )

    def unrevoke(line: str) -> list[str]:
        fields = line.split("\t")
        fields[0], fields[2] = "V", ""
        return ["\t".join(fields)]

    edit_index(old_ca, revoked_line, unrevoke)
    only(refused(db, old_ca), None, "bad CRL", "does not have as revoked")


def test_conflict_with_what_is_already_imported(db, old_ca):
    import_openssl(db, 0, old_ca.dir, old_ca.root.certificate, progress=None)
    revoked_line = next(
        i
        for i, ln in enumerate((old_ca.dir / "index.txt").read_text().splitlines(), 1)
        if "keyCompromise" in ln
    )
    edit_index(old_ca, revoked_line, lambda ln: [ln.replace("keyCompromise", "superseded")])
    only(refused(db, old_ca), revoked_line, "already revoked", "another date or reason")


def test_conflicting_certificate_with_same_serial(db, old_ca):
    import_openssl(db, 0, old_ca.dir, old_ca.root.certificate, progress=None)
    db.connection.execute("UPDATE certificates SET der = x'00' WHERE root = 0 AND serial = '1002'")
    only(refused(db, old_ca), 3, "different certificate")


def test_reason_arguments_are_read_and_counted_as_dropped(db, old_ca):
    line = next(
        i
        for i, ln in enumerate((old_ca.dir / "index.txt").read_text().splitlines(), 1)
        if "keyCompromise" in ln
    )
    edit_index(
        old_ca, line, lambda ln: [ln.replace("keyCompromise", "keyCompromise,20231231000000Z")]
    )
    totals = import_openssl(
        db, 0, old_ca.dir, old_ca.root.certificate, crl=old_ca.current_crl, progress=None
    )
    assert totals.dropped_arguments == 1 and totals.revoked == len(old_ca.revoked)


@pytest.mark.parametrize(
    "field, reason, argument",
    [
        ("240101000000Z", None, ""),
        (
            "240101000000Z,certificateHold,holdInstructionReject",
            "certificateHold",
            "holdInstructionReject",
        ),
        ("20500101000000Z,CACompromise,20491231000000Z", "cACompromise", "20491231000000Z"),
    ],
)
def test_revocation_field_forms(field, reason, argument):
    entry = parse_line(1, f"R\t300101000000Z\t{field}\t0A\tunknown\t/CN=x")
    assert (None if entry.reason is None else entry.reason.value, entry.reason_argument) == (
        reason,
        argument,
    )


@pytest.mark.parametrize(
    "field", ["240101000000Z,superseded,x", "240101000000Z,", "241301000000Z", "2401010000Z"]
)
def test_bad_revocation_fields(field):
    with pytest.raises(IndexLineError):
        parse_line(1, f"R\t300101000000Z\t{field}\t0A\tunknown\t/CN=x")


# -- the index parser on arbitrary input ------------------------------------


@settings(max_examples=examples(300), deadline=None)
@given(st.text(alphabet=st.sampled_from("VRE\t0123456789ABCDEFZ,/=abc unknown"), max_size=120))
def test_parse_line_refuses_cleanly(text):
    try:
        entry = parse_line(1, text)
    except IndexLineError:
        return
    assert entry.status in "VRE" and entry.serial >= 0


@settings(max_examples=examples(200), deadline=None)
@given(
    status=st.sampled_from("VRE"),
    serial=st.integers(0, 2**159),
    expires=st.datetimes(dt.datetime(1950, 1, 1), dt.datetime(2200, 1, 1)),
    revoked=st.datetimes(dt.datetime(1950, 1, 1), dt.datetime(2200, 1, 1)),
    reason=st.sampled_from(
        [None, x509.ReasonFlags.key_compromise, x509.ReasonFlags.certificate_hold]
    ),
    subject=st.text(
        st.characters(min_codepoint=32, max_codepoint=126, blacklist_characters="\t"), max_size=40
    ),
)
def test_format_and_parse_round_trip(status, serial, expires, revoked, reason, subject):
    expires = expires.replace(microsecond=0, tzinfo=dt.UTC)
    revoked = revoked.replace(microsecond=0, tzinfo=dt.UTC)
    when = revoked if status == "R" else None
    line = format_line(status, expires, when, reason if when else None, serial, "/CN=" + subject)
    entry = parse_line(9, line)
    assert (entry.status, entry.serial, entry.expires, entry.revoked_at) == (
        status,
        serial,
        expires,
        when,
    )
    assert entry.reason == (reason if when else None)
    assert entry.subject == "/CN=" + subject
