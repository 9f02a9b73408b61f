"""Structure read from a model's modules: per block, what mixes tokens, how many heads, how wide the MLP.

Works on the meta device (only shapes and module attributes are read, never values). Each block's
attention projections give its query and KV heads (separate, fused qkv, or MLA's low-rank
projections), its MLP's projection back to the hidden size gives the width (GLU and fused
gate_up alike), an ``experts`` module and its router give the experts and top-k, and the kind of
mixer gives the layer type. What cannot be read is reported in ``unresolved`` with the reason, and
its number left 0: nothing here is filled in by guessing.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from invarlock_hf.structure import config_field

SOFTMAX_TYPES = ("full_attention", "sliding_attention", "chunked_attention")

_ATTENTION_CLASS = re.compile(r"attention|attn", re.IGNORECASE)
_CROSS_NAME = re.compile(r"cross|encoder_attn|encdec|src_attn", re.IGNORECASE)
_LINEAR_MIXER_CLASS = re.compile(
    r"LinearAttention|DeltaNet|GatedDelta|Lightning|Retention|RwkvSelfAttention|TimeMix", re.IGNORECASE
)
_OTHER_TOWER = re.compile(
    r"vision|visual|image|video|audio|speech|vit$|siglip|clip|patch|projector|multi_modal|mm_|resampler|perceiver",
    re.IGNORECASE,
)

_Q = {"q_proj", "query", "q", "q_lin", "wq", "query_proj", "to_q", "q_b_proj"}
_K = {"k_proj", "key", "k", "k_lin", "wk", "key_proj", "to_k"}
_FUSED_QKV = {"qkv_proj", "query_key_value", "c_attn", "wqkv", "w_pack", "qkv", "in_proj", "qkv_linear"}
_OUT = {"o_proj", "out_proj", "dense", "o", "c_proj", "out_lin", "wo", "proj", "to_out", "output"}
_HEAD_DIM_ATTRS = ("head_dim", "head_size", "attention_head_size", "key_value_proj_dim", "d_head", "dim_head")
_HEADS_ATTRS = ("num_heads", "num_attention_heads", "n_heads", "n_head")
_KV_HEADS_ATTRS = ("num_key_value_heads", "num_kv_heads", "n_kv_heads", "n_head_kv")
_TOP_K_ATTRS = ("top_k", "num_experts_per_tok", "experts_per_token", "k")
_SHARED_EXPERT = {"shared_expert", "shared_experts", "shared_mlp", "shared_experts_mlp"}
_ROUTER = {"gate", "router", "routing", "wg", "gate_network"}


@dataclass
class Block:
    """What one transformer block's modules say."""

    layer_type: str = "unknown"
    layer_type_stated: bool = False
    """True when a module names the softmax attention type itself (not only a window size)."""
    heads: int = 0
    kv_heads: int = 0
    mlp_dim: int = 0
    moe: dict[str, Any] | None = None
    problems: dict[str, str] = field(default_factory=dict)
    """Field → why it could not be read from this block (its value is left 0)."""


@dataclass
class Stack:
    path: str
    blocks: list[Block]
    modules: list[Any]


# -- small readers -----------------------------------------------------------------------------------


def linear_shape(module: Any) -> tuple[int, int] | None:
    """(in, out) of a Linear-like module: torch Linear (and bitsandbytes / packed subclasses with
    ``in_features``), transformers' Conv1D (``nx``, ``nf``); None for anything else."""
    attributes = vars(module)  # plain attributes only: nn.Module.__getattr__ is slow on a miss
    for names in (("in_features", "out_features"), ("nx", "nf")):
        a, b = attributes.get(names[0]), attributes.get(names[1])
        if isinstance(a, int) and isinstance(b, int) and not isinstance(a, bool):
            return a, b
    return None


def _attr(module: Any, names: tuple[str, ...]) -> int | None:
    attributes = vars(module)
    for name in names:
        value = attributes.get(name)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


def _attr_in_tree(modules: list[Any], names: tuple[str, ...]) -> int | None:
    """The first of ``names`` set on any of ``modules`` (a module and its descendants, in order)."""
    for sub in modules:
        value = _attr(sub, names)
        if value is not None:
            return value
    return None


