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

import importlib.util
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from signer_core.x509.compat import verify_issued_by

REPO = Path(__file__).resolve().parent.parent
PACKAGE = "signer-appliance"
CONF = "/etc/signer-appliance/signer.toml"
OPENPGP_KEY = "/etc/signer-appliance/keys/openpgp0.key"
UNITS = ("signer-core", "signer-comm")
RELEASES = tuple(os.environ.get("SIGNER_PACKAGE_RELEASES", "bookworm trixie").split())
PATH_ENV = "PATH=/usr/sbin:/usr/bin:/sbin:/bin"
EXPOSURE_LIMIT = 2.0
# systemd's MemoryDenyWriteExecute=yes, done with the kernel's prctl (Linux 6.3+): set
# before exec, kept across it, so the daemons run under it as the units run them.
PR_SET_MDWE, PR_GET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN = 65, 66, 1
MDWE_EXEC = (
    "import ctypes, os, sys\n"
    f"if ctypes.CDLL(None, use_errno=True).prctl({PR_SET_MDWE}, {PR_MDWE_REFUSE_EXEC_GAIN}, 0, 0, 0):\n"
    "    sys.exit('PR_SET_MDWE refused')\n"
    "os.execvp(sys.argv[1], sys.argv[1:])\n"
)
DAEMON_SETTLE = 4.0  # seconds a daemon must stay up to count as started
CLIENT_TIMEOUT = 90
SPOOL = "/var/spool/signer-appliance"
SPOOL_MOUNT = "var-spool-signer\\x2dappliance.mount"  # systemd-escape --path of SPOOL
SPOOL_OPTIONS = {"size=262144k", "nr_inodes=65536", "nosuid", "nodev", "noexec"}

# path: (mode, owner, group), as docs/architecture.md and the tmpfiles.d file say
DIRECTORIES = {
    "/var/spool/signer-appliance": (0o755, "_signer", "_signer"),
    "/var/spool/signer-appliance/incoming": (0o1770, "_signer", "_signer-comm"),
    "/var/spool/signer-appliance/active": (0o700, "_signer", "_signer"),
    "/var/spool/signer-appliance/results": (0o2750, "_signer", "_signer-comm"),
    "/var/spool/signer-appliance/corrupt": (0o700, "_signer", "_signer"),
    "/var/lib/signer-appliance": (0o700, "_signer", "_signer"),
    "/etc/signer-appliance/keys": (0o700, "_signer", "_signer"),
}

# Directives the issue requires of both units, and those that differ.
COMMON_DIRECTIVES = {
    "PrivateNetwork": "yes",
    "RestrictAddressFamilies": "AF_UNIX",
    "ProtectSystem": "strict",
    "NoNewPrivileges": "yes",
    "CapabilityBoundingSet": "",
    "SystemCallFilter": "@system-service",
    "DevicePolicy": "closed",
    "Restart": "always",
    "RequiresMountsFor": SPOOL,
}
UNIT_DIRECTIVES = {
    "signer-core": {
        "User": "_signer",
        "Group": "_signer",
        "ReadWritePaths": "/var/spool/signer-appliance /var/lib/signer-appliance",
    },
    "signer-comm": {
        "User": "_signer-comm",
        "Group": "_signer-comm",
        "ReadWritePaths": "/var/spool/signer-appliance/incoming",
    },
}

pytestmark = [pytest.mark.slow, pytest.mark.root]


def _skip_unless_usable() -> None:
    if os.geteuid() != 0:
        pytest.skip("the package tests need root (dpkg-buildpackage deps, chroot, mounts, setpriv)")
    if sys.prefix != sys.base_prefix and not os.environ.get("SIGNER_PACKAGE_TESTS_IN_VENV"):
        pytest.skip(
            "the package is built and installed with Debian's own python3; the run "
            "under /usr/bin/python3 covers it (set SIGNER_PACKAGE_TESTS_IN_VENV=1 to repeat)"
        )


