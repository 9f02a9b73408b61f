"""detect_quantization: the one answer for configs, config.json dicts, models and load options."""

from __future__ import annotations

import pytest
import torch
import transformers

from invarlock_hf.quantization import QUANTIZED_ADAPTERS, detect_quantization
from invarlock_hf.testing import tiny_config


def test_full_precision_is_none() -> None:
    config = tiny_config("llama")
    assert detect_quantization(config) is None
    assert detect_quantization(config.to_dict()) is None
    assert detect_quantization({"dtype": "bf16", "device_map": "auto"}) is None
    assert detect_quantization({"load_in_8bit": False, "load_in_4bit": False}) is None
    with torch.device("meta"):
        model = transformers.AutoModelForCausalLM.from_config(config)
    assert detect_quantization(model) is None


def test_bitsandbytes_8bit_options() -> None:
    found = detect_quantization({"load_in_8bit": True})
    assert found == {"method": "bitsandbytes", "bits": 8}


def test_bitsandbytes_4bit_options_keep_the_4bit_settings() -> None:
    found = detect_quantization(
        {"load_in_4bit": True, "bnb_4bit_quant_type": "nf4", "bnb_4bit_use_double_quant": True}
    )
    assert found == {
        "method": "bitsandbytes",
        "bits": 4,
        "bnb_4bit_quant_type": "nf4",
        "bnb_4bit_use_double_quant": True,
    }


def test_transformers_quantization_config_objects() -> None:
    found = detect_quantization({"quantization_config": transformers.BitsAndBytesConfig(load_in_8bit=True)})
    assert found is not None
    assert (found["method"], found["bits"]) == ("bitsandbytes", 8)
    assert not any(key.startswith("bnb_4bit_") for key in found)  # 4-bit defaults do not apply to 8-bit
    gptq = detect_quantization({"quantization_config": transformers.GPTQConfig(bits=3, group_size=64)})
    assert gptq is not None
    assert (gptq["method"], gptq["bits"], gptq["group_size"]) == ("gptq", 3, 64)


@pytest.mark.parametrize(
    ("quantization_config", "expected"),
    [
        (
            {
                "quant_method": "gptq",
                "bits": 4,
                "group_size": 128,
                "desc_act": True,
                "sym": True,
                "checkpoint_format": "gptq",
            },
            {
                "method": "gptq",
                "bits": 4,
                "group_size": 128,
                "desc_act": True,
                "sym": True,
                "checkpoint_format": "gptq",
            },
        ),
        (
            {"quant_method": "awq", "bits": 4, "group_size": 128, "zero_point": True, "version": "gemm"},
            {"method": "awq", "bits": 4, "group_size": 128, "zero_point": True, "version": "gemm"},
        ),
        (
            {
                "quant_method": "bitsandbytes",
                "load_in_4bit": True,
                "bnb_4bit_quant_type": "fp4",
                "bnb_4bit_compute_dtype": "bfloat16",
                "llm_int8_threshold": 6.0,
            },
            {
                "method": "bitsandbytes",
                "bits": 4,
                "bnb_4bit_quant_type": "fp4",
                "bnb_4bit_compute_dtype": "bfloat16",
            },
        ),
        ({"quant_method": "fp8"}, {"method": "fp8"}),
    ],
)
def test_config_json_dicts(quantization_config: dict, expected: dict) -> None:
    assert (
        detect_quantization({"model_type": "llama", "quantization_config": quantization_config}) == expected
    )


def test_a_config_object_and_a_model_give_the_same_answer() -> None:
    config = tiny_config("llama")
    config.quantization_config = {"quant_method": "awq", "bits": 4, "group_size": 64, "zero_point": True}
    with torch.device("meta"):
        model = transformers.AutoModelForCausalLM.from_config(tiny_config("llama"))
    model.config.quantization_config = config.quantization_config
    assert (
        detect_quantization(config)
        == detect_quantization(model)
        == {
            "method": "awq",
            "bits": 4,
            "group_size": 64,
            "zero_point": True,
        }
    )


def test_every_quantized_adapter_has_a_method() -> None:
    assert QUANTIZED_ADAPTERS == {
        "bitsandbytes": "hf_bnb",
        "gptq": "hf_gptq",
        "awq": "hf_awq",
        "compressed-tensors": "hf_compressed",
    }
