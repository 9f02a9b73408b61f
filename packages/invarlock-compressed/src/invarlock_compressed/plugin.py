"""The invarlock-compressed plugin: registers hf_compressed, compressed-tensors (llm-compressor)
checkpoints.

Imports nothing heavy: torch, transformers and compressed-tensors are imported inside the
hookimpls. Scoring and tokenizers are invarlock-hf's (the model is a transformers model); this
plugin answers first for what differs: loading (kept compressed), the ``quantization`` block of
``describe`` (a wrapper around invarlock-hf's description) and snapshots, which carry each
module's scheme as settings a restore must find unchanged.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

from invarlock import hookimpl
from invarlock.adapters import Adapter
from invarlock.snapshot_hooks import ModuleSnapshots
from invarlock.types import AdapterSpec, GuardSupport, Role, SnapshotSupport
from invarlock_compressed.loading import KEEP_COMPRESSED
from invarlock_compressed.modules import ADAPTER, METHOD, is_compressed_tensors_model
from invarlock_hf.loading import LOAD_OPTIONS


class HF_Compressed_Adapter(Adapter):
    """Causal LMs saved by compressed-tensors / llm-compressor (W4A16, W8A8, FP8...), kept compressed."""

    name = ADAPTER


@hookimpl
def invarlock_register_adapters() -> list[AdapterSpec]:
    return [
        AdapterSpec(
            ADAPTER,
            Role.CAUSAL,
            HF_Compressed_Adapter,
            backend=("compressed-tensors", "transformers", "torch"),
            snapshot=SnapshotSupport.YES,
            guards=GuardSupport.FULL,
            notes="compressed-tensors checkpoints (pack-quantized, int8, fp8), kept compressed in memory",
            load_options=LOAD_OPTIONS | {KEEP_COMPRESSED},
        )
    ]


# -- loading -------------------------------------------------------------------------------------


@hookimpl
def invarlock_load_model(adapter: str, model_id: str, device: str, options: dict[str, Any]) -> Any | None:
    if adapter != ADAPTER:
        return None
    from invarlock_compressed.loading import load_compressed_model

    return load_compressed_model(model_id, device, options)


@hookimpl
def invarlock_load_tokenizer(adapter: str, model_id: str, options: dict[str, Any]) -> Any | None:
    if adapter != ADAPTER:
        return None
    from invarlock_hf.loading import load_tokenizer

    return load_tokenizer(model_id, options)


# -- describing ----------------------------------------------------------------------------------


@hookimpl(wrapper=True)
def invarlock_describe(model: Any) -> Generator[None, dict[str, Any] | None, dict[str, Any] | None]:
    description = yield
    if description is None:
        return None
    if (description.get("quantization") or {}).get("method") != METHOD:
        return description
    from invarlock_compressed.describe import complete_description

    return complete_description(model, description)


# -- snapshots: answered before invarlock-hf's, to carry each module's scheme ---------------------

_snapshots = ModuleSnapshots(is_compressed_tensors_model, "invarlock_compressed.snapshot")
invarlock_snapshot = _snapshots.invarlock_snapshot
invarlock_restore = _snapshots.invarlock_restore
invarlock_snapshot_chunked = _snapshots.invarlock_snapshot_chunked
invarlock_restore_chunked = _snapshots.invarlock_restore_chunked


__all__ = [
    "HF_Compressed_Adapter",
    "invarlock_describe",
    "invarlock_load_model",
    "invarlock_load_tokenizer",
    "invarlock_register_adapters",
    "invarlock_restore",
    "invarlock_restore_chunked",
    "invarlock_snapshot",
    "invarlock_snapshot_chunked",
]
