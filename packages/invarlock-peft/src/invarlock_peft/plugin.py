"""The invarlock-peft plugin: registers hf_peft, PEFT fine-tunes (LoRA, DoRA, IA3...) over their base.

Imports nothing heavy: torch, transformers and peft are imported inside the hookimpls. The plugin
claims directories holding ``adapter_config.json`` in the resolve hook (ahead of invarlock-hf's
resolver, which reads only ``config.json``), so ``auto`` and ``hf_auto`` load them with ``hf_peft``;
it loads the base through the base's own adapter and wraps it, and answers the hooks keyed by the
model for ``peft.PeftModel`` objects: describe (the base's description plus a ``peft`` block),
scoring, and adapter-only snapshots. A merged model (``merge=True``) is a plain transformers model:
invarlock-hf (or invarlock-bnb) answers for it, and a describe wrapper adds the ``peft`` block.
"""

from __future__ import annotations

from collections.abc import Generator, Mapping, Sequence
from pathlib import Path
from typing import Any

from invarlock import hookimpl
from invarlock.adapters import Adapter
from invarlock.types import AdapterSpec, GuardSupport, Resolution, Role, SnapshotSupport

ADAPTER = "hf_peft"


class HF_PEFT_Adapter(Adapter):
    """Loads a PEFT adapter directory over its base model (``base=``, ``merge=``, ``snapshot=`` options)."""

    name = ADAPTER


@hookimpl
def invarlock_register_adapters() -> list[AdapterSpec]:
    return [
        AdapterSpec(
            ADAPTER,
            Role.ANY,
            HF_PEFT_Adapter,
            backend=("peft", "transformers", "torch"),
            snapshot=SnapshotSupport.YES,
            guards=GuardSupport.FULL,
            notes="PEFT adapters (LoRA, DoRA, IA3...) over their base; adapter-only snapshots",
        )
    ]


def _is_peft_model(model: Any) -> bool:
    from invarlock_peft.adapters import is_peft_model

    return is_peft_model(model)


# -- resolution: answered before invarlock-hf's resolver, which reads only config.json -------------


@hookimpl(tryfirst=True)
def invarlock_resolve_adapter(model_id: str, options: Mapping[str, Any]) -> Resolution | None:
    from invarlock_peft.loading import ADAPTER_CONFIG, BASE_FIELD, is_adapter_directory, read_adapter_config

    if not is_adapter_directory(model_id):
        return None
    try:
        config = read_adapter_config(Path(model_id).expanduser())
    except Exception:
        return Resolution(ADAPTER, f"{model_id} holds {ADAPTER_CONFIG} (a PEFT adapter)")
    method = str(config.get("peft_type") or "PEFT")
    base = config.get(BASE_FIELD) or "a base given with the base option"
    return Resolution(ADAPTER, f"{model_id} holds {ADAPTER_CONFIG}: a {method} adapter over {base}")


# -- loading -------------------------------------------------------------------------------------


@hookimpl
def invarlock_load_model(adapter: str, model_id: str, device: str, options: dict[str, Any]) -> Any | None:
    if adapter != ADAPTER:
        return None
    from invarlock_peft.loading import load_peft_model

    return load_peft_model(model_id, device, options)


@hookimpl
def invarlock_load_tokenizer(adapter: str, model_id: str, options: dict[str, Any]) -> Any | None:
    if adapter != ADAPTER:
        return None
    from invarlock_hf.loading import load_tokenizer
    from invarlock_peft.loading import tokenizer_source

    options = dict(options)
    source = tokenizer_source(model_id, options.pop("base", None), options)
    return load_tokenizer(source, options)


# -- describing ----------------------------------------------------------------------------------


@hookimpl
def invarlock_describe(model: Any) -> dict[str, Any] | None:
    if not _is_peft_model(model):
        return None
    from invarlock_peft.describe import describe_peft_model

    return describe_peft_model(model)


@hookimpl(specname="invarlock_describe", wrapper=True)
def describe_merged_model(model: Any) -> Generator[None, dict[str, Any] | None, dict[str, Any] | None]:
    """Adds the ``peft`` block to the description of a model loaded with ``merge=True``."""
    description = yield
    if description is None:
        return None
    from invarlock_peft.loading import load_info

    info = load_info(model)
    if info is None or not info.merged:
        return description
    from invarlock_peft.describe import add_merged_block

    return add_merged_block(description, info)


@hookimpl
def invarlock_logits(model: Any, inputs: Mapping[str, Any]) -> Any | None:
    if not _is_peft_model(model):
        return None
    from invarlock_hf.scoring import logits

    return logits(model, inputs)


# -- snapshots -----------------------------------------------------------------------------------


@hookimpl
def invarlock_snapshot(model: Any, include: Sequence[str] | None, same_device: bool) -> Any | None:
    if not _is_peft_model(model):
        return None
    from invarlock_peft import snapshot

    return snapshot.snapshot(model, include, same_device)


@hookimpl
def invarlock_restore(model: Any, snapshot: Any) -> bool | None:
    if not _is_peft_model(model):
        return None
    from invarlock_peft import snapshot as peft_snapshot

    peft_snapshot.restore(model, snapshot)
    return True


@hookimpl
def invarlock_snapshot_chunked(
    model: Any, directory: Path | None, include: Sequence[str] | None, shard_bytes: int | None
) -> Path | None:
    if not _is_peft_model(model):
        return None
    from invarlock_peft import snapshot

    return snapshot.snapshot_chunked(model, directory, include, shard_bytes)


@hookimpl
def invarlock_restore_chunked(model: Any, path: Path) -> bool | None:
    if not _is_peft_model(model):
        return None
    from invarlock_peft import snapshot

    snapshot.restore_chunked(model, path)
    return True
