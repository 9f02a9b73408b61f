"""Registration, readiness and resolution of hf_compressed, from the installed distribution."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from invarlock.adapters import resolve_adapter
from invarlock.manager import get_plugin_manager
from invarlock.readiness import Status, check_backend
from invarlock.types import GuardSupport, Role, SnapshotSupport


def test_spec() -> None:
    spec = get_plugin_manager().adapter_spec("hf_compressed")
    assert spec.role is Role.CAUSAL
    assert spec.backend == ("compressed-tensors", "transformers", "torch")
    assert spec.snapshot is SnapshotSupport.YES
    assert spec.guards is GuardSupport.FULL
    assert spec.distribution == "invarlock-compressed"


def test_ready_here() -> None:
    readiness = check_backend(get_plugin_manager().adapter_spec("hf_compressed"))
    assert readiness.status is Status.READY, readiness.reason


def test_plugin_imports_nothing_heavy() -> None:
    code = (
        "import sys, invarlock_compressed.plugin\n"
        "heavy = [m for m in ('torch', 'transformers', 'compressed_tensors') if m in sys.modules]\n"
        "print(','.join(heavy))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == ""


def test_hooks_registered() -> None:
    record = get_plugin_manager().plugin_records["compressed"]
    assert record.status == "loaded", record.error
    assert record.adapters == ("hf_compressed",)
    assert {
        "invarlock_load_model",
        "invarlock_describe",
        "invarlock_snapshot",
        "invarlock_restore",
        "invarlock_snapshot_chunked",
        "invarlock_restore_chunked",
    } <= set(record.hooks)


def test_auto_resolves_a_compressed_checkpoint(w4a16_path: Path, w8a8_path: Path) -> None:
    for path in (w4a16_path, w8a8_path):
        resolution = resolve_adapter(str(path))
        assert resolution.adapter == "hf_compressed"
        assert "compressed-tensors" in resolution.reason
