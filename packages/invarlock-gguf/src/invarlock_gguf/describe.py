"""The description of a GGUF checkpoint, from its metadata alone.

Every structural key comes from the file's own key-value metadata (``llama.block_count``,
``llama.attention.head_count``...), read by :func:`gguf_structure` without llama.cpp; the
``quantization`` block counts the tensors of each ggml type in the tensor table. Tied tensors
are named as the Hugging Face model names them, so a GGUF and the checkpoint it was converted
from describe alike (see :func:`tied_tensors`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from invarlock.errors import ModelLoadError
from invarlock_gguf.models import GGUFMetadata, GGUFModel

# ggml tensor types that hold plain floats: a file made only of these is not quantized.
FLOAT_TYPES = {"F32": "float32", "F16": "float16", "BF16": "bfloat16", "F64": "float64"}
EMBEDDING_TENSOR = "token_embd.weight"
OUTPUT_TENSOR = "output.weight"


def describe_gguf(model: GGUFModel) -> dict[str, Any]:
    """The full describe contract for a loaded GGUF checkpoint, plus a ``gguf`` block."""
    from invarlock.readiness import installed_version

    metadata = model.metadata
    structure = gguf_structure(metadata)
    llama = model.llama
    return {
        **structure,
        "model_class": type(model).__name__,
        "n_params": sum(metadata.tensor_elements.values()),
        "dtype": main_dtype(metadata),
        "device": model.device,
        "device_map": None,
        "tying": tied_tensors(metadata),
        "quantization": quantization_block(metadata),
        "gguf": {
            **gguf_block(metadata),
            "n_ctx": model.n_ctx,
            "llama_cpp_python": installed_version("llama-cpp-python"),
            "n_threads": llama.n_threads,
            "n_threads_batch": llama.n_threads_batch,
            "extra_buffer_types": bool(llama.model_params.use_extra_bufts),
            "kv_cache": {
                "type_k": _ggml_type_name(llama.context_params.type_k),
                "type_v": _ggml_type_name(llama.context_params.type_v),
            },
        },
    }


def describe_gguf_file(path: Path) -> dict[str, Any]:
    """The description of a GGUF file without loading it into llama.cpp (``describe --config-only``).

    Everything but the loaded context's settings, plus a ``memory`` block: the parameters, their
    bytes in each float dtype, and the bytes the file's tensors take as stored (``packed``).
    """
    from invarlock_gguf.metadata import read_metadata

    metadata = read_metadata(path)
    n_params = sum(metadata.tensor_elements.values())
    return {
        **gguf_structure(metadata),
        "model_class": "GGUFModel",
        "n_params": n_params,
        "dtype": main_dtype(metadata),
        "device": "meta",
        "device_map": None,
        "tying": tied_tensors(metadata),
        "quantization": quantization_block(metadata),
        "gguf": gguf_block(metadata),
        "memory": {
            "parameters": n_params,
            "bytes_per_dtype": {"float32": 4 * n_params, "float16": 2 * n_params, "bfloat16": 2 * n_params},
            "packed": {"bytes": metadata.tensor_bytes, "tensor_types": tensor_type_counts(metadata)},
        },
    }


def gguf_structure(metadata: GGUFMetadata) -> dict[str, Any]:
    """The contract's structural keys from the file's ``<architecture>.*`` metadata.

    Per-layer values may be stored once (every layer alike) or as one entry per layer. For
    mixture-of-experts files ``mlp_dims`` holds each layer's expert width (dense leading layers
    keep ``feed_forward_length``), as the contract asks.
    """
    arch = metadata.architecture
    n_layer = metadata.arch_value("block_count")
    hidden = metadata.arch_value("embedding_length")
    heads = metadata.arch_value("attention.head_count")
    if not all(isinstance(v, (int, list)) for v in (n_layer, hidden, heads)):
        raise ModelLoadError(
            f"{metadata.path.name} lacks {arch}.block_count, {arch}.embedding_length or "
            f"{arch}.attention.head_count, which describe its structure; re-convert it with a current "
            "convert_hf_to_gguf.py"
        )
    heads_per_layer = _per_layer(heads, n_layer)
    kv_heads = _per_layer(metadata.arch_value("attention.head_count_kv", heads_per_layer), n_layer)
    ff = _per_layer(metadata.arch_value("feed_forward_length", 0), n_layer)
    experts = metadata.arch_value("expert_count") or 0
    moe = None
    moe_per_layer: list[dict[str, Any] | None] = [None] * n_layer
    if experts:
        expert_width = metadata.arch_value("expert_feed_forward_length") or ff[0]
        dense = metadata.arch_value("leading_dense_block_count") or 0
        ff = [ff[i] if i < dense else expert_width for i in range(n_layer)]
        moe = {
            "num_experts": experts,
            "experts_per_token": metadata.arch_value("expert_used_count"),
            "expert_mlp_dim": expert_width,
        }
        layer = {**moe, "shared_expert_mlp_dim": _shared_expert_width(metadata, expert_width)}
        moe_per_layer = [None if i < dense else dict(layer) for i in range(n_layer)]
    layer_types, unresolved = _layer_types(metadata, n_layer)
    structure: dict[str, Any] = {
        "model_type": arch,
        "role": "causal",
        "architecture_known": True,
        "n_layer": n_layer,
        "heads_per_layer": heads_per_layer,
        "kv_heads_per_layer": kv_heads,
        "mlp_dims": ff,
        "hidden_size": hidden,
        "vocab_size": vocab_size(metadata),
        "encoder_decoder": None,
        "moe": moe,
        "layer_types": layer_types,
        "moe_per_layer": moe_per_layer,
    }
    if unresolved:
        structure["unresolved"] = unresolved
    return structure


def _shared_expert_width(metadata: GGUFMetadata, expert_width: int) -> int | None:
    """Width of the always-active shared expert(s): stated, or their count times one expert's width."""
    stated = metadata.arch_value("expert_shared_feed_forward_length")
    if isinstance(stated, int) and stated > 0:
        return stated
    count = metadata.arch_value("expert_shared_count")
    return count * expert_width if isinstance(count, int) and count > 0 else None


