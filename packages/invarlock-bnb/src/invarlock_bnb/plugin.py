"""The invarlock-bnb plugin: registers hf_bnb, bitsandbytes 8-bit and 4-bit causal language models.

Imports nothing heavy: torch, transformers and bitsandbytes are imported inside the hookimpls.
Scoring and tokenizers are invarlock-hf's (a bitsandbytes model is a transformers model); this
plugin answers first for what differs: loading, the quantization block of ``describe`` (a
wrapper around invarlock-hf's description) and snapshots, which must carry quantization state
that lives outside parameters and buffers.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

from invarlock import hookimpl
from invarlock.adapters import Adapter
from invarlock.snapshot_hooks import ModuleSnapshots
from invarlock.types import AdapterSpec, GuardSupport, Role, SnapshotSupport
from invarlock_hf.loading import LOAD_OPTIONS
from invarlock_hf.quantization import BITSANDBYTES_OPTIONS

ADAPTER = "hf_bnb"


class HF_BNB_Adapter(Adapter):
    """Loads causal LMs quantized by bitsandbytes (8-bit by default, or 4-bit nf4/fp4) and places them."""

    name = ADAPTER


@hookimpl
def invarlock_register_adapters() -> list[AdapterSpec]:
    return [
        AdapterSpec(
            ADAPTER,
            Role.CAUSAL,
            HF_BNB_Adapter,
            backend=("bitsandbytes", "transformers", "torch"),
            platforms=("linux",),
            snapshot=SnapshotSupport.BEST_EFFORT,
            guards=GuardSupport.FULL,
            notes="bitsandbytes 8-bit (default) and 4-bit nf4/fp4 causal LMs, on CPU or CUDA",
            load_options=LOAD_OPTIONS | BITSANDBYTES_OPTIONS,
        )
    ]


def _is_bnb_model(model: Any) -> bool:
    from invarlock_bnb.layers import is_bnb_model

    return is_bnb_model(model)


# -- loading -------------------------------------------------------------------------------------


@hookimpl
def invarlock_load_model(adapter: str, model_id: str, device: str, options: dict[str, Any]) -> Any | None:
    if adapter != ADAPTER:
        return None
    from invarlock_bnb.loading import load_bnb_model

    return load_bnb_model(model_id, device, options)


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
    quantization = description.get("quantization") or {}
    if quantization.get("method") != "bitsandbytes" and not _is_bnb_model(model):
        return description
    from invarlock_bnb.describe import complete_description

    return complete_description(model, description)


# -- snapshots: answered before invarlock-hf's, which would miss the quantization state -----------

_snapshots = ModuleSnapshots(_is_bnb_model, "invarlock_bnb.snapshot")
invarlock_snapshot = _snapshots.invarlock_snapshot
invarlock_restore = _snapshots.invarlock_restore
invarlock_snapshot_chunked = _snapshots.invarlock_snapshot_chunked
invarlock_restore_chunked = _snapshots.invarlock_restore_chunked
