"""describe: every family against its config's own numbers, full-size architectures on the meta
device against their published dimensions, unknown architectures, tying, newly initialised heads."""

from __future__ import annotations

import json
from typing import Any

import pytest
import torch
import transformers

from invarlock.adapters import get_adapter
from invarlock.description import validate_description
from invarlock_hf.describe import describe_model, tied_pairs
from invarlock_hf.structure import config_structure
from invarlock_hf.testing import AUTO_CLASS, PUBLISHED_CONFIGS, TINY_CONFIGS, tiny_config

ADAPTER_OF_FAMILY = {
    "AutoModelForCausalLM": "hf_causal",
    "AutoModelForMaskedLM": "hf_mlm",
    "AutoModelForSeq2SeqLM": "hf_seq2seq",
}

# What each tiny config states (see invarlock_hf.testing.TINY_CONFIGS), written out by hand.
# Causal models have 2 layers; 4 heads; 2 KV heads where the family has grouped-query attention;
# MLP width 40 where the config chooses it. Seq2seq: 2 encoder + 3 decoder layers.
_LM_HEAD_TIED = {"lm_head.weight", "model.embed_tokens.weight"}
_BART_TIED = {
    "model.shared.weight",
    "model.encoder.embed_tokens.weight",
    "model.decoder.embed_tokens.weight",
    "lm_head.weight",
}
_BART = {
    "role": "seq2seq",
    "heads": [4, 4, 2, 2, 2],
    "kv": [4, 4, 2, 2, 2],
    "mlp": [40, 40, 48, 48, 48],
    "split": (2, 3),
    "tied": [_BART_TIED],
}


def _causal(kv: int, mlp: list[int] | None = None, tied: list[set[str]] | None = None, **extra: Any) -> dict:
    return {
        "role": "causal",
        "heads": [4, 4],
        "kv": [kv, kv],
        "mlp": mlp or [40, 40],
        "tied": tied or [],
        **extra,
    }


def _masked(tied: list[set[str]]) -> dict:
    return {"role": "masked_lm", "heads": [4, 4], "kv": [4, 4], "mlp": [40, 40], "tied": tied}


EXPECTED: dict[str, dict[str, Any]] = {
    "gpt2": _causal(4, tied=[{"lm_head.weight", "transformer.wte.weight"}]),
    "gpt_neo": _causal(4, tied=[{"lm_head.weight", "transformer.wte.weight"}]),
    "gptj": _causal(4),
    "gpt_neox": _causal(4),
    "opt": _causal(4, tied=[{"lm_head.weight", "model.decoder.embed_tokens.weight"}]),
    "bloom": _causal(4, mlp=[128, 128], tied=[{"lm_head.weight", "transformer.word_embeddings.weight"}]),
    "falcon": _causal(2, tied=[{"lm_head.weight", "transformer.word_embeddings.weight"}]),
    "llama": _causal(2),
    "mistral": _causal(2),
    "mixtral": _causal(
        2,
        mlp=[24, 24],
        moe={"num_experts": 4, "experts_per_token": 2, "expert_mlp_dim": 24, "moe_layers": [0, 1]},
    ),
    "qwen2": _causal(2),
    "qwen2_moe": _causal(
        2,
        mlp=[24, 40],  # layer 1 is listed in mlp_only_layers: a dense MLP of intermediate_size
        moe={
            "num_experts": 4,
            "experts_per_token": 2,
            "expert_mlp_dim": 24,
            "moe_layers": [0],
            "shared_expert_mlp_dim": 36,
        },
    ),
    "qwen3": _causal(2),
    "phi": _causal(2),
    "phi3": _causal(2),
    "gemma": _causal(2, tied=[_LM_HEAD_TIED]),
    "gemma2": _causal(2, tied=[_LM_HEAD_TIED]),
    "starcoder2": _causal(2, tied=[_LM_HEAD_TIED]),
    "bert": _masked(
        [
            {"cls.predictions.decoder.weight", "bert.embeddings.word_embeddings.weight"},
            {"cls.predictions.decoder.bias", "cls.predictions.bias"},
        ]
    ),
    "roberta": _masked(
        [
            {"lm_head.decoder.weight", "roberta.embeddings.word_embeddings.weight"},
            {"lm_head.decoder.bias", "lm_head.bias"},
        ]
    ),
    "xlm-roberta": _masked(
        [
            {"lm_head.decoder.weight", "roberta.embeddings.word_embeddings.weight"},
            {"lm_head.decoder.bias", "lm_head.bias"},
        ]
    ),
    "distilbert": _masked([{"vocab_projector.weight", "distilbert.embeddings.word_embeddings.weight"}]),
    "albert": _masked(
        [
            {"predictions.decoder.weight", "albert.embeddings.word_embeddings.weight"},
            {"predictions.decoder.bias", "predictions.bias"},
        ]
    ),
    "deberta-v2": _masked(
        [
            {"cls.predictions.decoder.weight", "deberta.embeddings.word_embeddings.weight"},
            {"cls.predictions.decoder.bias", "cls.predictions.bias"},
        ]
    ),
    "electra": _masked([{"generator_lm_head.weight", "electra.embeddings.word_embeddings.weight"}]),
    "t5": {
        "role": "seq2seq",
        "heads": [4] * 5,
        "kv": [4] * 5,
        "mlp": [40] * 5,
        "split": (2, 3),
        "tied": [
            {"shared.weight", "encoder.embed_tokens.weight", "decoder.embed_tokens.weight", "lm_head.weight"}
        ],
    },
    "bart": _BART,
    "mbart": _BART,
    "pegasus": _BART,
    "marian": _BART,
}


