"""What a config says about a model's structure: layers, heads, MLP widths, experts, role.

This is the config-only part of the describe contract. Families invarlock-hf knows are read with
the rules their modelling code applies (GPT-2's ``n_inner=None`` means ``4 * n_embd``, Falcon's
multi-query attention has one KV head...). Any other architecture is read from the fields its
config states, marked ``architecture_known: False``, with the fields it could not find listed in
``not_in_config`` — never filled in by guessing.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

CAUSAL, MASKED_LM, SEQ2SEQ = "causal", "masked_lm", "seq2seq"


@dataclass
class Stack:
    """One stack of transformer blocks (a decoder-only model has one; T5 has two)."""

    layers: int
    heads: int
    kv_heads: int
    mlp_dim: int
    mlp_dims: list[int] | None = None
    """Per-layer widths when layers differ (dense and MoE layers mixed); else ``mlp_dim`` each."""

    def per_layer_mlp(self) -> list[int]:
        return self.mlp_dims if self.mlp_dims is not None else [self.mlp_dim] * self.layers


@dataclass
class FamilyStructure:
    decoder: Stack
    encoder: Stack | None = None
    moe: dict[str, Any] | None = None
    not_in_config: list[str] = field(default_factory=list)


# -- the families invarlock-hf knows -------------------------------------------------------------


def _mha(config: Any, mlp_dim: int) -> FamilyStructure:
    """One stack, as many KV heads as query heads."""
    heads = config.num_attention_heads
    return FamilyStructure(Stack(config.num_hidden_layers, heads, heads, mlp_dim))


def _gqa(config: Any) -> FamilyStructure:
    """One stack with grouped-query attention (``num_key_value_heads``, default: all heads)."""
    heads = config.num_attention_heads
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    return FamilyStructure(Stack(config.num_hidden_layers, heads, kv_heads, config.intermediate_size))


def _falcon(config: Any) -> FamilyStructure:
    heads = config.num_attention_heads
    if config.new_decoder_architecture:
        kv_heads = config.num_kv_heads
    elif config.multi_query:
        kv_heads = 1
    else:
        kv_heads = heads
    return FamilyStructure(Stack(config.num_hidden_layers, heads, kv_heads, config.ffn_hidden_size))


def _mixtral(config: Any) -> FamilyStructure:
    structure = _gqa(config)
    structure.moe = _moe_block(
        config.num_local_experts,
        config.num_experts_per_tok,
        config.intermediate_size,
        list(range(config.num_hidden_layers)),
    )
    return structure


def _qwen2_moe(config: Any) -> FamilyStructure:
    structure = _gqa(config)
    layers = config.num_hidden_layers
    # The rule of Qwen2MoeDecoderLayer: sparse unless listed as dense, every decoder_sparse_step-th layer.
    sparse = [
        i
        for i in range(layers)
        if i not in (config.mlp_only_layers or [])
        and config.num_experts > 0
        and (i + 1) % config.decoder_sparse_step == 0
    ]
    structure.decoder.mlp_dims = [
        config.moe_intermediate_size if i in sparse else config.intermediate_size for i in range(layers)
    ]
    if sparse:
        structure.moe = _moe_block(
            config.num_experts, config.num_experts_per_tok, config.moe_intermediate_size, sparse
        )
        structure.moe["shared_expert_mlp_dim"] = config.shared_expert_intermediate_size
    return structure


def _encoder(config: Any, mlp_dim: int | None = None) -> FamilyStructure:
    """A BERT-style encoder (also what those families are when loaded as a causal LM)."""
    return _mha(config, config.intermediate_size if mlp_dim is None else mlp_dim)


def _t5(config: Any) -> FamilyStructure:
    heads = config.num_heads
    decoder_layers = config.num_decoder_layers if config.num_decoder_layers is not None else config.num_layers
    return FamilyStructure(
        decoder=Stack(decoder_layers, heads, heads, config.d_ff),
        encoder=Stack(config.num_layers, heads, heads, config.d_ff),
    )


def _bart(config: Any) -> FamilyStructure:
    encoder_heads, decoder_heads = config.encoder_attention_heads, config.decoder_attention_heads
    return FamilyStructure(
        decoder=Stack(config.decoder_layers, decoder_heads, decoder_heads, config.decoder_ffn_dim),
        encoder=Stack(config.encoder_layers, encoder_heads, encoder_heads, config.encoder_ffn_dim),
    )


@dataclass(frozen=True)
class Family:
    role: str
    """The family's own role (a seq2seq family can also be loaded as a causal LM: its decoder)."""
    read: Callable[[Any], FamilyStructure]


