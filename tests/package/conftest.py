"""Fixtures of the Debian package tests: the .deb, its unpacked tree, a Debian system
per release with the package installed, the appliance running in it.

Test tooling, run as root (see tests/package/test_deb.py for what is tested).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from tests.support.package_debian import (
    CONF,
    DAEMON_SETTLE,
    RELEASES,
    REPO,
    System,
    base_tarball,
    host_dpkg_lock,
    remove_if_unmounted,
    run,
    skip_unless_usable,
    umount_all,
)
from tests.support.package_installed import (
    Appliance,
    configure,
    installed_module,
    make_demo_roots,
    start_link,
)


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook reads the groups
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Each release's tests in an xdist group of their own (make test: --dist loadgroup):
    the releases install on two workers at once, the longest wait of the Debian run."""
    here = Path(__file__).parent
    for item in items:
        callspec = getattr(item, "callspec", None)
        if callspec and "system" in callspec.params and item.path.is_relative_to(here):
            item.add_marker(pytest.mark.xdist_group(f"package-{callspec.params['system']}"))


# -- the .deb ------------------------------------------------------------------------


@pytest.fixture(scope="session")
def deb(tmp_path_factory) -> Path:
    skip_unless_usable()
    given = os.environ.get("SIGNER_DEB")
    if given:
        return Path(given).resolve()
    # Each release is installed on its own xdist worker (tests/package/test_installed.py),
    # so the first worker builds the package into the directory all workers of this run
    # share and the others take that build; build-deb.sh may install its build tools.
    shared = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        shared = shared.parent
    out, built = shared / "deb", shared / "deb" / "built"
    with host_dpkg_lock():
        if not built.exists():
            out.mkdir(exist_ok=True)
            start = time.monotonic()
            done = run([str(REPO / "scripts" / "build-deb.sh"), str(out)], timeout=900)
            print(f"\npackage built in {time.monotonic() - start:.1f} s", file=sys.stderr)
            built.write_text(done.stdout.strip().splitlines()[-1])
        return Path(built.read_text())


@pytest.fixture(scope="session")
def deb_tree(deb, tmp_path_factory) -> Path:
    tree = tmp_path_factory.mktemp("deb-tree")
    run(["dpkg-deb", "-x", str(deb), str(tree)])
    return tree


# -- a Debian system with the package installed ------------------------------------


@pytest.fixture(scope="session")
def base_tarballs(tmp_path_factory) -> dict[str, Path | str]:
    """release -> tarball made by mmdebstrap, or why there is none (made lazily)."""
    skip_unless_usable()
    return {"dir": tmp_path_factory.mktemp("mmdebstrap")}


@pytest.fixture(scope="class", params=RELEASES)
def system(request, base_tarballs, deb) -> Iterator[System]:
    release = request.param
    tarball = base_tarball(base_tarballs, release)
    work = Path(tempfile.mkdtemp(prefix=f"signer-pkg-{release}-"))
    root, logs = work / "root", work / "log"
    root.mkdir()
    logs.mkdir()
    sysm = System(release, root, logs)
    with ExitStack() as stack:
        stack.callback(remove_if_unmounted, work)
        stack.callback(umount_all, root)
        stack.callback(sysm.stop_all)
        run(["tar", "-C", str(root), "-xf", str(tarball)])
        sysm.mount_api()
        shutil.copy(deb, root / "tmp" / deb.name)
        start = time.monotonic()
        sysm.run("apt-get", "install", "-y", "-q", "--no-install-recommends", f"/tmp/{deb.name}")
        print(
            f"\n{release}: installed with dependencies in {time.monotonic() - start:.0f} s",
            file=sys.stderr,
        )
        yield sysm


@pytest.fixture(scope="class")
def appliance(system) -> Iterator[Appliance]:
    """Both daemons running in the system as their own users, on a link from outside."""
    for module in ("signerctl.demo.nullmodem", "signer_core.daemon", "comm_handler.daemon"):
        if not installed_module(system, module):
            pytest.skip(f"{module} is not in this tree yet: the daemons cannot run")
    if importlib.util.find_spec("webhost.cli") is None:
        pytest.skip("signer-client (webhost.cli) is not in this tree yet")
    make_demo_roots(system)
    link = start_link(system)
    uids, gids, _ = system.ids()
    os.chown(link.appliance_end, uids["_signer-comm"], gids["_signer-comm"])
    system.openpgp_missing = configure(system, link.appliance_end)
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
