"""The conformance kit itself: it covers every hook, and it imports without torch."""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import invarlock.hookspecs
from invarlock.manager import HOOK_NAMES
from invarlock.testing import AdapterConformance, covered_hooks


def test_every_hook_has_a_kit_test() -> None:
    covered = covered_hooks(AdapterConformance)
    missing = sorted(HOOK_NAMES - set(covered))
    assert not missing, f"hooks with no conformance test (decorate one with @covers): {missing}"
    assert {name for name in dir(invarlock.hookspecs) if name.startswith("invarlock_")} == HOOK_NAMES


def test_kit_tests_cover_only_real_hooks() -> None:
    unknown = sorted(set(covered_hooks(AdapterConformance)) - HOOK_NAMES)
    assert not unknown, f"kit tests claim hooks that do not exist: {unknown}"


def test_every_kit_test_names_what_it_covers() -> None:
    tests = [name for name in dir(AdapterConformance) if name.startswith("test_")]
    named = {test for tests_of_hook in covered_hooks(AdapterConformance).values() for test in tests_of_hook}
    assert sorted(tests) == sorted(named), "a kit test without @covers tests no hook's promise"


def test_the_kit_imports_without_torch() -> None:
    code = "import sys, invarlock.testing; print('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"


REPOSITORY = Path(__file__).resolve().parents[3]


def module_level_imports(tree: ast.Module) -> Iterator[str]:
    """Top-level names imported by a module, outside ``if TYPE_CHECKING:`` blocks."""
    for node in tree.body:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            continue
        for inner in ast.walk(node) if isinstance(node, ast.Try) else [node]:
            if isinstance(inner, ast.Import):
                yield from (alias.name.split(".")[0] for alias in inner.names)
            elif isinstance(inner, ast.ImportFrom) and inner.module and not inner.level:
                yield inner.module.split(".")[0]


def test_shipped_code_imports_pytest_only_in_the_kit() -> None:
    # The kit (invarlock.testing) needs pytest and says so; every other module ships in a wheel
    # whose users need not have pytest, the testing helpers of the adapter packages included.
    kit = REPOSITORY / "packages" / "invarlock-core" / "src" / "invarlock" / "testing.py"
    importing = [
        str(path.relative_to(REPOSITORY))
        for path in sorted(REPOSITORY.glob("packages/*/src/**/*.py"))
        if path != kit and "pytest" in set(module_level_imports(ast.parse(path.read_text(encoding="utf-8"))))
    ]
    assert not importing, f"shipped modules import pytest at module level: {importing}"