def _leaf(name: str) -> str:
    return name.rsplit(".", 1)[-1].lower()


def _is_within(name: str, roots: list[str]) -> bool:
    return any(name == root or name.startswith(root + ".") for root in roots)


def _has_linear(module: Any) -> bool:
    return any(linear_shape(m) is not None or _has_3d(m) for m in module.modules())


def _has_3d(module: Any) -> bool:
    """Holds fused expert weights (experts x out x in) as its own parameters."""
    return any(p is not None and p.dim() == 3 for p in module._parameters.values())


# -- stacks -----------------------------------------------------------------------------------------


def block_stacks(model: Any) -> list[tuple[str, Any]]:
    """Every ``ModuleList`` of blocks, outermost only, in module order: (path, list).

    A block list holds modules with linear layers of their own; lists inside a block (experts,
    T5's sub-layers) are part of that block.
    """
    import torch

    found: list[tuple[str, Any]] = []
    seen: set[int] = set()

    def walk(prefix: str, module: Any) -> None:
        if id(module) in seen:
            return
        seen.add(id(module))
        if (
            isinstance(module, torch.nn.ModuleList)
            and len(module)
            and all(linear_shape(m) is None and _has_linear(m) for m in module)
        ):
            found.append((prefix, module))
            return  # what is inside a block belongs to the block
        for name, child in module._modules.items():
            if child is not None:
                walk(f"{prefix}.{name}" if prefix else name, child)

    walk("", model)
    return found


def _block_entries(block: Any) -> list[tuple[str, Any]]:
    """``block.named_modules()``, with only the first of each list of experts: experts are alike,
    and transformers 4.x keeps hundreds of them per block as separate modules."""
    import torch

    entries: list[tuple[str, Any]] = []

    def walk(prefix: str, module: Any) -> None:
        entries.append((prefix, module))
        children = list(module._modules.items())
        if isinstance(module, torch.nn.ModuleList) and prefix and _leaf(prefix) == "experts":
            children = children[:1]
        for name, child in children:
            if child is not None:
                walk(f"{prefix}.{name}" if prefix else name, child)

    walk("", block)
    return entries


def is_other_tower(path: str, modules: Any = None) -> str | None:
    """The tower's name when the block list at ``path`` is a vision / audio tower (by its path,
    or by its blocks' class name), else None."""
    parts = path.split(".")
    for part in parts:
        if _OTHER_TOWER.search(part):
            return part
    if modules is not None and len(modules) and _OTHER_TOWER.search(type(modules[0]).__name__):
        return parts[-2] if len(parts) > 1 else parts[-1]
    return None


# -- one block ---------------------------------------------------------------------------------------


def _attention_roots(entries: list[tuple[str, Any]]) -> tuple[list[str], list[str]]:
    """(self-attention, cross-attention) module names among a block's ``named_modules``, outermost."""
    own: list[str] = []
    cross: list[str] = []
    for name, module in entries:
        if not name or _is_within(name, own + cross):
            continue
        cls = type(module).__name__
        if _LINEAR_MIXER_CLASS.search(cls):
            continue
        if _ATTENTION_CLASS.search(cls) and _has_linear(module):
            if (
                _CROSS_NAME.search(name)
                or _CROSS_NAME.search(cls)
                or vars(module).get("is_cross_attention") is True
            ):
                cross.append(name)
            else:
                own.append(name)
    return own, cross


def _mixer_roots(entries: list[tuple[str, Any]]) -> list[tuple[str, str]]:
    """(name, layer type) of non-softmax token mixers: Mamba / SSM mixers and linear attention."""
    found: list[tuple[str, str]] = []
    for name, module in entries:
        if not name or _is_within(name, [n for n, _ in found]):
            continue
        cls = type(module).__name__
        if _LINEAR_MIXER_CLASS.search(cls):
            found.append((name, "linear_attention"))
        elif "A_log" in module._parameters:  # the state-space decay every Mamba / S6-style mixer owns
            found.append((name, "mamba" if "mamba" in cls.lower() or "mamba" in name.lower() else "ssm"))
    return found


