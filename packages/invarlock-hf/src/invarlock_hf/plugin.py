"""The invarlock-hf plugin: registers hf_causal, hf_mlm, hf_seq2seq and hf_auto.

Imports nothing heavy: torch and transformers are imported inside the hookimpls. Every hook keyed
by a model returns None for models that are not transformers models, so other plugins answer.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from invarlock import hookimpl
from invarlock.adapters import Adapter
from invarlock.quantizers import QuantizationMethod
from invarlock.types import AdapterSpec, Resolution, Role
from invarlock_hf.loading import LOAD_OPTIONS
from invarlock_hf.models import is_transformers_model

# The snapshot hookimpls (glue to invarlock-torch's engine); importing them here registers them.
from invarlock_hf.snapshot import (
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
    """Picks the adapter for each checkpoint through ``invarlock_resolve_adapter`` (this plugin's
    answer is :func:`invarlock_hf.resolve.resolve`) and loads with it; core does the hand-over."""

    name = "hf_auto"


@hookimpl
def invarlock_register_adapters() -> list[AdapterSpec]:
    return [
        AdapterSpec(
            "hf_causal",
            Role.CAUSAL,
            HF_Causal_Adapter,
            BACKEND,
            notes="AutoModelForCausalLM",
            load_options=LOAD_OPTIONS,
        ),
        AdapterSpec(
            "hf_mlm",
            Role.MASKED_LM,
            HF_MLM_Adapter,
            BACKEND,
            notes="AutoModelForMaskedLM",
            load_options=LOAD_OPTIONS,
        ),
        AdapterSpec(
            "hf_seq2seq",
            Role.SEQ2SEQ,
            HF_Seq2Seq_Adapter,
            BACKEND,
            notes="AutoModelForSeq2SeqLM",
            load_options=LOAD_OPTIONS,
        ),
        AdapterSpec(
            "hf_auto",
            Role.ANY,
            HF_Auto_Adapter,
            BACKEND,
            notes="picks the adapter from the checkpoint",
            resolves=True,
        ),
    ]


@hookimpl
def invarlock_resolve_adapter(model_id: str, options: Mapping[str, Any]) -> Resolution:
    from invarlock_hf.resolve import resolve

    return resolve(model_id, dict(options))


@hookimpl
def invarlock_load_model(adapter: str, model_id: str, device: str, options: dict[str, Any]) -> Any | None:
    auto_class = AUTO_CLASSES.get(adapter)
    if auto_class is None:
        return None
    from invarlock_hf.loading import load_pretrained

    return load_pretrained(auto_class, model_id, device, options)


@hookimpl
def invarlock_load_tokenizer(adapter: str, model_id: str, options: dict[str, Any]) -> Any | None:
    if adapter not in AUTO_CLASSES:
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


@hookimpl
def invarlock_quantization_methods() -> list[QuantizationMethod]:
    from invarlock_hf.quantizers import quantization_methods

    return quantization_methods()


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
    "invarlock_quantization_methods",
    "invarlock_register_adapters",
    "invarlock_resolve_adapter",
    "invarlock_restore",
    "invarlock_restore_chunked",
    "invarlock_snapshot",
    "invarlock_snapshot_chunked",
]
