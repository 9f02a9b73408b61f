"""Shared fixtures: real distributions on a temporary sys.path entry, and a fresh plugin manager.

``site`` builds installed distributions the way pip leaves them (a ``*.dist-info`` directory with
METADATA and entry_points.txt, next to the plugin's module), so discovery goes through the real
importlib.metadata machinery, in this process or in a subprocess given ``site.env``.
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

import invarlock.manager

REPO = Path(__file__).resolve().parents[3]
DOCS = REPO / "docs"


@dataclass
class Site:
    """A directory on sys.path holding fake-but-real installed distributions."""

    root: Path
    modules: list[str] = field(default_factory=list)

    def add_distribution(
        self,
        name: str,
        version: str = "1.0",
        *,
        plugins: dict[str, str] | None = None,
        requires: Sequence[str] = (),
    ) -> None:
        """Install distribution ``name``; ``plugins`` maps entry-point name -> plugin module source."""
        dist_info = self.root / f"{name.replace('-', '_')}-{version}.dist-info"
        dist_info.mkdir(parents=True)
        metadata = ["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}"]
        metadata += [f"Requires-Dist: {requirement}" for requirement in requires]
        (dist_info / "METADATA").write_text("\n".join(metadata) + "\n")
        if plugins:
            lines = ["[invarlock]"]
            for entry_point, source in plugins.items():
                module = f"{name.replace('-', '_')}_{entry_point}_plugin"
                (self.root / f"{module}.py").write_text(textwrap.dedent(source))
                self.modules.append(module)
                lines.append(f"{entry_point} = {module}")
            (dist_info / "entry_points.txt").write_text("\n".join(lines) + "\n")
        importlib.invalidate_caches()

    @property
    def env(self) -> dict[str, str]:
        """Environment for a subprocess that sees these distributions."""
        path = os.pathsep.join([str(self.root), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
        return {**os.environ, "PYTHONPATH": path}


@pytest.fixture(autouse=True)
def fresh_plugin_manager(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every test starts from entry-point discovery, without inherited disable settings."""
    monkeypatch.delenv(invarlock.manager.DISABLE_ENV, raising=False)
    monkeypatch.setattr(invarlock.manager, "_manager", None)
    yield
    invarlock.manager._manager = None


@pytest.fixture
def isolated(monkeypatch: pytest.MonkeyPatch) -> None:
    """Disable every plugin installed in this environment, so a test sees only its own."""
    from importlib.metadata import entry_points

    installed = sorted({ep.name for ep in entry_points(group="invarlock")})
    monkeypatch.setenv(invarlock.manager.DISABLE_ENV, ",".join(installed))


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Site]:
    root = tmp_path / "site-packages"
    root.mkdir()
    monkeypatch.syspath_prepend(str(root))
    created = Site(root)
    yield created
    for module in created.modules:
        sys.modules.pop(module, None)


def run_invarlock(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``invarlock ARGS`` in a fresh interpreter, through the installed console script."""
    script = Path(sys.executable).with_name("invarlock")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "invarlock.cli"]
    return subprocess.run([*command, *args], capture_output=True, text=True, env=env, check=False)


def adapters_json(env: dict[str, str] | None = None) -> dict[str, object]:
    done = run_invarlock("plugins", "adapters", "--json", env=env)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)  # type: ignore[no-any-return]


Cli = Callable[..., subprocess.CompletedProcess[str]]
Listing = Callable[..., dict[str, object]]


@pytest.fixture
def cli() -> Cli:
    """Run ``invarlock ARGS`` in a subprocess: ``cli("plugins", env=site.env)``."""
    return run_invarlock


@pytest.fixture
def listing() -> Listing:
    """``invarlock plugins adapters --json``, parsed: ``listing(env=site.env)``."""
    return adapters_json
