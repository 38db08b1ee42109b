"""Backup and restore with real gpg and real SQLite.

A backup is taken while another process keeps writing to the CA database;
restored into an empty directory it holds exactly the certificates and audit
records of one committed state, and the chain's head is the one the backup
printed. Damaged, truncated, wrongly-encrypted and tampered archives are
refused with a reason and change nothing, even with --force.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import sqlite3
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest
from conftest_backup import (
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

from signer_core.store.audit import AuditLog
from signerctl.backup.archive import make_backup
from signerctl.backup.manifest import (
    DATABASE_MEMBER,
    MANIFEST,
    BackupError,
    Manifest,
    Member,
    parse_manifest,
)
from signerctl.backup.restore import restore_backup
from signerctl.backup.unpack import RestoreError

TESTS = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def backup_key():
    key = make_gpg_key("CA backup <backup@example.org>")
    yield key
    remove_gpg_home(key.home)


@pytest.fixture(scope="module")
def other_key():
    key = make_gpg_key("Someone else <other@example.org>")
    yield key
    remove_gpg_home(key.home)


@pytest.fixture(scope="module")
def made(tmp_path_factory, backup_key):
    """One CA and a backup of it with keys, shared by the refusal tests (read-only)."""
    base = tmp_path_factory.mktemp("made")
    config = make_ca(base / "ca")
    result = make_backup(
        load(config), str(backup_key.public_file), base / "ca.backup", include_keys=True
    )
    return config, result


def rows(db: Path, table: str, limit: int | None = None) -> list[tuple]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        order = "seq" if table == "audit" else "id"
        query = f"SELECT * FROM {table} ORDER BY {order}"
        if limit is not None:
            query += f" LIMIT {int(limit)}"
        return conn.execute(query).fetchall()
    finally:
        conn.close()


def verdict(db: Path):
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return AuditLog(conn).verify()
    finally:
        conn.close()


WRITER = r"""
import sys, time
from pathlib import Path
from conftest_backup import issue, load, root_material
from signer_core.store.audit import AuditLog
from signer_core.store.cadb import CADatabase

config, control = Path(sys.argv[1]), Path(sys.argv[2])
key, cert = root_material(config)
db = CADatabase(load(config).signer.database)
audit = AuditLog(db.connection)
n = 0
while not (control / "stop").exists():
    with db.transaction():
        issue(db, audit, key, cert, 1000 + n)
        if n == 5:  # hold this write uncommitted until the test has its backup
            (control / "in-flight").touch()
            while not (control / "go").exists():
                time.sleep(0.005)
        time.sleep(0.002)
    n += 1