def _layer_types(metadata: GGUFMetadata, n_layer: int) -> tuple[list[str], list[dict[str, Any]]]:
    """What mixes the tokens in each block, as far as the metadata says (``unknown`` otherwise).

    Plain attention unless the file states a sliding window: per layer when it carries
    ``attention.sliding_window_pattern`` (one flag per layer), else unknown. State-space and
    hybrid architectures (``ssm.*`` keys) are unknown: their metadata does not say which blocks
    attend.
    """
    arch = metadata.architecture
    if any(key.startswith(f"{arch}.ssm.") for key in metadata.values):
        why = "the GGUF metadata of state-space and hybrid architectures does not say which blocks attend"
        return ["unknown"] * n_layer, [{"field": "layer_types", "layers": list(range(n_layer)), "why": why}]
    window = metadata.arch_value("attention.sliding_window")
    if not window:
        return ["full_attention"] * n_layer, []
    pattern = metadata.arch_value("attention.sliding_window_pattern")
    if isinstance(pattern, list) and len(pattern) == n_layer:
        return ["sliding_attention" if flag else "full_attention" for flag in pattern], []
    why = f"{arch}.attention.sliding_window is set but no per-layer pattern says which blocks use it"
    return ["unknown"] * n_layer, [{"field": "layer_types", "layers": list(range(n_layer)), "why": why}]


def vocab_size(metadata: GGUFMetadata) -> int:
    """Rows of the embedding: ``<arch>.vocab_size`` when stated, else the length of the token list."""
    stated = metadata.arch_value("vocab_size")
    return int(stated) if isinstance(stated, int) else len(metadata.tokens)


def main_dtype(metadata: GGUFMetadata) -> str:
    """The ggml type holding most weight elements: ``float32``/``float16``/``bfloat16``, or ``q8_0``..."""
    if not metadata.tensor_elements:
        return "float32"
    name = metadata.tensor_elements.most_common(1)[0][0]
    return FLOAT_TYPES.get(name, name.lower())


