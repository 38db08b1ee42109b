"""The Debian package, built, checked, installed into fresh Debian systems, run and purged.

Packaging tests, no trust boundary of their own: they drive the installed
appliance from outside as the web host would. Root only, slow.

- The .deb is built with scripts/build-deb.sh (or taken from $SIGNER_DEB);
  lintian must report no error and no warning, and each unit must rate 2.0 or
  lower in ``systemd-analyze security --offline=true``.
- For Debian 12 (bookworm) and 13 (trixie), mmdebstrap makes a minimal root
  file system (cached as a tarball for the session); apt installs the .deb
  into it with its dependencies from the archive. The users, directories,
  modes, conffile and units are checked as installed, ``systemd-analyze
  verify`` runs inside it, and both daemons start inside it under their own
  users (chroot + setpriv, in a network namespace of their own and, where the
  kernel has PR_SET_MDWE, with memory-deny-write-execute; no systemd) on
  a pseudo-terminal link whose other end the test drives from outside with
  signer-client: a CSR is signed, an OpenPGP key certified, a certificate
  revoked. Then the same system is booted with systemd-nspawn: the units as
  shipped must start, run hardened (uid, no new privileges, seccomp, empty
  bounding set) and do the same three things with the link as /dev/ttyS0;
  the spool must then be the size-limited tmpfs of its own mount unit, with
  the directories of the layout in it.
  Steps the tree cannot do yet are skipped with the reason. Last, the
  package is purged and what it leaves is checked (keys kept).

$SIGNER_PACKAGE_RELEASES picks the releases (default "bookworm trixie"). A
release whose archive cannot be reached is skipped with the reason. Every
mount is undone and every process stopped whatever happens.
"""

from __future__ import annotations

import re
import sys
import tomllib

import pytest

from tests.support.package_debian import (
    COMMON_DIRECTIVES,
    CONF,
    EXPOSURE_LIMIT,
    PACKAGE,
    RELEASES,
    REPO,
    UNIT_DIRECTIVES,
    UNITS,
    apt_install,
    exposure,
    run,
    unit_path,
)

# On the worker of the first release (make test runs xdist --dist loadgroup), which
# builds the package while the other release's worker waits for that build.
pytestmark = [
    pytest.mark.slow,
    pytest.mark.root,
    pytest.mark.xdist_group(f"package-{RELEASES[0]}"),
]


def test_lintian_reports_no_error_or_warning(deb):
    apt_install("lintian")
    proc = run(["lintian", "--fail-on", "error,warning", "--display-info", str(deb)], check=False)
    tags = [line for line in proc.stdout.splitlines() if re.match(r"[EW]: ", line)]
    assert proc.returncode == 0 and not tags, proc.stdout + proc.stderr


def test_package_metadata(deb):
    fields = {
        name: run(["dpkg-deb", "-f", str(deb), name]).stdout.strip()
        for name in ("Package", "Architecture", "Depends", "Conflicts", "Replaces")
    }
    assert fields["Package"] == PACKAGE and fields["Architecture"] == "all"
    depends = {d.split()[0] for d in fields["Depends"].split(", ")}
    assert {
        "python3-cryptography",
        "python3-serial",
        "python3-gnupg",
        "python3-prctl",
        "python3-asn1crypto",
        "gnupg",
        "xdelta",
        "systemd",
    } <= depends
    assert not any(d.startswith("python3-inotify") for d in depends)
    assert fields["Conflicts"] == fields["Replaces"] == "python3-inotify-simple"


def test_vendored_inotify_simple_is_the_released_module(deb_tree):
    shipped = deb_tree / "usr/lib/python3/dist-packages/inotify_simple.py"
    vendored = REPO / "packaging/vendor/inotify_simple/inotify_simple.py"
    assert shipped.read_bytes() == vendored.read_bytes()
    assert "__version__ = '2.0.1'" in shipped.read_text()
    copyright_text = (deb_tree / "usr/share/doc/signer-appliance/copyright").read_text()
    assert "Files: packaging/vendor/inotify_simple/*" in copyright_text
    assert "Chris Billington" in copyright_text


@pytest.mark.parametrize("unit", UNITS)
def test_unit_exposure_offline(deb_tree, unit):
    proc = run(["systemd-analyze", "security", "--offline=true", str(unit_path(deb_tree, unit))])
    score = exposure(proc.stdout, unit)
    print(f"\n{unit}.service exposure (host systemd): {score}", file=sys.stderr)
    assert score <= EXPOSURE_LIMIT, proc.stdout


@pytest.mark.parametrize("unit", UNITS)
def test_unit_has_the_required_hardening(deb_tree, unit):
    text = unit_path(deb_tree, unit).read_text()
    settings: dict[str, list[str]] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and not line.startswith("#"):
            settings.setdefault(key.strip(), []).append(value.strip())
    for key, value in {**COMMON_DIRECTIVES, **UNIT_DIRECTIVES[unit]}.items():
        assert value in settings.get(key, []), f"{unit}: {key}={value} missing"
    devices = settings.get("DeviceAllow", [])
    if unit == "signer-comm":
        assert {"char-ttyUSB rw", "/dev/ttyS0 rw"} <= set(devices)
    else:
        assert devices == [] and settings.get("PrivateDevices") == ["yes"]


def test_config_template_roots_point_at_missing_keys(deb_tree):
    data = tomllib.loads((deb_tree / CONF.lstrip("/")).read_text())
    roots = data["x509"]["roots"]
    assert sorted(roots, key=int) == ["0", "1", "2", "3", "4"]
    for rid, root in roots.items():
        assert root["key"] == f"keys/root{rid}.key"
        assert root["certificate"] == f"certs/root{rid}.crt"
        assert not (deb_tree / "etc/signer-appliance" / root["key"]).exists()
    assert data["spool"]["dir"] == "/var/spool/signer-appliance"
    assert data["signer"]["database"] == "/var/lib/signer-appliance/ca.sqlite"
    assert not (deb_tree / "etc/signer-appliance/keys").exists(), (
        "keys come from tmpfiles, never the .deb"
    )
