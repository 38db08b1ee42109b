"""Keys certified per second through ``certify_key``, against a bare
``gpg --quick-sign-key`` in an already-prepared GnuPG home, in the same run.

certify_key does per key: packet checks, a fresh private home with a keyring
file (the CA's public key and the user's), ONE gpg --quick-sign-key that
talks to the long-lived CA home's agent (made by load_signer, once), reading
the result back and checking it with our packet code, armouring, removal.
The baseline only runs gpg --quick-sign-key (same CA key, same options) in a
home where the CA key and all user keys were imported beforehand.
Also printed: the load average, and the processes started per key
(execve calls, counted with strace, when strace is installed).

    python bench/bench_openpgp.py [--keys N] [--runs R]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from signer_core.openpgp.certify import certify_key, close_signer, load_signer  # noqa: E402
from signer_core.openpgp.gpg import stop_agent  # noqa: E402

GPG = ["gpg", "--batch", "--no-tty", "--no-greeting"]
DAYS = 366


def gpg(home: Path, *args: str, data: bytes = b"") -> bytes:
    return subprocess.run(
        [*GPG, "--homedir", str(home), *args], input=data, capture_output=True, check=True
    ).stdout


def new_home(root: Path, name: str) -> Path:
    home = root / name
    home.mkdir(mode=0o700)
    (home / "gpg-agent.conf").write_text("s2k-count 65536\n")
    return home


def fingerprints(home: Path) -> list[str]:
    out = gpg(home, "--with-colons", "--list-keys").decode()
    return [line.split(":")[9] for line in out.splitlines() if line.startswith("fpr:")]


def setup(root: Path, count: int):
    ca_home = new_home(root, "ca")
    gpg(
        ca_home,
        "--pinentry-mode",
        "loopback",
        "--passphrase",
        "bench pass",
        "--quick-gen-key",
        "Bench CA <ca@example.org>",
        "ed25519",
        "cert",
        "never",
    )
    ca_fpr = fingerprints(ca_home)[0]
    (root / "pass").write_text("bench pass\n")
    users = new_home(root, "users")
    for i in range(count):
        gpg(
            users,
            "--passphrase",
            "",
            "--quick-gen-key",
            f"User {i} <u{i}@example.org>",
            "ed25519",
            "default",
            "never",
        )
    keys = [(fpr, gpg(users, "--export", fpr)) for fpr in fingerprints(users)]
    signer = load_signer(
        fingerprint=ca_fpr, home=ca_home, passphrase_file=root / "pass", workdir=root / "w"
    )
    return signer, keys


def run_certify_key(signer, keys) -> list[float]:
    times = []
    for _fpr, data in keys:
        start = time.perf_counter()
        certify_key(signer, data, DAYS)
        times.append(time.perf_counter() - start)
    return times


def run_bare(root: Path, signer, keys, run: int) -> list[float]:
    home = new_home(root, f"bare{run}")
    gpg(home, "--import", data=signer.ca_secret.key)
    gpg(home, "--import", data=b"".join(data for _fpr, data in keys))
    options = [
        "--pinentry-mode",
        "loopback",
        "--passphrase",
        signer.ca_secret.passphrase,
        "--default-cert-level",
        str(signer.cert_level),
        "--default-cert-expire",
        f"{DAYS}d",
        "--cert-policy-url",
        signer.policy_url,
        "--cert-digest-algo",
        signer.digest,
        "--local-user",
        signer.fingerprint,
    ]
    times = []
    try:
        for fpr, _data in keys:
            start = time.perf_counter()
            gpg(home, *options, "--quick-sign-key", fpr)
            times.append(time.perf_counter() - start)
    finally:
        stop_agent(home)
    return times


def count_execs(root: Path, count: int) -> float | None:
    """execve calls per key of certify_key in a child process under strace; None without strace."""
    if shutil.which("strace") is None:
        return None
    log = root / "strace.log"
    repo, where = str(Path(__file__).resolve().parents[1]), str(root / "execs")
    child = (
        f"import sys; sys.path.insert(0, {repo!r});"
        "from bench.bench_openpgp import setup, run_certify_key;"
        "from signer_core.openpgp.certify import close_signer;"
        f"signer, keys = setup(__import__('pathlib').Path({where!r}), {count});"
        "import os; os.kill(os.getpid(), 19);"  # SIGSTOP: strace attaches only now
        "run_certify_key(signer, keys); close_signer(signer)"
    )
    (root / "execs").mkdir()
    proc = subprocess.Popen([sys.executable, "-c", child])
    while proc.poll() is None and Path(f"/proc/{proc.pid}/stat").read_text().split()[2] != "T":
        time.sleep(0.05)
    if proc.returncode is not None:
        return None
    tracer = subprocess.Popen(
        ["strace", "-f", "-qq", "-e", "trace=execve", "-o", str(log), "-p", str(proc.pid)]
    )
    time.sleep(0.5)
    os.kill(proc.pid, 18)  # SIGCONT
    proc.wait()
    tracer.wait()
    # Successful calls only: execvp tries each PATH entry in turn.
    calls = [line for line in log.read_text().splitlines() if "execve(" in line and "= 0" in line]
    return len(calls) / count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=10)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bpgp", dir="/tmp"))
    try:
        signer, keys = setup(root, args.keys)
        ours, bare = [], []
        for run in range(args.runs):
            ours.append(statistics.median(run_certify_key(signer, keys)))
            bare.append(statistics.median(run_bare(root, signer, keys, run)))
        ours_s, bare_s = statistics.median(ours), statistics.median(bare)
        import gnupg

        version = gpg(root / "ca", "--version").decode().splitlines()[0]
        print(
            f"python-gnupg {gnupg.__version__}, {version}; {args.keys} keys x {args.runs} runs, medians"
        )
        print(
            f"certify_key (one gpg per key):    {1 / ours_s:8.1f} keys/s  ({ours_s * 1000:7.1f} ms/key)"
        )
        print(
            f"bare gpg --quick-sign-key:        {1 / bare_s:8.1f} keys/s  ({bare_s * 1000:7.1f} ms/key)"
        )
        print(f"ratio certify_key / bare:         {bare_s / ours_s:8.2f} of the bare rate")
        print(f"load average (1, 5, 15 min):      {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        execs = count_execs(root, args.keys)
        if execs is not None:
            print(f"process starts per key:           {execs:8.1f} (execve, prlimit included)")
    finally:
        close_signer(signer)
        stop_agent(root / "ca")
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
