"""describe on the architectures people certify now, built full size on the meta device.

The configs are the published config.json numbers (invarlock_hf.testing.PUBLISHED_CONFIGS); the
expectations below are written out by hand from the same model cards and configs: which layers
are MoE, how wide each expert is, which layers have softmax attention and with how many heads.
Timings are not asserted here: bench/bench_describe.py prints them against the 50 ms target.
"""

from __future__ import annotations

from typing import Any

import pytest

from invarlock.description import validate_description
from invarlock_hf.describe import describe_model
from invarlock_hf.testing import build_published, structure_contradictions


def runs(*pieces: tuple[int, Any]) -> list[Any]:
    """``runs((3, a), (58, b))`` → ``[a, a, a, b, ...]``: per-layer values by runs."""
    return [value for count, value in pieces for _ in range(count)]


def every(period: int, offset: int, layers: int, hit: Any, other: Any) -> list[Any]:
    return [hit if i % period == offset else other for i in range(layers)]


FULL, SLIDING, CHUNKED, LINEAR, MAMBA = (
    "full_attention",
    "sliding_attention",
    "chunked_attention",
    "linear_attention",
    "mamba",
)


def moe(experts: int, top_k: int, width: int, shared: int | None = None) -> dict[str, Any]:
    return {
        "num_experts": experts,
        "experts_per_token": top_k,
        "expert_mlp_dim": width,
        "shared_expert_mlp_dim": shared,
    }


# DeepSeek-V3: 61 layers, first_k_dense_replace 3 (dense 18432), then MoE: 256 routed experts of
# 2048, top-8, one shared expert of 2048. MLA attention: 128 heads, each with its own K and V.
_DSV3_MOE = moe(256, 8, 2048, 2048)
# Qwen3-Next-80B-A3B: full attention every 4th layer (16 heads, 2 KV), gated delta nets between;
# every layer MoE: 512 experts of 512, top-10, a shared expert of 512.
_QWEN3_NEXT_TYPES = every(4, 3, 48, FULL, LINEAR)
# Llama-4-Maverick: MoE every 2nd layer (128 experts of 8192, top-1, shared 8192), dense 16384
# between; chunked attention with a full-attention (no RoPE) layer every 4th.
_LLAMA4_MOE = moe(128, 1, 8192, 8192)
# Jamba-v0.1: attention in layer 4 of every 8 (32 heads, 8 KV), Mamba elsewhere; MoE (16 experts
# of 14336, top-2) in every odd layer, dense 14336 in the others.
_JAMBA_TYPES = every(8, 4, 32, FULL, MAMBA)

EXPECTED: dict[str, dict[str, Any]] = {
    "DeepSeek-V3": {
        "hidden": 7168,
        "vocab": 129280,
        "heads": runs((61, 128)),
        "kv": runs((61, 128)),
        "mlp": runs((3, 18432), (58, 2048)),
        "types": runs((61, FULL)),
        "moe_per_layer": runs((3, None), (58, _DSV3_MOE)),
        # The published 671B; transformers does not build the multi-token-prediction module.
        "params_billions": 671.0,
    },
    "Qwen3-30B-A3B": {
        "hidden": 2048,
        "vocab": 151936,
        "heads": runs((48, 32)),
        "kv": runs((48, 4)),
        "mlp": runs((48, 768)),
        "types": runs((48, FULL)),
        "moe_per_layer": runs((48, moe(128, 8, 768))),
        "params_billions": 30.5,
    },
    "Qwen3-Next-80B-A3B": {
        "hidden": 2048,
        "vocab": 151936,
        "heads": [16 if t == FULL else 0 for t in _QWEN3_NEXT_TYPES],
        "kv": [2 if t == FULL else 0 for t in _QWEN3_NEXT_TYPES],
        "mlp": runs((48, 512)),
        "types": _QWEN3_NEXT_TYPES,
        "moe_per_layer": runs((48, moe(512, 10, 512, 512))),
        "params_billions": 79.7,
    },
    "Llama-4-Maverick-17B-128E (text)": {
        "hidden": 5120,
        "vocab": 202048,
        "heads": runs((48, 40)),
        "kv": runs((48, 8)),
        "mlp": every(2, 1, 48, 8192, 16384),
        "types": every(4, 3, 48, FULL, CHUNKED),
        "moe_per_layer": every(2, 1, 48, _LLAMA4_MOE, None),
    },
    "Jamba-v0.1": {
        "hidden": 4096,
        "vocab": 65536,
        "heads": [32 if t == FULL else 0 for t in _JAMBA_TYPES],
        "kv": [8 if t == FULL else 0 for t in _JAMBA_TYPES],
        "mlp": runs((32, 14336)),
        "types": _JAMBA_TYPES,
        "moe_per_layer": every(2, 1, 32, moe(16, 2, 14336), None),
        "params_billions": 51.6,
    },
    "Mamba-2.8B": {  # attention-free, and no MLP: each block is one Mamba mixer
        "hidden": 2560,
        "vocab": 50280,
        "heads": runs((64, 0)),
        "kv": runs((64, 0)),
        "mlp": runs((64, 0)),
        "types": runs((64, MAMBA)),
        "moe_per_layer": runs((64, None)),
        "params_billions": 2.8,
    },
    "Gemma-2-9B": {  # sliding window on even layers, global on odd ones
        "hidden": 3584,
        "vocab": 256000,
        "heads": runs((42, 16)),
        "kv": runs((42, 8)),
        "mlp": runs((42, 14336)),
        "types": every(2, 1, 42, FULL, SLIDING),
        "moe_per_layer": runs((42, None)),
        "params_billions": 9.2,
    },
    "Gemma-3-4B-it": {  # five sliding-window layers, then one global; a SigLIP vision tower
        "hidden": 2560,
        "vocab": 262208,
        "heads": runs((34, 8)),
        "kv": runs((34, 4)),
        "mlp": runs((34, 10240)),
        "types": every(6, 5, 34, FULL, SLIDING),
        "moe_per_layer": runs((34, None)),
        "towers": {"vision_tower": (27, 1152)},
        "params_billions": 4.3,
    },
    "Qwen2.5-VL-7B-Instruct": {
        "hidden": 3584,
        "vocab": 152064,
        "heads": runs((28, 28)),
        "kv": runs((28, 4)),
        "mlp": runs((28, 18944)),
        "types": runs((28, FULL)),
        "moe_per_layer": runs((28, None)),
        "towers": {"visual": (32, 1280)},
        "params_billions": 8.3,
    },
    "ModernBERT-base": {  # global attention every 3rd layer, a 128-token window between
        "hidden": 768,
        "vocab": 50368,
        "heads": runs((22, 12)),
        "kv": runs((22, 12)),
        "mlp": runs((22, 1152)),
        "types": every(3, 0, 22, FULL, SLIDING),
        "moe_per_layer": runs((22, None)),
        "params_millions": 150,
    },
}


