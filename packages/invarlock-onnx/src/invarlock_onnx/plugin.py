"""The invarlock-onnx plugin: registers hf_causal_onnx (ORTModelForCausalLM, inference-only).

Imports nothing heavy: optimum, onnxruntime, onnx, torch and transformers are imported inside the
hookimpls. Every model-keyed hook answers only for an ``ORTModelForCausalLM`` and returns None
for any other model.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from invarlock import hookimpl
from invarlock.adapters import Adapter
from invarlock.snapshot_hooks import InferenceOnlySnapshots
from invarlock.types import AdapterSpec, GuardSupport, Role, SnapshotSupport
from invarlock_onnx.models import is_ort_causal_lm

ADAPTER = "hf_causal_onnx"
# onnxruntime is not listed: CUDA users replace the `onnxruntime` distribution with
# `onnxruntime-gpu`, and either one serves. Loading says so when neither is importable.
BACKEND = ("optimum-onnx",)


class HF_Causal_ONNX_Adapter(Adapter):
    name = ADAPTER


@hookimpl
def invarlock_register_adapters() -> list[AdapterSpec]:
    return [
        AdapterSpec(
            ADAPTER,
            Role.CAUSAL,
            HF_Causal_ONNX_Adapter,
            BACKEND,
            snapshot=SnapshotSupport.NO,
            guards=GuardSupport.EVAL_ONLY,
            notes="ORTModelForCausalLM on ONNX Runtime; inference-only (use edit: noop)",
        )
    ]


@hookimpl
def invarlock_load_model(adapter: str, model_id: str, device: str, options: dict[str, Any]) -> Any | None:
    if adapter != ADAPTER:
        return None
    from invarlock_onnx.loading import load_ort_causal_lm

    return load_ort_causal_lm(model_id, device, options)


@hookimpl
def invarlock_load_tokenizer(adapter: str, model_id: str, options: dict[str, Any]) -> Any | None:
    if adapter != ADAPTER:
        return None
    from invarlock_onnx.loading import load_tokenizer

    return load_tokenizer(model_id, options)


@hookimpl
def invarlock_describe(model: Any) -> dict[str, Any] | None:
    if not is_ort_causal_lm(model):
        return None
    from invarlock_onnx.describe import describe_ort_model

    return describe_ort_model(model)


@hookimpl
def invarlock_logits(model: Any, inputs: Mapping[str, Any]) -> Any | None:
    if not is_ort_causal_lm(model):
        return None
    from invarlock_onnx.scoring import ort_logits

    return ort_logits(model, inputs)


# -- snapshot and restore: declared unsupported (SnapshotSupport.NO), refused for our models ------

_snapshots = InferenceOnlySnapshots(
    is_ort_causal_lm,
    f"{ADAPTER} models are inference-only: ONNX Runtime sessions cannot {{operation}}; use "
    "`edit: noop` to certify an exported ONNX model against its baseline",
)
invarlock_snapshot = _snapshots.invarlock_snapshot
invarlock_restore = _snapshots.invarlock_restore
invarlock_snapshot_chunked = _snapshots.invarlock_snapshot_chunked
invarlock_restore_chunked = _snapshots.invarlock_restore_chunked
