"""The tinylinear checkpoint's config: plain JSON, readable without importing torch."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

MODEL_TYPE = "tinylinear"
CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"


@dataclass(frozen=True)
class TinyLinearConfig:
    vocab_size: int = 128
    hidden_size: int = 32
    n_layer: int = 2
    n_head: int = 4
    mlp_dim: int = 64
    tie_embeddings: bool = True

    def to_json(self) -> dict[str, Any]:
        return {"model_type": MODEL_TYPE, **asdict(self)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TinyLinearConfig:
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


def read_config(directory: str | Path) -> TinyLinearConfig | None:
    """The checkpoint's config, or None when ``directory`` is not a tinylinear checkpoint."""
    config_path = Path(directory) / CONFIG_NAME
    if not config_path.is_file():
        return None
    try:
        data = json.loads(config_path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("model_type") != MODEL_TYPE:
        return None
    return TinyLinearConfig.from_json(data)
