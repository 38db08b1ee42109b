"""Restore with real gpg and real SQLite, refused: damaged, truncated, wrongly-encrypted
and tampered archives are refused with a reason and change nothing, even with --force;
an existing database or a differing file needs --force; missing key files are named.
Also signerctl backup, restore and integrity as an operator runs them, and the OpenPGP
home restored and usable."""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import sqlite3
import subprocess
import tarfile
from pathlib import Path

import pytest

from signerctl.backup.archive import make_backup
from signerctl.backup.manifest import DATABASE_MEMBER, Manifest, Member, parse_manifest
from signerctl.backup.restore import restore_backup
from signerctl.backup.unpack import RestoreError
from signerctl.demo.rig import audit_verdict
from tests.support.backup import (
    STAND_IN,
    GpgKey,
    gpg_decrypt,
    gpg_encrypt,
    load,
    make_ca,
    make_gpg_key,
    remove_gpg_home,
    signer_user,
    tree_state,
)

# --- refusals ---------------------------------------------------------------------


@pytest.fixture
def installed(tmp_path, made):
    """A target that already holds an installation: refusals must leave it as it is."""
    target = tmp_path / "target"
    make_ca(target, certificates=3)
    return target, tree_state(target)


def refused(archive: Path, target: Path, key: GpgKey, match: str) -> None:
    with pytest.raises(RestoreError, match=match):
        restore_backup(archive, target / "signer.toml", gnupghome=key.home, force=True, load=load)


