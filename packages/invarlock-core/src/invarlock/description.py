"""The describe contract: what every adapter's ``describe(model)`` returns, and its one validator.

A description is a plain JSON-serialisable dict so it can go into certificates unchanged.
Adapters may add keys of their own (``onnx``, ``newly_initialized``...); the keys below are
required and typed. Per-layer lists have one entry per transformer block; for encoder-decoder
models the encoder's blocks come first, then the decoder's, and ``encoder_decoder`` gives the split.

Optional keys (:data:`OPTIONAL_KEYS`) are checked whenever they are present: per-layer
``layer_types`` and ``moe_per_layer``, ``towers`` for the other towers of a multimodal model,
``n_params_scope``, ``unresolved`` (each field an adapter could not derive, and why) and
``vocab_growth`` (:class:`VocabGrowth`: a vocabulary grown on purpose from the base's, by an
adapter that added tokens).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Literal, TypedDict, TypeGuard

from invarlock.errors import DescriptionError


class EncoderDecoderSplit(TypedDict):
    encoder_layers: int
    decoder_layers: int


class MoEDescription(TypedDict):
    num_experts: int
    experts_per_token: int | None
    expert_mlp_dim: int


class MoELayer(TypedDict):
    """One MoE layer of ``moe_per_layer`` (dense layers are None there)."""

    num_experts: int
    experts_per_token: int | None
    """None when neither the router nor the config says how many experts a token goes to."""
    expert_mlp_dim: int
    shared_expert_mlp_dim: int | None
    """The width of the always-active shared expert(s) added to the routed ones; None when there is none."""


class TowerSummary(TypedDict):
    """A non-language tower of a multimodal model (vision, audio...)."""

    n_layer: int
    hidden_size: int
    n_params: int


class Unresolved(TypedDict):
    """A field the adapter could not derive, or where the model's modules and its config disagree."""

    field: str
    layers: list[int] | None
    """The layers concerned; None when the field is not per layer."""
    why: str


class ModelDescription(TypedDict):
    model_type: str
    """The architecture id from the config (``llama``, ``bert``...)."""
    model_class: str
    """The Python class of the loaded model."""
    role: Literal["causal", "masked_lm", "seq2seq"]
    architecture_known: bool
    """False when the adapter did not recognise the architecture and read only what the config states."""
    n_layer: int
    heads_per_layer: list[int]
    kv_heads_per_layer: list[int]
    mlp_dims: list[int]
    """Intermediate (feed-forward) width per layer; for MoE layers, the width of one expert."""
    hidden_size: int
    vocab_size: int
    n_params: int
    dtype: str
    """The dtype of most parameters (``float32``, ``int8``...)."""
    device: str
    """The device of the input embeddings (``cpu``, ``cuda:0``...)."""
    device_map: dict[str, str] | None
    """Module → device when the model was dispatched by accelerate, else None."""
    tying: dict[str, str]
    """Tensor name → the name it shares storage with, for every tied pair."""
    encoder_decoder: EncoderDecoderSplit | None
    moe: MoEDescription | None
    quantization: dict[str, Any] | None
    """None for full-precision models; otherwise at least ``{"method": ...}``."""


class ModelDescriptionOptional(TypedDict, total=False):
    """Keys a description may carry; the validator checks each one that is present."""

    layer_types: list[str]
    """Per layer, one of :data:`LAYER_TYPES`: what mixes the tokens in that block."""
    moe_per_layer: list[MoELayer | None]
    """Per layer, its mixture of experts, or None for a dense layer."""
    towers: dict[str, TowerSummary]
    """Multimodal models: the towers other than the language model the required keys describe."""
    n_params_scope: str
    """What ``n_params`` counts, in words (the whole model, all towers, tied tensors once...)."""
    unresolved: list[Unresolved]
    """Every field the adapter could not derive, or derived two ways that disagree: its value is 0
    (``unknown`` for a layer type), or, where ``why`` says so, what the config states, unverified."""


_ROLES = ("causal", "masked_lm", "seq2seq")
_OPTIONAL_DICT = (dict, type(None))

_TYPES: dict[str, type | tuple[type, ...]] = {
    "model_type": str,
    "model_class": str,
    "role": str,
    "architecture_known": bool,
    "n_layer": int,
    "heads_per_layer": list,
    "kv_heads_per_layer": list,
    "mlp_dims": list,
    "hidden_size": int,
    "vocab_size": int,
    "n_params": int,
    "dtype": str,
    "device": str,
    "device_map": _OPTIONAL_DICT,
    "tying": dict,
    "encoder_decoder": _OPTIONAL_DICT,
    "moe": _OPTIONAL_DICT,
    "quantization": _OPTIONAL_DICT,
}

