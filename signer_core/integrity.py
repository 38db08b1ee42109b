"""The integrity measurement: are the installed programs, configuration, root
certificates and systemd units still what an operator accepted?

Trusted side, shared by the signer (its "integrity" audit records, at start
and every ``[audit] integrity_interval_seconds``: ``signer_core.integrity_records``)
and ``signerctl integrity`` (run by an operator as root, which also records
its result and accepts a new baseline). It hashes every file of the
program's packages (the list is pyproject.toml's; see ``package_names``),
found through their modules' ``__file__``, byte-code included: Python runs a
``.pyc`` whose header matches its source, whatever the source says; then
their entry-point scripts, the configuration file, each configured root
certificate and the ``signer-*`` units with their drop-ins, and compares
them with the baseline recorded at install or at the last ``--accept``.

The baseline lives in the state directory, so whoever can change the
programs as root can change it too. The evidence is therefore the digest
over the whole current set, which the operator writes down on each visit
and which the audit log carries out of the room; the baseline only says
*what* changed. It trusts the files it reads no further than to hash them;
a baseline that is malformed, or whose digest does not match its files, is
an ``IntegrityError``.
"""

from __future__ import annotations

import fnmatch
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import sys
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from signer_core.config import Config

DISTRIBUTION = "signer-appliance"  # pyproject.toml's project name
SCRIPTS = ("signer-comm", "signer-core", "signerctl", "signer-client")
SCRIPT_DIRS = (Path("/usr/bin"), Path("/usr/local/bin"), Path(sys.prefix, "bin"))
UNIT_DIRS = (
    Path("/lib/systemd/system"),
    Path("/usr/lib/systemd/system"),
    Path("/etc/systemd/system"),
)
BASELINE_NAME = "integrity-baseline.json"
MAX_BASELINE = 16 << 20
NO_BASELINE = (
    "there is no baseline yet to compare with: check that the installed programs are the"
    " ones meant, then run signerctl integrity --accept to make the current set the baseline"
)


class IntegrityError(Exception):
    """The baseline cannot be read; the message says why."""


@dataclass(frozen=True)
class Report:
    files: Mapping[str, str]  # label -> SHA-256 (or "symlink:<target>")
    digest: str  # over the whole current set
    baseline: Path
    baseline_digest: str | None  # None: no baseline recorded yet (and no differences)
    baseline_accepted_at: str | None
    changed: tuple[str, ...]
    added: tuple[str, ...]
    removed: tuple[str, ...]
    accepted: bool

    @property
    def clean(self) -> bool:
        return self.accepted or (
            self.baseline_digest is not None and not (self.changed or self.added or self.removed)
        )


def package_names() -> tuple[str, ...]:
    """The program's top-level packages, from their one list: pyproject.toml's
    ``[tool.setuptools.packages.find] include``.

    A checkout (on PYTHONPATH, or the venv's editable install) has that file
    beside the packages, and it is read there. An installed copy (the Debian
    package installs a wheel) has none; setuptools wrote the same list,
    expanded, into the distribution's ``top_level.txt``.
    """
    names = _checkout_packages(Path(__file__).resolve().parents[1])
    if names is None:
        try:
            listed = importlib.metadata.distribution(DISTRIBUTION).read_text("top_level.txt")
        except importlib.metadata.PackageNotFoundError:
            listed = None
        if not listed:
            raise IntegrityError(
                f"cannot tell which packages to check: there is no pyproject.toml of"
                f" {DISTRIBUTION} beside signer_core, and no installed {DISTRIBUTION}"
                " lists its packages (top_level.txt)"
            )
        names = listed.split()
    return tuple(sorted(names))


def _checkout_packages(top: Path) -> list[str] | None:
    """The packages pyproject.toml in ``top`` includes; None if it is not ours."""
    try:
        with (top / "pyproject.toml").open("rb") as f:
            project = tomllib.load(f)
    except (OSError, tomllib.TOMLDecodeError):
        return None
    if project.get("project", {}).get("name") != DISTRIBUTION:
        return None
    try:
        find = project["tool"]["setuptools"]["packages"]["find"]
        include, exclude = find["include"], find.get("exclude", [])
    except (KeyError, TypeError):
        raise IntegrityError(
            f"{top / 'pyproject.toml'}: no [tool.setuptools.packages.find] include list"
        ) from None
    return [
        entry.name
        for entry in os.scandir(top)
        if (Path(entry.path) / "__init__.py").is_file()
        and any(fnmatch.fnmatchcase(entry.name, pattern) for pattern in include)
        and not any(fnmatch.fnmatchcase(entry.name, pattern) for pattern in exclude)
    ]


