"""Tiny random checkpoints of every architecture family invarlock-hf describes, for tests.

Each is built from the family's real transformers config class with small sizes, so a test can
``save_tiny_checkpoint("llama", tmp_path)`` and load it back through an adapter without the hub.
The sizes are deliberately distinct (4 heads, 2 KV heads, MLP width 40 where the config lets it
be chosen, 2 encoder and 3 decoder layers) so a description that mixes two numbers up is caught.
Sibling packages (bnb, gptq, awq, onnx) reuse these for their own tests.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

TINY_VOCAB = 128

_DECODER = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4, "vocab_size": TINY_VOCAB}
_LLAMA_LIKE = {**_DECODER, "num_key_value_heads": 2, "intermediate_size": 40, "max_position_embeddings": 64}
_ENCODER = {
    **_DECODER,
    "intermediate_size": 40,
    "max_position_embeddings": 64,
    "type_vocab_size": 2,
}
_BART_LIKE = {
    "d_model": 32,
    "encoder_layers": 2,
    "decoder_layers": 3,
    "encoder_attention_heads": 4,
    "decoder_attention_heads": 2,
    "encoder_ffn_dim": 40,
    "decoder_ffn_dim": 48,
    "vocab_size": TINY_VOCAB,
    "max_position_embeddings": 64,
    "pad_token_id": 1,
    "bos_token_id": 0,
    "eos_token_id": 2,
    "decoder_start_token_id": 2,
}

TINY_CONFIGS: dict[str, dict[str, Any]] = {
    # causal language models
    "gpt2": {
        "n_embd": 32,
        "n_layer": 2,
        "n_head": 4,
        "n_inner": 40,
        "n_positions": 64,
        "vocab_size": TINY_VOCAB,
        "bos_token_id": 0,
        "eos_token_id": 0,
    },
    "gpt_neo": {
        "hidden_size": 32,
        "num_layers": 2,
        "num_heads": 4,
        "intermediate_size": 40,
        "attention_types": [[["global", "local"], 1]],
        "window_size": 16,
        "max_position_embeddings": 64,
        "vocab_size": TINY_VOCAB,
        "bos_token_id": 0,
        "eos_token_id": 0,
    },
    "gptj": {
        "n_embd": 32,
        "n_layer": 2,
        "n_head": 4,
        "n_inner": 40,
        "rotary_dim": 4,
        "n_positions": 64,
        "vocab_size": TINY_VOCAB,
        "bos_token_id": 0,
        "eos_token_id": 0,
    },
    "gpt_neox": {**_DECODER, "intermediate_size": 40, "max_position_embeddings": 64},
    "opt": {
        **_DECODER,
        "ffn_dim": 40,
        "word_embed_proj_dim": 32,
        "max_position_embeddings": 64,
        "pad_token_id": 1,
        "bos_token_id": 2,
        "eos_token_id": 2,
    },
    "bloom": {"hidden_size": 32, "n_layer": 2, "n_head": 4, "vocab_size": TINY_VOCAB},
    "falcon": {
        **_DECODER,
        "num_kv_heads": 2,
        "new_decoder_architecture": True,
        "ffn_hidden_size": 40,
        "bos_token_id": 1,
        "eos_token_id": 2,
    },
    "llama": dict(_LLAMA_LIKE),
    "mistral": {**_LLAMA_LIKE, "sliding_window": 16},
    "mixtral": {**_LLAMA_LIKE, "intermediate_size": 24, "num_local_experts": 4, "num_experts_per_tok": 2},
    "qwen2": dict(_LLAMA_LIKE),
    "qwen2_moe": {
        **_LLAMA_LIKE,
        "num_experts": 4,
        "num_experts_per_tok": 2,
        "moe_intermediate_size": 24,
        "shared_expert_intermediate_size": 36,
        "decoder_sparse_step": 1,
        "mlp_only_layers": [1],
    },
    "qwen3": {**_LLAMA_LIKE, "head_dim": 8},
    "phi": {**_LLAMA_LIKE, "partial_rotary_factor": 0.5},
    "phi3": {**_LLAMA_LIKE, "pad_token_id": 0, "bos_token_id": 1, "eos_token_id": 2},
    "gemma": {**_LLAMA_LIKE, "head_dim": 8, "pad_token_id": 0, "eos_token_id": 1, "bos_token_id": 2},
    "gemma2": {
        **_LLAMA_LIKE,
        "head_dim": 8,
        "sliding_window": 16,
        "pad_token_id": 0,
        "eos_token_id": 1,
        "bos_token_id": 2,
    },
    "starcoder2": {**_LLAMA_LIKE, "sliding_window": 16, "bos_token_id": 0, "eos_token_id": 0},
    # masked language models
    "bert": dict(_ENCODER),
    "roberta": {
        **_ENCODER,
        "max_position_embeddings": 66,
        "pad_token_id": 1,
        "bos_token_id": 0,
        "eos_token_id": 2,
    },
    "xlm-roberta": {
        **_ENCODER,
        "max_position_embeddings": 66,
        "pad_token_id": 1,
        "bos_token_id": 0,
        "eos_token_id": 2,
    },
    "distilbert": {
        "dim": 32,
        "n_layers": 2,
        "n_heads": 4,
        "hidden_dim": 40,
        "max_position_embeddings": 64,
        "vocab_size": TINY_VOCAB,
    },
    "albert": {**_ENCODER, "embedding_size": 16},
    "deberta-v2": {
        **_ENCODER,
        "relative_attention": True,
        "position_buckets": 8,
        "max_relative_positions": 16,
        "pos_att_type": ["p2c", "c2p"],
    },
    "electra": {**_ENCODER, "embedding_size": 16},
    # encoder-decoder models
    "t5": {
        "d_model": 32,
        "d_kv": 8,
        "d_ff": 40,
        "num_layers": 2,
        "num_decoder_layers": 3,
        "num_heads": 4,
        "relative_attention_num_buckets": 8,
        "vocab_size": TINY_VOCAB,
        "pad_token_id": 0,
        "eos_token_id": 1,
        "decoder_start_token_id": 0,
    },
    "bart": dict(_BART_LIKE),
    "mbart": dict(_BART_LIKE),
    "pegasus": {**_BART_LIKE, "pad_token_id": 0, "eos_token_id": 1, "decoder_start_token_id": 0},
    "marian": {**_BART_LIKE, "pad_token_id": 0, "eos_token_id": 1, "decoder_start_token_id": 0},
}

CAUSAL_FAMILIES = (
    "gpt2",
    "gpt_neo",
    "gptj",
    "gpt_neox",
    "opt",
    "bloom",
    "falcon",
    "llama",
    "mistral",
    "mixtral",
    "qwen2",
    "qwen2_moe",
    "qwen3",
    "phi",
    "phi3",
    "gemma",
    "gemma2",
    "starcoder2",
)
MASKED_LM_FAMILIES = ("bert", "roberta", "xlm-roberta", "distilbert", "albert", "deberta-v2", "electra")
SEQ2SEQ_FAMILIES = ("t5", "bart", "mbart", "pegasus", "marian")
AUTO_CLASS = {
    **dict.fromkeys(CAUSAL_FAMILIES, "AutoModelForCausalLM"),
    **dict.fromkeys(MASKED_LM_FAMILIES, "AutoModelForMaskedLM"),
    **dict.fromkeys(SEQ2SEQ_FAMILIES, "AutoModelForSeq2SeqLM"),
}


def tiny_config(model_type: str, **overrides: Any) -> Any:
    """The transformers config of a tiny ``model_type`` model (``overrides`` change any field)."""
    from transformers import AutoConfig

    return AutoConfig.for_model(model_type, **{**TINY_CONFIGS[model_type], **overrides})


def tiny_model(model_type: str, *, seed: int = 0, **overrides: Any) -> Any:
    """A randomly initialised tiny model with the family's language-model head, in eval mode."""
    import torch
    import transformers

    config = tiny_config(model_type, **overrides)
    torch.manual_seed(seed)
    auto_class = getattr(transformers, AUTO_CLASS[model_type])
    return auto_class.from_config(config).eval()


