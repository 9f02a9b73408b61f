"""Recognising the models this package answers for, without importing optimum needlessly."""

from __future__ import annotations

import sys
from typing import Any

# The module that defines ORTModelForCausalLM: if it was never imported, no such model exists.
_ORT_CAUSAL_MODULE = "optimum.onnxruntime.modeling_decoder"


def is_ort_causal_lm(model: Any) -> bool:
    """True for an ``optimum.onnxruntime.ORTModelForCausalLM``; never imports optimum to find out."""
    module = sys.modules.get(_ORT_CAUSAL_MODULE)
    return module is not None and isinstance(model, module.ORTModelForCausalLM)