@pytest.fixture(scope="module", params=list(EXPECTED))
def published(request: pytest.FixtureRequest) -> tuple[str, Any, dict[str, Any]]:
    model = build_published(request.param)
    return request.param, model, validate_description(describe_model(model))  # type: ignore[return-value]


def test_structure_matches_the_published_architecture(published: tuple[str, Any, dict[str, Any]]) -> None:
    name, _, description = published
    expected = EXPECTED[name]
    layers = len(expected["heads"])
    assert description["n_layer"] == layers
    assert description["hidden_size"] == expected["hidden"]
    assert description["vocab_size"] == expected["vocab"]
    assert description["heads_per_layer"] == expected["heads"]
    assert description["kv_heads_per_layer"] == expected["kv"]
    assert description["mlp_dims"] == expected["mlp"]
    assert description["layer_types"] == expected["types"]
    assert description["moe_per_layer"] == expected["moe_per_layer"]
    assert description["unresolved"] == []
    assert description["device"] == "meta"
    if "params_billions" in expected:
        assert round(description["n_params"] / 1e9, 1) == expected["params_billions"]
    if "params_millions" in expected:
        assert round(description["n_params"] / 1e6) == expected["params_millions"]


def test_moe_summary_agrees_with_the_layers(published: tuple[str, Any, dict[str, Any]]) -> None:
    name, _, description = published
    per_layer = EXPECTED[name]["moe_per_layer"]
    moe_layers = [i for i, layer in enumerate(per_layer) if layer is not None]
    if not moe_layers:
        assert description["moe"] is None
        return
    first = per_layer[moe_layers[0]]
    assert description["moe"]["moe_layers"] == moe_layers
    assert description["moe"]["num_experts"] == first["num_experts"]
    assert description["moe"]["experts_per_token"] == first["experts_per_token"]
    assert description["moe"]["expert_mlp_dim"] == first["expert_mlp_dim"]
    assert description["moe"].get("shared_expert_mlp_dim") == first["shared_expert_mlp_dim"]


def test_multimodal_wrappers_describe_the_language_tower(published: tuple[str, Any, dict[str, Any]]) -> None:
    name, _, description = published
    towers = EXPECTED[name].get("towers")
    if towers is None:
        assert "towers" not in description
        return
    assert description["role"] == "causal"
    assert description["model_class"].endswith("ForConditionalGeneration")
    assert description["language_model_type"] != description["model_type"]
    assert {
        key: (tower["n_layer"], tower["hidden_size"]) for key, tower in description["towers"].items()
    } == towers
    for key, tower in description["towers"].items():
        assert 0 < tower["n_params"] < description["n_params"], key
    assert "all towers" in description["n_params_scope"]


def test_no_contradiction_with_the_module_shapes(published: tuple[str, Any, dict[str, Any]]) -> None:
    _, model, description = published
    assert structure_contradictions(model, description) == []