def tied_groups(tying: dict[str, str]) -> list[set[str]]:
    groups: dict[str, set[str]] = {}
    for name, owner in tying.items():
        groups.setdefault(owner, {owner}).add(name)
    return sorted(groups.values(), key=sorted)


def test_every_family_has_expectations() -> None:
    assert set(EXPECTED) == set(TINY_CONFIGS)


@pytest.mark.parametrize("family", list(EXPECTED))
def test_describe_matches_the_config(family: str, checkpoints: Any) -> None:
    adapter = get_adapter(ADAPTER_OF_FAMILY[AUTO_CLASS[family]])
    model = adapter.load_model(checkpoints.path(family), device="cpu")
    description = adapter.describe(model)
    expected = EXPECTED[family]

    assert description["model_type"] == family
    assert description["model_class"] == type(model).__name__
    assert description["architecture_known"] is True
    assert description["role"] == expected["role"]
    assert description["heads_per_layer"] == expected["heads"]
    assert description["kv_heads_per_layer"] == expected["kv"]
    assert description["mlp_dims"] == expected["mlp"]
    assert description["n_layer"] == len(expected["heads"])
    assert description["hidden_size"] == 32
    assert description["vocab_size"] == 128
    split = expected.get("split")
    assert description["encoder_decoder"] == (
        {"encoder_layers": split[0], "decoder_layers": split[1]} if split else None
    )
    assert description["moe"] == expected.get("moe")
    assert tied_groups(description["tying"]) == sorted(expected["tied"], key=sorted)
    assert description["n_params"] == sum(p.numel() for p in model.parameters())
    assert description["dtype"] == "float32"
    assert description["device"] == "cpu"
    assert description["device_map"] is None
    assert description["quantization"] is None
    assert description["newly_initialized"] == []
    json.dumps(description)  # certificates embed it as is


def test_tying_maps_onto_the_input_embedding() -> None:
    """Each tied group is reported against the input embedding's name."""
    gpt2 = transformers.AutoModelForCausalLM.from_config(tiny_config("gpt2"))
    assert tied_pairs(gpt2) == {"lm_head.weight": "transformer.wte.weight"}
    t5 = transformers.AutoModelForSeq2SeqLM.from_config(tiny_config("t5"))
    assert set(tied_pairs(t5).values()) == {"shared.weight"}
    roberta = transformers.AutoModelForMaskedLM.from_config(tiny_config("roberta"))
    assert tied_pairs(roberta)["lm_head.decoder.weight"] == "roberta.embeddings.word_embeddings.weight"


def test_untied_weights_are_not_reported() -> None:
    model = transformers.AutoModelForCausalLM.from_config(tiny_config("llama", tie_word_embeddings=True))
    assert tied_pairs(model) == {"lm_head.weight": "model.embed_tokens.weight"}
    with torch.no_grad():  # untie by giving lm_head its own copy of the bytes
        model.lm_head.weight = torch.nn.Parameter(model.lm_head.weight.detach().clone())
    assert tied_pairs(model) == {}


