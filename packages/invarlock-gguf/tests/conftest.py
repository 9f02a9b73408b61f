"""GGUF checkpoints written inside the test session from the committed demo model (a tiny trained Llama).

The files are written here with the ``gguf`` package (see gguf_export.py) rather than stored, so
the tests show that the layout llama.cpp expects is produced with the installed versions.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).parent))

from gguf_export import write_gguf

DEMO_MODEL = Path(__file__).resolve().parents[3] / "demo" / "model"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")
WEIGHT_TYPES = ("F32", "F16", "Q8_0", "Q4_0", "Q2_IN_Q4_0")


@pytest.fixture(scope="session")
def demo_model() -> Path:
    assert (DEMO_MODEL / "model.safetensors").is_file(), f"the demo model is missing at {DEMO_MODEL}"
    return DEMO_MODEL


@pytest.fixture(scope="session")
def gguf_files(demo_model: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Weight type → a directory holding one GGUF of the demo model with that type (model-<type>.gguf).

    ``Q2_IN_Q4_0`` is 2-bit round-to-nearest in Q4_0 blocks (see gguf_export.TWO_BIT_IN_Q4_0).
    """
    return {
        weight_type: write_gguf(
            demo_model,
            tmp_path_factory.mktemp(weight_type) / f"model-{weight_type.lower()}.gguf",
            weight_type,
        )
        for weight_type in WEIGHT_TYPES
    }


@pytest.fixture(scope="session")
def other_checkpoint(demo_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A smaller Llama (2 layers, hidden 64) with the demo's tokenizer, as a Hugging Face checkpoint.

    Its embedding has 32 rows more than the tokenizer has tokens (as many published models pad it),
    so its GGUF carries the converter's ``[PAD<id>]`` rows.
    """
    from invarlock_hf.testing import tiny_model

    model = tiny_model(
        "llama", seed=3, vocab_size=2080, hidden_size=64, intermediate_size=96, max_position_embeddings=64
    )
    directory = tmp_path_factory.mktemp("other")
    model.save_pretrained(directory)
    for name in TOKENIZER_FILES:
        shutil.copy(demo_model / name, directory / name)
    return directory


@pytest.fixture(scope="session")
def other_gguf(other_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_gguf(other_checkpoint, tmp_path_factory.mktemp("other-gguf") / "other-f32.gguf", "F32")


@pytest.fixture(scope="session")
def pytorch_demo(demo_model: Path) -> Any:
    """The demo model loaded by plain transformers: the reference the F32 GGUF is checked against."""
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(demo_model).eval()


def token_batch(seq_len: int, *, batch: int = 2, seed: int = 0, vocab: int = 2048) -> dict[str, Any]:
    import torch

    generator = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(0, vocab, (batch, seq_len), generator=generator)
    return {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids)}
