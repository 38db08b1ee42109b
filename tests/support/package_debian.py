"""The Debian package tests' machinery: building and checking the .deb, a minimal
Debian root file system (mmdebstrap) with the package installed, its users and mounts.

Test tooling, run as root; no trust boundary of its own. Plain module (tests/support):
the test modules take its constants at import time (parametrize).
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
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


def skip_unless_usable() -> None:
    if os.geteuid() != 0:
        pytest.skip("the package tests need root (dpkg-buildpackage deps, chroot, mounts, setpriv)")
    if sys.prefix != sys.base_prefix and not os.environ.get("SIGNER_PACKAGE_TESTS_IN_VENV"):
        pytest.skip(
            "the package is built and installed with Debian's own python3; the run "
            "under /usr/bin/python3 covers it (set SIGNER_PACKAGE_TESTS_IN_VENV=1 to repeat)"
        )


def run(
    cmd: list[str], *, timeout: float = 600, check: bool = True, **kw
) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{' '.join(cmd)} exited {proc.returncode}\n"
            f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        )
    return proc


@contextmanager
def host_dpkg_lock() -> Iterator[None]:
    """Held while this host's dpkg may run: the releases are installed on separate
    xdist workers, and two apt-get runs at once fail on dpkg's own lock."""
    with open(Path(tempfile.gettempdir()) / "signer-package-tests-dpkg.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def apt_install(*packages: str) -> None:
    with host_dpkg_lock():
        _apt_install(packages)


def _apt_install(packages: tuple[str, ...]) -> None:
    missing = [
        p
        for p in packages
        if run(["dpkg-query", "-W", "-f=${Status}", p], check=False).stdout
        != "install ok installed"
    ]
    if missing:  # a fresh machine may have no package lists yet
        run(["apt-get", "update", "-qq"])
        run(
            ["apt-get", "install", "-y", "-q", "--no-install-recommends", *missing],
            env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
        )


def unit_path(root: Path, unit: str) -> Path:
    for lib in ("lib", "usr/lib"):
        path = root / lib / "systemd" / "system" / f"{unit}.service"
        if path.exists():
            return path
    raise AssertionError(f"{unit}.service is not installed under {root}")


def mount_unit_path(root: Path) -> Path:
    for lib in ("lib", "usr/lib"):
        path = root / lib / "systemd" / "system" / SPOOL_MOUNT
        if path.exists():
            return path
    raise AssertionError(f"{SPOOL_MOUNT} is not installed under {root}")


def exposure(output: str, unit: str) -> float:
    match = re.search(rf"Overall exposure level for {re.escape(unit)}\.service: ([0-9.]+)", output)
    assert match, output[-2000:]
    return float(match.group(1))


def base_tarball(cache: dict, release: str) -> Path:
    if release not in cache:
        apt_install("mmdebstrap")
        tarball = cache["dir"] / f"{release}.tar"
        start = time.monotonic()
        proc = run(
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
        return run(self.argv(*cmd, user=user), check=check, timeout=timeout, input=input)

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
            run(["mount", *how, source, str(self.path(target))])

    def umount_api(self) -> None:
        for _kind, _source, target, _options in reversed(self.API_MOUNTS):
            run(["umount", str(self.path(target))])

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
        users = {f[0]: int(f[2]) for f in colon_fields(self.path("/etc/passwd"))}
        groups = colon_fields(self.path("/etc/group"))
        return (
            {**users},
            {f[0]: int(f[2]) for f in groups},
            {f[0]: [m for m in f[3].split(",") if m] for f in groups},
        )


def _mdwe() -> bool:
    """Whether this kernel has PR_SET_MDWE; without it the daemons run without the lock."""
    import ctypes

    return ctypes.CDLL(None, use_errno=True).prctl(PR_GET_MDWE, 0, 0, 0, 0) >= 0


def colon_fields(path: Path) -> list[list[str]]:
    return [line.split(":") for line in path.read_text().splitlines() if line]


def _mounted_under(root: Path) -> list[str]:
    prefix = str(root).rstrip("/") + "/"
    with open("/proc/self/mountinfo") as f:
        return [line.split()[4] for line in f if line.split()[4].startswith(prefix)]


def umount_all(root: Path) -> None:
    for point in sorted(_mounted_under(root), key=len, reverse=True):
        if subprocess.run(["umount", point], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", point], capture_output=True)


def remove_if_unmounted(work: Path) -> None:
    # Never remove a tree that still has a mount in it: /dev/pts is the host's.
    if not _mounted_under(work):
        shutil.rmtree(work, ignore_errors=True)
    else:
        print(f"\nleft {work} in place: still mounted: {_mounted_under(work)}", file=sys.stderr)
