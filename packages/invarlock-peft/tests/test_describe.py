"""describe of hf_peft models: the base's description (through its own plugin) plus the peft block."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from invarlock.adapters import get_adapter
from invarlock.description import validate_description


def describe(path: Path, **options: object) -> dict:
    adapter = get_adapter("hf_peft")
    return dict(adapter.describe(adapter.load_model(path, device="cpu", **options)))


def test_the_peft_block_states_the_adapter(llama_lora: Path, llama_base: Path) -> None:
    description = describe(llama_lora)
    validate_description(description)
    block = description["peft"]
    assert block["method"] == "lora" and block["peft_type"] == "LORA"
    assert (block["rank"], block["alpha"], block["dropout"]) == (4, 8, 0.0)
    assert block["target_modules"] == ["q_proj", "v_proj"]
    assert block["modules_to_save"] == []
    assert block["adapted_layers"] == [
        f"model.layers.{i}.self_attn.{m}" for i in range(2) for m in ("q_proj", "v_proj")
    ]
    # r * (in + out) per adapted layer: q_proj 32 -> 32, v_proj 32 -> 16 (2 KV heads of 8)
    assert block["adapter_parameters"] == 2 * (4 * (32 + 32) + 4 * (32 + 16))
    assert block["adapter_bytes"] == 4 * block["adapter_parameters"]
    assert block["added_tokens"] == {"count": 0, "base_vocab_size": 128, "vocab_size": 128, "tokens": []}
    assert block["base"] == str(llama_base) and block["base_adapter"] == "hf_causal"
    assert block["merged"] is False and block["snapshot"] == "adapter"


def test_the_structure_is_the_bases(llama_lora: Path, llama_base: Path) -> None:
    peft_description = describe(llama_lora)
    base_description = dict(
        get_adapter("hf_causal").describe(get_adapter("hf_causal").load_model(llama_base))
    )
    for key in (
        "model_type",
        "role",
        "n_layer",
        "heads_per_layer",
        "kv_heads_per_layer",
        "mlp_dims",
        "hidden_size",
        "vocab_size",
        "tying",
        "quantization",
    ):
        assert peft_description[key] == base_description[key], key
    # n_params counts every parameter of the loaded model: the base's and the adapter's.
    assert (
        peft_description["n_params"]
        == base_description["n_params"] + peft_description["peft"]["adapter_parameters"]
    )


def test_added_tokens_are_declared(llama_lora_added_tokens: Path, added_tokens: tuple[str, ...]) -> None:
    description = describe(llama_lora_added_tokens)
    block = description["peft"]
    assert block["added_tokens"] == {
        "count": len(added_tokens),
        "base_vocab_size": 128,
        "vocab_size": 128 + len(added_tokens),
        "tokens": list(added_tokens),
    }
    assert description["vocab_size"] == 128 + len(added_tokens)
    assert block["modules_to_save"] == ["embed_tokens", "lm_head"]
    assert "model.embed_tokens" in block["adapted_layers"] and "lm_head" in block["adapted_layers"]


def test_a_merged_model_keeps_the_block_marked_merged(llama_lora: Path) -> None:
    unmerged, merged = describe(llama_lora), describe(llama_lora, merge=True)
    validate_description(merged)
    assert merged["model_class"] == "LlamaForCausalLM"
    assert merged["peft"]["merged"] is True and merged["peft"]["snapshot"] == "full"
    assert merged["peft"]["adapted_layers"] == unmerged["peft"]["adapted_layers"]
    assert merged["peft"]["adapter_parameters"] == unmerged["peft"]["adapter_parameters"]
    assert merged["n_params"] == unmerged["n_params"] - unmerged["peft"]["adapter_parameters"]


def test_qlora_keeps_the_quantization_block_of_the_base(qlora: Path) -> None:
    description = describe(qlora)
    assert description["quantization"]["quant_type"] == "nf4"
    assert description["peft"]["target_modules"] == ["down_proj", "q_proj", "v_proj"]


def test_dora_and_ia3_are_named_as_such(llama_base: Path, tmp_path: Path, make_adapter: Any) -> None:
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(llama_base)
    dora = make_adapter(base, tmp_path / "dora", llama_base, target_modules=["o_proj"], use_dora=True)
    block = describe(dora)["peft"]
    assert block["method"] == "dora" and block["adapted_layers"] == [
        "model.layers.0.self_attn.o_proj",
        "model.layers.1.self_attn.o_proj",
    ]
    # DoRA's magnitude vector (one per output feature) is part of the adapter.
    assert block["adapter_parameters"] == 2 * (4 * (32 + 32) + 32)

    from peft import IA3Config, get_peft_model

    ia3_model = get_peft_model(
        AutoModelForCausalLM.from_pretrained(llama_base),
        IA3Config(
            target_modules=["k_proj", "down_proj"], feedforward_modules=["down_proj"], init_ia3_weights=False
        ),
    )
    ia3_model.save_pretrained(tmp_path / "ia3")
    block = describe(tmp_path / "ia3")["peft"]
    assert block["method"] == "ia3" and block["rank"] is None and block["alpha"] is None
    assert block["target_modules"] == ["down_proj", "k_proj"]
    # IA3 scales each output feature of k_proj (16) and each input feature of down_proj (40).
    assert block["adapter_parameters"] == 2 * (16 + 40)
