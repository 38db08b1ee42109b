"""The installed appliance of the package tests: both daemons started in the Debian
system (chroot + setpriv) or booted with systemd-nspawn, on a pseudo-terminal link the
tests drive from outside with signer-client, and the three things done over it.

Test tooling, run as root; it plays the web host from outside.
"""

from __future__ import annotations

import importlib.util
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from signer_core.x509.compat import verify_issued_by
from tests.support.package_debian import (
    CLIENT_TIMEOUT,
    CONF,
    DIRECTORIES,
    OPENPGP_KEY,
    REPO,
    SPOOL,
    SPOOL_OPTIONS,
    UNITS,
    System,
    run,
)


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


def installed_module(sysm: System, module: str) -> bool:
    probe = f"import importlib.util, sys; sys.exit(importlib.util.find_spec('{module}') is None)"
    return sysm.run("python3", "-c", probe, check=False).returncode == 0


def make_demo_roots(sysm: System) -> None:
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


def configure(sysm: System, device: str) -> str:
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


def start_link(sysm: System) -> Link:
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


def host_link(sysm: System) -> Link:
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
    assert relay.stdout is not None  # stdout=PIPE
    ends: dict[str, str] = {}
    while len(ends) < 2:
        line = relay.stdout.readline()
        assert line, "the null-modem relay did not start"
        name, _, path = line.strip().partition(": ")
        ends[name] = path
    return Link(ends["a"], ends["b"])


def _nsenter(init: int, *cmd: str, check: bool = True) -> str:
    return run(["nsenter", "-t", str(init), "-a", *cmd], check=check, timeout=60).stdout


def _wait_for_init(nspawn: subprocess.Popen, sysm: System) -> int:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if nspawn.poll() is not None:
            pytest.skip(f"systemd-nspawn cannot boot a system here: {sysm.log('nspawn')[-600:]}")
        init = run(["pgrep", "-P", str(nspawn.pid), "-x", "systemd"], check=False).stdout.split()
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
def booted(sysm: System, serial: str) -> Iterator[int]:
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


def sign(appliance: Appliance, out_path: Path) -> None:
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


def certify(appliance: Appliance) -> None:
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
        run([*gpg, "--quick-gen-key", "Web User <user@example.org>", "ed25519", "sign", "1y"])
        (home / "user.asc").write_text(
            run([*gpg, "--armor", "--export", "user@example.org"]).stdout
        )
        out = appliance.expect_ok(
            appliance.client("sign-openpgp", "--key", str(home / "user.asc")),
            "certifying an OpenPGP key",
        )
        run([*gpg, "--import"], input=out.decode())
        # The root's key too, so that gpg checks the certification itself ("!").
        run([*gpg, "--import", str(appliance.system.path(OPENPGP_KEY))])
        sigs = run([*gpg, "--with-colons", "--check-sigs", "user@example.org"]).stdout
    finally:
        run(["gpgconf", "--homedir", str(home), "--kill", "all"], check=False)
    conf = tomllib.loads(appliance.system.path(CONF).read_text())
    root_keyid = conf["openpgp"]["fingerprint"][-16:]
    good = [
        f
        for f in (line.split(":") for line in sigs.splitlines())
        if f[0] == "sig" and f[1] == "!" and f[4] == root_keyid
    ]
    assert good, f"no good certification by {root_keyid}:\n{sigs}"


def revoke(appliance: Appliance, issued: Path) -> None:
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
    verify_issued_by(crl, x509.load_pem_x509_certificate(root_cert.read_bytes()))
    serial = x509.load_pem_x509_certificate(issued.read_bytes()).serial_number
    assert crl.get_revoked_certificate_by_serial_number(serial) is not None


def assert_spool_on_its_tmpfs(init: int, sysm: System) -> None:
    """The spool is the mount unit's tmpfs, size-limited, with the layout made in it at boot."""
    fstype, options = _nsenter(init, "findmnt", "-n", "-o", "FSTYPE,OPTIONS", SPOOL).split()
    assert fstype == "tmpfs" and SPOOL_OPTIONS <= set(options.split(",")), options
    uids, gids, _ = sysm.ids()
    for path, (mode, owner, group) in DIRECTORIES.items():
        if path.startswith(SPOOL):
            st = _nsenter(init, "stat", "-c", "%a %u %g", path).split()
            assert st == [f"{mode:o}", str(uids[owner]), str(gids[group])], (path, st)


def exec_status(init, unit: str, timeout: float = 30.0) -> str:
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
