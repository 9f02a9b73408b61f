"""describe: invarlock-hf's description plus one quantization entry per compressed-tensors scheme."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import transformers

from invarlock.adapters import get_adapter
from invarlock.description import validate_description

LINEARS = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj")
MLP = ("mlp.gate_proj", "mlp.up_proj", "mlp.down_proj")
QUANTIZED = [f"model.layers.{i}.{name}" for i in range(2) for name in (*LINEARS, *MLP)]


def test_w4a16_block(w4a16_path: Path) -> None:
    adapter = get_adapter("hf_compressed")
    description = adapter.describe(adapter.load_model(w4a16_path, device="cpu"))
    validate_description(description, adapter="hf_compressed")
    block = description["quantization"]
    assert block["method"] == "compressed-tensors"
    assert block["format"] == "pack-quantized"
    assert block["bits"] == 4
    assert block["schemes"] == [
        {
            "name": "group_0",
            "format": "pack-quantized",
            "bits": 4,
            "type": "int",
            "strategy": "group",
            "group_size": 128,
            "symmetric": True,
            "input_activations": None,
            "output_activations": None,
            "targets": ["Linear"],
            "modules": QUANTIZED,
        }
    ]
    assert block["ignore"] == ["lm_head"]
    assert block["ignored_modules"] == ["lm_head"]
    assert block["sparsity"] is None
    assert block["compressed_in_memory"] is True
    assert block["decompresses_at_first_pass"] is False
    assert block["decompressed"] is None


def test_loaded_by_transformers_alone_it_says_when_it_decompresses(
    w4a16_path: Path, inputs: dict[str, torch.Tensor]
) -> None:
    """Loaded without hf_compressed, compressed-tensors' hook decompresses the model at its first pass."""
    model = transformers.AutoModelForCausalLM.from_pretrained(w4a16_path)
    adapter = get_adapter("hf_causal")
    block = adapter.describe(model)["quantization"]
    assert (block["compressed_in_memory"], block["decompresses_at_first_pass"]) == (True, True)
    with torch.no_grad():
        model(**inputs)
    block = adapter.describe(model)["quantization"]
    assert (block["compressed_in_memory"], block["decompresses_at_first_pass"]) == (False, False)
    assert block["decompressed"] == "14 of 14 quantized modules were decompressed after loading"


def test_w8a8_block(w8a8_path: Path) -> None:
    adapter = get_adapter("hf_compressed")
    block = adapter.describe(adapter.load_model(w8a8_path, device="cpu"))["quantization"]
    assert block["format"] == "int-quantized"
    (scheme,) = block["schemes"]
    assert (scheme["bits"], scheme["strategy"], scheme["group_size"], scheme["symmetric"]) == (
        8,
        "channel",
        None,
        True,
    )
    assert scheme["input_activations"] == {
        "bits": 8,
        "type": "int",
        "strategy": "token",
        "dynamic": True,
        "symmetric": True,
    }
    assert scheme["modules"] == QUANTIZED


@pytest.mark.parametrize("scheme", ["w4a16", "w8a8"])
def test_counts_and_dtype_are_the_float_originals(
    base_path: Path, checkpoints: dict[str, Path], scheme: str
) -> None:
    """Packed words, scales and zero points are not parameters of the model the user quantized."""
    base = get_adapter("hf_causal")
    expected = base.describe(base.load_model(base_path, device="cpu"))
    adapter = get_adapter("hf_compressed")
    description = adapter.describe(adapter.load_model(checkpoints[scheme], device="cpu"))
    assert description["n_params"] == expected["n_params"]
    assert description["dtype"] == expected["dtype"] == "float32"
    assert description["n_layer"] == expected["n_layer"]
    assert description["mlp_dims"] == expected["mlp_dims"]
