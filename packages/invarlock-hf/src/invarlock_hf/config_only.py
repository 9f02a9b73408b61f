"""``invarlock describe MODEL --config-only``: describe a checkpoint from its config.json alone.

The model is built on the meta device (no weights, no memory) and described like a loaded one;
then a ``memory`` block gives the parameters' size in each floating-point dtype and, for a
bitsandbytes, GPTQ or AWQ quantization config, the size of the packed checkpoint, computed from
each format's tensor layout. A size the formats do not fix is refused with its reason.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from invarlock.errors import ModelLoadError
from invarlock.network import hub_offline_unless_allowed, network_allowed, not_available_offline
from invarlock_hf.quantization import detect_quantization
from invarlock_hf.structure import MASKED_LM, SEQ2SEQ, as_transformers_config, role_from_config

FLOAT_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2}
_HEAD_CLASS = {MASKED_LM: "AutoModelForMaskedLM", SEQ2SEQ: "AutoModelForSeq2SeqLM"}


def read_config_json(model_id: str, options: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """(config.json as a dict, where it was read) from a local directory or the hub cache."""
    path = Path(model_id).expanduser()
    if path.is_dir():
        config_path = path / "config.json"
        if not config_path.is_file():
            raise ModelLoadError(f"{model_id} has no config.json; --config-only needs one")
        return _parse(config_path), str(config_path)
    from huggingface_hub import hf_hub_download, try_to_load_from_cache

    revision, cache_dir = options.get("revision"), options.get("cache_dir")
    with hub_offline_unless_allowed():
        cached = try_to_load_from_cache(model_id, "config.json", cache_dir=cache_dir, revision=revision)
        if isinstance(cached, str):
            return _parse(Path(cached)), cached
        if not network_allowed():
            raise not_available_offline(model_id)
        try:
            downloaded = hf_hub_download(model_id, "config.json", revision=revision, cache_dir=cache_dir)
        except Exception as exc:
            raise ModelLoadError(
                f"config.json of {model_id} could not be fetched ({type(exc).__name__}: {exc}); check the id"
            ) from exc
    return _parse(Path(downloaded)), downloaded


def _parse(path: Path) -> dict[str, Any]:
    """The checked config.json at ``path`` (a local file, or the hub cache's copy), through the one
    reader of config.json (:func:`invarlock_hf.checkpoint.read_config`)."""
    from invarlock_hf.checkpoint import read_config

    config = read_config(path.parent)
    if config is None:
        raise ModelLoadError(f"{path} is missing; --config-only needs a config.json")
    return config


def head_class(config_json: dict[str, Any]) -> str:
    """The transformers Auto class that builds the head the config names."""
    found = role_from_config(config_json)
    if found is not None and found[0] in _HEAD_CLASS:
        return _HEAD_CLASS[found[0]]
    model_type = config_json.get("model_type")
    from transformers.models.auto import modeling_auto

    causal_types = getattr(modeling_auto, "MODEL_FOR_CAUSAL_LM_MAPPING_NAMES", {})
    image_text = getattr(modeling_auto, "MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES", {})
    architectures = config_json.get("architectures") or []
    if model_type in image_text and (
        model_type not in causal_types or any(name in set(image_text.values()) for name in architectures)
    ):
        return "AutoModelForImageTextToText"
    return "AutoModelForCausalLM"


def describe_config(model_id: str, options: dict[str, Any]) -> dict[str, Any]:
    """The describe contract for the model ``model_id``'s config.json states, plus ``memory``."""
    from invarlock_hf.describe import describe_model, meta_model

    config_json, source = read_config_json(model_id, options)
    if config_json.get("auto_map") and not options.get("trust_remote_code"):
        raise ModelLoadError(
            f"{model_id} needs its own Python code (auto_map in config.json); pass --trust-remote-code "
            "if you trust it"
        )
    model_type = config_json.get("model_type")
    try:
        config = as_transformers_config(config_json)
        auto_class = head_class(config_json)
        stated = config_json.get("dtype") or config_json.get("torch_dtype")
        model = meta_model(config, auto_class, dtype=stated if stated in FLOAT_BYTES else None)
    except Exception as exc:
        raise ModelLoadError(
            f"transformers cannot build model_type {model_type!r} from {source} on the meta device "
            f"({type(exc).__name__}: {exc}); describe the loaded model instead (drop --config-only)"
        ) from exc
    description = describe_model(model)
    description["config_source"] = source
    description["memory"] = memory_estimate(model, config_json, description)
    return description


def memory_estimate(model: Any, config_json: dict[str, Any], description: dict[str, Any]) -> dict[str, Any]:
    """Bytes of the parameters per float dtype, and of the packed checkpoint for a quantization config."""
    n_params = description["n_params"]
    memory: dict[str, Any] = {
        "parameters": n_params,
        "bytes_per_dtype": {dtype: n_params * size for dtype, size in FLOAT_BYTES.items()},
        "packed": None,
    }
    quantization = detect_quantization(config_json)
    if quantization is not None:
        memory["packed"] = packed_size(model, config_json, quantization)
    return memory


def packed_size(model: Any, config_json: dict[str, Any], quantization: dict[str, Any]) -> dict[str, Any]:
    """The packed checkpoint's bytes: each quantized linear layer in its format's layout, the other
    tensors in the config's dtype; or ``{"method", "refused": why}``."""
    method = quantization["method"]
    settings = dict(config_json.get("quantization_config") or {})
    refused = {"method": method, "bytes": None}
    dtype = config_json.get("dtype") or config_json.get("torch_dtype")
    if method not in ("bitsandbytes", "gptq", "awq"):
        return {**refused, "refused": f"the packed layout of {method} is not known to invarlock-hf"}
    if dtype not in FLOAT_BYTES:
        return {**refused, "refused": "config.json states no float dtype for the tensors left unquantized"}
    linears, why = _quantized_linears(model, method, settings)
    if why:
        return {**refused, "refused": why}
    bits = int(quantization.get("bits") or 0)
    quantized_ids: set[int] = set()
    packed = 0
    for module, (in_features, out_features) in linears:
        size, why = _packed_linear(method, bits, settings, in_features, out_features)
        if why:
            return {**refused, "refused": why}
        packed += size
        quantized_ids.add(id(module.weight))
        bias = getattr(module, "bias", None)
        if bias is not None and method in ("gptq", "awq"):  # packed layers keep their bias in float16
            packed += 2 * bias.numel()
            quantized_ids.add(id(bias))
    rest = 0
    for parameter in {id(p): p for p in model.parameters()}.values():
        if id(parameter) not in quantized_ids:
            rest += parameter.numel() * FLOAT_BYTES[dtype]
    return {
        "method": method,
        "bits": bits,
        "bytes": packed + rest,
        "quantized_linears": len(linears),
        "unquantized_dtype": dtype,
    }


def _quantized_linears(
    model: Any, method: str, settings: dict[str, Any]
) -> tuple[list[tuple[Any, tuple[int, int]]], str | None]:
    """The linear layers the method packs: GPTQ and AWQ pack the language model's blocks,
    bitsandbytes every linear layer but the output head; each less the config's skip list."""
    from invarlock_hf.blocks import _has_3d, block_stacks, linear_shape, text_stacks

    skip = list(settings.get("modules_to_not_convert") or []) + list(
        settings.get("llm_int8_skip_modules") or []
    )
    if method == "bitsandbytes":
        output = model.get_output_embeddings()
        candidates = [(n, m) for n, m in model.named_modules() if m is not output]
    else:
        role = "seq2seq" if getattr(model.config, "is_encoder_decoder", False) else "causal"
        candidates = [
            (f"{path}.{name}" if name else path, m)
            for path, modules in text_stacks(block_stacks(model), role)
            for name, m in modules.named_modules()
        ]
    found = []
    for name, module in candidates:
        if _has_3d(module):
            return (
                [],
                f"{name} holds its experts as fused 3-D tensors; which of them {method} packs is not fixed",
            )
        shape = linear_shape(module)
        if shape is None or getattr(module, "weight", None) is None:
            continue
        if any(part in name.split(".") or name.endswith(part) for part in skip):
            continue
        found.append((module, shape))
    if not found:
        return [], f"no linear layer for {method} to pack was found"
    return found, None


def _packed_linear(
    method: str, bits: int, settings: dict[str, Any], in_features: int, out_features: int
) -> tuple[int, str | None]:
    """Bytes of one packed linear layer's weight and its quantization state (not its bias)."""
    if method == "bitsandbytes":
        weights = in_features * out_features
        if bits == 8:  # int8 weights and one float32 scale per output row
            return weights + 4 * out_features, None
        blocksize = 64
        blocks = math.ceil(weights / blocksize)
        if settings.get("bnb_4bit_use_double_quant"):  # absmax in uint8, its own absmax per 256 blocks
            absmax = blocks + 4 * math.ceil(blocks / 256) + 4
        else:
            absmax = 4 * blocks
        return math.ceil(weights / 2) + absmax, None
    if bits not in (2, 3, 4, 8):
        return 0, f"{method} with {bits} bits has no packed layout invarlock-hf knows"
    group = settings.get("group_size") or -1
    group = in_features if group == -1 else int(group)
    if (in_features * bits) % 32 or (out_features * bits) % 32:
        return 0, f"a {in_features}x{out_features} layer does not pack into 32-bit words at {bits} bits"
    groups = math.ceil(in_features / group)
    qweight = in_features * out_features * bits // 8
    qzeros = groups * out_features * bits // 8
    scales = groups * out_features * 2
    g_idx = in_features * 4 if method == "gptq" else 0
    return qweight + qzeros + scales + g_idx, None
