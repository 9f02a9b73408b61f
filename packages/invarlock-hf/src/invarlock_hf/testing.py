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
}
"""Full-size architectures by published name: (model_type, config fields) with their published
dimensions, for describing on the meta device (tests and bench/bench_describe.py)."""
