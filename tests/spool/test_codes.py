"""spool.codes: every refusal code the programs can send has one number, and back.

The scan reads the source of every package (not the tests) for the places a
code is named: ``Refusal("code", ...)``, a comm refusal ``_refusal(action,
"code", ...)``, ``error_payload("code", ...)`` and the bridge's own, and the
table of badkeys' codes. A code added without a number fails here.
"""

from __future__ import annotations

import ast
from pathlib import Path

from signer_core.x509 import keychecks
from spool import codes

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("comm_handler", "signer_core", "signerctl", "spool", "webhost", "hardening")
# call name -> position of the code among its arguments
NAMING_CALLS = {"Refusal": 0, "error_payload": 0, "_refusal": 1, "refuse": 0}


def named_codes() -> dict[str, str]:
    found: dict[str, str] = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if not isinstance(node, ast.Call):
                    continue
                func = node.func
                name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")
                at = NAMING_CALLS.get(name)
                if at is None or len(node.args) <= at:
                    continue
                arg = node.args[at]
                if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                    found.setdefault(arg.value, f"{path.relative_to(ROOT)}:{node.lineno}")
    return found


def test_every_code_named_in_the_source_is_registered():
    found = named_codes()
    assert len(found) > 60  # the scan sees the codes at all
    missing = {code: where for code, where in found.items() if code not in codes.NUMBERS}
    assert missing == {}


def test_badkeys_codes_are_registered():
    assert set(keychecks._BADKEYS_CODES.values()) <= set(codes.NUMBERS)


def test_names_and_numbers_are_one_to_one():
    assert len(codes.NAMES) == len(codes.NUMBERS)
    for name, number in codes.NUMBERS.items():
        assert codes.name_of(number) == name
        assert codes.number_of(name) == number
        assert 0 < number < codes.UNREGISTERED


def test_an_unknown_name_or_number_still_says_something():
    assert codes.number_of("no-such-code") == codes.UNREGISTERED
    assert codes.name_of(9999) == "code-9999"
