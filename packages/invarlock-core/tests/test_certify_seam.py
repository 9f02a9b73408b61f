"""The two halves of core and the seam between them (docs/architecture.md, "Core: two halves")."""

from __future__ import annotations

import ast
from pathlib import Path

import invarlock

SOURCE = Path(invarlock.__file__).parent
ENGINE = "invarlock.certification"
PLUGIN_MACHINERY = ("invarlock.adapters", "invarlock.manager", "invarlock.listing", "invarlock.hookspecs")
SEAM = {"invarlock.certification.sides", "invarlock.certification.context"}
ENGINE_USERS = {"invarlock.config", "invarlock.testing"}
"""Outside the engine and the CLI, only the run configuration takes the engine's defaults, and the
conformance kit scores windows through the engine's own scoring path (the batch-invariance guarantee)."""


def module_name(path: Path) -> str:
    parts = path.relative_to(SOURCE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    """Every invarlock module ``path`` imports, at the top or inside a function."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
    return {name for name in found if name.startswith("invarlock")}


def modules() -> dict[str, set[str]]:
    return {module_name(path): imports(path) for path in SOURCE.rglob("*.py")}


def test_the_engine_reaches_plugins_only_through_its_seam() -> None:
    found = modules()
    engine = {name for name in found if name.startswith(ENGINE)}
    assert engine >= SEAM and len(engine) > 20
    for name in sorted(engine - SEAM):
        reaching = sorted(i for i in found[name] if i.startswith(PLUGIN_MACHINERY))
        assert not reaching, f"{name} imports {reaching}; go through certification.sides or .context"


def test_the_frame_knows_nothing_of_the_engine() -> None:
    for name, imported in sorted(modules().items()):
        if name.startswith((ENGINE, "invarlock.cli")) or name in ENGINE_USERS:
            continue
        assert not any(i.startswith(ENGINE) for i in imported), f"{name} imports the certify engine"
