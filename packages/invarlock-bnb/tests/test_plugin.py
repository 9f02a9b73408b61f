"""Registration and readiness of hf_bnb, read from the installed distribution's real metadata."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from importlib.metadata import requires

import pytest
from packaging import markers
from packaging.requirements import Requirement

from invarlock.adapters import get_adapter
from invarlock.errors import DependencyMissingError
from invarlock.manager import get_plugin_manager
from invarlock.readiness import Status, check_backend
from invarlock.types import GuardSupport, Role, SnapshotSupport


def test_spec() -> None:
    spec = get_plugin_manager().adapter_spec("hf_bnb")
    assert spec.role is Role.CAUSAL
    assert spec.backend == ("bitsandbytes", "transformers", "torch")
    assert spec.platforms == ("linux",)
    assert spec.snapshot is SnapshotSupport.BEST_EFFORT
    assert spec.guards is GuardSupport.FULL
    assert spec.distribution == "invarlock-bnb"


def test_bitsandbytes_is_declared_linux_only() -> None:
    declared = [Requirement(line) for line in requires("invarlock-bnb") or []]
    bitsandbytes = next(r for r in declared if r.name == "bitsandbytes")
    assert str(bitsandbytes.specifier) == ">=0.48.2"
    assert bitsandbytes.marker is not None
    assert bitsandbytes.marker.evaluate({"sys_platform": "linux"})
    assert not bitsandbytes.marker.evaluate({"sys_platform": "darwin"})


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="bitsandbytes is installed on Linux only")
def test_ready_here() -> None:
    readiness = check_backend(get_plugin_manager().adapter_spec("hf_bnb"))
    assert readiness.status is Status.READY, readiness.reason


@pytest.mark.parametrize("platform", ["darwin", "win32"])
def test_unsupported_elsewhere_with_the_reason(monkeypatch: pytest.MonkeyPatch, platform: str) -> None:
    spec = get_plugin_manager().adapter_spec("hf_bnb")
    monkeypatch.setattr(sys, "platform", platform)
    # packaging caches the marker environment per process; give markers the patched platform too.
    environment = markers.default_environment()
    monkeypatch.setattr(markers, "default_environment", lambda: {**environment, "sys_platform": platform})
    readiness = check_backend(spec)
    assert readiness.status is Status.UNSUPPORTED
    assert "linux" in readiness.reason and platform in readiness.reason
    # The dependency marker alone says the same, from invarlock-bnb's own metadata.
    by_marker = check_backend(dataclasses.replace(spec, platforms=()))
    assert by_marker.status is Status.UNSUPPORTED
    assert 'sys_platform == "linux"' in by_marker.reason
    listed = next(r for r in get_plugin_manager().adapter_records() if r.name == "hf_bnb")
    assert listed.readiness.status is Status.UNSUPPORTED
    with pytest.raises(DependencyMissingError, match="unsupported here"):
        get_adapter("hf_bnb").load_model("unused", device="cpu")


def test_plugin_imports_nothing_heavy() -> None:
    code = (
        "import sys, invarlock_bnb.plugin\n"
        "heavy = [m for m in ('torch', 'transformers', 'bitsandbytes') if m in sys.modules]\n"
        "print(','.join(heavy))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == ""


def test_hooks_registered() -> None:
    record = get_plugin_manager().plugin_records["bnb"]
    assert record.status == "loaded", record.error
    assert record.adapters == ("hf_bnb",)
    assert {
        "invarlock_load_model",
        "invarlock_describe",
        "invarlock_snapshot",
        "invarlock_restore",
        "invarlock_snapshot_chunked",
        "invarlock_restore_chunked",
    } <= set(record.hooks)