"""


def wait_for(condition, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def test_backup_during_writes_restores_one_committed_state(tmp_path, backup_key):
    config = make_ca(tmp_path / "ca")
    cfg = load(config)
    original = cfg.signer.database
    control = tmp_path / "control"
    control.mkdir()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(TESTS), str(TESTS.parent)]))
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(config), str(control)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        wait_for((control / "in-flight").exists, "the writer's sixth transaction")
        made = make_backup(cfg, str(backup_key.public_file), tmp_path / "b.gpg")
        (control / "go").touch()
        wait_for(lambda: verdict(original).count >= 12 + 10, "more writes")
    finally:
        (control / "stop").touch()
        _, err = writer.communicate(timeout=60)
    assert writer.returncode == 0, err.decode()
    # Five writes committed before the backup, the sixth was in flight: not in it.
    assert made.audit_ok and made.audit_count == 12 + 5
    assert verdict(original).count >= 12 + 10

    target = tmp_path / "new"
    target.mkdir()
    restored = restore_backup(
        tmp_path / "b.gpg", target / "signer.toml", gnupghome=backup_key.home, load=load
    )
    db = target / "lib" / "ca.sqlite"
    assert (restored.audit_count, restored.audit_head) == (made.audit_count, made.audit_head)
    assert restored.archive_sha256 == made.sha256
    check = verdict(db)
    assert check.ok and (check.count, check.head) == (made.audit_count, made.audit_head)
    assert rows(db, "audit") == rows(original, "audit", made.audit_count)
    certs = rows(db, "certificates")
    assert len(certs) == made.audit_count
    assert certs == rows(original, "certificates", len(certs))
    assert (target / "signer.toml").read_bytes() == config.read_bytes()
    assert not (target / "keys" / "root0.key").exists()  # no --include-keys


def test_restore_with_keys_into_empty_directory(tmp_path, made, backup_key):
    config, result = made
    cfg = load(config)
    target = tmp_path / "new"
    restored = restore_backup(
        result.path, target / "etc" / "signer.toml", gnupghome=backup_key.home, load=load
    )
    etc = target / "etc"
    new = load(etc / "signer.toml")
    root, old_root = new.x509.roots[0], cfg.x509.roots[0]
    pairs = [
        (root.key, old_root.key),
        (root.passphrase_file, old_root.passphrase_file),
        (root.certificate, old_root.certificate),
        (new.openpgp.key_file, cfg.openpgp.key_file),
        (new.openpgp.passphrase_file, cfg.openpgp.passphrase_file),
        (etc / "lib" / "crl" / "root0.crl", cfg.signer.state_dir / "crl" / "root0.crl"),
        (new.x509.blocklist_file, cfg.x509.blocklist_file),
    ]
    for new_path, old_path in pairs:
        assert new_path.read_bytes() == old_path.read_bytes()
        assert str(etc) in str(new_path)
    assert set(restored.restored) == {str(p) for p, _ in pairs} | {
        str(etc / "signer.toml"),
        str(new.signer.database),
    }
    assert rows(new.signer.database, "certificates") == rows(cfg.signer.database, "certificates")
    assert rows(new.signer.database, "audit") == rows(cfg.signer.database, "audit")
    for secret in (root.key, root.passphrase_file, new.openpgp.key_file, new.signer.database):
        assert secret.stat().st_mode & 0o777 == 0o600
    assert root.key.parent.stat().st_mode & 0o777 == 0o700
    assert new.signer.database.parent.stat().st_mode & 0o777 == 0o700
    if os.geteuid() == 0:
        import pwd

        uid = pwd.getpwnam(signer_user()).pw_uid
        for path in (root.key, new.signer.database, root.key.parent):
            assert path.stat().st_uid == uid
        assert (etc / "signer.toml").stat().st_uid == 0
    assert restored.warnings == ()


def test_backup_prints_what_the_archive_holds(made, backup_key):
    config, result = made
    plain = gpg_decrypt(backup_key, result.path.read_bytes())
    with tarfile.open(fileobj=io.BytesIO(plain)) as tar:
        names = tar.getnames()
        manifest = parse_manifest(tar.extractfile(MANIFEST).read())
    assert names[0] == MANIFEST and names[1:] == [m.name for m in manifest.members]
    assert (manifest.audit_count, manifest.audit_head) == (result.audit_count, result.audit_head)
    assert manifest.audit_head == verdict(load(config).signer.database).head
    assert hashlib.sha256(result.path.read_bytes()).hexdigest() == result.sha256
    assert "keys/root0.key" in names and "openpgp/key" in names


def test_without_include_keys_no_secret_leaves(tmp_path, made, backup_key):
    config, _ = made
    result = make_backup(load(config), str(backup_key.public_file), tmp_path / "pub.backup")
    plain = gpg_decrypt(backup_key, result.path.read_bytes())
    with tarfile.open(fileobj=io.BytesIO(plain)) as tar:
        names = tar.getnames()
    assert names == [
        MANIFEST,
        "config/signer.toml",
        DATABASE_MEMBER,
        "certs/root0.crt",
        "crl/crl/root0.crl",
        "config/blocklist",
    ]
    secrets = [p.read_bytes() for p in (load(config).signer.state_dir.parent / "keys").iterdir()]
    assert not any(s in plain for s in secrets)
    assert oct(result.path.stat().st_mode & 0o777) == "0o600"


@pytest.fixture
def keyring(tmp_path, backup_key):
    """An operator's keyring holding the backup public key (and nothing else)."""
    ring = tmp_path / "ring"
    ring.mkdir(mode=0o700)
    subprocess.run(
        ["gpg", "--homedir", str(ring), "--batch", "--import", str(backup_key.public_file)],
        check=True,
        capture_output=True,
    )
    yield ring
    remove_gpg_home(ring)


def test_backup_to_a_key_id_in_a_keyring(tmp_path, made, backup_key, keyring):
    config, _ = made
    before = tree_state(keyring)
    result = make_backup(
        load(config), backup_key.fingerprint[-16:], tmp_path / "k.backup", keyring=keyring
    )
    assert result.recipient == backup_key.fingerprint
    assert gpg_decrypt(backup_key, result.path.read_bytes())[:512].find(b"MANIFEST") >= 0
    with pytest.raises(BackupError, match="no public key"):
        make_backup(load(config), "0123456789ABCDEF", tmp_path / "y.backup", keyring=keyring)
    assert tree_state(keyring) == before  # the keyring was only read
    assert sorted(p.name for p in tmp_path.iterdir()) == ["k.backup", "ring"]


def test_backup_refuses_a_secret_key_and_an_existing_file(tmp_path, made, backup_key):
    config, result = made
    secret = tmp_path / "secret.asc"
    secret.write_bytes(
        subprocess.run(
            [
                "gpg",
                "--homedir",
                str(backup_key.home),
                "--batch",
                "--armor",
                "--export-secret-keys",
                backup_key.fingerprint,
            ],
            check=True,
            capture_output=True,
        ).stdout
    )
    with pytest.raises(BackupError, match="private half must never be on the signer"):
        make_backup(load(config), str(secret), tmp_path / "x.backup")
    with pytest.raises(BackupError, match="exists"):
        make_backup(load(config), str(backup_key.public_file), result.path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["secret.asc"]


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
    with tarfile.open(fileobj=io.BytesIO(plain)) as tar:
        members = [(i, tar.extractfile(i).read()) for i in tar.getmembers()]
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


def test_existing_database_needs_force(tmp_path, made, installed, backup_key):
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
    assert rows(db, "certificates") == rows(load(config).signer.database, "certificates")
    assert verdict(db).head == restored.audit_head == result.audit_head
    assert not Path(f"{db}-wal").exists() or verdict(db).count == result.audit_count
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
    from signerctl.main import render

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
    assert data["audit"]["head"] == verdict(load(config).signer.database).head
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
    assert code == 0 and data["audit"]["head"] == verdict(load(config).signer.database).head
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
    assert code == 1 and not data["clean"] and "no baseline" in data["note"]
    assert {"change": "added", "file": "program:signerctl/backup/command.py"} in data["differences"]
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
