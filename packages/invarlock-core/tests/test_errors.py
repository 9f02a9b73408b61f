"""Every refusal has its own code: no module of any distribution raises the base class itself."""

from __future__ import annotations

import ast
from pathlib import Path

from invarlock.errors import InvarlockError

REPO = Path(__file__).resolve().parents[3]
SOURCES = sorted(
    [
        *REPO.glob("packages/*/src/**/*.py"),
        *REPO.glob("tests-integration/plugins/*/src/**/*.py"),
    ]
)


def _raises_base_class(node: ast.Raise) -> bool:
    raised = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
    if isinstance(raised, ast.Name):
        return raised.id == InvarlockError.__name__
    return isinstance(raised, ast.Attribute) and raised.attr == InvarlockError.__name__


def test_the_sources_are_found() -> None:
    assert any(path.name == "errors.py" for path in SOURCES)
    assert len({path.parts[len(REPO.parts) + 1] for path in SOURCES}) >= 6, "distributions missing"


def test_no_module_raises_the_base_class() -> None:
    found = []
    for path in SOURCES:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Raise) and node.exc is not None and _raises_base_class(node):
                found.append(f"{path.relative_to(REPO)}:{node.lineno}")
    assert not found, (
        "raise a documented InvarlockError subclass with its own code (docs/errors.md), not the base "
        f"class: {', '.join(found)}"
    )


def test_the_check_sees_a_direct_raise() -> None:
    tree = ast.parse("from invarlock import errors\nraise errors.InvarlockError('x')\nraise InvarlockError\n")
    raises = [node for node in ast.walk(tree) if isinstance(node, ast.Raise)]
    assert [_raises_base_class(node) for node in raises] == [True, True]
