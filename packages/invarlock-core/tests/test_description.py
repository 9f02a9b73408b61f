"""The describe contract's one validator: what it accepts and each way it refuses."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from invarlock.description import (
    OPTIONAL_KEYS,
    REQUIRED_KEYS,
    STRUCTURAL_KEYS,
    description_problems,
    validate_description,
)
from invarlock.errors import DescriptionError


def valid() -> dict[str, Any]:
    """A T5-like encoder-decoder: 2 encoder blocks, then 2 decoder blocks."""
    return {
        "model_type": "t5",
        "model_class": "T5ForConditionalGeneration",
        "role": "seq2seq",
        "architecture_known": True,
        "n_layer": 4,
        "heads_per_layer": [4, 4, 4, 4],
        "kv_heads_per_layer": [4, 4, 4, 4],
        "mlp_dims": [64, 64, 64, 64],
        "hidden_size": 32,
        "vocab_size": 100,
        "n_params": 12345,
        "dtype": "float32",
        "device": "cpu",
        "device_map": None,
        "tying": {"lm_head.weight": "shared.weight"},
        "encoder_decoder": {"encoder_layers": 2, "decoder_layers": 2},
        "moe": None,
        "quantization": None,
        "extra_key": {"adapters may": "add keys"},
    }


def test_a_valid_description_passes_unchanged() -> None:
    description = valid()
    assert description_problems(description) == []
    assert validate_description(description) is description


def test_required_and_structural_keys() -> None:
    for key in ("n_layer", "heads_per_layer", "mlp_dims", "tying", "model_type", "model_class"):
        assert key in REQUIRED_KEYS
    assert set(STRUCTURAL_KEYS) <= set(REQUIRED_KEYS) | set(OPTIONAL_KEYS)
    assert not set(OPTIONAL_KEYS) & set(REQUIRED_KEYS)


def hybrid() -> dict[str, Any]:
    """A 4-layer hybrid: Mamba, Mamba, attention with MoE, sliding attention; plus a vision tower."""
    description = valid()
    description.update(
        model_type="hybrid",
        role="causal",
        encoder_decoder=None,
        heads_per_layer=[0, 0, 8, 8],
        kv_heads_per_layer=[0, 0, 2, 2],
        layer_types=["mamba", "mamba", "full_attention", "sliding_attention"],
        moe_per_layer=[
            None,
            None,
            {"num_experts": 16, "experts_per_token": 2, "expert_mlp_dim": 32, "shared_expert_mlp_dim": 64},
            None,
        ],
        moe={"num_experts": 16, "experts_per_token": 2, "expert_mlp_dim": 32},
        towers={"vision_tower": {"n_layer": 2, "hidden_size": 16, "n_params": 999}},
        n_params_scope="the whole model",
        unresolved=[{"field": "mlp_dims", "layers": [3], "why": "two widths"}],
    )
    return description


def test_optional_keys_pass_when_well_formed() -> None:
    assert description_problems(hybrid()) == []


@pytest.mark.parametrize(
    ("key", "value", "problem"),
    [
        (
            "layer_types",
            ["mamba"] * 3,
            "'layer_types' must be a list with one entry for each of the 4 layers",
        ),
        ("layer_types", ["mamba", "mamba", "full_attention", "attention"], "'layer_types' holds attention"),
        ("layer_types", ["linear_attention"] * 4, "layers 2-3 have no softmax attention but non-zero heads"),
        ("moe_per_layer", [None] * 3, "'moe_per_layer' must be a list with one entry for each"),
        ("moe_per_layer", [None, None, {"num_experts": 16}, None], "'moe_per_layer' entries must be None or"),
        ("towers", {"vision": {"n_layer": 2}}, "'towers' must map tower names"),
        ("n_params_scope", "", "'n_params_scope' must be a non-empty string"),
        ("unresolved", [{"field": "mlp_dims", "layers": None}], "'unresolved' entries need"),
    ],
)
def test_optional_key_breaches_are_named(key: str, value: Any, problem: str) -> None:
    description = hybrid()
    description[key] = value
    problems = description_problems(description)
    assert any(problem in p for p in problems), problems


def test_moe_layers_need_the_moe_summary() -> None:
    description = hybrid()
    description["moe"] = None
    assert "'moe_per_layer' has MoE layers but 'moe' is None" in description_problems(description)


def test_moe_and_quantization_blocks_pass() -> None:
    description = valid()
    description["moe"] = {"num_experts": 8, "experts_per_token": 2, "expert_mlp_dim": 16}
    description["quantization"] = {"method": "gptq", "bits": 4}
    description["device_map"] = {"model.embed_tokens": "cuda:0"}
    assert description_problems(description) == []


def change(key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def apply(description: dict[str, Any]) -> None:
        description[key] = value

    return apply


def drop(key: str) -> Callable[[dict[str, Any]], None]:
    return lambda description: description.pop(key)


@pytest.mark.parametrize(
    ("edit", "problem"),
    [
        (drop("tying"), "missing key 'tying'"),
        (change("n_layer", True), "'n_layer' is bool, expected int"),
        (change("n_layer", 4.0), "'n_layer' is float, expected int"),
        (change("device_map", []), "'device_map' is list, expected dict or None"),
        (change("role", "vision"), "'role' is 'vision', expected one of causal, masked_lm, seq2seq"),
        (change("heads_per_layer", [4, 4, 4]), "'heads_per_layer' has 3 entries for 4 layers"),
        (change("mlp_dims", [64, 64, -1, 64]), "'mlp_dims' must hold non-negative ints"),
        (change("kv_heads_per_layer", [4, 4, True, 4]), "'kv_heads_per_layer' must hold non-negative ints"),
        (change("n_params", -1), "'n_params' is negative"),
        (change("tying", {"lm_head.weight": 3}), "'tying' must map tensor names to tensor names"),
        (change("encoder_decoder", {"encoder_layers": 2, "decoder_layers": 3}), "do not add up to 'n_layer'"),
        (change("encoder_decoder", {"encoder_layers": 2}), "needs int 'encoder_layers' and 'decoder_layers'"),
        (change("moe", {"num_experts": 8}), "'moe' needs int 'num_experts'"),
        (change("moe", {"num_experts": 8, "experts_per_token": "2", "expert_mlp_dim": 4}), "'moe' needs"),
        (change("quantization", {"bits": 4}), "'quantization' needs a string 'method'"),
        (change("extra_key", {1, 2}), "not JSON-serialisable"),
        (change("extra_key", float("nan")), "not JSON-serialisable"),
    ],
)
def test_each_breach_is_named(edit: Callable[[dict[str, Any]], None], problem: str) -> None:
    description = valid()
    edit(description)
    problems = description_problems(description)
    assert any(problem in p for p in problems), problems
    with pytest.raises(DescriptionError, match="hf_seq2seq returned a description that breaks") as caught:
        validate_description(description, adapter="hf_seq2seq")
    assert "fix the adapter's invarlock_describe hook" in str(caught.value)
    assert caught.value.code == "description_invalid"


def test_not_a_mapping_at_all() -> None:
    assert description_problems(["n_layer", 2]) == ["it is a list, not a dict"]  # type: ignore[arg-type]
