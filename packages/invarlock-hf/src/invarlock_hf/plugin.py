"""The invarlock-hf plugin: registers hf_causal, hf_mlm, hf_seq2seq and hf_auto.

Imports nothing heavy: torch and transformers are imported inside the hookimpls. Every hook keyed
by a model returns None for models that are not transformers models, so other plugins answer.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from invarlock import hookimpl
from invarlock.adapters import Adapter
from invarlock.types import AdapterSpec, Resolution, Role
from invarlock_hf.models import is_transformers_model

# The snapshot hookimpls live with the snapshot engine; importing them here registers them.
from invarlock_hf.snapshot.hooks import (
    invarlock_restore,
    invarlock_restore_chunked,
    invarlock_snapshot,
    invarlock_snapshot_chunked,
)

BACKEND = ("transformers", "torch")
AUTO_CLASSES = {
    "hf_causal": "AutoModelForCausalLM",
    "hf_mlm": "AutoModelForMaskedLM",
    "hf_seq2seq": "AutoModelForSeq2SeqLM",
}
"""Adapter name → the transformers Auto class it loads with."""


class HF_Causal_Adapter(Adapter):
    name = "hf_causal"


class HF_MLM_Adapter(Adapter):
    name = "hf_mlm"


class HF_Seq2Seq_Adapter(Adapter):
    name = "hf_seq2seq"


class HF_Auto_Adapter(Adapter):
    """Picks the adapter from the checkpoint (:func:`invarlock_hf.resolve.resolve`) and loads with it."""

    name = "hf_auto"


@hookimpl
def invarlock_register_adapters() -> list[AdapterSpec]:
    return [
        AdapterSpec("hf_causal", Role.CAUSAL, HF_Causal_Adapter, BACKEND, notes="AutoModelForCausalLM"),
        AdapterSpec("hf_mlm", Role.MASKED_LM, HF_MLM_Adapter, BACKEND, notes="AutoModelForMaskedLM"),
        AdapterSpec("hf_seq2seq", Role.SEQ2SEQ, HF_Seq2Seq_Adapter, BACKEND, notes="AutoModelForSeq2SeqLM"),
        AdapterSpec(
            "hf_auto", Role.ANY, HF_Auto_Adapter, BACKEND, notes="picks the adapter from the checkpoint"
        ),
    ]


@hookimpl
def invarlock_resolve_adapter(model_id: str) -> Resolution:
    from invarlock_hf.resolve import resolve

    return resolve(model_id)


@hookimpl
def invarlock_load_model(adapter: str, model_id: str, device: str, options: dict[str, Any]) -> Any | None:
    if adapter == "hf_auto":
        from invarlock.adapters import get_adapter
        from invarlock_hf.resolve import resolve

        # Through the chosen adapter's own entry: a missing distribution or backend gets its pip command.
        chosen = resolve(model_id, options).adapter
        return get_adapter(chosen).load_model(model_id, device=device, **options)
    auto_class = AUTO_CLASSES.get(adapter)
    if auto_class is None:
        return None
    from invarlock_hf.loading import load_pretrained

    return load_pretrained(auto_class, model_id, device, options)


@hookimpl
def invarlock_load_tokenizer(adapter: str, model_id: str, options: dict[str, Any]) -> Any | None:
    if adapter != "hf_auto" and adapter not in AUTO_CLASSES:
        return None
    from invarlock_hf.loading import load_tokenizer

    return load_tokenizer(model_id, options)


@hookimpl
def invarlock_describe(model: Any) -> dict[str, Any] | None:
    if not is_transformers_model(model):
        return None
    from invarlock_hf.describe import describe_model

    return describe_model(model)


@hookimpl
def invarlock_describe_config(model_id: str, options: dict[str, Any]) -> dict[str, Any] | None:
    from invarlock_hf.config_only import describe_config

    return describe_config(model_id, options)


@hookimpl
def invarlock_logits(model: Any, inputs: Mapping[str, Any]) -> Any | None:
    if not is_transformers_model(model):
        return None
    from invarlock_hf.scoring import logits

    return logits(model, inputs)


__all__ = [
    "HF_Auto_Adapter",
    "HF_Causal_Adapter",
    "HF_MLM_Adapter",
    "HF_Seq2Seq_Adapter",
    "invarlock_describe",
    "invarlock_describe_config",
    "invarlock_load_model",
    "invarlock_load_tokenizer",
    "invarlock_logits",
    "invarlock_register_adapters",
    "invarlock_resolve_adapter",
    "invarlock_restore",
    "invarlock_restore_chunked",
    "invarlock_snapshot",
    "invarlock_snapshot_chunked",
]