def package_dirs(names: Iterable[str] | None = None) -> dict[str, Path]:
    """Where each of ``names`` (the program's packages unless given) lives; a missing
    one is left out (its files show as removed)."""
    found = {}
    for name in package_names() if names is None else names:
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.origin:
            found[name] = Path(spec.origin).parent
    return found


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _file_value(path: Path) -> str:
    if path.is_symlink():
        return f"symlink:{os.readlink(path)}"
    return sha256_file(path)


def _tree(label: str, top: Path) -> dict[str, str]:
    files = {}
    for directory, dirs, names in os.walk(top):
        dirs.sort()
        for name in names:
            path = Path(directory, name)
            files[f"{label}/{path.relative_to(top).as_posix()}"] = _file_value(path)
    return files


def _units(unit_dirs: Iterable[Path]) -> dict[str, str]:
    files, seen = {}, set()
    for directory in unit_dirs:
        # /lib is /usr/lib on merged-/usr systems: hash each real directory once.
        real = directory.resolve()
        if real in seen or not directory.is_dir():
            continue
        seen.add(real)
        for path in sorted(
            [*directory.glob("signer-*.service"), *directory.glob("signer-*.service.d/*.conf")]
        ):
            files[f"unit:{path}"] = _file_value(path)
    return files


def _scripts(script_dirs: Iterable[Path]) -> dict[str, str]:
    """The entry points (``/usr/bin/signer-core``...): a changed one runs other code."""
    files = {}
    for directory in dict.fromkeys(d.resolve() for d in script_dirs):
        for name in SCRIPTS:
            path = directory / name
            if path.exists() or path.is_symlink():
                files[f"script:{path}"] = _file_value(path)
    return files


def current_files(
    cfg: Config,
    *,
    programs: Mapping[str, Path] | None = None,
    unit_dirs: Iterable[Path] = UNIT_DIRS,
    script_dirs: Iterable[Path] = SCRIPT_DIRS,
) -> dict[str, str]:
    """Every file the report covers, by label; the keywords override where to look."""
    files: dict[str, str] = {}
    for name, top in sorted((package_dirs() if programs is None else programs).items()):
        files.update(_tree(f"program:{name}", top))
    files.update(_scripts(script_dirs))
    files[f"config:{Path(cfg.path).absolute()}"] = _file_value(Path(cfg.path))
    for root_id, root in sorted(cfg.x509.roots.items()):
        if root.certificate.exists():
            files[f"root-certificate:{root_id}:{root.certificate}"] = _file_value(root.certificate)
    files.update(_units(unit_dirs))
    return files


def set_digest(files: Mapping[str, str]) -> str:
    """One SHA-256 over the sorted (label, value) pairs: the number the operator writes down."""
    material = "".join(f"{label}\0{value}\n" for label, value in sorted(files.items()))
    return hashlib.sha256(material.encode("utf-8")).hexdigest()


def default_baseline(state_dir: Path) -> Path:
    return Path(state_dir) / BASELINE_NAME


def load_baseline(path: Path) -> tuple[dict[str, str], str] | None:
    """(files, accepted_at) of a baseline, None if there is none."""
    try:
        with path.open("rb") as f:
            raw = f.read(MAX_BASELINE + 1)
    except FileNotFoundError:
        return None
    try:
        data = json.loads(raw)
        files, accepted_at = data["files"], data["accepted_at"]
        ok = (
            len(raw) <= MAX_BASELINE
            and isinstance(accepted_at, str)
            and isinstance(files, dict)
            and all(isinstance(v, str) for v in files.values())
            and data["digest"] == set_digest(files)
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise IntegrityError(f"{path}: not a baseline file ({exc})") from exc
    if not ok:
        raise IntegrityError(f"{path}: malformed, or its digest does not match its files")
    return files, accepted_at


def compare(files: Mapping[str, str], baseline: Path, *, accepted: bool = False) -> Report:
    """``files`` against the baseline in ``baseline``; IntegrityError if it cannot be read.

    ``accepted``: the caller makes ``files`` the new baseline (the differences
    are still reported)."""
    old = load_baseline(baseline)
    # Without a baseline there is nothing to compare with: no differences, not every file "added".
    old_files, accepted_at = old if old is not None else (files, None)
    return Report(
        files,
        set_digest(files),
        baseline,
        set_digest(old_files) if old is not None else None,
        accepted_at,
        changed=tuple(
            sorted(k for k in files.keys() & old_files.keys() if files[k] != old_files[k])
        ),
        added=tuple(sorted(files.keys() - old_files.keys())),
        removed=tuple(sorted(old_files.keys() - files.keys())),
        accepted=accepted,
    )
