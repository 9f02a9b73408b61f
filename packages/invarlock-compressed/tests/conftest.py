"""Fixtures: a float baseline and its W4A16 (pack-quantized) and W8A8 (int8) compressions, made
here on the CPU with compressed-tensors' own API (invarlock_compressed.testing says how).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from invarlock_compressed.testing import TINY_SIZES, save_compressed_checkpoint
from invarlock_hf.testing import TINY_VOCAB, save_tiny_tokenizer, tiny_model

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def base_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The float baseline the compressed checkpoints were made from."""
    directory = tmp_path_factory.mktemp("base")
    tiny_model("llama", **TINY_SIZES).save_pretrained(directory)
    save_tiny_tokenizer(directory)
    return directory


@pytest.fixture(scope="session")
def w4a16_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_compressed_checkpoint(tmp_path_factory.mktemp("w4a16"), "w4a16")


@pytest.fixture(scope="session")
def w8a8_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_compressed_checkpoint(tmp_path_factory.mktemp("w8a8"), "w8a8")


@pytest.fixture(scope="session")
def checkpoints(w4a16_path: Path, w8a8_path: Path) -> dict[str, Path]:
    return {"w4a16": w4a16_path, "w8a8": w8a8_path}


@pytest.fixture(scope="session")
def inputs() -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    input_ids = torch.randint(0, TINY_VOCAB, (2, 12), generator=generator)
    return {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids)}
