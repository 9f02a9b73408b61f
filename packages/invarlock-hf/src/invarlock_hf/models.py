"""Recognising the models this package answers for, without importing transformers needlessly."""

from __future__ import annotations

import sys
from typing import Any


def is_transformers_model(model: Any) -> bool:
    """True for a ``transformers.PreTrainedModel``; never imports transformers to find out."""
    transformers = sys.modules.get("transformers")
    return transformers is not None and isinstance(model, transformers.PreTrainedModel)
