"""Backup and restore with real gpg and real SQLite.

A backup is taken while another process keeps writing to the CA database;
restored into an empty directory it holds exactly the certificates and audit
records of one committed state, and the chain's head is the one the backup
printed. The refusals are in test_restore_refusals.py.
"""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from signerctl.backup.archive import make_backup
from signerctl.backup.manifest import DATABASE_MEMBER, MANIFEST, BackupError, parse_manifest
from signerctl.backup.restore import restore_backup
from signerctl.demo.rig import audit_verdict, wait_until
from tests.support.backup import (
    gpg_decrypt,
    load,
    make_ca,
    remove_gpg_home,
    signer_user,
    tree_state,
)

TESTS = Path(__file__).resolve().parents[2]  # tests/, where support/ is


WRITER = r"""
import sys, time
from pathlib import Path
from tests.support.backup import issue, load, root_material
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


def test_backup_during_writes_restores_one_committed_state(tmp_path, backup_key, table_rows):
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
        wait_until((control / "in-flight").exists, 30, "the writer's sixth transaction", 0.01)
        made = make_backup(cfg, str(backup_key.public_file), tmp_path / "b.gpg")
        (control / "go").touch()
        wait_until(lambda: audit_verdict(original).count >= 12 + 10, 30, "more writes", 0.01)
    finally:
        (control / "stop").touch()
        _, err = writer.communicate(timeout=60)
    assert writer.returncode == 0, err.decode()
    # Five writes committed before the backup, the sixth was in flight: not in it.
    assert made.audit_ok and made.audit_count == 12 + 5
    assert audit_verdict(original).count >= 12 + 10

    target = tmp_path / "new"
    target.mkdir()
    restored = restore_backup(
        tmp_path / "b.gpg", target / "signer.toml", gnupghome=backup_key.home, load=load
    )
    db = target / "lib" / "ca.sqlite"
    assert (restored.audit_count, restored.audit_head) == (made.audit_count, made.audit_head)
    assert restored.archive_sha256 == made.sha256
    check = audit_verdict(db)
    assert check.ok and (check.count, check.head) == (made.audit_count, made.audit_head)
    assert table_rows(db, "audit") == table_rows(original, "audit", made.audit_count)
    certs = table_rows(db, "certificates")
    assert len(certs) == made.audit_count
    assert certs == table_rows(original, "certificates", len(certs))
    assert (target / "signer.toml").read_bytes() == config.read_bytes()
    assert not (target / "keys" / "root0.key").exists()  # no --include-keys


def test_restore_with_keys_into_empty_directory(tmp_path, made, backup_key, table_rows):
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
    assert table_rows(new.signer.database, "certificates") == table_rows(
        cfg.signer.database, "certificates"
    )
    assert table_rows(new.signer.database, "audit") == table_rows(cfg.signer.database, "audit")
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
    assert manifest.audit_head == audit_verdict(load(config).signer.database).head
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
