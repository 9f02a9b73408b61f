"""The describe contract: what every adapter's ``describe(model)`` returns, and its one validator.

A description is a plain JSON-serialisable dict so it can go into certificates unchanged.
Adapters may add keys of their own (``onnx``, ``newly_initialized``...); the keys below are
required and typed. Per-layer lists have one entry per transformer block; for encoder-decoder
models the encoder's blocks come first, then the decoder's, and ``encoder_decoder`` gives the split.

Optional ``vocab_growth`` (:class:`VocabGrowth`) declares a vocabulary grown on purpose from the
base's (an adapter that added tokens); it is checked whenever present.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Literal, TypedDict

from invarlock.errors import DescriptionError


class EncoderDecoderSplit(TypedDict):
    encoder_layers: int
    decoder_layers: int


class MoEDescription(TypedDict):
    num_experts: int
    experts_per_token: int | None
    expert_mlp_dim: int


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
PER_LAYER_KEYS = ("heads_per_layer", "kv_heads_per_layer", "mlp_dims")
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
    problems += vocab_growth_problems(description)
    try:
        json.dumps(description, allow_nan=False)
    except (TypeError, ValueError) as exc:  # certificates embed descriptions as they are
        problems.append(f"it is not JSON-serialisable ({exc})")
    return problems


def _is_count(value: Any) -> bool:
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


VOCAB_GROWTH_KEY = "vocab_growth"


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