def _gpt2_like(config: Any) -> FamilyStructure:
    return _mha(config, config.n_inner if config.n_inner is not None else 4 * config.n_embd)


FAMILIES: dict[str, Family] = {
    "gpt2": Family(CAUSAL, _gpt2_like),
    "gpt_neo": Family(CAUSAL, lambda c: _mha(c, c.intermediate_size or 4 * c.hidden_size)),
    "gptj": Family(CAUSAL, _gpt2_like),
    "gpt_neox": Family(CAUSAL, lambda c: _mha(c, c.intermediate_size)),
    "opt": Family(CAUSAL, lambda c: _mha(c, c.ffn_dim)),
    "bloom": Family(CAUSAL, lambda c: _mha(c, 4 * c.hidden_size)),  # BloomMLP is fixed at 4x
    "falcon": Family(CAUSAL, _falcon),
    **{
        name: Family(CAUSAL, _gqa)
        for name in ("llama", "mistral", "qwen2", "qwen3", "phi", "phi3", "gemma", "gemma2", "starcoder2")
    },
    "mixtral": Family(CAUSAL, _mixtral),
    "qwen2_moe": Family(CAUSAL, _qwen2_moe),
    **{
        name: Family(MASKED_LM, _encoder)
        for name in ("bert", "roberta", "xlm-roberta", "albert", "deberta-v2", "electra")
    },
    "distilbert": Family(MASKED_LM, lambda c: _encoder(c, c.hidden_dim)),
    "t5": Family(SEQ2SEQ, _t5),
    **{name: Family(SEQ2SEQ, _bart) for name in ("bart", "mbart", "pegasus", "marian")},
}
"""model_type → how to read its config. Keep in step with the families the tests build."""


# -- any other architecture: only what the config states -----------------------------------------

_LAYER_FIELDS = ("num_hidden_layers", "n_layer", "num_layers", "n_layers")
_HEAD_FIELDS = ("num_attention_heads", "n_head", "num_heads", "n_heads")
_KV_HEAD_FIELDS = ("num_key_value_heads", "num_kv_heads", "n_head_kv", "multi_query_group_num")
_MLP_FIELDS = ("intermediate_size", "ffn_dim", "ffn_hidden_size", "n_inner", "d_ff", "hidden_dim")


def config_field(config: Any, name: str) -> Any:
    """``config.name``, or None when it is absent, or refuses to be read as one value (transformers
    raises for fields that vary per layer)."""
    stored = vars(config) if hasattr(config, "__dict__") else {}
    if name in stored:  # the plain field: transformers' own attribute lookup is slow
        return stored[name]
    try:
        return getattr(config, name, None)
    except Exception:
        return None


def _stated(config: Any, names: tuple[str, ...]) -> int | None:
    for name in names:
        value = config_field(config, name)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return None


def _from_config_alone(config: Any) -> FamilyStructure:
    missing: list[str] = []

    def read(names: tuple[str, ...], key: str) -> int:
        value = _stated(config, names)
        if value is None:
            missing.append(key)  # left 0 and listed: a number the config does not state is not made up
            return 0
        return value

    heads = read(_HEAD_FIELDS, "heads_per_layer")
    kv_heads = read(_KV_HEAD_FIELDS, "kv_heads_per_layer")
    mlp_dim = read(_MLP_FIELDS, "mlp_dims")
    if getattr(config, "is_encoder_decoder", False):
        encoder_layers = read(("encoder_layers", "num_layers"), "encoder_layers")
        decoder_layers = read(("decoder_layers", "num_decoder_layers"), "decoder_layers")
        structure = FamilyStructure(
            decoder=Stack(decoder_layers, heads, kv_heads, mlp_dim),
            encoder=Stack(encoder_layers, heads, kv_heads, mlp_dim),
        )
    else:
        structure = FamilyStructure(Stack(read(_LAYER_FIELDS, "n_layer"), heads, kv_heads, mlp_dim))
    experts = _stated(config, ("num_local_experts", "num_experts", "n_routed_experts"))
    if experts:
        expert_mlp = _stated(config, ("moe_intermediate_size", "expert_intermediate_size")) or mlp_dim
        structure.moe = _moe_block(
            experts, _stated(config, ("num_experts_per_tok", "top_k")), expert_mlp, None
        )
    structure.not_in_config = missing
    return structure


