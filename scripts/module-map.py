#!/usr/bin/python3
"""Keep the module list of docs/architecture.md in step with the tree.

Development tool, run from a checkout; it trusts the checkout. The list is
the part of the page between its two ``module list`` markers, one line
``- `path`: what it holds`` per module that git knows under the packages,
an ``__init__.py`` holding only a docstring left out.

    python3 scripts/module-map.py           # print the list as it should be
    python3 scripts/module-map.py --check   # exit 1 if the page lists other modules
    python3 scripts/module-map.py --write   # rewrite the list in the page

A module already listed keeps its line, a module gone loses it, and a new
module gets its docstring's first line, for a person to edit.
"""

from __future__ import annotations

import argparse
import ast
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "docs" / "architecture.md"
PACKAGES = ("spool", "tlog", "hardening", "comm_handler", "signer_core", "signerctl", "webhost")
BEGIN = re.compile(r"^<!-- module list: begin.*-->$", re.MULTILINE)
END = "<!-- module list: end -->"
LINE = re.compile(r"^- `([^`]+)`: ")


def modules() -> list[str]:
    """The paths of the modules the list must name, sorted."""
    out = subprocess.run(
        ["git", "ls-files", "--", *(f"{p}/*.py" for p in PACKAGES)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return sorted(path for path in out.split() if not _docstring_only(ROOT / path))


def _docstring_only(path: Path) -> bool:
    if path.name != "__init__.py":
        return False
    body = ast.parse(path.read_text(encoding="utf-8")).body
    return len(body) == 1 and isinstance(body[0], ast.Expr)


def _summary(path: str) -> str:
    doc = ast.get_docstring(ast.parse((ROOT / path).read_text(encoding="utf-8"))) or ""
    return doc.split("\n\n")[0].replace("\n", " ").strip() or "(no docstring: say what it holds)"


def split_page(text: str) -> tuple[str, list[str], str]:
    """The page before the list (marker included), the list's lines, the rest."""
    begin = BEGIN.search(text)
    end = text.find(END)
    if begin is None or end < begin.end():
        sys.exit(f"{PAGE}: the module list markers are missing")
    head, body, tail = text[: begin.end() + 1], text[begin.end() + 1 : end], text[end:]
    return head, [line for line in body.splitlines() if line.strip()], tail


def updated(lines: list[str], paths: list[str]) -> list[str]:
    known = {m.group(1): line for line in lines if (m := LINE.match(line))}
    return [known.get(path) or f"- `{path}`: {_summary(path)}" for path in paths]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--check", action="store_true", help="exit 1 if the list is out of date")
    group.add_argument("--write", action="store_true", help="rewrite the list in the page")
    args = parser.parse_args()
    head, lines, tail = split_page(PAGE.read_text(encoding="utf-8"))
    paths = modules()
    new = updated(lines, paths)
    if args.check:
        listed = [m.group(1) for line in lines if (m := LINE.match(line))]
        for path in sorted(set(paths) - set(listed)):
            print(f"not listed: {path}")
        for path in sorted(set(listed) - set(paths)):
            print(f"listed but gone: {path}")
        return 0 if listed == paths else 1
    if args.write:
        PAGE.write_text(head + "".join(f"{line}\n" for line in new) + tail, encoding="utf-8")
    else:
        print("\n".join(new))
    return 0


if __name__ == "__main__":
    sys.exit(main())
