"""The one forward pass evaluation uses: logits without gradients, returned on the CPU as float."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from invarlock_hf.models import input_device


def logits(model: Any, inputs: Mapping[str, Any]) -> Any:
    """``model(**inputs).logits`` under ``torch.inference_mode``, as a float32 CPU tensor.

    Inputs go to the device of the input embeddings (accelerate's hooks move them on from there
    for a model dispatched over several devices).
    """
    import torch

    device = input_device(model)
    batch = {name: torch.as_tensor(value).to(device) for name, value in inputs.items()}
    with torch.inference_mode():
        output = model(**batch)
    # Copied outside inference mode: callers get an ordinary tensor they may edit in place.
    return output.logits.to(device="cpu", dtype=torch.float32, copy=True)