# -- putting it together ---------------------------------------------------------------------------


def _moe_block(
    num_experts: int, experts_per_token: int | None, expert_mlp_dim: int, layers: list[int] | None
) -> dict[str, Any]:
    return {
        "num_experts": num_experts,
        "experts_per_token": experts_per_token,
        "expert_mlp_dim": expert_mlp_dim,
        "moe_layers": layers,
    }


def as_transformers_config(config: Any) -> Any:
    """A transformers config from a config object or a ``config.json`` dict."""
    if not isinstance(config, Mapping):
        return config
    from transformers import CONFIG_MAPPING, PretrainedConfig

    model_type = str(config.get("model_type"))
    # CONFIG_MAPPING is lazy: only [] imports the config class, .get() would not.
    config_class = CONFIG_MAPPING[model_type] if model_type in CONFIG_MAPPING else PretrainedConfig  # noqa: SIM401
    return config_class.from_dict(dict(config))


def config_structure(config: Any, role: str | None = None) -> dict[str, Any]:
    """The structural keys of the describe contract, read from ``config`` alone.

    :param config: a transformers config or a ``config.json`` dict.
    :param role: the role of the loaded head class when known (an encoder-decoder family loaded
        as a causal LM is only its decoder); by default, the family's own role.
    :returns: ``model_type``, ``role``, ``architecture_known``, ``n_layer``, ``heads_per_layer``,
        ``kv_heads_per_layer``, ``mlp_dims``, ``hidden_size``, ``vocab_size``, ``encoder_decoder``
        and ``moe``; for an unknown architecture also ``not_in_config`` (keys it had to leave 0).
    """
    config = as_transformers_config(config)
    model_type = str(getattr(config, "model_type", "") or "unknown")
    family = FAMILIES.get(model_type)
    structure = family.read(config) if family else _from_config_alone(config)
    if role is None and family is not None:
        role = family.role
    elif role is None:
        found = role_from_config(config)
        if found is None:
            structure.not_in_config.append("role")
        role = found[0] if found else CAUSAL  # transformers' default head; flagged in not_in_config
    stacks = [structure.decoder]
    if structure.encoder is not None and role == SEQ2SEQ:
        stacks.insert(0, structure.encoder)  # encoder blocks first, as the contract says
    heads = [stack.heads for stack in stacks for _ in range(stack.layers)]
    kv_heads = [stack.kv_heads for stack in stacks for _ in range(stack.layers)]
    _apply_pruned_heads(config, heads, kv_heads)
    result: dict[str, Any] = {
        "model_type": model_type,
        "role": role,
        "architecture_known": family is not None,
        "n_layer": len(heads),
        "heads_per_layer": heads,
        "kv_heads_per_layer": kv_heads,
        "mlp_dims": [width for stack in stacks for width in stack.per_layer_mlp()],
        "hidden_size": _stated(config, ("hidden_size", "d_model", "n_embd", "dim")) or 0,
        "vocab_size": _vocab_size(config),
        "encoder_decoder": (
            {"encoder_layers": stacks[0].layers, "decoder_layers": stacks[1].layers}
            if len(stacks) == 2
            else None
        ),
        "moe": structure.moe,
    }
    if family is None:
        result["not_in_config"] = structure.not_in_config
    return result


def _vocab_size(config: Any) -> int:
    # Marian's decoder may have its own vocabulary: the logits range over that one.
    return _stated(config, ("decoder_vocab_size", "vocab_size")) or 0


def _apply_pruned_heads(config: Any, heads: list[int], kv_heads: list[int]) -> None:
    """Heads removed by ``model.prune_heads`` (transformers 4.x) are recorded in the config per layer."""
    for layer, pruned in (getattr(config, "pruned_heads", None) or {}).items():
        index = int(layer)
        if 0 <= index < len(heads):
            removed = len(set(pruned))
            full_mha = heads[index] == kv_heads[index]
            heads[index] -= removed
            if full_mha:
                kv_heads[index] -= removed