def _run(
    cmd: list[str], *, timeout: float = 600, check: bool = True, **kw
) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{' '.join(cmd)} exited {proc.returncode}\n"
            f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        )
    return proc


def _apt_install(*packages: str) -> None:
    missing = [
        p
        for p in packages
        if _run(["dpkg-query", "-W", "-f=${Status}", p], check=False).stdout
        != "install ok installed"
    ]
    if missing:  # a fresh machine may have no package lists yet
        _run(["apt-get", "update", "-qq"])
        _run(
            ["apt-get", "install", "-y", "-q", "--no-install-recommends", *missing],
            env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
        )


# -- the .deb ------------------------------------------------------------------------


@pytest.fixture(scope="session")
def deb(tmp_path_factory) -> Path:
    _skip_unless_usable()
    given = os.environ.get("SIGNER_DEB")
    if given:
        return Path(given).resolve()
    out = tmp_path_factory.mktemp("deb")
    start = time.monotonic()
    built = _run([str(REPO / "scripts" / "build-deb.sh"), str(out)], timeout=900)
    print(f"\npackage built in {time.monotonic() - start:.1f} s", file=sys.stderr)
    return Path(built.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="session")
def deb_tree(deb, tmp_path_factory) -> Path:
    tree = tmp_path_factory.mktemp("deb-tree")
    _run(["dpkg-deb", "-x", str(deb), str(tree)])
    return tree


def _unit_path(root: Path, unit: str) -> Path:
    for lib in ("lib", "usr/lib"):
        path = root / lib / "systemd" / "system" / f"{unit}.service"
        if path.exists():
            return path
    raise AssertionError(f"{unit}.service is not installed under {root}")


def _mount_unit_path(root: Path) -> Path:
    for lib in ("lib", "usr/lib"):
        path = root / lib / "systemd" / "system" / SPOOL_MOUNT
        if path.exists():
            return path
    raise AssertionError(f"{SPOOL_MOUNT} is not installed under {root}")


def _exposure(output: str, unit: str) -> float:
    match = re.search(rf"Overall exposure level for {re.escape(unit)}\.service: ([0-9.]+)", output)
    assert match, output[-2000:]
    return float(match.group(1))


def test_lintian_reports_no_error_or_warning(deb):
    _apt_install("lintian")
    proc = _run(["lintian", "--fail-on", "error,warning", "--display-info", str(deb)], check=False)
    tags = [line for line in proc.stdout.splitlines() if re.match(r"[EW]: ", line)]
    assert proc.returncode == 0 and not tags, proc.stdout + proc.stderr


