"""describe for PEFT models: the base's own description plus a ``peft`` block.

The base is described by whichever plugin recognises it (invarlock-hf, with invarlock-bnb's
quantization block for a bitsandbytes base), through the describe hook: nothing is copied. The
``peft`` block says what the adapter is (method, rank, alpha, dropout, target modules, modules to
save, the layers carrying it, its parameter count) and the tokens it added to the vocabulary.
A merged model (``merge=True``) is described as the plain model it now is, with the block marked
``merged``.
"""

from __future__ import annotations

from typing import Any

from invarlock_peft.loading import PeftLoad, load_info

PEFT_KEY = "peft"


def _json_list(value: Any) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    return sorted(value) if isinstance(value, (set, frozenset)) else list(value)


def _peft_type(config: Any) -> str:
    peft_type = getattr(config, "peft_type", None)
    return str(getattr(peft_type, "value", peft_type) or "")


def _method(config: Any) -> str:
    method = _peft_type(config).lower()
    if method == "lora" and getattr(config, "use_dora", False):
        return "dora"
    return method


def _config_block(config: Any) -> dict[str, Any]:
    return {
        "method": _method(config),
        "peft_type": _peft_type(config),
        "rank": getattr(config, "r", None),
        "alpha": getattr(config, "lora_alpha", None),
        "dropout": getattr(config, "lora_dropout", None),
        "rank_pattern": dict(getattr(config, "rank_pattern", None) or {}),
        "alpha_pattern": dict(getattr(config, "alpha_pattern", None) or {}),
        "target_modules": _json_list(getattr(config, "target_modules", None)),
        "modules_to_save": _json_list(getattr(config, "modules_to_save", None)),
        "trainable_token_indices": getattr(config, "trainable_token_indices", None),
    }


def _tokens_block(info: PeftLoad | None, vocab_size: int) -> dict[str, Any]:
    if info is None:
        return {"count": None, "base_vocab_size": None, "vocab_size": vocab_size, "tokens": None}
    return {
        "count": info.vocab_size - info.base_vocab_size,
        "base_vocab_size": info.base_vocab_size,
        "vocab_size": info.vocab_size,
        "tokens": list(info.added_tokens) if info.added_tokens is not None else None,
    }


def _load_block(info: PeftLoad | None) -> dict[str, Any]:
    if info is None:
        return {"base": None, "base_adapter": None, "merged": False, "snapshot": "adapter"}
    return {
        "base": info.base,
        "base_source": info.base_source,
        "base_adapter": info.base_adapter,
        "merged": info.merged,
        "snapshot": info.snapshot,
    }


def add_vocab_growth(description: dict[str, Any], info: PeftLoad | None) -> None:
    """Declare the adapter's added tokens as the contract's ``vocab_growth``, so certify accepts
    exactly that growth of the vocabulary and nothing else."""
    if info is None or info.vocab_size <= info.base_vocab_size:
        return
    description["vocab_growth"] = {
        "base_vocab_size": info.base_vocab_size,
        "vocab_size": info.vocab_size,
        "added_tokens": list(info.added_tokens) if info.added_tokens is not None else None,
    }


def describe_peft_model(model: Any) -> dict[str, Any] | None:
    """The base's description with the ``peft`` block, or None when no plugin describes the base."""
    from invarlock.manager import get_plugin_manager
    from invarlock_peft.adapters import adapter_layers, adapter_tensors

    described = get_plugin_manager().call_first("invarlock_describe", model=model.get_base_model())
    if described is None:
        return None
    description: dict[str, Any] = dict(described)
    name = model.active_adapter if isinstance(model.active_adapter, str) else model.active_adapters[0]
    tensors = list(adapter_tensors(model))
    info = load_info(model)
    description[PEFT_KEY] = {
        **_config_block(model.peft_config[name]),
        "adapter_name": name,
        "adapters": sorted(model.peft_config),
        "adapted_layers": adapter_layers(model),
        "adapter_parameters": sum(t.numel() for _, t in tensors),
        "adapter_bytes": sum(t.numel() * t.element_size() for _, t in tensors),
        "added_tokens": _tokens_block(info, description["vocab_size"]),
        **_load_block(info),
    }
    add_vocab_growth(description, info)
    return description


def add_merged_block(description: dict[str, Any], info: PeftLoad) -> dict[str, Any]:
    """The ``peft`` block of a merged model: the adapter's config, as merged into the weights."""
    from peft import PeftConfig

    config = PeftConfig.from_pretrained(info.adapter_path)
    description[PEFT_KEY] = {
        **_config_block(config),
        "adapter_name": "default",
        "adapters": ["default"],
        "adapted_layers": list(info.adapted_layers),
        "adapter_parameters": info.adapter_parameters,
        "adapter_bytes": 0,
        "added_tokens": _tokens_block(info, description["vocab_size"]),
        **_load_block(info),
    }
    add_vocab_growth(description, info)
    return description