# -- roles -------------------------------------------------------------------------------------------

_SUFFIX_ROLES = (("ForCausalLM", CAUSAL), ("LMHeadModel", CAUSAL), ("ForMaskedLM", MASKED_LM))


_AUTO_MAPPINGS = {
    # Image-text-to-text wrappers generate text causally: their language model is a causal LM.
    CAUSAL: ("MODEL_FOR_CAUSAL_LM_MAPPING_NAMES", "MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES"),
    MASKED_LM: ("MODEL_FOR_MASKED_LM_MAPPING_NAMES",),
    SEQ2SEQ: ("MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING_NAMES",),
}
"""Role → transformers' Auto mappings (model_type → head class names) for it."""


@functools.lru_cache(maxsize=1)
def _auto_mappings() -> dict[str, tuple[frozenset[str], frozenset[str]]]:
    """Role → (model types, head class names) that transformers' Auto class for the role knows."""
    from transformers.models.auto import modeling_auto

    found: dict[str, tuple[frozenset[str], frozenset[str]]] = {}
    for role, attributes in _AUTO_MAPPINGS.items():
        types: set[str] = set()
        classes: set[str] = set()
        for attribute in attributes:
            mapping = getattr(modeling_auto, attribute, {})
            types.update(mapping)
            classes.update(
                name for value in mapping.values() for name in ((value,) if isinstance(value, str) else value)
            )
        found[role] = (frozenset(types), frozenset(classes))
    return found


def role_of_class(class_name: str, *, is_encoder_decoder: bool = False) -> str | None:
    """The role a head class implements, from its name; None when it is not a language-model head.

    The usual suffixes decide first (so resolving need not import transformers); then the classes
    transformers' Auto mappings list for each role.
    """
    for suffix, role in _SUFFIX_ROLES:
        if class_name.endswith(suffix):
            return role
    if class_name.endswith("ForConditionalGeneration") and is_encoder_decoder:
        return SEQ2SEQ
    mappings = _auto_mappings()
    roles = [role for role in (SEQ2SEQ, MASKED_LM, CAUSAL) if class_name in mappings[role][1]]
    if SEQ2SEQ in roles and is_encoder_decoder:
        return SEQ2SEQ
    roles = [role for role in roles if role != SEQ2SEQ]
    return roles[0] if len(roles) == 1 else None


def role_from_config(config: Any) -> tuple[str, str] | None:
    """(role, reason) from a config's ``architectures``, ``is_encoder_decoder`` and ``model_type``.

    :param config: a transformers config or a ``config.json`` dict (read as is: no transformers import).
    """

    def field(name: str) -> Any:
        return config.get(name) if isinstance(config, Mapping) else getattr(config, name, None)

    encoder_decoder = bool(field("is_encoder_decoder"))
    for class_name in field("architectures") or []:
        role = role_of_class(class_name, is_encoder_decoder=encoder_decoder)
        if role is not None:
            return role, f"config.json architectures names {class_name}, a {_ROLE_WORDS[role]} head"
    model_type = field("model_type")
    if encoder_decoder:
        return SEQ2SEQ, f"config.json says is_encoder_decoder (model_type {model_type!r})"
    if not model_type:
        return None
    family = FAMILIES.get(model_type)
    if family is not None:
        return family.role, f"model_type {model_type!r} is a {_ROLE_WORDS[family.role]} family"
    mappings = _auto_mappings()
    causal, masked = model_type in mappings[CAUSAL][0], model_type in mappings[MASKED_LM][0]
    # Encoders such as BERT also have a causal head, used only when the config says is_decoder.
    if masked and not (causal and field("is_decoder")):
        return MASKED_LM, f"model_type {model_type!r} has a masked-LM head in transformers"
    if causal:
        return CAUSAL, f"model_type {model_type!r} has a causal-LM head in transformers"
    return None


_ROLE_WORDS = {CAUSAL: "causal-LM", MASKED_LM: "masked-LM", SEQ2SEQ: "sequence-to-sequence"}
