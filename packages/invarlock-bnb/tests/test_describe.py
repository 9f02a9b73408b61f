"""describe: invarlock-hf's description, plus the bitsandbytes quantization block read from the layers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from invarlock.adapters import get_adapter
from invarlock.description import STRUCTURAL_KEYS, validate_description

LLAMA_LINEARS = [
    f"model.layers.{i}.{part}"
    for i in range(2)
    for part in (
        "self_attn.q_proj",
        "self_attn.k_proj",
        "self_attn.v_proj",
        "self_attn.o_proj",
        "mlp.gate_proj",
        "mlp.up_proj",
        "mlp.down_proj",
    )
]
GPT2_LINEARS = [
    f"transformer.h.{i}.{part}"
    for i in range(2)
    for part in ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")
]


@pytest.fixture(scope="module")
def adapter() -> Any:
    return get_adapter("hf_bnb")


@pytest.fixture(scope="module")
def full_precision(checkpoints: dict[str, Path]) -> dict[str, dict[str, Any]]:
    hf = get_adapter("hf_causal")
    return {arch: hf.describe(hf.load_model(path, device="cpu")) for arch, path in checkpoints.items()}


def structure(description: dict[str, Any]) -> dict[str, Any]:
    return {key: description[key] for key in STRUCTURAL_KEYS}


def test_8bit_block(adapter: Any, llama_path: Path, full_precision: dict[str, Any]) -> None:
    description = adapter.describe(adapter.load_model(llama_path, device="cpu"))
    block = description["quantization"]
    assert (block["method"], block["bits"], block["quant_type"], block["double_quant"]) == (
        "bitsandbytes",
        8,
        "int8",
        False,
    )
    assert (block["outlier_threshold"], block["compute_dtype"], block["blocksize"]) == (6.0, None, None)
    assert block["quantized_modules"] == LLAMA_LINEARS
    assert block["full_precision_modules"] == ["lm_head"]
    assert description["n_params"] == full_precision["llama"]["n_params"]
    assert structure(description) == structure(full_precision["llama"])


@pytest.mark.parametrize(
    ("quantization", "quant_type", "double_quant", "compute_dtype"),
    [("nf4", "nf4", True, "float32"), ("fp4", "fp4", False, "bfloat16")],
)
def test_4bit_block(
    adapter: Any,
    gpt2_path: Path,
    quantizations: dict[str, Any],
    full_precision: dict[str, Any],
    quantization: str,
    quant_type: str,
    double_quant: bool,
    compute_dtype: str,
) -> None:
    description = adapter.describe(adapter.load_model(gpt2_path, device="cpu", **quantizations[quantization]))
    block = description["quantization"]
    assert (block["method"], block["bits"], block["quant_type"], block["double_quant"]) == (
        "bitsandbytes",
        4,
        quant_type,
        double_quant,
    )
    assert (block["compute_dtype"], block["blocksize"], block["outlier_threshold"]) == (
        compute_dtype,
        64,
        None,
    )
    assert block["quantized_modules"] == GPT2_LINEARS
    assert block["full_precision_modules"] == ["lm_head"]
    # Two 4-bit weights per stored byte: counted as parameters, not as bytes.
    assert description["n_params"] == full_precision["gpt2"]["n_params"]
    assert structure(description) == structure(full_precision["gpt2"])


def test_settings_are_stated_once(adapter: Any, gpt2_path: Path, quantizations: dict[str, Any]) -> None:
    """The layer-read keys replace the config fields they restate; the rest of the block is kept."""
    block = adapter.describe(adapter.load_model(gpt2_path, device="cpu", **quantizations["nf4"]))[
        "quantization"
    ]
    assert not {"bnb_4bit_quant_type", "bnb_4bit_use_double_quant", "bnb_4bit_compute_dtype"} & set(block)


def test_skipped_modules_are_listed_as_full_precision(adapter: Any, llama_path: Path) -> None:
    model = adapter.load_model(llama_path, device="cpu", llm_int8_skip_modules=["down_proj", "lm_head"])
    block = adapter.describe(model)["quantization"]
    assert block["full_precision_modules"] == [
        "model.layers.0.mlp.down_proj",
        "model.layers.1.mlp.down_proj",
        "lm_head",
    ]
    assert block["quantized_modules"] == [name for name in LLAMA_LINEARS if not name.endswith("down_proj")]


def test_description_of_a_reloaded_checkpoint(adapter: Any, gpt2_nf4_path: Path) -> None:
    description = validate_description(adapter.describe(adapter.load_model(gpt2_nf4_path, device="cpu")))
    assert description["quantization"]["quant_type"] == "nf4"
    json.dumps(description)  # goes into certificates unchanged
