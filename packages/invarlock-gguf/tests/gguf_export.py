"""GGUF files written from a tiny local Llama checkpoint with the ``gguf`` package (tests, benchmark).

The layout is the one llama.cpp's ``convert_hf_to_gguf.py`` writes for ``LlamaForCausalLM``:
llama.* hyperparameters, a ``gpt2`` (byte-level BPE) vocabulary with its merges, tensors under
llama.cpp's names, and the query/key projections permuted from Hugging Face's rotate-half order
back to the interleaved order llama.cpp's RoPE expects. The converter itself refuses BPE
tokenizers whose pre-tokenizer hash it does not know (the demo's is a locally trained one); its
pre-tokenizer here is plain GPT-2 byte-level (``ByteLevel(use_regex=True)``, no normalizer), which
llama.cpp calls ``gpt-2``, so that name is written after checking the tokenizer really is that.

Weight types: ``F32``, ``F16``, and the types ``gguf.quants`` quantizes in numpy: ``Q8_0``,
``Q5_0``, ``Q4_0``, ``Q4_1`` (the K-quants such as Q4_K can only be dequantized there; llama.cpp's
``llama-quantize`` binary makes those). One-dimensional tensors (norms) stay F32, as the converter
keeps them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

WEIGHT_TYPES = ("F32", "F16", "Q8_0", "Q5_0", "Q4_0", "Q4_1", "Q2_IN_Q4_0")
TWO_BIT_IN_Q4_0 = "Q2_IN_Q4_0"
"""2-bit round-to-nearest weights stored in Q4_0 blocks: a 2-bit GGUF llama.cpp runs on this model.

