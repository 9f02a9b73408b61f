"""The invarlock-gguf plugin: registers ``gguf`` (GGUF checkpoints scored by llama.cpp; inference-only).

Imports nothing heavy: llama_cpp, gguf, numpy, torch and transformers are imported inside the
hookimpls. Every model-keyed hook answers only for a :class:`~invarlock_gguf.models.GGUFModel`
and returns None for any other model.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from invarlock import hookimpl
from invarlock.adapters import Adapter
from invarlock.snapshot_hooks import InferenceOnlySnapshots
from invarlock.types import AdapterSpec, GuardSupport, Resolution, Role, SnapshotSupport
from invarlock_gguf.models import ADAPTER, is_gguf_model

BACKEND = ("llama-cpp-python", "gguf")
NOTES = (
    "GGUF checkpoints scored by llama.cpp (llama-cpp-python), described from GGUF metadata; "
    "inference-only (use edit: noop). llama-cpp-python is an sdist: pip builds llama.cpp from source "
    "(cmake and a C++ compiler; about 9 minutes on 2 cores)"
)


class GGUF_Adapter(Adapter):
    name = ADAPTER


@hookimpl
def invarlock_register_adapters() -> list[AdapterSpec]:
    return [
        AdapterSpec(
            ADAPTER,
            Role.CAUSAL,
            GGUF_Adapter,
            BACKEND,
            snapshot=SnapshotSupport.NO,
            guards=GuardSupport.EVAL_ONLY,
            notes=NOTES,
        )
    ]


# tryfirst: a .gguf path is ours, whatever a generic resolver would default to.
@hookimpl(tryfirst=True)
def invarlock_resolve_adapter(model_id: str) -> Resolution | None:
    if not model_id.lower().endswith(".gguf") and not Path(model_id).expanduser().is_dir():
        return None
    from invarlock_gguf.files import find_gguf_file

    found = find_gguf_file(model_id)
    if found is None:
        return None
    if Path(model_id).expanduser().is_dir():
        return Resolution(ADAPTER, f"{model_id} holds one GGUF file ({found.name})")
    return Resolution(ADAPTER, f"{model_id} is a GGUF file")


@hookimpl
def invarlock_load_model(adapter: str, model_id: str, device: str, options: dict[str, Any]) -> Any | None:
    if adapter != ADAPTER:
        return None
    from invarlock_gguf.loading import load_gguf

    return load_gguf(model_id, device, options)


@hookimpl
def invarlock_load_tokenizer(adapter: str, model_id: str, options: dict[str, Any]) -> Any | None:
    if adapter != ADAPTER:
        return None
    from invarlock_gguf.tokenizer import load_vocabulary

    return load_vocabulary(model_id)


@hookimpl
def invarlock_describe(model: Any) -> dict[str, Any] | None:
    if not is_gguf_model(model):
        return None
    from invarlock_gguf.describe import describe_gguf

    return describe_gguf(model)


# tryfirst: a .gguf path is ours; the generic config reader would refuse it for lacking config.json.
@hookimpl(tryfirst=True)
def invarlock_describe_config(model_id: str, options: dict[str, Any]) -> dict[str, Any] | None:
    if not model_id.lower().endswith(".gguf") and not Path(model_id).expanduser().is_dir():
        return None
    from invarlock_gguf.files import find_gguf_file

    found = find_gguf_file(model_id)
    if found is None:
        return None
    from invarlock_gguf.describe import describe_gguf_file

    return describe_gguf_file(found)


@hookimpl
def invarlock_logits(model: Any, inputs: Mapping[str, Any]) -> Any | None:
    if not is_gguf_model(model):
        return None
    from invarlock_gguf.scoring import gguf_logits

    return gguf_logits(model, inputs)


# -- snapshot and restore: declared unsupported (SnapshotSupport.NO), refused for our models ------

_snapshots = InferenceOnlySnapshots(
    is_gguf_model,
    f"{ADAPTER} models are inference-only: a llama.cpp context cannot {{operation}}; use "
    "`edit: noop` to certify a GGUF checkpoint against its baseline",
)
invarlock_snapshot = _snapshots.invarlock_snapshot
invarlock_restore = _snapshots.invarlock_restore
invarlock_snapshot_chunked = _snapshots.invarlock_snapshot_chunked
invarlock_restore_chunked = _snapshots.invarlock_restore_chunked