def test_t5_v1_1_lm_head_tying_follows_the_storage() -> None:
    """T5 v1.1 configs say tie_word_embeddings=False; transformers 4.57 keeps lm_head separate,
    transformers 5 ties it anyway. describe reports what the model really shares."""
    model = transformers.AutoModelForSeq2SeqLM.from_config(tiny_config("t5", tie_word_embeddings=False))
    shares = model.lm_head.weight.data_ptr() == model.shared.weight.data_ptr()
    expected = {"encoder.embed_tokens.weight", "decoder.embed_tokens.weight"} | (
        {"lm_head.weight"} if shares else set()
    )
    assert set(tied_pairs(model)) == expected


def test_missing_head_is_listed_as_newly_initialized(checkpoints: Any, tmp_path: Any) -> None:
    """A BERT encoder without its MLM head loads as transformers loads it; describe says so."""
    torch.manual_seed(0)
    transformers.BertModel(tiny_config("bert")).save_pretrained(tmp_path)
    adapter = get_adapter("hf_mlm")
    model = adapter.load_model(tmp_path, device="cpu")
    initialized = adapter.describe(model)["newly_initialized"]
    assert initialized, "the MLM head is not in the checkpoint"
    assert all(name.startswith("cls.predictions.") for name in initialized)
    assert "cls.predictions.transform.dense.weight" in initialized
    assert not any(name.startswith("bert.") for name in initialized)


def test_models_not_loaded_by_an_adapter_have_no_newly_initialized_key() -> None:
    model = transformers.AutoModelForCausalLM.from_config(tiny_config("gpt2"))
    assert "newly_initialized" not in describe_model(model)


def test_seq2seq_family_loaded_as_causal_lm_is_its_decoder(checkpoints: Any) -> None:
    model = get_adapter("hf_causal").load_model(checkpoints.path("bart"), device="cpu")
    description = get_adapter("hf_causal").describe(model)
    assert type(model).__name__ == "BartForCausalLM"
    assert description["role"] == "causal"
    assert description["encoder_decoder"] is None
    assert description["heads_per_layer"] == [2, 2, 2]
    assert description["mlp_dims"] == [48, 48, 48]


def test_unknown_architecture_reports_only_what_its_config_states(remote_code_checkpoint: str) -> None:
    adapter = get_adapter("hf_causal")
    model = adapter.load_model(remote_code_checkpoint, device="cpu", trust_remote_code=True)
    description = adapter.describe(model)
    assert description["architecture_known"] is False
    assert description["model_type"] == "invarlock_tiny"
    assert description["role"] == "causal"  # from the head class TinyForCausalLM
    assert description["n_layer"] == 2
    assert description["heads_per_layer"] == [2, 2]  # stated as num_attention_heads
    assert description["hidden_size"] == 16
    assert description["vocab_size"] == 32
    # The config states neither: flagged, not guessed.
    assert set(description["not_in_config"]) == {"kv_heads_per_layer", "mlp_dims"}
    assert description["mlp_dims"] == [0, 0]
    assert description["kv_heads_per_layer"] == [0, 0]
    # Its layers are bare Linear modules, not blocks: nothing is checked against the modules, and it says so.
    unverified = {entry["field"] for entry in description["unresolved"] if "unverified" in entry["why"]}
    assert {"n_layer", "heads_per_layer", "layer_types"} <= unverified
    assert description["layer_types"] == ["unknown", "unknown"]


def test_config_structure_reads_config_json_dicts() -> None:
    config = tiny_config("mistral").to_dict()
    structure = config_structure(config)
    assert structure["architecture_known"] is True
    assert structure["kv_heads_per_layer"] == [2, 2]
    assert structure["mlp_dims"] == [40, 40]


def test_unknown_config_dict_without_a_role_says_so() -> None:
    structure = config_structure({"model_type": "something_new", "num_hidden_layers": 3, "hidden_size": 8})
    assert structure["architecture_known"] is False
    assert structure["n_layer"] == 3
    assert {"role", "heads_per_layer", "mlp_dims"} <= set(structure["not_in_config"])


def test_pruned_heads_are_counted_per_layer() -> None:
    config = tiny_config("bert", pruned_heads={0: [1, 2]})
    structure = config_structure(config)
    assert structure["heads_per_layer"] == [2, 4]
    assert structure["kv_heads_per_layer"] == [2, 4]


@pytest.mark.skipif(
    not hasattr(transformers.PreTrainedModel, "prune_heads"), reason="transformers 5 removed prune_heads"
)
def test_heads_pruned_from_a_loaded_model(checkpoints: Any) -> None:
    adapter = get_adapter("hf_mlm")
    model = adapter.load_model(checkpoints.path("bert"), device="cpu")
    model.prune_heads({1: [0, 3]})
    assert adapter.describe(model)["heads_per_layer"] == [4, 2]