numpy has no 2-bit GGUF type for this model: gguf.quants quantizes no K-quant, and every 2-bit
type (Q2_K, TQ2_0, IQ2_*) packs rows of 256 weights, while the demo model's rows have 128. So each
block of 32 weights gets four levels (-2, -1, 0, 1) times one scale, like the demo's 2-bit RTN
edit, written as Q4_0 codes that llama.cpp dequantizes back to exactly those levels. The file is a
valid Q4_0 GGUF (file type MOSTLY_Q4_0) whose weights carry 2 bits of information.
"""


def _tensor_names(layer: int | None, hf: str) -> str:
    return hf if layer is None else f"blk.{layer}.{hf}"


_LAYER_TENSORS = {
    "input_layernorm.weight": "attn_norm.weight",
    "self_attn.q_proj.weight": "attn_q.weight",
    "self_attn.k_proj.weight": "attn_k.weight",
    "self_attn.v_proj.weight": "attn_v.weight",
    "self_attn.o_proj.weight": "attn_output.weight",
    "post_attention_layernorm.weight": "ffn_norm.weight",
    "mlp.gate_proj.weight": "ffn_gate.weight",
    "mlp.up_proj.weight": "ffn_up.weight",
    "mlp.down_proj.weight": "ffn_down.weight",
}
_GLOBAL_TENSORS = {
    "model.embed_tokens.weight": "token_embd.weight",
    "model.norm.weight": "output_norm.weight",
    "lm_head.weight": "output.weight",
}


def gguf_name(hf_name: str) -> str:
    if hf_name in _GLOBAL_TENSORS:
        return _GLOBAL_TENSORS[hf_name]
    prefix, layer, rest = hf_name.split(".", 3)[1:]
    assert prefix == "layers", hf_name
    return f"blk.{layer}.{_LAYER_TENSORS[rest]}"


def permute_for_rope(weight: np.ndarray, heads: int) -> np.ndarray:
    """Hugging Face's rotate-half row order → the interleaved pairs llama.cpp rotates."""
    rows = weight.shape[0]
    return (
        weight.reshape(heads, 2, rows // heads // 2, *weight.shape[1:]).swapaxes(1, 2).reshape(weight.shape)
    )


def quantize_two_bit_q4_0(weight: np.ndarray) -> np.ndarray:
    """Q4_0 block bytes (f16 scale, 16 bytes of nibbles per 32 weights) holding 2-bit codes."""
    rows, columns = weight.shape
    blocks = weight.reshape(-1, 32).astype(np.float32)
    peak = np.take_along_axis(blocks, np.abs(blocks).argmax(axis=-1, keepdims=True), axis=-1)
    scale = (peak / -2).astype(np.float16)
    with np.errstate(divide="ignore", invalid="ignore"):
        codes = np.where(scale == 0, 0, np.rint(blocks / scale.astype(np.float32)))
    nibbles = (np.clip(codes, -2, 1) + 8).astype(np.uint8)
    packed = nibbles[:, :16] | (nibbles[:, 16:] << np.uint8(4))
    return np.concatenate([scale.view(np.uint8), packed], axis=-1).reshape(rows, columns // 32 * 18)


def _vocabulary(checkpoint: Path) -> tuple[list[str], list[int], str]:
    """Tokens in id order, their llama.cpp token types, and the pre-tokenizer name."""
    import gguf

    tokenizer = json.loads((checkpoint / "tokenizer.json").read_text(encoding="utf-8"))
    model, pre = tokenizer["model"], tokenizer.get("pre_tokenizer") or {}
    if model["type"] != "BPE" or tokenizer.get("normalizer") is not None or pre.get("type") != "ByteLevel":
        raise ValueError(
            f"{checkpoint} does not have a plain byte-level BPE tokenizer; this writer needs one"
        )
    if not pre.get("use_regex", True) or pre.get("add_prefix_space"):
        raise ValueError(f"{checkpoint}: only GPT-2's byte-level pre-tokenizer (use_regex, no prefix space)")
    by_id = {index: token for token, index in model["vocab"].items()}
    special = {}
    for added in tokenizer.get("added_tokens", []):
        by_id[added["id"]] = added["content"]
        special[added["id"]] = added.get("special", False)
    tokens = [by_id[i] for i in range(len(by_id))]
    types = [
        int(gguf.TokenType.CONTROL if special.get(i) else gguf.TokenType.USER_DEFINED)
        if i in special
        else int(gguf.TokenType.NORMAL)
        for i in range(len(tokens))
    ]
    return tokens, types, "gpt-2"


def write_gguf(
    checkpoint: Path,
    output: Path,
    weight_type: str = "F32",
    *,
    tokens: list[str] | None = None,
    name: str | None = None,
) -> Path:
    """Write ``checkpoint`` (a Llama ``save_pretrained`` directory with a tokenizer.json) as one GGUF file.

    ``tokens`` replaces the vocabulary's token strings (to build a GGUF whose vocabulary differs).
    """
    import gguf
    from safetensors.numpy import load_file

    if weight_type not in WEIGHT_TYPES:
        raise ValueError(f"weight type {weight_type!r}; this writer makes {', '.join(WEIGHT_TYPES)}")
    config: dict[str, Any] = json.loads((checkpoint / "config.json").read_text(encoding="utf-8"))
    if config.get("model_type") != "llama":
        raise ValueError(f"{checkpoint} is a {config.get('model_type')} checkpoint; this writer makes llama")
    state = load_file(str(checkpoint / "model.safetensors"))
    heads, kv_heads = config["num_attention_heads"], config["num_key_value_heads"]
    head_dim = config.get("head_dim") or config["hidden_size"] // heads
    two_bit = weight_type == TWO_BIT_IN_Q4_0
    quant = gguf.GGMLQuantizationType["Q4_0" if two_bit else weight_type]
    file_type = {
        "F32": gguf.LlamaFileType.ALL_F32,
        "F16": gguf.LlamaFileType.MOSTLY_F16,
        "Q8_0": gguf.LlamaFileType.MOSTLY_Q8_0,
        "Q5_0": gguf.LlamaFileType.MOSTLY_Q5_0,
        "Q4_0": gguf.LlamaFileType.MOSTLY_Q4_0,
        "Q4_1": gguf.LlamaFileType.MOSTLY_Q4_1,
        TWO_BIT_IN_Q4_0: gguf.LlamaFileType.MOSTLY_Q4_0,
    }[weight_type]

    vocab, token_types, pre = _vocabulary(checkpoint)
    if tokens is not None:
        vocab = tokens
    # Embedding rows the tokenizer has no token for, padded as convert_hf_to_gguf.py pads them.
    for index in range(len(vocab), config["vocab_size"]):
        vocab = [*vocab, f"[PAD{index}]"]
        token_types = [*token_types, int(gguf.TokenType.UNUSED)]
    output.parent.mkdir(parents=True, exist_ok=True)
    writer = gguf.GGUFWriter(str(output), "llama")
    writer.add_name(name or checkpoint.name)
    writer.add_file_type(int(file_type))
    writer.add_block_count(config["num_hidden_layers"])
    writer.add_context_length(config["max_position_embeddings"])
    writer.add_embedding_length(config["hidden_size"])
    writer.add_feed_forward_length(config["intermediate_size"])
    writer.add_head_count(heads)
    writer.add_head_count_kv(kv_heads)
    writer.add_key_length(head_dim)
    writer.add_value_length(head_dim)
    writer.add_rope_dimension_count(head_dim)
    writer.add_rope_freq_base(float(config.get("rope_parameters", {}).get("rope_theta", 10000.0)))
    writer.add_layer_norm_rms_eps(float(config["rms_norm_eps"]))
    writer.add_vocab_size(config["vocab_size"])
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(pre)
    writer.add_token_list(vocab)
    writer.add_token_types(token_types)
    gguf.SpecialVocab(checkpoint, load_merges=True).add_to_gguf(writer, quiet=True)

    for hf_name, tensor in state.items():
        data = tensor.astype(np.float32)
        if hf_name.endswith("q_proj.weight"):
            data = permute_for_rope(data, heads)
        elif hf_name.endswith("k_proj.weight"):
            data = permute_for_rope(data, kv_heads)
        target = gguf_name(hf_name)
        if data.ndim == 1 or weight_type == "F32":
            writer.add_tensor(target, data)
        elif weight_type == "F16":
            writer.add_tensor(target, data.astype(np.float16))
        elif two_bit:
            writer.add_tensor(target, quantize_two_bit_q4_0(data), raw_dtype=quant)
        else:
            writer.add_tensor(target, gguf.quants.quantize(data, quant), raw_dtype=quant)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return output