def test_package_metadata(deb):
    fields = {
        name: _run(["dpkg-deb", "-f", str(deb), name]).stdout.strip()
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
    proc = _run(["systemd-analyze", "security", "--offline=true", str(_unit_path(deb_tree, unit))])
    score = _exposure(proc.stdout, unit)
    print(f"\n{unit}.service exposure (host systemd): {score}", file=sys.stderr)
    assert score <= EXPOSURE_LIMIT, proc.stdout


@pytest.mark.parametrize("unit", UNITS)
def test_unit_has_the_required_hardening(deb_tree, unit):
    text = _unit_path(deb_tree, unit).read_text()
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


# -- a Debian system with the package installed ------------------------------------


@pytest.fixture(scope="session")
def base_tarballs(tmp_path_factory) -> dict[str, Path | str]:
    """release -> tarball made by mmdebstrap, or why there is none (made lazily)."""
    _skip_unless_usable()
    return {"dir": tmp_path_factory.mktemp("mmdebstrap")}


def _base_tarball(cache: dict, release: str) -> Path:
    if release not in cache:
        _apt_install("mmdebstrap")
        tarball = cache["dir"] / f"{release}.tar"
        start = time.monotonic()
        proc = _run(
            [
                "mmdebstrap",
                "--variant=apt",
                "--mode=root",
                "--include=man-db",
                "--skip=cleanup/apt/lists",
                release,
                str(tarball),
            ],
            check=False,
            timeout=900,
        )
        if proc.returncode == 0:
            cache[release] = tarball
            print(f"\n{release}: base system in {time.monotonic() - start:.0f} s", file=sys.stderr)
        else:
            errors = [line for line in proc.stderr.splitlines() if line.startswith("E: ")]
            cache[release] = f"mmdebstrap cannot build {release}: {'; '.join(errors)[:600]}"
    if isinstance(cache[release], str):
        pytest.skip(cache[release])
    return cache[release]


@dataclass
class System:
    """A Debian root file system under ``root``: proc, /dev/shm and the host's /dev/pts mounted."""

    release: str
    root: Path
    log_dir: Path
    processes: list[subprocess.Popen] = field(default_factory=list)
    openpgp_missing: str = ""  # why the OpenPGP step cannot run, once the appliance is set up

    def path(self, absolute: str) -> Path:
        return self.root / absolute.lstrip("/")

    def run(
        self,
        *cmd: str,
        check: bool = True,
        timeout: float = 600,
        user: str | None = None,
        input: str | None = None,
    ) -> subprocess.CompletedProcess:
        return _run(self.argv(*cmd, user=user), check=check, timeout=timeout, input=input)

    def argv(self, *cmd: str, user: str | None = None, mdwe: bool = False) -> list[str]:
        drop = (
            [
                "setpriv",
                f"--reuid={user}",
                f"--regid={user}",
                "--init-groups",
                "--no-new-privs",
                "--bounding-set=-all",
                "--inh-caps=-all",
                "--",
            ]
            if user
            else []
        )
        wrap = ["python3", "-c", MDWE_EXEC] if mdwe else []
        return [
            "chroot",
            str(self.root),
            "env",
            "-i",
            PATH_ENV,
            "LC_ALL=C.UTF-8",
            "DEBIAN_FRONTEND=noninteractive",
            *wrap,
            *drop,
            *cmd,
        ]

    def start(self, name: str, *cmd: str, user: str | None = None) -> subprocess.Popen:
        """A process in the system with no network (PrivateNetwork=yes); stopped by ``stop_all``."""
        argv = ["unshare", "--net", *self.argv(*cmd, user=user, mdwe=user is not None and _mdwe())]
        with open(self.log_dir / f"{name}.log", "ab") as log:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.processes.append(proc)
        return proc

    API_MOUNTS = (
        ("proc", "proc", "/proc", ""),
        ("--bind", "/dev/pts", "/dev/pts", ""),
        ("tmpfs", "shm", "/dev/shm", "mode=1777,nosuid,nodev"),
    )

    def mount_api(self) -> None:
        """proc, the host's /dev/pts (for links from outside) and a tmpfs /dev/shm."""
        for kind, source, target, options in self.API_MOUNTS:
            how = (
                ["--bind"]
                if kind == "--bind"
                else ["-t", kind] + (["-o", options] if options else [])
            )
            _run(["mount", *how, source, str(self.path(target))])

    def umount_api(self) -> None:
        for _kind, _source, target, _options in reversed(self.API_MOUNTS):
            _run(["umount", str(self.path(target))])

    def log(self, name: str) -> str:
        path = self.log_dir / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop_all(self) -> None:
        for proc in reversed(self.processes):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.processes:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        self.processes.clear()

    def ids(self) -> tuple[dict[str, int], dict[str, int], dict[str, list[str]]]:
        """(user -> uid, group -> gid, group -> members) from the system's own files."""
        users = {f[0]: int(f[2]) for f in _fields(self.path("/etc/passwd"))}
        groups = _fields(self.path("/etc/group"))
        return (
            {**users},
            {f[0]: int(f[2]) for f in groups},
            {f[0]: [m for m in f[3].split(",") if m] for f in groups},
        )


def _mdwe() -> bool:
    """Whether this kernel has PR_SET_MDWE; without it the daemons run without the lock."""
    import ctypes

    return ctypes.CDLL(None, use_errno=True).prctl(PR_GET_MDWE, 0, 0, 0, 0) >= 0


def _fields(path: Path) -> list[list[str]]:
    return [line.split(":") for line in path.read_text().splitlines() if line]


def _mounted_under(root: Path) -> list[str]:
    prefix = str(root).rstrip("/") + "/"
    with open("/proc/self/mountinfo") as f:
        return [line.split()[4] for line in f if line.split()[4].startswith(prefix)]


def _umount_all(root: Path) -> None:
    for point in sorted(_mounted_under(root), key=len, reverse=True):
        if subprocess.run(["umount", point], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", point], capture_output=True)


@pytest.fixture(scope="class", params=RELEASES)
def system(request, base_tarballs, deb) -> System:
    release = request.param
    tarball = _base_tarball(base_tarballs, release)
    work = Path(tempfile.mkdtemp(prefix=f"signer-pkg-{release}-"))
    root, logs = work / "root", work / "log"
    root.mkdir()
    logs.mkdir()
    sysm = System(release, root, logs)
    with ExitStack() as stack:
        stack.callback(_remove_if_unmounted, work)
        stack.callback(_umount_all, root)
        stack.callback(sysm.stop_all)
        _run(["tar", "-C", str(root), "-xf", str(tarball)])
        sysm.mount_api()
        shutil.copy(deb, root / "tmp" / deb.name)
        start = time.monotonic()
        sysm.run("apt-get", "install", "-y", "-q", "--no-install-recommends", f"/tmp/{deb.name}")
        print(
            f"\n{release}: installed with dependencies in {time.monotonic() - start:.0f} s",
            file=sys.stderr,
        )
        yield sysm


def _remove_if_unmounted(work: Path) -> None:
    # Never remove a tree that still has a mount in it: /dev/pts is the host's.
    if not _mounted_under(work):
        shutil.rmtree(work, ignore_errors=True)
    else:
        print(f"\nleft {work} in place: still mounted: {_mounted_under(work)}", file=sys.stderr)


@dataclass
class Link:
    appliance_end: str
    web_end: str


@dataclass
class Appliance:
    system: System
    link: Link
    daemons: dict[str, subprocess.Popen]
    work: Path  # outside, for the web host's files

    def client(self, *args: str) -> subprocess.CompletedProcess:
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(
                [str(REPO), str(REPO / ".deb-extra"), os.environ.get("PYTHONPATH", "")]
            ),
        }
        return subprocess.run(
            [sys.executable, "-m", "webhost.cli", "--link", self.link.web_end, *args],
            capture_output=True,
            timeout=CLIENT_TIMEOUT,
            env=env,
            cwd=REPO,
        )

    def expect_ok(self, proc: subprocess.CompletedProcess, what: str) -> bytes:
        stderr = proc.stderr.decode(errors="replace")
        if proc.returncode == 1 and "ERR unknown-request" in stderr:
            pytest.skip(f"{what}: the signer in this tree has no handler yet ({stderr.strip()})")
        assert proc.returncode == 0, (
            f"{what} failed ({proc.returncode}): {stderr}\n"
            f"--- signer-core\n{self.system.log('signer-core')[-3000:]}\n"
            f"--- signer-comm\n{self.system.log('signer-comm')[-3000:]}"
        )
        return proc.stdout


def _installed_module(sysm: System, module: str) -> bool:
    probe = f"import importlib.util, sys; sys.exit(importlib.util.find_spec('{module}') is None)"
    return sysm.run("python3", "-c", probe, check=False).returncode == 0


def _make_demo_roots(sysm: System) -> None:
    """Roots 0 and 1 made with the package's own demo tooling, keys owned by _signer."""
    script = (
        "import os, pwd\nfrom pathlib import Path\n"
        "from signerctl.demo.ca import make_roots\n"
        "make_roots(Path('/etc/signer-appliance/keys'), Path('/etc/signer-appliance/certs'))\n"
        "u = pwd.getpwnam('_signer')\n"
        "for p in Path('/etc/signer-appliance/keys').iterdir():\n"
        "    os.chown(p, u.pw_uid, u.pw_gid)\n"
    )
    sysm.run("python3", "-c", script)


def _openpgp_section(sysm: System) -> str:
    """An OpenPGP root made by _signer's gpg and installed as the template says; '' if not made."""
    home, key = "/var/lib/signer-appliance/gnupg-make", OPENPGP_KEY
    gpg = ["gpg", "--homedir", home, "--batch", "--pinentry-mode", "loopback", "--passphrase", ""]
    sysm.run("install", "-d", "-m", "0700", "-o", "_signer", "-g", "_signer", home)
    try:
        made = sysm.run(
            *gpg,
            "--quick-gen-key",
            "Demo OpenPGP root (not trusted)",
            "ed25519",
            "cert",
            "never",
            user="_signer",
            check=False,
        )
        listing = sysm.run(
            *gpg, "--with-colons", "--list-secret-keys", user="_signer", check=False
        ).stdout
        fprs = [line.split(":")[9] for line in listing.splitlines() if line.startswith("fpr:")]
        if made.returncode != 0 or not fprs:
            return ""
        secret = sysm.run(*gpg, "--armor", "--export-secret-keys", fprs[0], user="_signer").stdout
        sysm.path(key).write_text(secret)
        uids, gids, _ = sysm.ids()
        os.chown(sysm.path(key), uids["_signer"], gids["_signer"])
        sysm.path(key).chmod(0o600)
    finally:
        sysm.run("gpgconf", "--homedir", home, "--kill", "all", user="_signer", check=False)
        sysm.run("rm", "-rf", home)
    return f'\n[openpgp]\nkey_file = "keys/openpgp0.key"\nfingerprint = "{fprs[0]}"\n'


def _configure(sysm: System, device: str) -> str:
    """Point the conffile at the link and add an OpenPGP root; returns why it has none."""
    conf = sysm.path(CONF)
    text = re.sub(r"(?m)^device = .*$", f'device = "{device}"', conf.read_text())
    section = _openpgp_section(sysm)
    conf.write_text(text + section)
    if not section:
        return "gpg could not make an OpenPGP root in the system"
    check = (
        "from pathlib import Path; from signer_core.config import load_config; "
        f"load_config(Path('{CONF}'))"
    )
    proc = sysm.run("python3", "-c", check, check=False)
    if proc.returncode != 0:
        conf.write_text(text)
        return (
            f"this tree's configuration does not take [openpgp] yet: {proc.stderr.strip()[-300:]}"
        )
    return ""


def _start_link(sysm: System) -> Link:
    relay = sysm.start("nullmodem", "python3", "-m", "signerctl.demo.nullmodem")
    deadline = time.monotonic() + 10
    ends: dict[str, str] = {}
    while len(ends) < 2 and time.monotonic() < deadline and relay.poll() is None:
        ends = dict(
            line.split(": ", 1)
            for line in sysm.log("nullmodem").splitlines()
            if re.match(r"^[ab]: /dev/pts/\d+$", line)
        )
        time.sleep(0.1)
    assert len(ends) == 2, f"the null-modem relay did not start: {sysm.log('nullmodem')}"
    return Link(ends["a"], ends["b"])


@pytest.fixture(scope="class")
def appliance(system) -> Appliance:
    """Both daemons running in the system as their own users, on a link from outside."""
    for module in ("signerctl.demo.nullmodem", "signer_core.daemon", "comm_handler.daemon"):
        if not _installed_module(system, module):
            pytest.skip(f"{module} is not in this tree yet: the daemons cannot run")
    if importlib.util.find_spec("webhost.cli") is None:
        pytest.skip("signer-client (webhost.cli) is not in this tree yet")
    _make_demo_roots(system)
    link = _start_link(system)
    uids, gids, _ = system.ids()
    os.chown(link.appliance_end, uids["_signer-comm"], gids["_signer-comm"])
    system.openpgp_missing = _configure(system, link.appliance_end)
    daemons = {
        name: system.start(name, f"/usr/bin/{name}", "--config", CONF, user=user)
        for name, user in (("signer-core", "_signer"), ("signer-comm", "_signer-comm"))
    }
    time.sleep(DAEMON_SETTLE)
    for name, proc in daemons.items():
        if proc.poll() is not None:
            pytest.skip(
                f"{name} does not start from the package in this tree yet "
                f"(exit {proc.returncode}): {system.log(name).strip()[-800:]}"
            )
    work = Path(tempfile.mkdtemp(prefix="signer-pkg-web-"))
    yield Appliance(system, link, daemons, work)
    shutil.rmtree(work, ignore_errors=True)


def _host_link(sysm: System) -> Link:
    """A null-modem relay run outside, from this tree (as the demo does)."""
    if importlib.util.find_spec("signerctl.demo.nullmodem") is None:
        pytest.skip("signerctl.demo.nullmodem is not in this tree yet")
    relay = subprocess.Popen(
        [sys.executable, "-m", "signerctl.demo.nullmodem"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    sysm.processes.append(relay)
    ends = {}
    while len(ends) < 2:
        line = relay.stdout.readline()
        assert line, "the null-modem relay did not start"
        name, _, path = line.strip().partition(": ")
        ends[name] = path
    return Link(ends["a"], ends["b"])


def _nsenter(init: int, *cmd: str, check: bool = True) -> str:
    return _run(["nsenter", "-t", str(init), "-a", *cmd], check=check, timeout=60).stdout


def _wait_for_init(nspawn: subprocess.Popen, sysm: System) -> int:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if nspawn.poll() is not None:
            pytest.skip(f"systemd-nspawn cannot boot a system here: {sysm.log('nspawn')[-600:]}")
        init = _run(["pgrep", "-P", str(nspawn.pid), "-x", "systemd"], check=False).stdout.split()
        if init:
            return int(init[0])
        time.sleep(0.2)
    pytest.skip(f"systemd did not start under systemd-nspawn: {sysm.log('nspawn')[-600:]}")


def _wait_active(init: int) -> None:
    deadline = time.monotonic() + 60
    states: list[str] = []
    while time.monotonic() < deadline:
        states = _nsenter(init, "systemctl", "is-active", *UNITS, check=False).split()
        if states == ["active"] * len(UNITS) or "failed" in states:
            break
        time.sleep(0.5)
    journal = _nsenter(
        init, "journalctl", "--no-pager", "-n", "60", *(f"-u{u}" for u in UNITS), check=False
    )
    assert states == ["active"] * len(UNITS), f"units {UNITS}: {states}\n{journal}"


@contextmanager
def _booted(sysm: System, serial: str) -> Iterator[int]:
    """The system booted by systemd-nspawn, ``serial`` as its /dev/ttyS0; yields init's pid."""
    sysm.umount_api()
    with open(sysm.log_dir / "nspawn.log", "ab") as log:
        nspawn = subprocess.Popen(
            [
                "systemd-nspawn",
                "-D",
                str(sysm.root),
                "--boot",
                "--register=no",
                "--keep-unit",
                "--console=passive",
                f"--bind={serial}:/dev/ttyS0",
            ],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    init = None
    try:
        init = _wait_for_init(nspawn, sysm)
        _wait_active(init)
        yield init
    finally:
        if init is not None:
            subprocess.run(
                ["nsenter", "-t", str(init), "-a", "systemctl", "poweroff"],
                capture_output=True,
                timeout=60,
            )
        try:
            nspawn.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(nspawn.pid, signal.SIGKILL)
            nspawn.wait()
        sysm.mount_api()


def _sign(appliance: Appliance, out_path: Path) -> None:
    """A server certificate for a fresh CSR over the link, verified against root 0."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name.from_rfc4514_string("CN=ignored"))
        .sign(key, hashes.SHA256())
    )
    (appliance.work / "req.csr").write_bytes(csr.public_bytes(serialization.Encoding.PEM))
    out = appliance.expect_ok(
        appliance.client(
            "sign-x509",
            "--root",
            "0",
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
        ),
        "signing a CSR",
    )
    cert = x509.load_pem_x509_certificate(out)
    root = x509.load_pem_x509_certificate(
        appliance.system.path("/etc/signer-appliance/certs/root0.crt").read_bytes()
    )
    verify_issued_by(cert, root)
    assert cert.subject.rfc4514_string() == "CN=www.example.org"
    assert cert.issuer == root.subject
    out_path.write_bytes(out)


def _certify(appliance: Appliance) -> None:
    """A web user's OpenPGP key certified over the link by the OpenPGP root, checked by gpg."""
    if appliance.system.openpgp_missing:
        pytest.skip(appliance.system.openpgp_missing)
    home = Path(tempfile.mkdtemp(prefix="g", dir=appliance.work))
    gpg = [
        "gpg",
        "--homedir",
        str(home),
        "--batch",
        "--pinentry-mode",
        "loopback",
        "--passphrase",
        "",
    ]
    try:
        _run([*gpg, "--quick-gen-key", "Web User <user@example.org>", "ed25519", "sign", "1y"])
        (home / "user.asc").write_text(
            _run([*gpg, "--armor", "--export", "user@example.org"]).stdout
        )
        out = appliance.expect_ok(
            appliance.client("sign-openpgp", "--key", str(home / "user.asc")),
            "certifying an OpenPGP key",
        )
        _run([*gpg, "--import"], input=out.decode())
        # The root's key too, so that gpg checks the certification itself ("!").
        _run([*gpg, "--import", str(appliance.system.path(OPENPGP_KEY))])
        sigs = _run([*gpg, "--with-colons", "--check-sigs", "user@example.org"]).stdout
    finally:
        _run(["gpgconf", "--homedir", str(home), "--kill", "all"], check=False)
    conf = tomllib.loads(appliance.system.path(CONF).read_text())
    root_keyid = conf["openpgp"]["fingerprint"][-16:]
    good = [
        f
        for f in (line.split(":") for line in sigs.splitlines())
        if f[0] == "sig" and f[1] == "!" and f[4] == root_keyid
    ]
    assert good, f"no good certification by {root_keyid}:\n{sigs}"


def _revoke(appliance: Appliance, issued: Path) -> None:
    """Revoke ``issued`` over the link; the web host's CRL for root 0 then lists it."""
    from cryptography import x509

    crl_path = appliance.work / "root0.crl"
    root_cert = appliance.system.path("/etc/signer-appliance/certs/root0.crt")
    appliance.expect_ok(
        appliance.client(
            "revoke",
            "--cert",
            str(issued),
            "--root",
            "0",
            "--crl",
            str(crl_path),
            "--root-cert",
            str(root_cert),
        ),
        "revoking a certificate",
    )
    crl = x509.load_der_x509_crl(crl_path.read_bytes())
    assert crl.is_signature_valid(
        x509.load_pem_x509_certificate(root_cert.read_bytes()).public_key()
    )
    serial = x509.load_pem_x509_certificate(issued.read_bytes()).serial_number
    assert crl.get_revoked_certificate_by_serial_number(serial) is not None


def _assert_spool_on_its_tmpfs(init: int, sysm: System) -> None:
    """The spool is the mount unit's tmpfs, size-limited, with the layout made in it at boot."""
    fstype, options = _nsenter(init, "findmnt", "-n", "-o", "FSTYPE,OPTIONS", SPOOL).split()
    assert fstype == "tmpfs" and SPOOL_OPTIONS <= set(options.split(",")), options
    uids, gids, _ = sysm.ids()
    for path, (mode, owner, group) in DIRECTORIES.items():
        if path.startswith(SPOOL):
            st = _nsenter(init, "stat", "-c", "%a %u %g", path).split()
            assert st == [f"{mode:o}", str(uids[owner]), str(gids[group])], (path, st)


def _exec_status(init, unit: str, timeout: float = 30.0) -> str:
    """/proc/PID/status of the unit's main process once systemd has exec'd it.

    Until then the process is systemd's own fork, named "(<unit>)" and still root.
    """
    deadline = time.monotonic() + timeout
    while True:
        pid = _nsenter(init, "systemctl", "show", "-p", "MainPID", "--value", unit).strip()
        status = (
            _nsenter(init, "cat", f"/proc/{pid}/status", check=False)
            if pid not in ("", "0")
            else ""
        )
        if status and not re.search(r"^Name:\s+\(", status, re.M):
            return status
        assert time.monotonic() < deadline, f"{unit} was not exec'd: {status}"
        time.sleep(0.2)


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
        for script in ("signer-core", "signer-comm", "signerctl", "signer-client"):
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
        passwd = {f[0]: f for f in _fields(system.path("/etc/passwd"))}
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
            _unit_path(system.root, unit)
            assert system.path(
                f"/etc/systemd/system/multi-user.target.wants/{unit}.service"
            ).is_symlink()
        _mount_unit_path(system.root)
        assert system.path(f"/etc/systemd/system/local-fs.target.wants/{SPOOL_MOUNT}").is_symlink()

    def test_roots_refused_until_keys_are_installed(self, system):
        if not _installed_module(system, "signer_core.roots"):
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
        paths = [*(_unit_path(system.root, u) for u in UNITS), _mount_unit_path(system.root)]
        units = [f"/{path.relative_to(system.root)}" for path in paths]
        proc = system.run("systemd-analyze", "verify", *units, check=False)
        assert (proc.returncode, proc.stdout + proc.stderr) == (0, "")

    @pytest.mark.parametrize("unit", UNITS)
    def test_systemd_analyze_security(self, system, unit):
        proc = system.run("systemd-analyze", "security", "--offline=true", f"{unit}.service")
        score = _exposure(proc.stdout, unit)
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
        _sign(appliance, appliance.work / "issued.pem")

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
        _certify(appliance)

    def test_revokes_a_certificate(self, system, appliance):
        issued = appliance.work / "issued.pem"
        if not issued.exists():
            pytest.skip("no certificate was issued: nothing to revoke")
        _revoke(appliance, issued)

    def test_units_serve_under_systemd(self, system, appliance):
        """The units as shipped, run by systemd (in systemd-nspawn): hardened, and serving the link."""
        system.stop_all()  # the chroot's daemons and relay
        try:
            _apt_install("systemd-container")
        except AssertionError as exc:
            pytest.skip(f"no systemd-nspawn: {str(exc)[:300]}")
        conf = system.path(CONF)
        conf.write_text(re.sub(r"(?m)^device = .*$", 'device = "/dev/ttyS0"', conf.read_text()))
        link = _host_link(system)
        uids, gids, _ = system.ids()
        os.chown(link.appliance_end, uids["_signer-comm"], gids["_signer-comm"])
        with _booted(system, link.appliance_end) as init:
            for unit, user in (("signer-core", "_signer"), ("signer-comm", "_signer-comm")):
                status = _exec_status(init, unit)
                assert re.search(rf"^Uid:\s+{uids[user]}\s", status, re.M), status
                for line in ("NoNewPrivs:\t1", "Seccomp:\t2", "CapBnd:\t0000000000000000"):
                    assert line in status, f"{unit}: {line!r} not in\n{status}"
            _assert_spool_on_its_tmpfs(init, system)
            web = Appliance(system, link, {}, appliance.work)
            issued = appliance.work / "issued-under-systemd.pem"
            _sign(web, issued)
            _certify(web)
            _revoke(web, issued)

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