REQUIRED_KEYS: tuple[str, ...] = tuple(_TYPES)
OPTIONAL_KEYS: tuple[str, ...] = (
    "layer_types",
    "moe_per_layer",
    "towers",
    "n_params_scope",
    "unresolved",
    "vocab_growth",
)
PER_LAYER_KEYS = ("heads_per_layer", "kv_heads_per_layer", "mlp_dims")
LAYER_TYPES = (
    "full_attention",
    "sliding_attention",
    "chunked_attention",
    "linear_attention",
    "mamba",
    "ssm",
    "none",
    "unknown",
)
"""Values of ``layer_types``: softmax attention over the whole context, a sliding window, or
chunks; linear attention (gated delta nets, RWKV time mixing...); a Mamba or other state-space
mixer; ``none`` when the block mixes no tokens (an MLP-only block); ``unknown`` when the adapter
could not tell (listed in ``unresolved``)."""
SOFTMAX_ATTENTION_TYPES = ("full_attention", "sliding_attention", "chunked_attention")
"""Layer types whose blocks have query and KV heads; every other type has 0 of both."""
STRUCTURAL_KEYS = (
    "model_type",
    "role",
    "n_layer",
    "heads_per_layer",
    "kv_heads_per_layer",
    "mlp_dims",
    "hidden_size",
    "vocab_size",
    "encoder_decoder",
    "moe",
    "layer_types",
    "moe_per_layer",
)
"""Keys two descriptions of one architecture must agree on, whatever the dtype or quantization."""


def description_problems(description: Mapping[str, Any]) -> list[str]:
    """Every way ``description`` breaks the contract, as short phrases (empty when valid)."""
    if not isinstance(description, Mapping):
        return [f"it is a {type(description).__name__}, not a dict"]
    problems: list[str] = []
    for key, expected in _TYPES.items():
        if key not in description:
            problems.append(f"missing key {key!r}")
            continue
        value = description[key]
        # bool is an int subclass; a count must not be True/False.
        wrong_bool = isinstance(value, bool) and expected is int
        if wrong_bool or not isinstance(value, expected):
            problems.append(f"{key!r} is {type(value).__name__}, expected {_type_name(expected)}")
    if problems:
        return problems

    if description["role"] not in _ROLES:
        problems.append(f"'role' is {description['role']!r}, expected one of {', '.join(_ROLES)}")
    n_layer = description["n_layer"]
    if n_layer < 0:
        problems.append("'n_layer' is negative")
    for key in PER_LAYER_KEYS:
        values = description[key]
        if len(values) != n_layer:
            problems.append(f"{key!r} has {len(values)} entries for {n_layer} layers")
        if not all(_is_count(v) for v in values):
            problems.append(f"{key!r} must hold non-negative ints")
    for key in ("hidden_size", "vocab_size", "n_params"):
        if description[key] < 0:
            problems.append(f"{key!r} is negative")
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in description["tying"].items()):
        problems.append("'tying' must map tensor names to tensor names")
    split = description["encoder_decoder"]
    if split is not None:
        layers = (split.get("encoder_layers"), split.get("decoder_layers"))
        if not all(_is_count(v) for v in layers):
            problems.append("'encoder_decoder' needs int 'encoder_layers' and 'decoder_layers'")
        elif sum(layers) != n_layer:  # type: ignore[arg-type]
            problems.append("'encoder_decoder' layers do not add up to 'n_layer'")
    moe = description["moe"]
    if moe is not None and not (
        _is_count(moe.get("num_experts"))
        and _is_count(moe.get("expert_mlp_dim"))
        and "experts_per_token" in moe
        and (moe["experts_per_token"] is None or _is_count(moe["experts_per_token"]))
    ):
        problems.append("'moe' needs int 'num_experts', 'experts_per_token' (or None) and 'expert_mlp_dim'")
    quantization = description["quantization"]
    if quantization is not None and not isinstance(quantization.get("method"), str):
        problems.append("'quantization' needs a string 'method'")
    problems.extend(_optional_key_problems(description))
    problems += vocab_growth_problems(description)
    try:
        json.dumps(description, allow_nan=False)
    except (TypeError, ValueError) as exc:  # certificates embed descriptions as they are
        problems.append(f"it is not JSON-serialisable ({exc})")
    return problems


