"""The Debian package installed into fresh Debian systems (12 and 13), run and purged.

The users, directories, modes, conffile and units are checked as installed,
``systemd-analyze verify`` runs inside it, both daemons start in it under their
own users on a pseudo-terminal link driven from outside with signer-client (a
CSR signed, an OpenPGP key certified, a certificate revoked), then the system
is booted with systemd-nspawn and the units as shipped do the same; last the
package is purged. See tests/package/conftest.py and tests/support/package_*.py.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import pytest

from tests.support.package_debian import (
    CONF,
    DIRECTORIES,
    EXPOSURE_LIMIT,
    PACKAGE,
    SPOOL_MOUNT,
    UNITS,
    apt_install,
    colon_fields,
    exposure,
    mount_unit_path,
    unit_path,
)
from tests.support.package_installed import (
    Appliance,
    assert_spool_on_its_tmpfs,
    booted,
    certify,
    exec_status,
    host_link,
    installed_module,
    revoke,
    sign,
)

# One xdist worker per release (its group: tests/package/conftest.py), all on one build.
pytestmark = [pytest.mark.slow, pytest.mark.root]


class TestInstalled:
    """In file order, per release: install checks, the daemons at work, then purge."""

    def test_installed_with_dependencies_from_the_archive(self, system):
        status = system.run("dpkg-query", "-W", "-f=${Status} ${Version}", PACKAGE).stdout
        assert status.startswith("install ok installed"), status
        assert system.path("/usr/lib/python3/dist-packages/inotify_simple.py").exists()
        probe = "import inotify_simple; print(inotify_simple.__version__, inotify_simple.__file__)"
        assert system.run("python3", "-c", probe).stdout.split() == [
            "2.0.1",
            "/usr/lib/python3/dist-packages/inotify_simple.py",
        ]

    def test_console_scripts_run(self, system):
        incomplete = []
        for script in ("signer-core", "signer-comm", "signerctl", "signer-client", "signer-bridge"):
            proc = system.run(f"/usr/bin/{script}", "--help", check=False)
            missing = re.search(
                r"ModuleNotFoundError: No module named '((?:comm_handler|signer_core"
                r"|spool)[.\w]*)'",
                proc.stderr,
            )
            if missing:
                incomplete.append(f"{script}: {missing.group(1)}")
                continue
            assert proc.returncode == 0 and "usage:" in proc.stdout, proc.stderr[-2000:]
        if incomplete:
            pytest.skip(f"modules not in this tree yet: {', '.join(incomplete)}")

    def test_users(self, system):
        uids, gids, members = system.ids()
        passwd = {f[0]: f for f in colon_fields(system.path("/etc/passwd"))}
        for user in ("_signer-comm", "_signer"):
            assert user in uids and user in gids, f"{user} or its group is missing"
            assert uids[user] < 1000 and int(passwd[user][3]) == gids[user]
            assert passwd[user][6] == "/usr/sbin/nologin"
        assert uids["_signer"] != uids["_signer-comm"]
        assert "_signer-comm" in members["dialout"]
        assert not [g for g, m in members.items() if "_signer" in m], "_signer is in no other group"

    def test_directories(self, system):
        uids, gids, _ = system.ids()
        for path, (mode, owner, group) in DIRECTORIES.items():
            st = system.path(path).lstat()
            assert (st.st_mode & 0o7777, st.st_uid, st.st_gid) == (
                mode,
                uids[owner],
                gids[group],
            ), path

    def test_conffile_and_units(self, system):
        conffiles = system.path(f"/var/lib/dpkg/info/{PACKAGE}.conffiles").read_text().split()
        assert conffiles == [CONF]
        for unit in UNITS:
            unit_path(system.root, unit)
            assert system.path(
                f"/etc/systemd/system/multi-user.target.wants/{unit}.service"
            ).is_symlink()
        mount_unit_path(system.root)
        assert system.path(f"/etc/systemd/system/local-fs.target.wants/{SPOOL_MOUNT}").is_symlink()

    def test_roots_refused_until_keys_are_installed(self, system):
        if not installed_module(system, "signer_core.roots"):
            pytest.skip("signer_core.roots is not in this tree yet")
        script = (
            "from pathlib import Path\nfrom signer_core.config import load_config\n"
            "from signer_core.roots import RootStore\n"
            f"store = RootStore.load(load_config(Path('{CONF}')).x509)\n"
            "print(sorted(store.roots), sorted(store.missing))\n"
            "for rid, why in sorted(store.missing.items()): print(rid, why)\n"
        )
        out = system.run("python3", "-c", script, user="_signer").stdout.splitlines()
        assert out[0] == "[] [0, 1, 2, 3, 4]", out
        assert all(len(line.split(" ", 1)[1]) > 5 for line in out[1:]), "each refusal has a reason"

    def test_systemd_analyze_verify_is_silent(self, system):
        paths = [*(unit_path(system.root, u) for u in UNITS), mount_unit_path(system.root)]
        units = [f"/{path.relative_to(system.root)}" for path in paths]
        proc = system.run("systemd-analyze", "verify", *units, check=False)
        assert (proc.returncode, proc.stdout + proc.stderr) == (0, "")

    @pytest.mark.parametrize("unit", UNITS)
    def test_systemd_analyze_security(self, system, unit):
        proc = system.run("systemd-analyze", "security", "--offline=true", f"{unit}.service")
        score = exposure(proc.stdout, unit)
        print(f"\n{system.release}: {unit}.service exposure {score}", file=sys.stderr)
        assert score <= EXPOSURE_LIMIT, proc.stdout

    def test_daemons_run_as_their_own_users(self, system, appliance):
        uids, _, _ = system.ids()
        for name, user in (("signer-core", "_signer"), ("signer-comm", "_signer-comm")):
            proc = appliance.daemons[name]
            assert proc.poll() is None, f"{name} exited: {system.log(name)[-2000:]}"
            status = Path(f"/proc/{proc.pid}/status").read_text()
            real_uid = int(re.search(r"^Uid:\s+(\d+)", status, re.M).group(1))
            assert real_uid == uids[user]
            assert re.search(r"^CapBnd:\s+0+$", status, re.M), "empty bounding set"
            assert re.search(r"^NoNewPrivs:\s+1$", status, re.M)
        assert "ERR" not in appliance.system.log("signer-comm")

    def test_signs_a_csr_over_the_link(self, system, appliance):
        sign(appliance, appliance.work / "issued.pem")

    def test_refuses_a_root_without_key(self, system, appliance):
        if not (appliance.work / "req.csr").exists():
            pytest.skip("no CSR: signing is not possible in this tree yet")
        proc = appliance.client(
            "sign-x509",
            "--root",
            "2",
            "--profile",
            "5",
            "--md",
            "8",
            "--days",
            "365",
            "--csr",
            str(appliance.work / "req.csr"),
            "--san",
            "DNS:www.example.org",
            "--subject",
            "/CN=www.example.org",
        )
        assert proc.returncode == 1, proc.stderr
        assert re.search(r"ERR [a-z-]+: .*root 2", proc.stderr.decode()), proc.stderr

    def test_certifies_an_openpgp_key(self, system, appliance):
        certify(appliance)

    def test_revokes_a_certificate(self, system, appliance):
        issued = appliance.work / "issued.pem"
        if not issued.exists():
            pytest.skip("no certificate was issued: nothing to revoke")
        revoke(appliance, issued)

    def test_units_serve_under_systemd(self, system, appliance):
        """The units as shipped, run by systemd (in systemd-nspawn): hardened, and serving the link."""
        system.stop_all()  # the chroot's daemons and relay
        try:
            apt_install("systemd-container")
        except AssertionError as exc:
            pytest.skip(f"no systemd-nspawn: {str(exc)[:300]}")
        conf = system.path(CONF)
        conf.write_text(re.sub(r"(?m)^device = .*$", 'device = "/dev/ttyS0"', conf.read_text()))
        link = host_link(system)
        uids, gids, _ = system.ids()
        os.chown(link.appliance_end, uids["_signer-comm"], gids["_signer-comm"])
        with booted(system, link.appliance_end) as init:
            for unit, user in (("signer-core", "_signer"), ("signer-comm", "_signer-comm")):
                status = exec_status(init, unit)
                assert re.search(rf"^Uid:\s+{uids[user]}\s", status, re.M), status
                for line in ("NoNewPrivs:\t1", "Seccomp:\t2", "CapBnd:\t0000000000000000"):
                    assert line in status, f"{unit}: {line!r} not in\n{status}"
            assert_spool_on_its_tmpfs(init, system)
            web = Appliance(system, link, {}, appliance.work)
            issued = appliance.work / "issued-under-systemd.pem"
            sign(web, issued)
            certify(web)
            revoke(web, issued)

    def test_purge_keeps_the_keys(self, system):
        system.stop_all()
        keys = system.path("/etc/signer-appliance/keys")
        uids, gids, _ = system.ids()
        sentinel = keys / "operator-installed.key"
        sentinel.write_bytes(b"not a real key\n")
        os.chown(sentinel, uids["_signer"], gids["_signer"])
        before = {p.name: p.read_bytes() for p in keys.iterdir()}
        proc = system.run("apt-get", "purge", "-y", "-q", PACKAGE)
        assert "/etc/signer-appliance/keys" in proc.stdout and "kept" in proc.stdout, proc.stdout
        status = system.run("dpkg-query", "-W", "-f=${Status}", PACKAGE, check=False).stdout
        assert "installed" not in status.replace("not-installed", "")
        assert {p.name: p.read_bytes() for p in keys.iterdir()} == before
        st = keys.stat()
        assert (st.st_mode & 0o7777, st.st_uid) == (0o700, uids["_signer"])
        assert system.path("/var/lib/signer-appliance").is_dir(), "the CA database is kept"
        for gone in (
            CONF,
            "/var/spool/signer-appliance",
            "/usr/bin/signer-core",
            "/usr/lib/python3/dist-packages/inotify_simple.py",
        ):
            assert not system.path(gone).exists(), gone
        for unit in UNITS:
            assert not system.path(
                f"/etc/systemd/system/multi-user.target.wants/{unit}.service"
            ).exists()
        assert not system.path(f"/etc/systemd/system/local-fs.target.wants/{SPOOL_MOUNT}").exists()
        assert {"_signer", "_signer-comm"} <= set(system.ids()[0]), "users stay: files are theirs"