def test_flipped_byte_is_refused(tmp_path, made, installed, backup_key):
    _, result = made
    data = bytearray(result.path.read_bytes())
    data[len(data) // 2] ^= 0x01
    damaged = tmp_path / "damaged"
    damaged.write_bytes(data)
    refused(damaged, installed[0], backup_key, "damaged or truncated|differs from the manifest")
    assert tree_state(installed[0]) == installed[1]


def test_truncated_backup_is_refused(tmp_path, made, installed, backup_key):
    _, result = made
    data = result.path.read_bytes()
    for cut in (len(data) * 2 // 3, len(data) - 1, 40):
        truncated = tmp_path / f"cut{cut}"
        truncated.write_bytes(data[:cut])
        refused(truncated, installed[0], backup_key, "damaged or truncated")
    assert tree_state(installed[0]) == installed[1]


def test_backup_for_another_key_is_refused(tmp_path, made, installed, backup_key, other_key):
    config, _ = made
    wrong = make_backup(load(config), str(other_key.public_file), tmp_path / "wrong")
    refused(wrong.path, installed[0], backup_key, "not encrypted to a key held here")
    assert tree_state(installed[0]) == installed[1]


def rebuild(key: GpgKey, archive: Path, change) -> bytes:
    """Decrypt, let ``change`` edit the list of (TarInfo, bytes), re-encrypt to the same key."""
    plain = gpg_decrypt(key, archive.read_bytes())
    members: list[tuple[tarfile.TarInfo, bytes]] = []
    with tarfile.open(fileobj=io.BytesIO(plain)) as tar:
        for info in tar.getmembers():
            handle = tar.extractfile(info)
            assert handle is not None, f"{info.name}: a backup holds regular files only"
            members.append((info, handle.read()))
    change(members)
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in members:
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return gpg_encrypt(key, out.getvalue())


def _alter(members):
    info, data = members[1]
    members[1] = (info, data.replace(b"test root", b"evil root"))


def _extra(members):
    members.append((tarfile.TarInfo("keys/root7.key"), b"-----BEGIN PRIVATE KEY-----\n"))


def _missing(members):
    del members[3]


def _manifest_last(members):
    members.append(members.pop(0))


def _chain_edited(members):
    """A database whose audit chain was edited, under a manifest that matches it."""
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        path = Path(d, "db")
        index = next(i for i, (info, _) in enumerate(members) if info.name == DATABASE_MEMBER)
        path.write_bytes(members[index][1])
        conn = sqlite3.connect(path)
        conn.execute("""UPDATE audit SET details = '{"root":0,"serial":"1"}' WHERE seq = 3""")
        conn.commit()
        conn.close()
        data = path.read_bytes()
    members[index] = (members[index][0], data)
    manifest = parse_manifest(members[0][1])
    members[0] = (
        members[0][0],
        Manifest(
            manifest.created,
            manifest.audit_count,
            manifest.audit_head,
            manifest.includes_keys,
            tuple(
                Member(m.name, len(data), hashlib.sha256(data).hexdigest())
                if m.name == DATABASE_MEMBER
                else m
                for m in manifest.members
            ),
        ).to_bytes(),
    )


def _smuggle(members):
    """A member the manifest lists too, aimed at the database's place."""
    data = b"SQLite format 3\x00 not really"
    manifest = parse_manifest(members[0][1])
    members[0] = (
        members[0][0],
        Manifest(
            manifest.created,
            manifest.audit_count,
            manifest.audit_head,
            manifest.includes_keys,
            (
                *manifest.members,
                Member("crl/ca.sqlite", len(data), hashlib.sha256(data).hexdigest()),
            ),
        ).to_bytes(),
    )
    members.append((tarfile.TarInfo("crl/ca.sqlite"), data))


@pytest.mark.parametrize("check_only", [False, True])
@pytest.mark.parametrize(
    "change, reason",
    [
        (_alter, "config/signer.toml: SHA-256 differs from the manifest"),
        (_extra, "keys/root7.key: extra, not in the manifest"),
        (_missing, "certs/root0.crt: in the manifest but missing"),
        (_manifest_last, "does not start with its MANIFEST"),
        (_chain_edited, "audit chain in the backup is broken at record 3"),
        (_smuggle, "crl/ca.sqlite: no place for it in the configuration"),
    ],
)
def test_tampered_archive_is_refused(
    tmp_path, made, installed, backup_key, change, reason, check_only
):
    _, result = made
    tampered = tmp_path / "tampered"
    tampered.write_bytes(rebuild(backup_key, result.path, change))
    with pytest.raises(RestoreError, match=reason):
        restore_backup(
            tampered,
            installed[0] / "signer.toml",
            gnupghome=backup_key.home,
            force=True,
            check_only=check_only,
            load=load,
        )
    assert tree_state(installed[0]) == installed[1]


def test_check_only_installs_nothing(tmp_path, made, backup_key):
    _, result = made
    target = tmp_path / "new"
    checked = restore_backup(
        result.path, target / "signer.toml", gnupghome=backup_key.home, check_only=True, load=load
    )
    assert (checked.audit_count, checked.audit_head) == (result.audit_count, result.audit_head)
    assert str(target / "keys" / "root0.key") in checked.restored
    assert not target.exists()


def test_existing_database_needs_force(tmp_path, made, installed, backup_key, table_rows):
    config, result = made
    target, before = installed
    with pytest.raises(RestoreError, match="a CA database exists there; use --force"):
        restore_backup(result.path, target / "signer.toml", gnupghome=backup_key.home, load=load)
    assert tree_state(target) == before
    db = load(target / "signer.toml").signer.database
    busy = sqlite3.connect(db)
    busy.execute("SELECT count(*) FROM certificates").fetchone()
    try:
        with pytest.raises(RestoreError, match=f"in use by process {os.getpid()}"):
            restore_backup(
                result.path,
                target / "signer.toml",
                gnupghome=backup_key.home,
                force=True,
                load=load,
            )
    finally:
        busy.close()
    assert tree_state(target) == before
    restored = restore_backup(
        result.path, target / "signer.toml", gnupghome=backup_key.home, force=True, load=load
    )
    assert table_rows(db, "certificates") == table_rows(
        load(config).signer.database, "certificates"
    )
    assert audit_verdict(db).head == restored.audit_head == result.audit_head
    assert not Path(f"{db}-wal").exists() or audit_verdict(db).count == result.audit_count
    assert (
        load(target / "signer.toml").x509.roots[0].key.read_bytes()
        == load(config).x509.roots[0].key.read_bytes()
    )


def test_differing_file_needs_force(tmp_path, made, backup_key):
    _, result = made
    target = tmp_path / "t"
    target.mkdir()
    (target / "signer.toml").write_text("# the package's default\n")
    before = tree_state(target)
    with pytest.raises(RestoreError, match="signer.toml: exists and differs"):
        restore_backup(result.path, target / "signer.toml", gnupghome=backup_key.home, load=load)
    assert tree_state(target) == before


@pytest.mark.skipif(STAND_IN, reason="signerctl reads the configuration with signer_core.config")
def test_signerctl_backup_restore_integrity(tmp_path, made, backup_key):
    from signerctl.backup.command import add_commands
    from signerctl.cli import render

    parser = argparse.ArgumentParser()
    parser.add_argument("--config", type=Path)
    add_commands(parser.add_subparsers(dest="command", required=True))

    def ctl(*argv):
        args = parser.parse_args([str(a) for a in argv])
        return args.func(args)

    config, _ = made
    out = tmp_path / "cli.backup"
    data, code = ctl(
        "--config",
        config,
        "backup",
        "--encrypt-to",
        backup_key.public_file,
        "--out",
        out,
        "--include-keys",
    )
    assert code == 0 and data["sha256"] == hashlib.sha256(out.read_bytes()).hexdigest()
    assert data["audit"]["head"] == audit_verdict(load(config).signer.database).head
    text = io.StringIO()
    render(data, out=text)
    assert data["sha256"] in text.getvalue() and data["audit"]["head"] in text.getvalue()

    target = tmp_path / "new" / "signer.toml"
    data, code = ctl(
        "--config", target, "restore", "--in", out, "--gnupghome", backup_key.home, "--check"
    )
    assert code == 0 and {"path": str(target)} in data["would_restore"]
    assert not target.parent.exists()
    data, code = ctl("--config", target, "restore", "--in", out, "--gnupghome", backup_key.home)
    assert code == 0 and data["audit"]["head"] == audit_verdict(load(config).signer.database).head
    installed = {row["path"]: row for row in data["restored"]}
    key = installed[str(load(target).x509.roots[0].key)]
    assert key["mode"] == "0600" and (os.geteuid() != 0 or key["owner"] == signer_user())
    data, code = ctl("--config", target, "restore", "--in", out, "--gnupghome", backup_key.home)
    assert code == 1 and "use --force" in data["refused"]
    data, code = ctl(
        "--config", target, "backup", "--encrypt-to", backup_key.public_file, "--out", out
    )
    assert code == 1 and "exists" in data["refused"]

    data, code = ctl("--config", target, "integrity")
    assert code == 1 and data["baseline"] is None and "no baseline" in data["note"]
    assert "differences" not in data  # nothing to compare with: no file is called "added"
    data, code = ctl("--config", target, "integrity", "--accept")
    assert code == 0 and data["clean"]
    again, code = ctl("--config", target, "integrity")
    assert code == 0 and again["clean"] and again["digest"] == data["digest"]


def test_early_refusal_in_a_large_backup_names_the_member(tmp_path, backup_key):
    """gpg is still writing when the reader refuses the first member: the reason is the member's."""
    config = make_ca(tmp_path / "ca", certificates=2)
    db = sqlite3.connect(load(config).signer.database)
    db.execute("CREATE TABLE padding (data BLOB)")
    db.executemany("INSERT INTO padding VALUES (?)", [(os.urandom(1 << 20),) for _ in range(6)])
    db.commit()
    db.close()
    result = make_backup(load(config), str(backup_key.public_file), tmp_path / "big")
    assert result.path.stat().st_size > 6 << 20
    tampered = tmp_path / "tampered"
    tampered.write_bytes(rebuild(backup_key, result.path, _alter))
    target = tmp_path / "new"
    with pytest.raises(RestoreError, match="config/signer.toml: SHA-256 differs"):
        restore_backup(tampered, target / "signer.toml", gnupghome=backup_key.home, load=load)
    assert not target.exists()


def test_openpgp_home_is_restored_and_usable(tmp_path, backup_key):
    """A GnuPG home as the OpenPGP key: its files travel, its agent's sockets do not."""
    config = make_ca(tmp_path / "ca", certificates=1)
    text = config.read_text()
    config.write_text(
        text[: text.index("[openpgp]")] + '[openpgp]\nhome = "gnupg"\n'
        f'fingerprint = "{"AB" * 20}"\n'
    )
    ca_key = make_gpg_key("CA OpenPGP <pgp@example.org>", home=tmp_path / "ca" / "gnupg")
    try:
        # A running agent leaves sockets in the home; they are not files to back up.
        subprocess.run(
            ["gpg-connect-agent", "--homedir", str(ca_key.home), "/bye"],
            check=True,
            capture_output=True,
        )
        assert (ca_key.home / "S.gpg-agent").exists()
        result = make_backup(
            load(config), str(backup_key.public_file), tmp_path / "pgp", include_keys=True
        )
    finally:
        remove_gpg_home(ca_key.home)
    assert not any("S.gpg-agent" in name for name in result.members)
    assert any(name.startswith("openpgp/home/private-keys-v1.d/") for name in result.members)
    target = tmp_path / "new"
    restore_backup(result.path, target / "signer.toml", gnupghome=backup_key.home, load=load)
    home = target / "gnupg"
    assert home.stat().st_mode & 0o777 == 0o700
    try:
        listing = subprocess.run(
            ["gpg", "--homedir", str(home), "--batch", "--with-colons", "--list-secret-keys"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    finally:
        remove_gpg_home(home)
    assert f"fpr:::::::::{ca_key.fingerprint}:" in listing


def test_missing_key_files_are_named(tmp_path, backup_key):
    config = make_ca(tmp_path / "ca", certificates=1)
    cfg = load(config)
    cfg.x509.roots[0].passphrase_file.unlink()
    result = make_backup(cfg, str(backup_key.public_file), tmp_path / "b", include_keys=True)
    assert result.missing == (str(cfg.x509.roots[0].passphrase_file),)
    assert "keys/root0.key" in result.members and "keys/root0.passphrase" not in result.members
