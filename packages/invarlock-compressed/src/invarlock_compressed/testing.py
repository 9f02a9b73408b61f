"""Tiny compressed-tensors checkpoints made on the CPU with compressed-tensors' own API, for tests
and benchmarks.

A tiny llama (hidden 128, so W4A16's group size of 128 divides every linear input) is built from
its real transformers config (:mod:`invarlock_hf.testing`), quantized with a compressed-tensors
preset scheme whose scales and zero points compressed-tensors' ``calculate_qparams`` computes from
the weights (data-free: min/max per group or channel, as llm-compressor's data-free schemes do),
compressed by ``ModelCompressor`` into the scheme's format and saved with ``save_pretrained`` +
``update_config``. Nothing comes from the hub; llm-compressor is not used (it pins
transformers <= 5.17). torch is imported inside the functions.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from invarlock_hf.testing import save_tiny_tokenizer, tiny_model

TINY_SIZES = {"hidden_size": 128, "intermediate_size": 256, "head_dim": 32}
OTHER_SIZES = {"hidden_size": 128, "intermediate_size": 384, "head_dim": 32, "num_hidden_layers": 3}
SCHEMES = {"w4a16": ("W4A16", "pack-quantized"), "w8a8": ("W8A8", "int-quantized")}
"""Scheme name → (compressed-tensors preset scheme, compression format)."""


def quantize_data_free(model: Any, preset: str, ignore: tuple[str, ...] = ("lm_head",)) -> None:
    """Apply a compressed-tensors preset to every Linear but ``ignore``, with min/max qparams."""
    import torch
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


def save_compressed(model: Any, directory: Path, compression_format: str) -> Path:
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
