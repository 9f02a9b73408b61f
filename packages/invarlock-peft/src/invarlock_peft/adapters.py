"""Which tensors of a ``peft.PeftModel`` are the adapter's, and which are the base's.

An adapter edit (fine-tuning, or an edit a guard applies) changes only the adapter's tensors, so
they are what an adapter-only snapshot holds. peft's layers name their adapter containers
themselves (``adapter_layer_names``: ``lora_A``, ``lora_B``, ``lora_magnitude_vector`` (DoRA),
``ia3_l``, ``modules_to_save``, ``trainable_tokens_delta``...), each keyed by adapter name; every
parameter and buffer under one of them, for an adapter the model holds, is the adapter's.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import Any


def is_peft_model(model: Any) -> bool:
    """True for a ``peft.PeftModel``; never imports peft to find out."""
    peft = sys.modules.get("peft")
    return peft is not None and isinstance(model, peft.PeftModel)


def adapter_prefixes(model: Any) -> list[str]:
    """The module names holding the adapter's tensors (``...q_proj.lora_A.default``), in model order."""
    adapters = set(model.peft_config)
    prefixes: list[str] = []
    for module_name, module in model.named_modules():
        for attr in getattr(module, "adapter_layer_names", ()):
            container = module
            for part in attr.split("."):
                container = getattr(container, part, None)
                if container is None:
                    break
            if container is None or not hasattr(container, "keys"):
                continue
            for adapter in container.keys():  # noqa: SIM118 (ModuleDict/ParameterDict)
                if adapter in adapters:
                    prefixes.append(f"{module_name}.{attr}.{adapter}" if module_name else f"{attr}.{adapter}")
    # A wrapper and the layer inside it can both name one container: keep the outermost name once.
    kept: list[str] = []
    for prefix in sorted(set(prefixes), key=prefixes.index):
        if not any(prefix.startswith(other + ".") for other in prefixes if other != prefix):
            kept.append(prefix)
    return kept


def _under(name: str, prefixes: list[str]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def adapter_tensors(model: Any, prefixes: list[str] | None = None) -> Iterator[tuple[str, Any]]:
    """The adapter's parameters and buffers by name (each tensor once)."""
    prefixes = adapter_prefixes(model) if prefixes is None else prefixes
    for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
        if _under(name, prefixes):
            yield name, tensor


def base_tensors(model: Any, prefixes: list[str] | None = None) -> Iterator[tuple[str, Any]]:
    """Every parameter and buffer that is not the adapter's (each tensor once), in model order.

    :param prefixes: :func:`adapter_prefixes` of the model, when the caller has them already.
    """
    prefixes = adapter_prefixes(model) if prefixes is None else prefixes
    for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
        if not _under(name, prefixes):
            yield name, tensor


def adapter_layers(model: Any) -> list[str]:
    """Names, relative to the base model, of the modules that carry the adapter."""
    layers: list[str] = []
    for prefix in adapter_prefixes(model):
        parts = prefix.split(".")
        # <module>.<container...>.<adapter>: drop the adapter name and the container attribute.
        owner = ".".join(parts[:-2])
        if parts[-2] == "trainable_tokens_delta" and parts[-3] == "token_adapter":
            owner = ".".join(parts[:-3])
        owner = owner.removeprefix("base_model.model.")
        if owner not in layers:
            layers.append(owner)
    return layers
