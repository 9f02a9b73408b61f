"""No distribution imports another distribution's non-public names.

Read statically from the source tree (no imports): every ``from <pkg>.<module> import <name>`` in a
distribution's ``src/`` (first-party packages and the sample plugins) that reaches into another
distribution must name something public there:

- no module or name starting with an underscore;
- where the module declares ``__all__``, the name is in it (or is a submodule);
- where it does not, the name is documented: it appears in the providing distribution's README or
  in docs/ (the "for other packages" lists), so a sibling relies only on what is stated.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCES = [*ROOT.glob("packages/*/src/*"), *ROOT.glob("tests-integration/plugins/*/src/*")]
PACKAGES = {src.name: src for src in SOURCES if (src / "__init__.py").is_file()}


def module_file(module: str) -> Path | None:
    first, *rest = module.split(".")
    path = PACKAGES[first].joinpath(*rest)
    if (path / "__init__.py").is_file():
        return path / "__init__.py"
    return path.with_suffix(".py") if path.with_suffix(".py").is_file() else None


def declared_all(path: Path) -> set[str] | None:
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
        if any(isinstance(t, ast.Name) and t.id == "__all__" for t in targets):
            return set(ast.literal_eval(node.value))  # type: ignore[attr-defined]
    return None


def documentation(package: str) -> str:
    readme = PACKAGES[package].parent.parent / "README.md"
    texts = [readme.read_text(encoding="utf-8")] if readme.is_file() else []
    texts += [doc.read_text(encoding="utf-8") for doc in (ROOT / "docs").rglob("*.md")]
    return "\n".join(texts)


def cross_imports() -> list[tuple[Path, str, str]]:
    found = []
    for package, src in PACKAGES.items():
        for path in src.rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    top = node.module.split(".")[0]
                    if top in PACKAGES and top != package:
                        found += [(path, node.module, alias.name) for alias in node.names]
    return found


def test_the_scan_sees_the_distributions_and_their_cross_imports() -> None:
    assert {"invarlock", "invarlock_torch", "invarlock_hf", "invarlock_tinylinear"} <= set(PACKAGES)
    assert any(module.startswith("invarlock_torch") for _, module, _ in cross_imports())


def test_no_distribution_imports_another_distributions_non_public_names() -> None:
    problems = []
    docs: dict[str, str] = {}
    for path, module, name in cross_imports():
        where = f"{path.relative_to(ROOT)}: from {module} import {name}"
        if any(part.startswith("_") for part in [*module.split("."), name]):
            problems.append(f"{where} (private)")
            continue
        if module_file(f"{module}.{name}") is not None:
            continue  # a submodule
        target = module_file(module)
        exported = declared_all(target) if target else None
        if exported is not None:
            if name not in exported:
                problems.append(f"{where} (not in {module}.__all__)")
            continue
        top = module.split(".")[0]
        text = docs.setdefault(top, documentation(top))
        if not re.search(rf"\b{re.escape(name)}\b", text):
            problems.append(f"{where} ({module} declares no __all__ and the name is documented nowhere)")
    assert not problems, "\n".join(problems)
