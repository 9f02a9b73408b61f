"""The invarlock-tinylinear plugin: registers the ``tinylinear`` adapter and implements its hooks.

Registered through ``[project.entry-points.invarlock] tinylinear = "invarlock_tinylinear.plugin"``.
Imports nothing heavy: torch, safetensors and invarlock-torch's snapshot engine are imported inside
the hookimpls, so ``invarlock plugins adapters`` never pays for them. Model-keyed hooks return None
for models that are not tinylinear models, so other plugins answer for theirs.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from invarlock import hookimpl
from invarlock.adapters import Adapter
from invarlock.errors import ModelLoadError
from invarlock.types import AdapterSpec, Resolution, Role, SnapshotSupport

ADAPTER = "tinylinear"
OPTIONS = frozenset({"dtype", "trust_remote_code"})


class TinyLinearAdapter(Adapter):
    name = ADAPTER


@hookimpl
def invarlock_register_adapters() -> list[AdapterSpec]:
    return [
        AdapterSpec(
            name=ADAPTER,
            role=Role.CAUSAL,
            adapter_class=TinyLinearAdapter,
            backend=("torch", "safetensors"),
            snapshot=SnapshotSupport.YES,
            notes="sample third-party adapter: a tiny pure-PyTorch causal LM",
        )
    ]


def _is_ours(model: Any) -> bool:
    # A model of ours exists only once the model module is imported; until then, answer without torch.
    if "invarlock_tinylinear.model" not in sys.modules:
        return False
    from invarlock_tinylinear.model import TinyLinearLM

    return isinstance(model, TinyLinearLM)


@hookimpl
def invarlock_resolve_adapter(model_id: str) -> Resolution | None:
    from invarlock_tinylinear.config import read_config

    if Path(model_id).is_dir() and read_config(model_id) is not None:
        return Resolution(ADAPTER, "config.json says model_type tinylinear")
    return None


@hookimpl
def invarlock_load_model(adapter: str, model_id: str, device: str, options: dict[str, Any]) -> Any | None:
    if adapter != ADAPTER:
        return None
    unknown = sorted(set(options) - OPTIONS)
    if unknown:
        raise ModelLoadError(
            f"tinylinear does not take the option(s) {', '.join(unknown)}; "
            f"it takes {', '.join(sorted(OPTIONS))}"
        )
    from invarlock_tinylinear.config import read_config
    from invarlock_tinylinear.model import load_pretrained

    if not Path(model_id).is_dir() or read_config(model_id) is None:
        raise ModelLoadError(
            f"{model_id} is not a tinylinear checkpoint (a directory with config.json and "
            "model.safetensors); save one with invarlock_tinylinear.model.save_pretrained"
        )
    import torch

    dtype = options.get("dtype")
    if isinstance(dtype, str):
        dtype = getattr(torch, dtype)
    try:
        return load_pretrained(model_id, "cpu" if device == "auto" else device, dtype)
    except Exception as exc:
        raise ModelLoadError(f"tinylinear could not load {model_id}: {exc}; re-save the checkpoint") from exc


@hookimpl
def invarlock_describe(model: Any) -> dict[str, Any] | None:
    if not _is_ours(model):
        return None
    config = model.config
    parameters = list(model.parameters())  # each shared (tied) tensor once
    return {
        "model_type": "tinylinear",
        "model_class": f"{type(model).__module__}.{type(model).__qualname__}",
        "role": "causal",
        "architecture_known": True,
        "n_layer": config.n_layer,
        "heads_per_layer": [config.n_head] * config.n_layer,
        "kv_heads_per_layer": [config.n_head] * config.n_layer,
        "mlp_dims": [config.mlp_dim] * config.n_layer,
        "hidden_size": config.hidden_size,
        "vocab_size": config.vocab_size,
        "n_params": sum(p.numel() for p in parameters),
        "dtype": str(parameters[0].dtype).removeprefix("torch."),
        "device": str(model.embed.weight.device),
        "device_map": None,
        "tying": model.tied_weights(),
        "encoder_decoder": None,
        "moe": None,
        "quantization": None,
    }


@hookimpl
def invarlock_logits(model: Any, inputs: Mapping[str, Any]) -> Any | None:
    if not _is_ours(model):
        return None
    import torch

    device = model.embed.weight.device
    with torch.no_grad():
        return model(inputs["input_ids"].to(device)).float().cpu()


# Snapshots go through invarlock-torch's engine (its public API only): every name, shape and dtype
# checked before the first byte is written, tied weights held once, chunked shards with a checksum
# per tensor, written atomically.


@hookimpl
def invarlock_snapshot(model: Any, include: Sequence[str] | None, same_device: bool) -> Any | None:
    if not _is_ours(model):
        return None
    from invarlock_torch import take_snapshot

    return take_snapshot(model, include=include, same_device=same_device)


@hookimpl
def invarlock_restore(model: Any, snapshot: Any) -> bool | None:
    if not _is_ours(model):
        return None
    from invarlock_torch import restore_snapshot

    restore_snapshot(model, snapshot)
    return True


@hookimpl
def invarlock_snapshot_chunked(
    model: Any, directory: Path | None, include: Sequence[str] | None, shard_bytes: int | None
) -> Path | None:
    if not _is_ours(model):
        return None
    from invarlock_torch import write_chunked_snapshot

    return write_chunked_snapshot(model, directory, include=include, shard_bytes=shard_bytes)


@hookimpl
def invarlock_restore_chunked(model: Any, path: Path) -> bool | None:
    if not _is_ours(model):
        return None
    from invarlock_torch import restore_chunked_snapshot

    restore_chunked_snapshot(model, path)
    return True
