"""Registration, the declared capabilities, and the hooks' refusal of snapshot operations."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from invarlock.adapters import get_adapter
from invarlock.errors import UnsupportedOperationError
from invarlock.manager import get_plugin_manager
from invarlock.types import GuardSupport, Role, SnapshotSupport

ADAPTER = "hf_causal_onnx"
HEAVY = ("torch", "transformers", "optimum", "onnxruntime", "onnx")


def test_plugin_import_loads_no_backend() -> None:
    code = f"import sys, invarlock_onnx.plugin; print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == ""


def test_spec_declares_inference_only() -> None:
    spec = get_plugin_manager().adapter_spec(ADAPTER)
    assert spec.role is Role.CAUSAL
    assert spec.snapshot is SnapshotSupport.NO
    assert spec.guards is GuardSupport.EVAL_ONLY
    assert spec.distribution == "invarlock-onnx"
    assert type(get_adapter(ADAPTER)).__name__ == "HF_Causal_ONNX_Adapter"


def test_adapter_class_importable_from_core() -> None:
    from invarlock.adapters import HF_Causal_ONNX_Adapter

    assert HF_Causal_ONNX_Adapter.name == ADAPTER


def test_snapshot_refusal_says_what_to_do_instead(exported: Any) -> None:
    # The conformance kit checks every snapshot operation is refused; this is the sentence users see.
    model = get_adapter(ADAPTER).load_model(exported["gpt2"].onnx, device="cpu")
    with pytest.raises(UnsupportedOperationError, match=r"inference-only.*`edit: noop`"):
        get_adapter(ADAPTER).snapshot(model)


def test_hooks_leave_other_models_alone(pytorch_models: Any) -> None:
    from invarlock_onnx import plugin

    model = pytorch_models["gpt2"]
    assert plugin.invarlock_describe(model) is None
    assert plugin.invarlock_logits(model, {}) is None
    assert plugin.invarlock_snapshot(model, None, False) is None
    assert plugin.invarlock_restore(model, object()) is None
    assert plugin.invarlock_snapshot_chunked(model, None, None, None) is None
    assert plugin.invarlock_restore_chunked(model, Path("snapshot")) is None
    assert plugin.invarlock_load_model("hf_causal", "anything", "cpu", {}) is None
