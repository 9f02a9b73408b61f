"""Recognising the models this package answers for, without importing transformers needlessly."""

from __future__ import annotations

import sys
from typing import Any


def is_transformers_model(model: Any) -> bool:
    """True for a ``transformers.PreTrainedModel``; never imports transformers to find out."""
    transformers = sys.modules.get("transformers")
    return transformers is not None and isinstance(model, transformers.PreTrainedModel)


def input_device(model: Any) -> Any:
    """The device the model's inputs belong on: that of its input embeddings.

    For weights offloaded by accelerate (kept on the meta device until a forward pass), the
    execution device of accelerate's hook instead.
    """
    embedding = model.get_input_embeddings()
    device = embedding.weight.device
    if device.type != "meta":
        return device
    for module in (embedding, model):
        hook = getattr(module, "_hf_hook", None)
        for single in getattr(hook, "hooks", None) or [hook]:  # accelerate's SequentialHook holds several
            execution_device = getattr(single, "execution_device", None)
            if execution_device is not None:
                import torch

                if isinstance(execution_device, int):
                    return torch.device("cuda", execution_device)
                return torch.device(execution_device)
    return device
