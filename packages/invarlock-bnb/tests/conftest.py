"""Tiny checkpoints of two architectures (llama, gpt2), full precision and already quantized.

Every checkpoint is built locally from a real transformers config (invarlock_hf.testing) and
saved to a temporary directory; nothing comes from the hub.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import pytest
import torch

from invarlock.adapters import get_adapter
from invarlock_hf.testing import TINY_VOCAB, save_tiny_checkpoint

os.environ.setdefault("HF_HUB_OFFLINE", "1")

# bitsandbytes warns at every int8 matmul on CPU that inputs are cast to float16.
logging.getLogger("bitsandbytes").setLevel(logging.ERROR)

QUANTIZATIONS: dict[str, dict[str, Any]] = {
    "int8": {"load_in_8bit": True},
    "nf4": {"load_in_4bit": True, "bnb_4bit_quant_type": "nf4", "bnb_4bit_use_double_quant": True},
    "fp4": {"load_in_4bit": True, "bnb_4bit_quant_type": "fp4", "bnb_4bit_compute_dtype": "bf16"},
}
"""Seed-style load options by name (tests take them through the ``quantizations`` fixture)."""


@pytest.fixture(scope="session")
def quantizations() -> dict[str, dict[str, Any]]:
    return QUANTIZATIONS


@pytest.fixture(scope="session")
def llama_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_checkpoint("llama", tmp_path_factory.mktemp("llama"))


@pytest.fixture(scope="session")
def gpt2_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_checkpoint("gpt2", tmp_path_factory.mktemp("gpt2"))


@pytest.fixture(scope="session")
def checkpoints(llama_path: Path, gpt2_path: Path) -> dict[str, Path]:
    return {"llama": llama_path, "gpt2": gpt2_path}


def _save_quantized(source: Path, target: Path, options: dict[str, Any]) -> Path:
    model = get_adapter("hf_bnb").load_model(source, device="cpu", **options)
    model.save_pretrained(target)
    return target


@pytest.fixture(scope="session")
def llama_int8_path(llama_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A llama checkpoint saved after 8-bit quantization: config.json holds its quantization_config."""
    return _save_quantized(llama_path, tmp_path_factory.mktemp("llama-int8"), QUANTIZATIONS["int8"])


@pytest.fixture(scope="session")
def gpt2_nf4_path(gpt2_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _save_quantized(gpt2_path, tmp_path_factory.mktemp("gpt2-nf4"), QUANTIZATIONS["nf4"])


@pytest.fixture(scope="session")
def inputs() -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    input_ids = torch.randint(0, TINY_VOCAB, (2, 12), generator=generator)
    return {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids)}