def save_tiny_checkpoint(model_type: str, directory: str | Path, *, seed: int = 0, **overrides: Any) -> Path:
    """Write a tiny random ``model_type`` checkpoint (config + safetensors) into ``directory``."""
    path = Path(directory)
    tiny_model(model_type, seed=seed, **overrides).save_pretrained(path)
    return path


def save_tiny_tokenizer(directory: str | Path, *, vocab_size: int = TINY_VOCAB) -> Path:
    """Train a tiny word-level tokenizer locally (no hub) and save it as a transformers tokenizer."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.WordLevel(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    special = ["<pad>", "<unk>", "<s>", "</s>"]
    trainer = trainers.WordLevelTrainer(vocab_size=vocab_size, special_tokens=special)
    words = [f"w{i}" for i in range(vocab_size)]
    tokenizer.train_from_iterator([" ".join(words)], trainer=trainer)
    wrapped = PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]
        tokenizer_object=tokenizer, pad_token="<pad>", unk_token="<unk>", bos_token="<s>", eos_token="</s>"
    )
    path = Path(directory)
    wrapped.save_pretrained(path)
    return path


PUBLISHED_CONFIGS: dict[str, tuple[str, dict[str, Any]]] = {
    "Llama-2-7B": (
        "llama",
        {
            "hidden_size": 4096,
            "intermediate_size": 11008,
            "num_hidden_layers": 32,
            "num_attention_heads": 32,
            "num_key_value_heads": 32,
            "vocab_size": 32000,
        },
    ),
    "Mistral-7B-v0.1": (
        "mistral",
        {
            "hidden_size": 4096,
            "intermediate_size": 14336,
            "num_hidden_layers": 32,
            "num_attention_heads": 32,
            "num_key_value_heads": 8,
            "vocab_size": 32000,
        },
    ),
    "Mixtral-8x7B": (
        "mixtral",
        {
            "hidden_size": 4096,
            "intermediate_size": 14336,
            "num_hidden_layers": 32,
            "num_attention_heads": 32,
            "num_key_value_heads": 8,
            "vocab_size": 32000,
            "num_local_experts": 8,
            "num_experts_per_tok": 2,
        },
    ),
    "Qwen2-7B": (
        "qwen2",
        {
            "hidden_size": 3584,
            "intermediate_size": 18944,
            "num_hidden_layers": 28,
            "num_attention_heads": 28,
            "num_key_value_heads": 4,
            "vocab_size": 152064,
            "tie_word_embeddings": False,
        },
    ),
    "Falcon-7B": (
        "falcon",
        {
            "hidden_size": 4544,
            "num_hidden_layers": 32,
            "num_attention_heads": 71,
            "multi_query": True,
            "new_decoder_architecture": False,
            "parallel_attn": True,
            "bias": False,
            "alibi": False,
            "vocab_size": 65024,
        },
    ),
    "GPT-J-6B": (
        "gptj",
        {
            "n_embd": 4096,
            "n_layer": 28,
            "n_head": 16,
            "rotary_dim": 64,
            "vocab_size": 50400,
            "n_positions": 2048,
        },
    ),
    "Gemma-7B": (
        "gemma",
        {
            "hidden_size": 3072,
            "intermediate_size": 24576,
            "num_hidden_layers": 28,
            "num_attention_heads": 16,
            "num_key_value_heads": 16,
            "head_dim": 256,
            "vocab_size": 256000,
        },
    ),
    # -- the architectures people certify now (numbers from each model's published config.json) --
    "Llama-3.1-70B": (
        "llama",
        {
            "hidden_size": 8192,
            "intermediate_size": 28672,
            "num_hidden_layers": 80,
            "num_attention_heads": 64,
            "num_key_value_heads": 8,
            "vocab_size": 128256,
            "max_position_embeddings": 131072,
            "rms_norm_eps": 1e-5,
            "tie_word_embeddings": False,
            "dtype": "bfloat16",
        },
    ),
    "DeepSeek-V3": (
        "deepseek_v3",
        {
            "hidden_size": 7168,
            "intermediate_size": 18432,
            "moe_intermediate_size": 2048,
            "num_hidden_layers": 61,
            "num_attention_heads": 128,
            "num_key_value_heads": 128,
            "n_shared_experts": 1,
            "n_routed_experts": 256,
            "num_experts_per_tok": 8,
            "first_k_dense_replace": 3,
            "moe_layer_freq": 1,
            "n_group": 8,
            "topk_group": 4,
            "q_lora_rank": 1536,
            "kv_lora_rank": 512,
            "qk_nope_head_dim": 128,
            "qk_rope_head_dim": 64,
            "v_head_dim": 128,
            "vocab_size": 129280,
            "tie_word_embeddings": False,
        },
    ),
    "Qwen3-30B-A3B": (
        "qwen3_moe",
        {
            "hidden_size": 2048,
            "intermediate_size": 6144,
            "moe_intermediate_size": 768,
            "num_hidden_layers": 48,
            "num_attention_heads": 32,
            "num_key_value_heads": 4,
            "head_dim": 128,
            "num_experts": 128,
            "num_experts_per_tok": 8,
            "decoder_sparse_step": 1,
            "mlp_only_layers": [],
            "vocab_size": 151936,
            "tie_word_embeddings": False,
        },
    ),
    "Qwen3-Next-80B-A3B": (
        "qwen3_next",
        {
            "hidden_size": 2048,
            "intermediate_size": 5120,
            "moe_intermediate_size": 512,
            "shared_expert_intermediate_size": 512,
            "num_hidden_layers": 48,
            "num_attention_heads": 16,
            "num_key_value_heads": 2,
            "head_dim": 256,
            "num_experts": 512,
            "num_experts_per_tok": 10,
            "decoder_sparse_step": 1,
            "full_attention_interval": 4,
            "linear_num_key_heads": 16,
            "linear_num_value_heads": 32,
            "linear_key_head_dim": 128,
            "linear_value_head_dim": 128,
            "linear_conv_kernel_dim": 4,
            "vocab_size": 151936,
            "tie_word_embeddings": False,
        },
    ),
    "Llama-4-Maverick-17B-128E (text)": (
        "llama4_text",
        {
            "hidden_size": 5120,
            "intermediate_size": 8192,
            "intermediate_size_mlp": 16384,
            "num_hidden_layers": 48,
            "num_attention_heads": 40,
            "num_key_value_heads": 8,
            "head_dim": 128,
            "num_local_experts": 128,
            "num_experts_per_tok": 1,
            "interleave_moe_layer_step": 2,
            "attention_chunk_size": 8192,
            "vocab_size": 202048,
        },
    ),
    "Jamba-v0.1": (
        "jamba",
        {
            "hidden_size": 4096,
            "intermediate_size": 14336,
            "num_hidden_layers": 32,
            "num_attention_heads": 32,
            "num_key_value_heads": 8,
            "num_experts": 16,
            "num_experts_per_tok": 2,
            "attn_layer_period": 8,
            "attn_layer_offset": 4,
            "expert_layer_period": 2,
            "expert_layer_offset": 1,
            "mamba_d_state": 16,
            "mamba_d_conv": 4,
            "mamba_expand": 2,
            "mamba_dt_rank": 256,
            "vocab_size": 65536,
            "tie_word_embeddings": False,
        },
    ),
    "Mamba-2.8B": (
        "mamba",
        {
            "hidden_size": 2560,
            "num_hidden_layers": 64,
            "state_size": 16,
            "expand": 2,
            "conv_kernel": 4,
            "time_step_rank": 160,
            "vocab_size": 50280,
        },
    ),
    "Gemma-2-9B": (
        "gemma2",
        {
            "hidden_size": 3584,
            "intermediate_size": 14336,
            "num_hidden_layers": 42,
            "num_attention_heads": 16,
            "num_key_value_heads": 8,
            "head_dim": 256,
            "sliding_window": 4096,
            "vocab_size": 256000,
        },
    ),
    "Gemma-3-4B-it": (
        "gemma3",
        {
            "text_config": {
                "hidden_size": 2560,
                "intermediate_size": 10240,
                "num_hidden_layers": 34,
                "num_attention_heads": 8,
                "num_key_value_heads": 4,
                "head_dim": 256,
                "sliding_window": 1024,
                "sliding_window_pattern": 6,
                "vocab_size": 262208,
            },
            "vision_config": {
                "hidden_size": 1152,
                "intermediate_size": 4304,
                "num_hidden_layers": 27,
                "num_attention_heads": 16,
                "image_size": 896,
                "patch_size": 14,
            },
            "mm_tokens_per_image": 256,
        },
    ),
    "Qwen2.5-VL-7B-Instruct": (
        "qwen2_5_vl",
        {
            "text_config": {
                "hidden_size": 3584,
                "intermediate_size": 18944,
                "num_hidden_layers": 28,
                "num_attention_heads": 28,
                "num_key_value_heads": 4,
                "vocab_size": 152064,
                "tie_word_embeddings": False,
            },
            "hidden_size": 3584,
            "intermediate_size": 18944,
            "num_hidden_layers": 28,
            "num_attention_heads": 28,
            "num_key_value_heads": 4,
            "vocab_size": 152064,
            "tie_word_embeddings": False,
            "vision_config": {
                "depth": 32,
                "hidden_size": 1280,
                "intermediate_size": 3420,
                "num_heads": 16,
                "out_hidden_size": 3584,
                "patch_size": 14,
                "window_size": 112,
                "fullatt_block_indexes": [7, 15, 23, 31],
            },
        },
    ),
    "ModernBERT-base": (
        "modernbert",
        {
            "hidden_size": 768,
            "intermediate_size": 1152,
            "num_hidden_layers": 22,
            "num_attention_heads": 12,
            "global_attn_every_n_layers": 3,
            "local_attention": 128,
            "vocab_size": 50368,
        },
    ),
}
"""Full-size architectures by published name: (model_type, config fields) with their published
dimensions, for describing on the meta device (tests and bench/bench_describe.py)."""

PUBLISHED_AUTO_CLASS = {
    "Gemma-3-4B-it": "AutoModelForImageTextToText",
    "Qwen2.5-VL-7B-Instruct": "AutoModelForImageTextToText",
    "ModernBERT-base": "AutoModelForMaskedLM",
}
"""The head class a published architecture is built with when it is not ``AutoModelForCausalLM``."""


def build_published(name: str) -> Any:
    """The published architecture ``name`` (:data:`PUBLISHED_CONFIGS`) built on the meta device."""
    import transformers

    from invarlock_hf.describe import meta_model

    model_type, fields = PUBLISHED_CONFIGS[name]
    config = transformers.AutoConfig.for_model(model_type, **fields)
    return meta_model(config, PUBLISHED_AUTO_CLASS.get(name, "AutoModelForCausalLM"))


# -- the sweep: every model type transformers can build, described on the meta device ---------------

SWEEP_AUTO_CLASSES = {
    "causal": ("MODEL_FOR_CAUSAL_LM_MAPPING_NAMES", "AutoModelForCausalLM"),
    "masked_lm": ("MODEL_FOR_MASKED_LM_MAPPING_NAMES", "AutoModelForMaskedLM"),
    "seq2seq": ("MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING_NAMES", "AutoModelForSeq2SeqLM"),
    "image_text_to_text": ("MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES", "AutoModelForImageTextToText"),
}
"""Kind → (transformers' Auto mapping of model types, the Auto class that builds them)."""


def sweep_model_types() -> list[tuple[str, str]]:
    """(kind, model_type) for every model type the installed transformers maps to a language-model head."""
    from transformers.models.auto import modeling_auto

    return [
        (kind, model_type)
        for kind, (mapping, _) in SWEEP_AUTO_CLASSES.items()
        for model_type in sorted(getattr(modeling_auto, mapping, {}))
    ]


def build_on_meta(kind: str, model_type: str) -> Any:
    """The ``kind`` head model of ``model_type`` from its default config, on the meta device."""
    import transformers

    from invarlock_hf.describe import meta_model

    return meta_model(transformers.AutoConfig.for_model(model_type), SWEEP_AUTO_CLASSES[kind][1])


def structure_contradictions(model: Any, description: dict[str, Any]) -> list[str]:
    """Every way ``description`` contradicts the shapes of ``model``'s modules (empty when none).

    Checked per layer against that block's own weights: a width reported is one of the block's
    weight dimensions, query heads split into whole KV-head groups and divide one of the
    attention's widths, experts match an expert weight's leading dimension or list length; and
    for the model: the parameter count, the hidden size and the vocabulary against the embeddings.
    """
    import torch

    from invarlock.description import description_problems
    from invarlock_hf.blocks import block_stacks, language_stacks

    problems = list(description_problems(description))
    if problems:
        return problems
    distinct = {id(p): p for p in model.parameters()}
    if (
        description["n_params"] != sum(p.numel() for p in distinct.values())
        and description["quantization"] is None
    ):
        problems.append("n_params is not the number of distinct parameters")
    unverified = {entry["field"] for entry in description.get("unresolved", []) if entry["layers"] is None}
    if "n_layer" in unverified:
        return problems  # no blocks in the modules: nothing per layer to check against
    # Which lists are the language model's comes from describe's own locator; what is in them does not.
    stacks = language_stacks(block_stacks(model), description["role"], description["hidden_size"])
    blocks = [module for _, modules in stacks for module in modules]
    if len(blocks) != description["n_layer"] and description["model_type"] != "albert":
        problems.append(f"n_layer {description['n_layer']} but the modules hold {len(blocks)} blocks")
        return problems
    for index, block in enumerate(blocks if description["model_type"] != "albert" else []):
        dims = {int(d) for p in block.parameters() for d in p.shape}
        heads, kv = description["heads_per_layer"][index], description["kv_heads_per_layer"][index]
        if heads and (not kv or heads % kv or not any(d % heads == 0 for d in dims)):
            problems.append(f"layer {index}: {heads} query heads / {kv} KV heads do not fit its weights")
        if kv and not heads:
            problems.append(f"layer {index}: KV heads without query heads")
        width = description["mlp_dims"][index]
        if width and width not in dims:
            problems.append(f"layer {index}: MLP width {width} is no dimension of its weights")
        moe = description.get("moe_per_layer", [None] * len(blocks))[index]
        if moe is not None:
            counts = {int(p.shape[0]) for p in block.parameters() if p.dim() == 3} | {
                len(m) for m in block.modules() if isinstance(m, torch.nn.ModuleList)
            }
            if moe["num_experts"] not in counts:
                problems.append(f"layer {index}: {moe['num_experts']} experts match no expert weight or list")
        kind = description.get("layer_types", [None] * len(blocks))[index]
        if kind in ("mamba", "ssm") and not any(n.endswith("A_log") for n, _ in block.named_parameters()):
            problems.append(f"layer {index}: {kind} but the block has no state-space parameters")
    hidden = description["hidden_size"]
    if (
        hidden
        and blocks
        and not any(hidden in {int(d) for p in b.parameters() for d in p.shape} for b in blocks[:1])
    ):
        problems.append(f"hidden_size {hidden} is no dimension of the first block's weights")
    try:
        output = model.get_output_embeddings()
    except (AttributeError, NotImplementedError):
        output = None
    vocab = description["vocab_size"]
    weight = getattr(output, "weight", None)
    if vocab and isinstance(weight, torch.Tensor) and vocab not in tuple(weight.shape):
        problems.append(f"vocab_size {vocab} is not the output embedding's {tuple(weight.shape)}")
    return problems


def sweep_record(kind: str, model_type: str) -> tuple[str, list[str], float]:
    """(status, contradictions, describe seconds) for one model type: ``not built: ...`` when
    transformers cannot build it on the meta device from its default config, ``described``,
    ``refused: FIELD: WHY`` (the first thing it could not derive) or ``error: ...``."""
    import time

    from invarlock_hf.describe import describe_model

    try:
        model = build_on_meta(kind, model_type)
    except Exception as exc:
        return f"not built: {type(exc).__name__}", [], 0.0
    start = time.perf_counter()
    try:
        description = describe_model(model)
    except Exception as exc:
        return f"error: {type(exc).__name__}: {exc}", [], time.perf_counter() - start
    seconds = time.perf_counter() - start
    contradictions = structure_contradictions(model, description)
    unresolved = description.get("unresolved") or []
    if unresolved:
        first = unresolved[0]
        return f"refused: {first['field']}: {first['why']}", contradictions, seconds
    return "described", contradictions, seconds
