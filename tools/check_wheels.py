"""Install each built wheel into a clean virtualenv, without its backends, and check it plugs in.

Usage: python tools/check_wheels.py DIST_DIR

- invarlock-core alone: `invarlock plugins adapters --json` lists every first-party adapter of the catalogue,
  none installed, each with its pip command (or unsupported on this platform).
- Each adapter wheel, installed with --no-deps next to the core wheel (and the sibling invarlock-*
  wheels it requires), plus core's own light requirements (pluggy, packaging...) but no torch or
  other backend: every entry point
  of the `invarlock` group loads, the plugin is `loaded` in `invarlock plugins --json`, and its
  adapters appear in `invarlock plugins adapters --json` with any status but `error` (needs_extra
  is expected: the backends are absent). A wheel without entry points (a package whose issue has
  not landed) is checked for importability only.
- Each library wheel (LIBRARIES: invarlock-torch, invarlock-packed), next to core without torch: it
  declares no `invarlock` entry point (a library is not an adapter, the listing must not change),
  its package imports without importing torch or transformers, and declares its names in `__all__`.
- The `invarlock` meta-distribution: depends on invarlock-core and keeps its extras.

Exits 1 if any check fails, after running them all.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from email.parser import Parser
from pathlib import Path
from typing import Any

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name, parse_wheel_filename

CORE = "invarlock-core"
META = "invarlock"
META_EXTRAS = ("adapters", "hf", "onnx", "gpu", "awq", "gptq", "peft", "compressed", "gguf")
LIBRARIES = frozenset({"invarlock-torch", "invarlock-packed"})
"""Library distributions: shared engines other distributions depend on, with no plugin of their own."""

CHECK_LIBRARY = """
import importlib, json, sys
module = importlib.import_module(sys.argv[1])
heavy = sorted(m for m in ("torch", "transformers") if m in sys.modules)
print(json.dumps({"all": list(getattr(module, "__all__", [])), "heavy": heavy}))
"""

LOAD_ENTRY_POINTS = """
import json, sys
from importlib.metadata import distribution
results = {}
for ep in distribution(sys.argv[1]).entry_points:
    if ep.group == "invarlock":
        try:
            ep.load()
            results[ep.name] = None
        except Exception as exc:
            results[ep.name] = f"{type(exc).__name__}: {exc}"
heavy = sorted(m for m in ("torch", "transformers") if m in sys.modules)
print(json.dumps({"entry_points": results, "heavy": heavy}))
"""


@dataclass(frozen=True)
class Wheel:
    path: Path
    name: str
    """Canonical distribution name (invarlock-hf)."""

    @property
    def metadata(self) -> Any:
        with zipfile.ZipFile(self.path) as archive:
            member = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
            return Parser().parsestr(archive.read(member).decode())

    @property
    def entry_points(self) -> dict[str, str]:
        """The wheel's ``invarlock`` entry points: name -> module."""
        with zipfile.ZipFile(self.path) as archive:
            member = next((n for n in archive.namelist() if n.endswith(".dist-info/entry_points.txt")), None)
            text = archive.read(member).decode() if member else ""
        section = re.search(r"^\[invarlock\]\n(.*?)(?=^\[|\Z)", text, flags=re.MULTILINE | re.DOTALL)
        lines = section.group(1).splitlines() if section else []
        return dict(tuple(part.strip() for part in line.split("=", 1)) for line in lines if "=" in line)  # type: ignore[misc]

    @property
    def top_level_packages(self) -> list[str]:
        with zipfile.ZipFile(self.path) as archive:
            return sorted(
                {
                    n.split("/")[0]
                    for n in archive.namelist()
                    if n.count("/") == 1 and n.endswith("/__init__.py")
                }
            )

    @property
    def requirements(self) -> list[Requirement]:
        """What the wheel requires outside its extras."""
        lines = self.metadata.get_all("Requires-Dist") or []
        return [r for r in map(Requirement, lines) if not (r.marker and "extra" in str(r.marker))]

    @property
    def sibling_requirements(self) -> list[str]:
        """Canonical names of the invarlock-* distributions this wheel requires."""
        names = (canonicalize_name(r.name) for r in self.requirements)
        return [name for name in names if name.startswith("invarlock-")]


