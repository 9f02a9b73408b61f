"""Tiny compressed-tensors checkpoints, made here on the CPU with compressed-tensors' own API.

A tiny llama (hidden 128, so W4A16's group size of 128 divides every linear input) is built from
its real transformers config (invarlock_hf.testing), quantized with a compressed-tensors preset
scheme whose scales and zero points are computed from the weights by compressed-tensors'
``calculate_qparams`` (data-free: min/max per group or channel, as llm-compressor's data-free
schemes do), compressed by ``ModelCompressor`` into the scheme's format and saved with
``save_pretrained`` + ``update_config``. Nothing comes from the hub; llm-compressor is not used
(it pins transformers <= 5.17).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from invarlock_hf.testing import TINY_VOCAB, save_tiny_tokenizer, tiny_model

os.environ.setdefault("HF_HUB_OFFLINE", "1")

TINY_SIZES = {"hidden_size": 128, "intermediate_size": 256, "head_dim": 32}
OTHER_SIZES = {"hidden_size": 128, "intermediate_size": 384, "head_dim": 32, "num_hidden_layers": 3}
SCHEMES = {"w4a16": ("W4A16", "pack-quantized"), "w8a8": ("W8A8", "int-quantized")}
"""Fixture name → (compressed-tensors preset scheme, compression format)."""


def quantize_data_free(model: torch.nn.Module, preset: str, ignore: tuple[str, ...] = ("lm_head",)) -> None:
    """Apply a compressed-tensors preset to every Linear but ``ignore``, with min/max qparams."""
    from compressed_tensors.quantization import (
        QuantizationConfig,
        QuantizationStatus,
        apply_quantization_config,
        preset_name_to_scheme,
    )
    from compressed_tensors.quantization.utils import calculate_qparams

    scheme = preset_name_to_scheme(preset, ["Linear"])
    apply_quantization_config(
        model, QuantizationConfig(config_groups={"group_0": scheme}, ignore=list(ignore))
    )
    for module in model.modules():
        args = getattr(getattr(module, "quantization_scheme", None), "weights", None)
        if args is None:
            continue
        weight = module.weight.detach()
        if args.group_size:
            grouped = weight.reshape(weight.shape[0], -1, args.group_size)
            low, high = grouped.amin(-1), grouped.amax(-1)
        else:  # channel
            low, high = weight.amin(1, keepdim=True), weight.amax(1, keepdim=True)
        scale, zero_point = calculate_qparams(low, high, args)
        with torch.no_grad():
            module.weight_scale.copy_(scale.reshape(module.weight_scale.shape))
            if hasattr(module, "weight_zero_point"):
                module.weight_zero_point.copy_(zero_point.reshape(module.weight_zero_point.shape))
        module.quantization_status = QuantizationStatus.FROZEN


def save_compressed(model: torch.nn.Module, directory: Path, compression_format: str) -> Path:
    from compressed_tensors.compressors import ModelCompressor

    compressor = ModelCompressor.from_pretrained_model(model, quantization_format=compression_format)
    compressor.compress_model(model)
    model.save_pretrained(directory)
    compressor.update_config(str(directory))
    return directory


def save_compressed_checkpoint(directory: Path, scheme: str, *, seed: int = 0, **sizes: int) -> Path:
    """A tiny llama compressed with ``scheme`` (a key of :data:`SCHEMES`), saved with a tokenizer."""
    preset, compression_format = SCHEMES[scheme]
    model = tiny_model("llama", seed=seed, **{**TINY_SIZES, **sizes})
    quantize_data_free(model, preset)
    save_compressed(model, directory, compression_format)
    save_tiny_tokenizer(directory)
    return directory


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