def file_type_name(metadata: GGUFMetadata) -> str | None:
    """``general.file_type`` as llama.cpp's enum names it (``MOSTLY_Q8_0``), or None when absent."""
    import gguf

    value = metadata.values.get("general.file_type")
    if not isinstance(value, int):
        return None
    try:
        return str(gguf.LlamaFileType(value).name)
    except ValueError:
        return f"unknown ({value})"


def tensor_type_counts(metadata: GGUFMetadata) -> dict[str, int]:
    """Tensors per ggml type, most frequent first (``{"Q4_K": 193, "Q6_K": 33, "F32": 65}``)."""
    return dict(sorted(metadata.tensor_types.items(), key=lambda item: (-item[1], item[0])))


def quantization_block(metadata: GGUFMetadata) -> dict[str, Any] | None:
    """None when every tensor is a plain float type; else the file type and tensors per ggml type."""
    if all(name in FLOAT_TYPES for name in metadata.tensor_types):
        return None
    return {
        "method": "gguf",
        "file_type": file_type_name(metadata),
        "tensor_types": tensor_type_counts(metadata),
    }


def gguf_block(metadata: GGUFMetadata) -> dict[str, Any]:
    """What the file says beyond the contract: name, context length, tokenizer, types."""
    values = metadata.values
    return {
        "file": metadata.path.name,
        "size_bytes": metadata.path.stat().st_size,
        "name": values.get("general.name"),
        "architecture": metadata.architecture,
        "context_length": metadata.arch_value("context_length"),
        "file_type": file_type_name(metadata),
        "tensor_types": tensor_type_counts(metadata),
        "tokenizer": {
            "model": values.get("tokenizer.ggml.model"),
            "pre": values.get("tokenizer.ggml.pre"),
            "tokens": len(metadata.tokens),
            "merges": metadata.merges,
        },
    }


def tied_tensors(metadata: GGUFMetadata) -> dict[str, str]:
    """The tied pairs, named as the Hugging Face model of this architecture names them.

    llama.cpp ties the output projection to the token embedding when the file has no
    ``output.weight``. The names come from a weightless (meta device) build of the config that
    transformers reads from this file's metadata, the same ``tied_pairs`` the PyTorch adapters
    report; for an architecture transformers cannot read from GGUF, the pair is given in the
    file's own tensor names.
    """
    tied = EMBEDDING_TENSOR in metadata.tensor_names and OUTPUT_TENSOR not in metadata.tensor_names
    named = _hugging_face_tying(metadata)
    if named is not None:
        return named
    return {OUTPUT_TENSOR: EMBEDDING_TENSOR} if tied else {}


def _hugging_face_tying(metadata: GGUFMetadata) -> dict[str, str] | None:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM
    from transformers.modeling_gguf_pytorch_utils import load_gguf_checkpoint

    from invarlock_hf.describe import tied_pairs

    try:
        parsed = load_gguf_checkpoint(str(metadata.path), return_tensors=False)  # type: ignore[no-untyped-call]
        config = dict(parsed["config"])
        config.pop("_model_name_or_path", None)
        hf_config = AutoConfig.for_model(config.pop("model_type"), **config)
        with torch.device("meta"):
            skeleton = AutoModelForCausalLM.from_config(hf_config)  # type: ignore[no-untyped-call]
    except (ValueError, KeyError):  # an architecture transformers does not read from GGUF
        return None
    return tied_pairs(skeleton)


def _per_layer(value: Any, n_layer: int) -> list[int]:
    if isinstance(value, list):
        if len(value) != n_layer:
            raise ModelLoadError(f"a per-layer GGUF value has {len(value)} entries for {n_layer} layers")
        return [int(v) for v in value]
    return [int(value)] * n_layer


def _ggml_type_name(value: int) -> str:
    import gguf

    try:
        return str(gguf.GGMLQuantizationType(int(value)).name)
    except ValueError:
        return f"unknown ({value})"
