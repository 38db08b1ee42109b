"""The import rules that keep the trust boundary visible in the tree (docs/architecture.md).

Read from the source with ``ast``, every import counted, function-level ones
included: a lazy import runs in the same process as an eager one.
"""

from __future__ import annotations

import ast
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

# What each package of ours may import besides itself. Entries are packages
# or single modules; nothing lists signerctl, so only tests and bench/ use it.
ALLOWED: dict[str, frozenset[str]] = {
    "spool": frozenset(),
    # The audit log's tree and checkpoints, checked on the web side and built on the signer's.
    "tlog": frozenset(),
    "hardening": frozenset(),
    "comm_handler": frozenset({"spool", "hardening"}),
    # The web host speaks both link protocols, and serves v1 with the comm handler's
    # own server (the bridge); the comm daemon, the relay to the spool, are not its.
    "webhost": frozenset(
        {
            "comm_handler.frames",
            "comm_handler.transfer",
            "comm_handler.v1server",
            "comm_handler.v2frames",
            "comm_handler.v2link",
            "comm_handler.v2messages",
            "comm_handler.repeats",
            "spool.header",
            "spool.codes",
            "spool.record",
            "spool.safeio",
            "spool.settings",
            "tlog",
        }
    ),
    "signer_core": frozenset({"spool", "tlog", "hardening"}),
    # The demo's null modem makes its ptys raw as the bridge does.
    "signerctl": frozenset({"signer_core", "spool", "tlog", "hardening", "webhost.ptyport"}),
}


def module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules(root: Path) -> dict[str, Path]:
    return {
        module_name(root, path): path
        for package in ALLOWED
        if (root / package).is_dir()
        for path in sorted((root / package).rglob("*.py"))
    }


def _type_only(tree: ast.Module) -> set[int]:
    """Ids of the import nodes under ``if TYPE_CHECKING:``, which never run."""
    guarded = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            guarded |= {id(inner) for stmt in node.body for inner in ast.walk(stmt)}
    return guarded


def imports(
    name: str, path: Path, known: dict[str, Path], *, typing: bool = True
) -> Iterator[tuple[str, int]]:
    """(module of ours imported, line) for each import in ``path``; without
    ``typing``, leaving out the imports only a type checker follows."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    tree = ast.parse(path.read_text(), str(path))
    skip = set() if typing else _type_only(tree)
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                yield (submodule if submodule in known else base), node.lineno


def ours(target: str) -> bool:
    return target.split(".")[0] in ALLOWED


def allowed(importer: str, target: str) -> bool:
    top = importer.split(".")[0]
    if target.split(".")[0] == top:
        return True
    return any(target == entry or target.startswith(entry + ".") for entry in ALLOWED[top])


def violations(root: Path) -> list[str]:
    known = modules(root)
    found = []
    for name, path in known.items():
        for target, line in imports(name, path, known):
            if ours(target) and not allowed(name, target):
                found.append(f"{path.relative_to(root)}:{line}: {name} imports {target}")
    return found


def cycles(root: Path) -> list[list[str]]:
    """Each import cycle among our modules once, as the list of modules round it.

    Imports for the type checker alone are left out: they never run, and they
    are how two modules that refer to each other's types say so."""
    known = modules(root)
    graph = {
        name: sorted(
            {t for t, _ in imports(name, path, known, typing=False) if t in known and t != name}
        )
        for name, path in known.items()
    }
    found: list[list[str]] = []
    done: set[str] = set()

    def visit(node: str, trail: list[str]) -> None:
        if node in trail:
            cycle = trail[trail.index(node) :]
            turn = cycle.index(min(cycle))
            canonical = cycle[turn:] + cycle[:turn]
            if canonical not in found:
                found.append(canonical)
            return
        if node in done:
            return
        for target in graph[node]:
            visit(target, [*trail, node])
        done.add(node)

    for name in graph:
        visit(name, [])
    return found


def test_the_tree_keeps_the_import_rules() -> None:
    assert violations(REPO) == []


def test_the_tree_has_no_import_cycles() -> None:
    assert cycles(REPO) == []


def test_every_package_of_ours_has_a_rule() -> None:
    packages = {p.parent.name for p in REPO.glob("*/__init__.py")} - {"tests", "bench"}
    assert packages == set(ALLOWED)


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A copy of our packages to break on purpose."""
    for package in ALLOWED:
        shutil.copytree(REPO / package, tmp_path / package, ignore=shutil.ignore_patterns("*.pyc"))
    return tmp_path


@pytest.mark.parametrize(
    ("module", "statement"),
    [
        ("spool/record.py", "from signer_core import refusal"),
        ("comm_handler/daemon.py", "import signer_core.config"),
        ("signer_core/dispatch.py", "from comm_handler.frames import FrameError"),
        ("signer_core/x509/issue.py", "from signerctl import overview"),
        ("webhost/client.py", "from comm_handler.daemon import LinkServer"),
        ("hardening/process.py", "from spool import safeio"),
    ],
)
def test_a_forbidden_import_is_caught(tree: Path, module: str, statement: str) -> None:
    path = tree / module
    lines = path.read_text().splitlines()
    lines.append(f"def _late():\n    {statement}\n")
    path.write_text("\n".join(lines))
    found = violations(tree)
    assert len(found) == 1 and found[0].startswith(module), found


def test_a_relative_import_is_resolved(tree: Path) -> None:
    (tree / "signer_core" / "x509" / "issue.py").write_text("from ...signerctl import overview\n")
    assert violations(tree) == [
        "signer_core/x509/issue.py:1: signer_core.x509.issue imports signerctl.overview"
    ]


def test_a_cycle_is_caught(tree: Path) -> None:
    path = tree / "spool" / "record.py"
    path.write_text(path.read_text() + "\nfrom spool import queue\n")
    before = cycles(REPO)  # once: each call parses every module
    new = [cycle for cycle in cycles(tree) if cycle not in before]
    assert new and all({"spool.record", "spool.queue"} <= set(cycle) for cycle in new), new


def test_no_test_imports_another_test_module_or_a_conftest() -> None:
    """Shared test code is a fixture (conftest.py) or lives in tests/support."""
    found = []
    for path in sorted((REPO / "tests").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names: list[str] = []
            if not isinstance(node, (ast.Import, ast.ImportFrom)):
                continue
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif node.module:
                names = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
            for name in names:
                last = name.rsplit(".", 1)[-1]
                if last.startswith(("test_", "conftest")) and (
                    name.startswith("tests") or "." not in name
                ):
                    found.append(f"{path.relative_to(REPO)}:{node.lineno}: {name}")
    assert found == []
