"""Registration, declared capabilities, the listing's note, and the hooks' refusal of snapshots."""

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

ADAPTER = "gguf"
HEAVY = ("torch", "transformers", "llama_cpp", "gguf", "numpy")


def test_plugin_import_loads_no_backend() -> None:
    code = f"import sys, invarlock_gguf.plugin; print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == ""


def test_spec_declares_inference_only() -> None:
    spec = get_plugin_manager().adapter_spec(ADAPTER)
    assert spec.role is Role.CAUSAL
    assert spec.snapshot is SnapshotSupport.NO
    assert spec.guards is GuardSupport.EVAL_ONLY
    assert spec.distribution == "invarlock-gguf"
    assert spec.backend == ("llama-cpp-python", "gguf")
    assert type(get_adapter(ADAPTER)).__name__ == "GGUF_Adapter"


def test_adapter_class_importable_from_core() -> None:
    from invarlock.adapters import GGUF_Adapter

    assert GGUF_Adapter.name == ADAPTER


def test_explain_says_the_backend_builds_from_source() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "invarlock.cli", "plugins", "adapters", "--explain", ADAPTER],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "status:       ready" in result.stdout
    assert "builds llama.cpp from source" in result.stdout
    assert "Inference-only" in result.stdout


def test_listed_in_the_inference_only_group() -> None:
    from invarlock.cli.plugins import adapters_listing

    (item,) = [a for a in adapters_listing()["adapters"] if a["name"] == ADAPTER]
    assert item["group"] == "Inference-only" and item["status"] == "ready"
    assert item["backend"] == ["llama-cpp-python", "gguf"]


@pytest.mark.parametrize(
    ("hook", "kwargs"),
    [
        ("invarlock_snapshot", {"include": None, "same_device": False}),
        ("invarlock_restore", {"snapshot": object()}),
        ("invarlock_snapshot_chunked", {"directory": None, "include": None, "shard_bytes": None}),
        ("invarlock_restore_chunked", {"path": Path("snapshot")}),
    ],
)
def test_snapshot_hooks_say_inference_only(gguf_files: Any, hook: str, kwargs: dict[str, Any]) -> None:
    model = get_adapter(ADAPTER).load_model(gguf_files["Q8_0"], device="cpu")
    with pytest.raises(UnsupportedOperationError, match=r"inference-only.*`edit: noop`") as raised:
        getattr(get_plugin_manager().hook, hook)(model=model, **kwargs)
    assert raised.value.code == "operation_unsupported"


def test_hooks_leave_other_models_alone(pytorch_demo: Any, demo_model: Path) -> None:
    from invarlock_gguf import plugin

    model = pytorch_demo
    assert plugin.invarlock_describe(model) is None
    assert plugin.invarlock_logits(model, {}) is None
    assert plugin.invarlock_snapshot(model, None, False) is None
    assert plugin.invarlock_restore(model, object()) is None
    assert plugin.invarlock_snapshot_chunked(model, None, None, None) is None
    assert plugin.invarlock_restore_chunked(model, Path("snapshot")) is None
    assert plugin.invarlock_load_model("hf_causal", "anything", "cpu", {}) is None
    assert plugin.invarlock_load_tokenizer("hf_causal", "anything", {}) is None
    assert plugin.invarlock_resolve_adapter(str(demo_model)) is None
    assert plugin.invarlock_resolve_adapter("someone/model") is None