def test_quantization_block_comes_from_the_config() -> None:
    config = tiny_config("llama")
    config.quantization_config = {
        "quant_method": "gptq",
        "bits": 4,
        "group_size": 32,
        "desc_act": False,
        "sym": True,
    }
    with torch.device("meta"):
        model = transformers.AutoModelForCausalLM.from_config(tiny_config("llama"))
    model.config.quantization_config = config.quantization_config
    quantization = describe_model(model)["quantization"]
    assert quantization == {"method": "gptq", "bits": 4, "group_size": 32, "desc_act": False, "sym": True}


# -- full-size architectures on the meta device, against published dimensions ----------------------

PUBLISHED: dict[str, dict[str, Any]] = {
    "Llama-2-7B": {
        "layers": 32,
        "heads": 32,
        "kv": 32,
        "mlp": 11008,
        "hidden": 4096,
        "vocab": 32000,
        "params": 6_738_415_616,
    },
    "Mistral-7B-v0.1": {
        "layers": 32,
        "heads": 32,
        "kv": 8,
        "mlp": 14336,
        "hidden": 4096,
        "vocab": 32000,
        "params": 7_241_732_096,
    },
    "Mixtral-8x7B": {
        "layers": 32,
        "heads": 32,
        "kv": 8,
        "mlp": 14336,
        "hidden": 4096,
        "vocab": 32000,
        "params": 46_702_792_704,
        "experts": (8, 2),
    },
    "Qwen2-7B": {
        "layers": 28,
        "heads": 28,
        "kv": 4,
        "mlp": 18944,
        "hidden": 3584,
        "vocab": 152064,
        "params_billions": 7.62,
    },
    "Falcon-7B": {
        "layers": 32,
        "heads": 71,
        "kv": 1,
        "mlp": 18176,
        "hidden": 4544,
        "vocab": 65024,
        "params": 6_921_720_704,
    },
    "GPT-J-6B": {
        "layers": 28,
        "heads": 16,
        "kv": 16,
        "mlp": 16384,
        "hidden": 4096,
        "vocab": 50400,
        "params_billions": 6.05,
    },
    "Gemma-7B": {
        "layers": 28,
        "heads": 16,
        "kv": 16,
        "mlp": 24576,
        "hidden": 3072,
        "vocab": 256000,
        "params_billions": 8.54,
    },
}


@pytest.mark.parametrize("name", list(PUBLISHED))
def test_full_size_architecture_on_meta_device(name: str) -> None:
    published = PUBLISHED[name]
    model_type, fields = PUBLISHED_CONFIGS[name]
    config = transformers.AutoConfig.for_model(model_type, **fields)
    with torch.device("meta"):
        model = transformers.AutoModelForCausalLM.from_config(config)
    description = validate_description(describe_model(model))
    layers = published["layers"]
    assert description["n_layer"] == layers
    assert description["heads_per_layer"] == [published["heads"]] * layers
    assert description["kv_heads_per_layer"] == [published["kv"]] * layers
    assert description["mlp_dims"] == [published["mlp"]] * layers
    assert description["hidden_size"] == published["hidden"]
    assert description["vocab_size"] == published["vocab"]
    assert description["device"] == "meta"
    if "params" in published:
        assert description["n_params"] == published["params"]
    else:
        assert round(description["n_params"] / 1e9, 2) == published["params_billions"]
    if "experts" in published:
        assert description["moe"] is not None
        assert (description["moe"]["num_experts"], description["moe"]["experts_per_token"]) == published[
            "experts"
        ]
        assert description["moe"]["expert_mlp_dim"] == published["mlp"]


def test_t5_large_on_meta_device() -> None:
    config = transformers.AutoConfig.for_model(
        "t5", d_model=1024, d_ff=4096, d_kv=64, num_layers=24, num_heads=16, vocab_size=32128
    )
    with torch.device("meta"):
        model = transformers.AutoModelForSeq2SeqLM.from_config(config)
    description = describe_model(model)
    assert description["encoder_decoder"] == {"encoder_layers": 24, "decoder_layers": 24}
    assert description["heads_per_layer"] == [16] * 48
    assert description["mlp_dims"] == [4096] * 48
    assert round(description["n_params"] / 1e6) == 738  # t5-large: 737.67M with the shared embedding once
    assert set(description["tying"].values()) == {"shared.weight"}