class Checker:
    def __init__(self, wheels: dict[str, Wheel], workdir: Path) -> None:
        self.wheels = wheels
        self.workdir = workdir
        self.failures: list[str] = []
        # Core's own requirements (pluggy, packaging...), fetched once for every venv.
        self.runtime = [str(r) for r in wheels[CORE].requirements]
        self.wheelhouse = workdir / "wheelhouse"
        self.pip([sys.executable, "-m", "pip", "wheel", "--quiet", "-w", str(self.wheelhouse), *self.runtime])

    def fail(self, subject: str, problem: str) -> None:
        self.failures.append(f"{subject}: {problem}")
        print(f"  FAIL {problem}")

    @staticmethod
    def pip(command: list[str]) -> None:
        """Run pip quietly; its output is shown only when it fails (dependency warnings are expected)."""
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            print(done.stdout + done.stderr)
            raise RuntimeError(f"{' '.join(command)} exited {done.returncode}")

    def venv(self, label: str, wheels: list[Wheel]) -> Path:
        """A fresh venv holding ``wheels`` (no dependencies resolved) plus core's own requirements."""
        target = self.workdir / label
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(target)], check=True)
        python = target / "bin" / "python"
        # The wheelhouse holds the closure of core's requirements, so --no-deps leaves nothing out.
        runtime = sorted(str(p) for p in self.wheelhouse.glob("*.whl"))
        self.pip(
            [
                *(sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet"),
                *("--no-index", "--no-deps", *(str(w.path) for w in wheels), *runtime),
            ]
        )
        return python

    def invarlock_json(self, python: Path, *args: str) -> Any:
        done = subprocess.run(
            [str(python.with_name("invarlock")), *args, "--json"], capture_output=True, text=True, check=False
        )
        if done.returncode != 0:
            raise RuntimeError(f"`invarlock {' '.join(args)} --json` exited {done.returncode}: {done.stderr}")
        return json.loads(done.stdout)

    def check_core_alone(self) -> None:
        print(f"{CORE}: alone in a clean venv")
        python = self.venv("core", [self.wheels[CORE]])
        listing = self.invarlock_json(python, "plugins", "adapters")
        items = listing["adapters"]
        # The catalogue is the one list of first-party adapters; read it from the installed core.
        catalogue = subprocess.run(
            [str(python), "-c", "from invarlock.catalogue import FIRST_PARTY; print(len(FIRST_PARTY))"],
            capture_output=True,
            text=True,
            check=True,
        )
        expected_count = int(catalogue.stdout)
        if len(items) != expected_count or any(item["origin"] != "first-party" for item in items):
            self.fail(
                CORE,
                f"expected the {expected_count} first-party adapters, got {[i['name'] for i in items]}",
            )
        for item in items:
            expected = f"pip install {item['distribution']}"
            if item["status"] == "needs_extra" and item["install"] == expected:
                print(f"  ok   {item['name']}: {expected}")
            elif item["status"] == "unsupported" and item["reason"]:
                print(f"  ok   {item['name']}: unsupported here ({item['reason']})")
            else:
                self.fail(CORE, f"{item['name']} is {item['status']} with install {item['install']!r}")

    def check_adapter(self, wheel: Wheel) -> None:
        siblings = [self.wheels[name] for name in wheel.sibling_requirements if name in self.wheels]
        missing = [name for name in wheel.sibling_requirements if name not in self.wheels]
        if missing:
            self.fail(wheel.name, f"requires {missing}, which were not built")
            return
        label = ", ".join(w.name for w in siblings if w.name != CORE)
        print(f"{wheel.name}: with {CORE}{', ' + label if label else ''} and no backends")
        python = self.venv(wheel.name, [wheel, *siblings, self.wheels[CORE]])
        entry_points = wheel.entry_points
        if not entry_points:
            packages = wheel.top_level_packages
            code = "; ".join(f"import {p}" for p in packages) or "pass"
            done = subprocess.run([str(python), "-c", code], capture_output=True, text=True, check=False)
            if done.returncode != 0:
                self.fail(wheel.name, f"importing {packages} failed: {done.stderr.strip().splitlines()[-1]}")
            else:
                print(f"  ok   no invarlock entry points yet; {', '.join(packages)} import cleanly")
            return
        done = subprocess.run(
            [str(python), "-c", LOAD_ENTRY_POINTS, wheel.name], capture_output=True, text=True, check=True
        )
        loaded = json.loads(done.stdout)
        for name, error in loaded["entry_points"].items():
            if error:
                self.fail(wheel.name, f"entry point {name} = {entry_points[name]} does not load: {error}")
            else:
                print(f"  ok   entry point {name} = {entry_points[name]} loads")
        if loaded["heavy"]:
            self.fail(wheel.name, f"loading the plugin imported {loaded['heavy']}")
        plugins = self.invarlock_json(python, "plugins")["plugins"]
        ours = [p for p in plugins if canonicalize_name(p["distribution"] or "") == wheel.name]
        for plugin in ours:
            if plugin["status"] != "loaded":
                self.fail(wheel.name, f"plugin {plugin['name']} is {plugin['status']}: {plugin['error']}")
        adapters = [
            item
            for item in self.invarlock_json(python, "plugins", "adapters")["adapters"]
            if canonicalize_name(item["distribution"]) == wheel.name and item["plugin"] is not None
        ]
        if not adapters:
            self.fail(wheel.name, "no adapter of this distribution is listed by `invarlock plugins adapters`")
        for item in adapters:
            if item["status"] == "error":
                self.fail(wheel.name, f"{item['name']} is listed as error: {item['reason']}")
            else:
                fix = f" -> {item['install']}" if item["install"] else ""
                print(f"  ok   {item['name']}: {item['status']}{fix}")

    def check_library(self, wheel: Wheel) -> None:
        siblings = [self.wheels[name] for name in wheel.sibling_requirements if name in self.wheels]
        print(f"{wheel.name}: library, with {CORE} and no torch")
        if wheel.entry_points:
            self.fail(wheel.name, f"a library declares invarlock entry points {sorted(wheel.entry_points)}")
        python = self.venv(wheel.name, [wheel, *siblings, self.wheels[CORE]])
        for package in wheel.top_level_packages:
            done = subprocess.run(
                [str(python), "-c", CHECK_LIBRARY, package], capture_output=True, text=True, check=False
            )
            if done.returncode != 0:
                self.fail(wheel.name, f"importing {package} failed: {done.stderr.strip().splitlines()[-1]}")
                continue
            result = json.loads(done.stdout)
            if result["heavy"]:
                self.fail(wheel.name, f"importing {package} imported {result['heavy']}")
            elif not result["all"]:
                self.fail(wheel.name, f"{package} declares no public names (__all__)")
            else:
                print(f"  ok   {package} imports without torch; {len(result['all'])} public names")

    def check_meta(self, wheel: Wheel) -> None:
        print(f"{META}: meta-distribution metadata")
        metadata = wheel.metadata
        requirements = [Requirement(line) for line in metadata.get_all("Requires-Dist") or []]
        if not any(canonicalize_name(r.name) == CORE and not r.marker for r in requirements):
            self.fail(META, f"does not depend on {CORE}")
        extras = set(metadata.get_all("Provides-Extra") or [])
        for extra in META_EXTRAS:
            if extra in extras:
                print(f"  ok   extra [{extra}]")
            else:
                self.fail(META, f"extra [{extra}] is missing")


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__)
        return 2
    dist = Path(argv[0])
    wheels: dict[str, Wheel] = {}
    for path in sorted(dist.glob("*.whl")):
        name = str(canonicalize_name(parse_wheel_filename(path.name)[0]))
        wheels[name] = Wheel(path, name)
    if CORE not in wheels or META not in wheels:
        print(f"{dist} lacks the {CORE} or the {META} wheel; build them first")
        return 1
    with tempfile.TemporaryDirectory(prefix="check-wheels-") as workdir:
        checker = Checker(wheels, Path(workdir))
        checker.check_core_alone()
        for wheel in sorted(wheels.values(), key=lambda w: w.name):
            if wheel.name in LIBRARIES:
                checker.check_library(wheel)
            elif wheel.name not in (CORE, META):
                checker.check_adapter(wheel)
        checker.check_meta(wheels[META])
    if checker.failures:
        print(f"\n{len(checker.failures)} problem(s):")
        for failure in checker.failures:
            print(f"  {failure}")
        return 1
    print(f"\nAll {len(wheels)} wheels check out.")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