def read_attention(attention: Any, config_heads: int | None) -> tuple[int, int, str | None]:
    """(query heads, KV heads, problem) of one attention module from its projection shapes."""
    by_leaf: dict[str, tuple[int, int]] = {}
    tree = []
    for name, module in attention.named_modules():
        tree.append(module)
        shape = linear_shape(module)
        if shape is not None:
            by_leaf.setdefault(_leaf(name), shape)
    head_dim = _attr_in_tree(tree, _HEAD_DIM_ATTRS)
    heads_attr = _attr_in_tree(tree, _HEADS_ATTRS)
    kv_attr = _attr_in_tree(tree, _KV_HEADS_ATTRS)

    if "kv_b_proj" in by_leaf:  # multi-head latent attention (DeepSeek V2/V3): per-head K/V decompressed
        qk_head = _attr_in_tree(tree, ("qk_head_dim",))
        v_head = _attr_in_tree(tree, ("v_head_dim",))
        nope = _attr_in_tree(tree, ("qk_nope_head_dim",))
        q = by_leaf.get("q_b_proj") or by_leaf.get("q_proj")
        if not (qk_head and v_head and nope and q):
            return 0, 0, "the latent-attention module lacks qk_head_dim, v_head_dim or a query projection"
        heads, rest = divmod(q[1], qk_head)
        if rest or by_leaf["kv_b_proj"][1] != heads * (nope + v_head):
            return 0, 0, "the latent-attention projections do not divide into whole heads"
        return heads, heads, None

    out = next((by_leaf[n] for n in _OUT if n in by_leaf), None)
    q = next((by_leaf[n] for n in _Q if n in by_leaf), None)
    k = next((by_leaf[n] for n in _K if n in by_leaf), None)
    fused = next((by_leaf[n] for n in _FUSED_QKV if n in by_leaf), None)
    in_proj = attention._parameters.get("in_proj_weight")
    if fused is None and q is None and in_proj is not None:  # torch.nn.MultiheadAttention
        fused = (int(in_proj.shape[1]), int(in_proj.shape[0]))
    if head_dim is None:
        heads_known = heads_attr or config_heads
        widths = out[0] if out else (q[1] if q else None)
        if heads_known and widths and widths % heads_known == 0:
            head_dim = widths // heads_known
    if head_dim is None:
        return 0, 0, "no head size on the attention module, and no head count to divide its width by"
    # Query heads from the output projection (heads x head_dim in): right for gated attention too,
    # whose query projection also carries the gate.
    if out is not None and out[0] % head_dim == 0:
        heads = out[0] // head_dim
    elif q is not None and q[1] % head_dim == 0:
        heads = q[1] // head_dim
    elif heads_attr:
        heads = heads_attr
    else:
        return 0, 0, "neither the output nor the query projection divides into whole heads"
    if q is not None and q[1] not in (heads * head_dim, 2 * heads * head_dim):
        return 0, 0, f"the query projection ({q[1]}) is not {heads} heads of {head_dim}"
    if k is not None:
        kv, rest = divmod(k[1], head_dim)
        if rest:
            return 0, 0, f"the key projection ({k[1]}) does not divide into heads of {head_dim}"
    elif fused is not None:
        kv, rest = divmod(fused[1] // head_dim - heads, 2) if fused[1] % head_dim == 0 else (0, 1)
        if rest or kv <= 0:
            return (
                0,
                0,
                f"the fused qkv projection ({fused[1]}) does not split into {heads} query heads "
                f"and KV heads of {head_dim}",
            )
    else:
        return 0, 0, "no key or fused qkv projection was recognised"
    if kv_attr is not None and kv_attr != kv:
        return 0, 0, f"the key projection gives {kv} KV heads, the module says {kv_attr}"
    if heads_attr is not None and heads_attr != heads:
        return 0, 0, f"the projections give {heads} query heads, the module says {heads_attr}"
    return heads, kv, None


def mlp_width(
    module: Any, hidden: int, skip: list[str], entries: list[tuple[str, Any]] | None = None
) -> tuple[int | None, str | None]:
    """The width of the MLP projections inside ``module`` that project back to ``hidden``.

    :returns: (width, None); (None, None) when there is no such projection at all; (None, why)
        when the projections disagree.
    """
    widths = set()
    for name, sub in entries if entries is not None else module.named_modules():
        if _is_within(name, skip):
            continue
        shape = linear_shape(sub)
        if shape is not None and shape[1] == hidden and not (name and _leaf(name) in _ROUTER):
            widths.add(shape[0])
    if not widths:
        return None, None
    if len(widths) > 1:
        widths.discard(hidden)  # a square gate beside the MLP (RWKV's receptance) is not its width
    if len(widths) > 1:
        return None, f"projections back to the hidden size have different widths ({sorted(widths)})"
    return widths.pop(), None


def _experts(entries: list[tuple[str, Any]]) -> list[tuple[str, Any]]:
    import torch

    return [
        (name, module)
        for name, module in entries
        if name
        and (_leaf(name) == "experts" or type(module).__name__.endswith("Experts"))
        and (isinstance(module, torch.nn.ModuleList) or _has_3d(module))
    ]


def read_moe(
    block: Any, name: str, experts: Any, hidden: int, config_top_k: int | None
) -> tuple[dict[str, Any] | None, str | None]:
    import torch

    parent_name = name.rsplit(".", 1)[0] if "." in name else ""
    parent = block.get_submodule(parent_name) if parent_name else block
    if isinstance(experts, torch.nn.ModuleList):
        count = len(experts)
        width, problem = mlp_width(experts[0], hidden, [])
        if width is None:
            return None, problem or "the first expert has no projection back to the hidden size"
    else:
        count = _attr(experts, ("num_experts",)) or 0
        down = next((p for n, p in experts.named_parameters() if "down" in n and p.dim() == 3), None)
        if down is None:
            three = [p for p in experts.parameters() if p.dim() == 3]
            down = three[-1] if three else None
        if down is None:
            return None, "the experts module has no 3-D down projection"
        count = count or int(down.shape[0])
        if int(down.shape[0]) != count:
            return None, f"the experts module says {count} experts, its weights hold {int(down.shape[0])}"
        a, b = int(down.shape[1]), int(down.shape[2])
        if hidden not in (a, b):
            return None, f"the experts' down projection {tuple(down.shape)} does not project to {hidden}"
        width = b if a == hidden else a
    top_k = _attr(parent, _TOP_K_ATTRS)
    for child_name, child in parent.named_children():
        if top_k is None and child_name.lower() in _ROUTER:
            top_k = _attr(child, _TOP_K_ATTRS)
    top_k = top_k or config_top_k
    shared = None
    for child_name, child in parent.named_children():
        if child_name.lower() in _SHARED_EXPERT:
            shared, problem = mlp_width(child, hidden, [])
            if shared is None:
                return None, problem or f"the shared expert {child_name} has no projection to the hidden size"
    return {
        "num_experts": count,
        "experts_per_token": top_k,
        "expert_mlp_dim": width,
        "shared_expert_mlp_dim": shared,
    }, None


def read_block(block: Any, hidden: int, config_heads: int | None, config_top_k: int | None) -> Block:
    found = Block()
    entries = _block_entries(block)
    own, cross = _attention_roots(entries)
    mixers = _mixer_roots(entries)
    own = [n for n in own if not _is_within(n, [m for m, _ in mixers])]
    if own:
        heads = kv = 0
        for name in own:
            h, k, problem = read_attention(block.get_submodule(name), config_heads)
            if problem:
                found.problems["heads_per_layer"] = f"{name}: {problem}"
                heads = kv = 0
                break
            heads, kv = heads + h, kv + k
        found.heads, found.kv_heads = heads, kv
        found.layer_type, found.layer_type_stated = _softmax_type(block, own)
    elif mixers:
        found.layer_type = mixers[0][1]
    else:
        found.problems["layer_types"] = "no attention or other token mixer was recognised in the block"
    skip = own + cross + [m for m, _ in mixers]
    experts = _experts(entries)
    if experts:
        name, module = experts[0]
        moe, problem = read_moe(block, name, module, hidden, config_top_k)
        if problem:
            found.problems["mlp_dims"] = problem
        else:
            found.moe = moe
            found.mlp_dim = moe["expert_mlp_dim"]  # type: ignore[index]
        return found
    width, problem = mlp_width(block, hidden, skip, entries)
    if problem:
        found.problems["mlp_dims"] = problem
    elif width is not None:
        found.mlp_dim = width
    return found


def _softmax_type(block: Any, attention_names: list[str]) -> tuple[str, bool]:
    """(full / sliding / chunked, stated) from the block's and its attention's own attributes.

    ``stated`` is True when a module names its type (``layer_type``, ``attention_type``,
    ``is_sliding``); a bare ``sliding_window`` attribute only hints, since some attention classes
    keep the window on every layer and apply it by the config's ``layer_types``. ("", False)
    when the modules say nothing.
    """
    modules = (block, *(block.get_submodule(n) for n in attention_names))
    for module in modules:
        attributes = vars(module)
        for attribute in ("layer_type", "attention_type"):
            value = attributes.get(attribute)
            if value in SOFTMAX_TYPES:
                return str(value), True
            if value == "local":
                return "sliding_attention", True
            if value == "global":
                return "full_attention", True
        if isinstance(attributes.get("is_sliding"), bool):
            return ("sliding_attention" if attributes["is_sliding"] else "full_attention"), True
        local = attributes.get("local_attention")  # ModernBERT under transformers 4.x: (-1, -1) is global
        if isinstance(local, tuple) and len(local) == 2 and all(isinstance(v, int) for v in local):
            return ("sliding_attention" if min(local) >= 0 else "full_attention"), True
    for module in modules:
        window = vars(module).get("sliding_window")
        if isinstance(window, int) and not isinstance(window, bool) and window > 0:
            return "sliding_attention", False
    return "", False


def read_stack(
    path: str, modules: Any, hidden: int, config_heads: int | None, config_top_k: int | None
) -> Stack:
    return Stack(path, [read_block(m, hidden, config_heads, config_top_k) for m in modules], list(modules))


def iter_layers(stacks: list[Stack]) -> Iterator[Block]:
    for stack in stacks:
        yield from stack.blocks


# -- the whole model, cross-checked with the config ------------------------------------------------------

_SLIDING_EVERY_LAYER = frozenset({"mistral", "mixtral", "starcoder2"})
"""Families whose modelling code applies ``config.sliding_window`` to every layer."""
_HIDDEN_FIELDS = ("hidden_size", "d_model", "n_embd", "dim", "embed_dim")
_TOP_K_FIELDS = ("num_experts_per_tok", "moe_top_k", "top_k", "num_experts_per_token")


def language_config(config: Any) -> Any:
    """The config of the language model: ``text_config`` of a multimodal wrapper, else ``config``."""
    text_config = getattr(config, "text_config", None)
    if text_config is not None and text_config is not config and hasattr(text_config, "model_type"):
        return text_config
    return config


def _stated(config: Any, names: tuple[str, ...]) -> int | None:
    for name in names:
        value = config_field(config, name)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return None


def _hidden_size(model: Any, text_config: Any) -> int | None:
    stated = _stated(text_config, _HIDDEN_FIELDS)
    if stated:
        return stated
    try:
        return int(model.get_input_embeddings().weight.shape[1])
    except (AttributeError, NotImplementedError, TypeError):
        return None


def text_stacks(stacks: list[tuple[str, Any]], role: str) -> list[tuple[str, Any]]:
    text = [(path, modules) for path, modules in stacks if is_other_tower(path, modules) is None]
    if role == "seq2seq":
        encoders = [s for s in text if "encoder" in s[0].split(".")]
        decoders = [s for s in text if s not in encoders]
        return encoders + decoders
    if len(text) > 1:
        decoders = [s for s in text if "decoder" in s[0]]
        if decoders:
            return decoders
    return text


def layer_structure(model: Any, text_config: Any, from_config: dict[str, Any]) -> dict[str, Any]:
    """The per-layer keys of the describe contract, read from ``model``'s modules and checked
    against ``from_config`` (:func:`invarlock_hf.structure.config_structure` of ``text_config``).

    :returns: ``n_layer``, ``heads_per_layer``, ``kv_heads_per_layer``, ``mlp_dims``,
        ``layer_types``, ``moe_per_layer``, ``moe``, ``encoder_decoder``, ``towers`` and
        ``unresolved`` (field, layers, why: each value left 0 because it could not be read or the
        modules and the config disagree).
    """
    role = from_config["role"]
    known = bool(from_config["architecture_known"])
    unresolved: dict[tuple[str, str], list[int] | None] = {}

    def refuse(field_name: str, why: str, layer: int | None = None) -> None:
        layers = unresolved.setdefault((field_name, why), [] if layer is not None else None)
        if layer is not None and layers is not None:
            layers.append(layer)

    hidden = _hidden_size(model, text_config)
    all_stacks = block_stacks(model)
    text = language_stacks(all_stacks, role, hidden)
    config_heads = _stated(text_config, ("num_attention_heads", "n_head", "num_heads", "n_heads"))
    config_top_k = _stated(text_config, _TOP_K_FIELDS)
    stacks = [read_stack(path, modules, hidden or 0, config_heads, config_top_k) for path, modules in text]
    _expand_shared_layers(text_config, stacks)
    blocks = list(iter_layers(stacks))
    if not hidden:
        refuse("hidden_size", "neither the config nor the input embeddings give the hidden size")
    if not blocks:
        return _config_only(from_config, model, all_stacks)

    heads = [b.heads for b in blocks]
    kv_heads = [b.kv_heads for b in blocks]
    mlp = [b.mlp_dim for b in blocks]
    moe_per_layer = [b.moe for b in blocks]
    layer_types = _layer_types(text_config, stacks, from_config["model_type"], refuse)
    for index, block in enumerate(blocks):
        for field_name, why in block.problems.items():
            refuse(field_name, why, index)

    n_layer = len(blocks)
    if known and from_config["n_layer"] != n_layer and blocks:
        refuse("n_layer", f"the modules have {n_layer} blocks, the config rules say {from_config['n_layer']}")
    elif known and blocks:
        _cross_check_known(from_config, heads, kv_heads, mlp, blocks, refuse)
    elif blocks:
        _cross_check_stated(text_config, heads, kv_heads, layer_types, moe_per_layer, refuse)

    split = None
    if role == "seq2seq" and len(stacks) == 2:
        split = {"encoder_layers": len(stacks[0].blocks), "decoder_layers": len(stacks[1].blocks)}
    elif role == "seq2seq":
        refuse("encoder_decoder", f"expected an encoder and a decoder block list, found {len(stacks)}")

    moe_layers = [i for i, layer in enumerate(moe_per_layer) if layer is not None]
    moe = None
    if moe_layers:
        first = moe_per_layer[moe_layers[0]]
        assert first is not None
        moe = {
            "num_experts": first["num_experts"],
            "experts_per_token": first["experts_per_token"],
            "expert_mlp_dim": first["expert_mlp_dim"],
            "moe_layers": moe_layers,
        }
        if first["shared_expert_mlp_dim"] is not None:
            moe["shared_expert_mlp_dim"] = first["shared_expert_mlp_dim"]
        if any(moe_per_layer[i] != first for i in moe_layers):
            moe["varies_per_layer"] = True
        if first["experts_per_token"] is None:
            refuse("moe", "neither the router nor the config says how many experts each token goes to")
    elif known and from_config["moe"] is not None:
        refuse("moe", "the config rules describe experts, the modules have none")
        moe = None

    return {
        "n_layer": n_layer,
        "heads_per_layer": heads,
        "kv_heads_per_layer": kv_heads,
        "mlp_dims": mlp,
        "layer_types": layer_types,
        "moe_per_layer": moe_per_layer,
        "moe": moe,
        "encoder_decoder": split,
        "towers": _towers(model, all_stacks),
        "unresolved": [
            {"field": field_name, "layers": layers, "why": why}
            for (field_name, why), layers in unresolved.items()
        ],
    }


def _config_only(
    from_config: dict[str, Any], model: Any, all_stacks: list[tuple[str, Any]]
) -> dict[str, Any]:
    """No block list in the modules: the config's numbers, each marked as not checked against them."""
    n_layer = from_config["n_layer"]
    why = (
        "no list of transformer blocks was found in the modules: "
        "the value is what the config states, unverified"
    )
    return {
        "n_layer": n_layer,
        "heads_per_layer": list(from_config["heads_per_layer"]),
        "kv_heads_per_layer": list(from_config["kv_heads_per_layer"]),
        "mlp_dims": list(from_config["mlp_dims"]),
        "layer_types": ["unknown"] * n_layer,
        "moe_per_layer": [None] * n_layer,
        "moe": from_config["moe"],
        "encoder_decoder": from_config["encoder_decoder"],
        "towers": _towers(model, all_stacks),
        "unresolved": [
            {"field": name, "layers": None, "why": why}
            for name in ("n_layer", "heads_per_layer", "kv_heads_per_layer", "mlp_dims", "layer_types")
        ],
    }


def language_stacks(stacks: list[tuple[str, Any]], role: str, hidden: int | None) -> list[tuple[str, Any]]:
    """The language model's block lists among ``stacks``: :func:`text_stacks`, less any list whose
    blocks never read or write the hidden size (a speech feature encoder, a protein encoder)."""
    text = text_stacks(stacks, role)
    if not hidden:
        return text
    return [
        (path, modules)
        for path, modules in text
        if any(hidden in tuple(p.shape) for p in modules[0].parameters())
    ]


def _expand_shared_layers(text_config: Any, stacks: list[Stack]) -> None:
    """ALBERT applies its few layer groups to every layer in turn: one block per layer, as run."""
    if getattr(text_config, "model_type", None) != "albert" or len(stacks) != 1:
        return
    groups = getattr(text_config, "num_hidden_groups", 1)
    layers = text_config.num_hidden_layers
    stack = stacks[0]
    if getattr(text_config, "inner_group_num", 1) != 1 or len(stack.blocks) != groups:
        for block in stack.blocks:
            block.problems["n_layer"] = "ALBERT layer groups holding several layers are not read"
        return
    per_group = layers // groups
    stack.blocks = [stack.blocks[min(i // per_group, groups - 1)] for i in range(layers)]
    stack.modules = [stack.modules[min(i // per_group, groups - 1)] for i in range(layers)]


def _layer_types(text_config: Any, stacks: list[Stack], model_type: str, refuse: Any) -> list[str]:
    stated = config_field(text_config, "layer_types")
    sliding_window = config_field(text_config, "sliding_window")
    sliding_on = (
        isinstance(sliding_window, int) and config_field(text_config, "use_sliding_window") is not False
    )
    types: list[str] = []
    index = 0
    for stack in stacks:
        per_stack = stated if isinstance(stated, (list, tuple)) and len(stated) == len(stack.blocks) else None
        for position, block in enumerate(stack.blocks):
            kind = block.layer_type
            config_kind = per_stack[position] if per_stack is not None else None
            if kind == "unknown":
                pass
            elif kind not in SOFTMAX_TYPES and kind != "":  # a Mamba / linear mixer in the module
                if config_kind in SOFTMAX_TYPES:
                    refuse(
                        "layer_types", f"the module has a {kind} mixer, the config says {config_kind}", index
                    )
                    kind = "unknown"
            elif config_kind is not None and config_kind not in SOFTMAX_TYPES:
                refuse(
                    "layer_types", f"the module has softmax attention, the config says {config_kind}", index
                )
                kind = "unknown"
            elif kind and config_kind and kind != config_kind and block.layer_type_stated:
                refuse(
                    "layer_types", f"the attention module says {kind}, the config says {config_kind}", index
                )
                kind = "unknown"
            elif config_kind:
                kind = str(config_kind)
            elif not kind:
                if not sliding_on:
                    kind = "full_attention"
                elif model_type in _SLIDING_EVERY_LAYER:
                    kind = "sliding_attention"
                else:
                    refuse(
                        "layer_types",
                        "the config sets sliding_window without saying which layers use it",
                        index,
                    )
                    kind = "unknown"
            if kind == "unknown" and block.layer_type == "unknown":
                pass  # already listed by read_block
            types.append(kind)
            index += 1
    return types


def _cross_check_known(
    from_config: dict[str, Any],
    heads: list[int],
    kv_heads: list[int],
    mlp: list[int],
    blocks: list[Block],
    refuse: Any,
) -> None:
    """Known families: the config rules and the modules must agree layer by layer. A layer the
    modules could not read takes the rule's number (the rule is exact for the family)."""
    for key, values, name in (
        ("heads_per_layer", heads, "query heads"),
        ("kv_heads_per_layer", kv_heads, "KV heads"),
        ("mlp_dims", mlp, "MLP width"),
    ):
        expected = from_config[key]
        for index, (found, rule) in enumerate(zip(values, expected, strict=True)):
            if key in blocks[index].problems:
                values[index] = rule
                blocks[index].problems.pop(key, None)
            elif found != rule:
                refuse(key, f"the modules have {name} {found}, the config rules say {rule}", index)
                values[index] = 0
                if key != "mlp_dims":  # query and KV heads stand or fall together
                    heads[index] = kv_heads[index] = 0


def _cross_check_stated(
    text_config: Any,
    heads: list[int],
    kv_heads: list[int],
    layer_types: list[str],
    moe_per_layer: list[dict[str, Any] | None],
    refuse: Any,
) -> None:
    """Other architectures: numbers the config states for every layer must match each layer that has them."""
    stated_heads = _stated(text_config, ("num_attention_heads", "n_head", "num_heads", "n_heads"))
    stated_kv = _stated(text_config, ("num_key_value_heads", "num_kv_heads", "n_head_kv"))
    stated_experts = _stated(text_config, ("num_local_experts", "num_experts", "n_routed_experts"))
    for index in range(len(layer_types)):
        if heads[index] and stated_heads and heads[index] != stated_heads:
            refuse(
                "heads_per_layer",
                f"the modules have {heads[index]} query heads, the config says {stated_heads}",
                index,
            )
            heads[index] = kv_heads[index] = 0
        if kv_heads[index] and stated_kv and kv_heads[index] != stated_kv:
            refuse(
                "kv_heads_per_layer",
                f"the modules have {kv_heads[index]} KV heads, the config says {stated_kv}",
                index,
            )
            heads[index] = kv_heads[index] = 0
        layer = moe_per_layer[index]
        if layer is not None and stated_experts and layer["num_experts"] != stated_experts:
            refuse(
                "moe_per_layer",
                f"the modules have {layer['num_experts']} experts, the config says {stated_experts}",
                index,
            )


def _towers(model: Any, stacks: list[tuple[str, Any]]) -> dict[str, dict[str, int]]:
    """Vision / audio towers of a multimodal model: blocks, width, parameters."""
    towers: dict[str, dict[str, int]] = {}
    for path, modules in stacks:
        name = is_other_tower(path, modules)
        if name is None:
            continue
        prefix = path.split(name, 1)[0] + name
        tower = model.get_submodule(prefix)
        entry = towers.setdefault(name, {"n_layer": 0, "hidden_size": 0, "n_params": 0})
        entry["n_layer"] += len(modules)
        if not entry["n_params"]:
            entry["n_params"] = sum(p.numel() for p in {id(p): p for p in tower.parameters()}.values())
        if not entry["hidden_size"]:
            entry["hidden_size"] = _block_width(modules[0])
    return towers


def _block_width(block: Any) -> int:
    """The width a block reads and writes: the output size of its attention's output projection."""
    own, _ = _attention_roots(list(block.named_modules()))
    for name in own:
        for sub_name, sub in block.get_submodule(name).named_modules():
            shape = linear_shape(sub)
            if shape is not None and _leaf(sub_name) in _OUT:
                return shape[1]
    return 0
