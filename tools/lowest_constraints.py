"""Write a pip constraints file pinning every declared dependency to its declared lower bound.

Usage: python tools/lowest_constraints.py OUTPUT DIST [DIST...]   (DIST: core, hf, bnb...)

pip has no "lowest" resolution, so the nox ``lowest`` session installs the named distributions of
packages/ with this file as constraints: each runtime dependency that applies here (markers are
evaluated for this interpreter) is pinned to ``==`` its lower bound (``>=`` or ``~=``); when several
of the distributions require one backend, the highest of their lower bounds is the lowest version
they can share. invarlock-* siblings come from this tree and are not pinned. A dependency without a
lower bound is an error: an unbounded requirement cannot be tested at its lowest.

torch is the one exception: only the local CPU wheel of torch 2.13.0 installs quickly here (every
other version is a CUDA build of several GB), so torch is pinned to constraints/test.txt's version
and its declared lower bound is not tested by this session. The file replaces constraints/test.txt
(whose other pins serve gptqmodel) rather than adding to it.
"""

from __future__ import annotations

import sys
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - the tools run on 3.11+, the packages support 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ROOT / "packages"
TEST_CONSTRAINTS = ROOT / "constraints" / "test.txt"
KEPT_AT_TEST_PIN = frozenset({"torch"})
"""Dependencies pinned as constraints/test.txt pins them instead of at their lower bound (see above)."""


def test_pins() -> dict[str, Version]:
    """The ``name==version`` pins of constraints/test.txt."""
    pins: dict[str, Version] = {}
    for line in TEST_CONSTRAINTS.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            requirement = Requirement(line)
            (spec,) = requirement.specifier
            pins[canonicalize_name(requirement.name)] = Version(spec.version)
    return pins


def lower_bound(requirement: Requirement) -> Version | None:
    """The lowest version ``requirement`` admits, from its ``>=``, ``~=`` or ``==`` clauses."""
    bounds = [
        Version(spec.version)
        for spec in requirement.specifier
        if spec.operator in (">=", "~=", "==") and "*" not in spec.version
    ]
    return max(bounds) if bounds else None


def runtime_requirements(distribution: str) -> list[Requirement]:
    """The ``[project] dependencies`` of ``packages/invarlock-<distribution>`` that apply here."""
    pyproject = PACKAGES / f"invarlock-{distribution}" / "pyproject.toml"
    project = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
    requirements = [Requirement(line) for line in project.get("dependencies", [])]
    return [r for r in requirements if r.marker is None or r.marker.evaluate()]


def lowest_pins(distributions: list[str]) -> dict[str, Version]:
    """Distribution name → the version to pin, for every dependency of ``distributions``."""
    pins: dict[str, Version] = {}
    unbounded: list[str] = []
    for distribution in distributions:
        for requirement in runtime_requirements(distribution):
            name = canonicalize_name(requirement.name)
            if name.startswith("invarlock"):
                continue
            if name in KEPT_AT_TEST_PIN:
                pins[name] = test_pins()[name]
                continue
            bound = lower_bound(requirement)
            if bound is None:
                unbounded.append(f"invarlock-{distribution}: {requirement}")
                continue
            pins[name] = max(bound, pins.get(name, bound))
    if unbounded:
        raise SystemExit(f"dependencies without a lower bound: {', '.join(unbounded)}; declare one")
    return pins


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    output, distributions = Path(argv[0]), argv[1:]
    missing = [d for d in distributions if not (PACKAGES / f"invarlock-{d}" / "pyproject.toml").is_file()]
    if missing:
        print(f"no packages/invarlock-{missing[0]}/pyproject.toml", file=sys.stderr)
        return 2
    pins = lowest_pins(distributions)
    lines = [f"# Lowest declared bounds of invarlock-{', invarlock-'.join(distributions)}", ""]
    lines += [f"{name}=={version}" for name, version in sorted(pins.items())]
    output.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines[2:]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
