"""A broken third-party plugin next to the real ones, as a user meets it on the command line.

The installed sample invarlock-broken raises at import; the faulty plugin written here (installed
into a directory on PYTHONPATH the way pip leaves a distribution) raises from its resolution,
describe and snapshot hooks for every model, as a plugin with a bug does. Neither may take the
Hugging Face adapters down: the demo model is still resolved, described and certified.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DEMO_MODEL = ROOT / "demo" / "model"

FAULTY = """
print("faulty plugin imported")
from invarlock import hookimpl


@hookimpl
def invarlock_resolve_adapter(model_id):
    raise KeyError("architectures")


@hookimpl
def invarlock_describe(model):
    return model.no_such_attribute


@hookimpl
def invarlock_snapshot(model, include, same_device):
    raise TypeError("unhashable type: 'list'")
"""


@pytest.fixture
def faulty_env(tmp_path: Path) -> dict[str, str]:
    site = tmp_path / "site"
    dist_info = site / "acme_faulty-1.0.dist-info"
    dist_info.mkdir(parents=True)
    (dist_info / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-faulty\nVersion: 1.0\n")
    (dist_info / "entry_points.txt").write_text("[invarlock]\nfaulty = acme_faulty_plugin\n")
    (site / "acme_faulty_plugin.py").write_text(FAULTY)
    path = os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path, "HF_HUB_OFFLINE": "1"}


def invarlock(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "invarlock.cli", *args], capture_output=True, text=True, env=env, timeout=600
    )


def test_describe_of_a_model_the_faulty_plugin_does_not_own_works(faulty_env: dict[str, str]) -> None:
    done = invarlock("describe", str(DEMO_MODEL), "--json", env=faulty_env)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["description"]["model_type"] == "llama"  # stdout is clean JSON
    assert "faulty plugin imported" in done.stderr
    warnings = [line for line in done.stderr.splitlines() if line.startswith("invarlock: warning:")]
    assert warnings == [
        "invarlock: warning: plugin faulty (acme-faulty) failed in invarlock_resolve_adapter (KeyError: "
        "'architectures') for a request another plugin answered; it was skipped (further faults of this "
        "plugin are recorded without a warning)"
    ]
    assert "Traceback" not in done.stderr


def test_certify_with_the_faulty_plugin_installed_records_its_faults(
    faulty_env: dict[str, str], tmp_path: Path
) -> None:
    out = tmp_path / "certificate"
    args = ["certify", "--baseline", str(DEMO_MODEL), "--subject", str(DEMO_MODEL), "--out", str(out)]
    done = invarlock(*args, "--windows", "32", "--bootstrap", "200", env=faulty_env)
    assert done.returncode == 0, done.stderr
    certificate = json.loads((out / "certificate.json").read_text())
    assert certificate["verdict"] == "PASS"
    faulty = next(p for p in certificate["plugins"]["plugins"] if p["name"] == "faulty")
    hooks = {fault["hook"] for fault in faulty["faults"]}
    assert {"invarlock_resolve_adapter", "invarlock_describe"} <= hooks
    assert {"error": "KeyError: 'architectures'", "hook": "invarlock_resolve_adapter"} in faulty["faults"]


def test_plugins_traceback_of_the_broken_sample_names_its_file_and_line() -> None:
    done = invarlock("plugins", "--traceback", "broken")
    assert done.returncode == 0, done.stderr
    assert "Traceback (most recent call last)" in done.stdout
    assert 'invarlock_broken/plugin.py", line 3, in <module>' in done.stdout
    assert done.stdout.rstrip().endswith("RuntimeError: invarlock-broken fails at import on purpose")
