"""The restore side's parsers on hostile input: the manifest and the tar stream.

Whatever the bytes, the result is a checked manifest (every staged file
matching it) or the module's own refusal; never another exception, never a
file outside the staging directory, never unbounded reading.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from signerctl.backup.manifest import (
    MANIFEST,
    BackupError,
    Manifest,
    Member,
    check_member_name,
    parse_manifest,
)
from signerctl.backup.unpack import RestoreError, read_archive
from tests.support.examples import examples
from tlog.records import GENESIS

FILES = {
    "config/signer.toml": b"[spool]\ndir = 'spool'\n",
    "database/ca.sqlite": b"x" * 3000,
    "keys/root0.key": b"-----BEGIN PRIVATE KEY-----\n",
}


def manifest_for(files: dict[str, bytes]) -> bytes:
    return Manifest(
        "2026-01-01T00:00:00+00:00",
        0,
        GENESIS,
        True,
        tuple(Member(n, len(d), hashlib.sha256(d).hexdigest()) for n, d in files.items()),
    ).to_bytes()


def tar_bytes(entries: list[tuple[tarfile.TarInfo, bytes]]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in entries:
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


GOOD = tar_bytes(
    [(tarfile.TarInfo(MANIFEST), manifest_for(FILES))]
    + [(tarfile.TarInfo(n), d) for n, d in FILES.items()]
)


def read(data: bytes) -> tuple[Manifest | None, str, dict[str, bytes]]:
    """(manifest or None, refusal, staged files) for one stream, in a fresh staging dir."""
    with tempfile.TemporaryDirectory() as d:
        staging = Path(d)
        try:
            manifest, refusal = read_archive(io.BytesIO(data), staging), ""
        except RestoreError as exc:
            manifest, refusal = None, str(exc)
        staged = {
            p.relative_to(staging).as_posix(): p.read_bytes()
            for p in staging.rglob("*")
            if p.is_file()
        }
    return manifest, refusal, staged


def test_good_stream_is_staged_exactly():
    manifest, refusal, staged = read(GOOD)
    assert refusal == "" and staged == FILES
    assert [m.name for m in manifest.members] == list(FILES)


@settings(max_examples=examples(300), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(st.tuples(st.integers(0, len(GOOD) - 1), st.integers(1, 255)), min_size=1, max_size=4),
    st.integers(0, len(GOOD)),
)
def test_damaged_stream_is_refused_or_still_exact(flips, cut):
    data = bytearray(GOOD)
    for pos, mask in flips:
        data[pos] ^= mask
    manifest, refusal, staged = read(bytes(data[:cut]))
    if manifest is None:
        assert refusal
    else:  # the damage missed every checked byte (padding, unused header fields)
        assert staged == {m.name: staged[m.name] for m in manifest.members}
        for m in manifest.members:
            assert hashlib.sha256(staged[m.name]).hexdigest() == m.sha256


@settings(max_examples=examples(200), deadline=None)
@given(st.binary(max_size=4096))
def test_random_bytes_are_refused(data):
    manifest, refusal, staged = read(data)
    assert manifest is None and refusal and staged == {}


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=examples(150), deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["format", "created", "audit", "includes_keys", "members", "extra"]),
        JSON,
        max_size=6,
    )
    | JSON,
    st.booleans(),
)
def test_manifest_parser_refuses_or_returns_checked_data(data, with_format):
    if with_format and isinstance(data, dict):
        data["format"] = "signer-appliance-backup/1"
    try:
        manifest = parse_manifest(json.dumps(data).encode())
    except BackupError:
        return
    for m in manifest.members:
        assert check_member_name(m.name) == m.name and len(m.sha256) == 64


@settings(max_examples=examples(300), deadline=None)
@given(st.text(max_size=60) | st.text(alphabet="./a-_~\\\x00", max_size=30))
def test_member_names_never_leave_the_staging_dir(name):
    try:
        checked = check_member_name(name)
    except BackupError:
        return
    parts = checked.split("/")
    assert "" not in parts and ".." not in parts and "." not in parts
    assert not any(p.startswith("/") or "\\" in p or "\x00" in p for p in parts)
    assert Path("/staging", checked).resolve().is_relative_to("/staging")


def test_oversized_pax_header_is_refused_without_reading_it_all():
    info = tarfile.TarInfo("database/ca.sqlite")
    info.pax_headers = {"comment": "x" * (3 << 20)}
    data = tar_bytes([(tarfile.TarInfo(MANIFEST), manifest_for(FILES)), (info, FILES[info.name])])
    _, refusal, _ = read(data)
    assert "more data than its manifest lists" in refusal


def test_member_larger_than_listed_is_refused():
    data = tar_bytes(
        [
            (tarfile.TarInfo(MANIFEST), manifest_for(FILES)),
            (tarfile.TarInfo("config/signer.toml"), FILES["config/signer.toml"] + b"#"),
        ]
    )
    assert "manifest says" in read(data)[1]


def test_links_and_escaping_names_are_refused():
    link = tarfile.TarInfo("config/signer.toml")
    link.type, link.linkname = tarfile.SYMTYPE, "/etc/shadow"
    assert (
        "not a regular file"
        in read(tar_bytes([(tarfile.TarInfo(MANIFEST), manifest_for(FILES)), (link, b"")]))[1]
    )
    escape = tarfile.TarInfo("../../etc/cron.d/x")
    assert (
        "unsafe member name"
        in read(
            tar_bytes(
                [(tarfile.TarInfo(MANIFEST), manifest_for(FILES)), (escape, b"* * * * * root id\n")]
            )
        )[1]
    )


def test_manifest_listing_an_unsafe_name_is_refused():
    bad = manifest_for(FILES).replace(b"keys/root0.key", b"keys/../../x.key")
    assert "unsafe member name" in read(tar_bytes([(tarfile.TarInfo(MANIFEST), bad)]))[1]


def test_members_that_clash_are_refused():
    files = {"crl/a.crl": b"1", "crl/a.crl/b.crl": b"2"}
    data = tar_bytes(
        [(tarfile.TarInfo(MANIFEST), manifest_for(files))]
        + [(tarfile.TarInfo(n), d) for n, d in files.items()]
    )
    assert "crl/a.crl/b.crl: clashes with another member" in read(data)[1]