def _optional_key_problems(description: Mapping[str, Any]) -> list[str]:
    problems: list[str] = []
    n_layer = description["n_layer"]
    layer_types = description.get("layer_types")
    if layer_types is not None:
        if not isinstance(layer_types, list) or len(layer_types) != n_layer:
            problems.append(f"'layer_types' must be a list with one entry for each of the {n_layer} layers")
        else:
            unknown = sorted({str(t) for t in layer_types if t not in LAYER_TYPES})
            if unknown:
                problems.append(
                    f"'layer_types' holds {', '.join(unknown)}, expected one of {', '.join(LAYER_TYPES)}"
                )
            with_heads = [
                i
                for i, kind in enumerate(layer_types)
                if kind in LAYER_TYPES
                and kind not in (*SOFTMAX_ATTENTION_TYPES, "unknown")
                and (
                    description["heads_per_layer"][i : i + 1] != [0]
                    or description["kv_heads_per_layer"][i : i + 1] != [0]
                )
            ]
            if with_heads:
                problems.append(f"layers {_ranges(with_heads)} have no softmax attention but non-zero heads")
    moe_per_layer = description.get("moe_per_layer")
    if moe_per_layer is not None:
        if not isinstance(moe_per_layer, list) or len(moe_per_layer) != n_layer:
            problems.append(f"'moe_per_layer' must be a list with one entry for each of the {n_layer} layers")
        elif not all(layer is None or _is_moe_layer(layer) for layer in moe_per_layer):
            problems.append(
                "'moe_per_layer' entries must be None or hold int 'num_experts', 'expert_mlp_dim', "
                "'experts_per_token' (or None) and 'shared_expert_mlp_dim' (or None)"
            )
        elif any(layer is not None for layer in moe_per_layer) and description["moe"] is None:
            problems.append("'moe_per_layer' has MoE layers but 'moe' is None")
    towers = description.get("towers")
    if towers is not None and not (
        isinstance(towers, dict)
        and all(
            isinstance(tower, dict)
            and all(_is_count(tower.get(k)) for k in ("n_layer", "hidden_size", "n_params"))
            for tower in towers.values()
        )
    ):
        problems.append("'towers' must map tower names to int 'n_layer', 'hidden_size' and 'n_params'")
    scope = description.get("n_params_scope")
    if scope is not None and not (isinstance(scope, str) and scope):
        problems.append("'n_params_scope' must be a non-empty string")
    unresolved = description.get("unresolved")
    if unresolved is not None and not (
        isinstance(unresolved, list)
        and all(
            isinstance(entry, dict)
            and isinstance(entry.get("field"), str)
            and isinstance(entry.get("why"), str)
            and entry.get("why")
            and (
                entry.get("layers") is None
                or (isinstance(entry["layers"], list) and all(_is_count(i) for i in entry["layers"]))
            )
            for entry in unresolved
        )
    ):
        problems.append(
            "'unresolved' entries need a string 'field', 'layers' (ints or None) and a string 'why'"
        )
    return problems


def _is_moe_layer(layer: Any) -> bool:
    return (
        isinstance(layer, dict)
        and _is_count(layer.get("num_experts"))
        and _is_count(layer.get("expert_mlp_dim"))
        and "experts_per_token" in layer
        and (layer["experts_per_token"] is None or _is_count(layer["experts_per_token"]))
        and "shared_expert_mlp_dim" in layer
        and (layer["shared_expert_mlp_dim"] is None or _is_count(layer["shared_expert_mlp_dim"]))
    )


def _ranges(indices: list[int]) -> str:
    """``[0, 1, 2, 5]`` → ``"0-2, 5"``."""
    runs: list[list[int]] = []
    for index in indices:
        if runs and index == runs[-1][1] + 1:
            runs[-1][1] = index
        else:
            runs.append([index, index])
    return ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in runs)


def _is_count(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def validate_description(description: Mapping[str, Any], *, adapter: str = "adapter") -> ModelDescription:
    """Return ``description`` typed as :class:`ModelDescription`, or raise :class:`DescriptionError`."""
    problems = description_problems(description)
    if problems:
        raise DescriptionError(
            f"{adapter} returned a description that breaks the describe contract "
            f"({'; '.join(problems)}); fix the adapter's invarlock_describe hook."
        )
    return description  # type: ignore[return-value]


def _type_name(expected: type | tuple[type, ...]) -> str:
    if isinstance(expected, tuple):
        return " or ".join("None" if t is type(None) else t.__name__ for t in expected)
    return expected.__name__


# -- optional: a vocabulary grown on purpose -------------------------------------------------------


class VocabGrowth(TypedDict):
    """The optional ``vocab_growth`` key: the model's vocabulary was grown from its base's on purpose
    (a fine-tune that added tokens). Certify's structure invariant accepts exactly this growth."""

    base_vocab_size: int
    vocab_size: int
    """Equal to the description's ``vocab_size``."""
    added_tokens: list[str] | None
    """The tokens added, in id order; None when the adapter cannot name them."""


VOCAB_GROWTH_KEY = OPTIONAL_KEYS[-1]


def vocab_growth_problems(description: Mapping[str, Any]) -> list[str]:
    """How an optional ``vocab_growth`` block breaks the contract (empty when absent or valid)."""
    growth = description.get(VOCAB_GROWTH_KEY)
    if growth is None:
        return []
    if not isinstance(growth, Mapping):
        return [f"'vocab_growth' is {type(growth).__name__}, expected dict"]
    base, grown, tokens = growth.get("base_vocab_size"), growth.get("vocab_size"), growth.get("added_tokens")
    if not (isinstance(base, int) and isinstance(grown, int) and _is_count(base) and _is_count(grown)):
        return ["'vocab_growth' needs int 'base_vocab_size' below int 'vocab_size'"]
    if grown <= base:
        return ["'vocab_growth' needs int 'base_vocab_size' below int 'vocab_size'"]
    problems = []
    if grown != description.get("vocab_size"):
        problems.append(
            f"'vocab_growth' grows to {grown} tokens but 'vocab_size' is {description.get('vocab_size')}"
        )
    if tokens is not None and not (
        isinstance(tokens, list) and all(isinstance(t, str) for t in tokens) and len(tokens) <= grown - base
    ):
        problems.append(
            "'vocab_growth' 'added_tokens' must be None or at most vocab_size - base_vocab_size strings"
        )
    return problems
