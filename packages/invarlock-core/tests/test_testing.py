"""The conformance kit itself: it covers every hook, and it imports without torch."""

from __future__ import annotations

import subprocess
import sys

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
