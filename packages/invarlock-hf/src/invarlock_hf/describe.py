"""``describe`` for transformers models: the config's structure plus what only the model knows.

Parameter counts, dtype, placement and tying come from the module itself, so a model on the meta
device (a full-size architecture built from its config, no weights) is described as readily as a
loaded one.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from invarlock_hf.blocks import language_config, layer_structure
from invarlock_hf.loading import newly_initialized
from invarlock_hf.models import input_device
from invarlock_hf.quantization import detect_quantization
from invarlock_hf.structure import config_structure, role_of_class

N_PARAMS_SCOPE = (
    "every distinct parameter tensor of the whole model object (all towers, embeddings and heads; "
    "tied tensors counted once)"
)


def describe_model(model: Any) -> dict[str, Any]:
    """The full describe contract (:mod:`invarlock.description`) for a transformers model.

    The per-layer structure is read from the modules (:mod:`invarlock_hf.blocks`) and checked
    against the config rules of :mod:`invarlock_hf.structure`; a field that cannot be read, or
    that the two disagree on, is 0 and listed in ``unresolved``. Adds ``newly_initialized``
    (parameters the checkpoint lacked, initialised at load) for models loaded through
    invarlock-hf, and ``not_in_config`` for architectures it has no config rules for.
    """
    config = model.config
    role = role_of_class(
        type(model).__name__, is_encoder_decoder=bool(getattr(config, "is_encoder_decoder", False))
    )
    text_config = language_config(config)
    structure = config_structure(text_config, role=role)
    parameters, storage_groups = _walk_parameters(model)
    layers = layer_structure(model, text_config, structure)
    description: dict[str, Any] = {
        "model_type": structure["model_type"],
        "model_class": type(model).__name__,
        "role": structure["role"],
        "architecture_known": structure["architecture_known"],
        "n_layer": layers["n_layer"],
        "heads_per_layer": layers["heads_per_layer"],
        "kv_heads_per_layer": layers["kv_heads_per_layer"],
        "mlp_dims": layers["mlp_dims"],
        "hidden_size": structure["hidden_size"],
        "vocab_size": _vocab_size(model, structure["vocab_size"], layers["unresolved"]),
        "n_params": sum(p.numel() for p in parameters),
        "dtype": _main_dtype(parameters),
        "device": _input_device(model, parameters),
        "device_map": _device_map(model),
        "tying": _tying(model, storage_groups),
        "encoder_decoder": layers["encoder_decoder"],
        "moe": layers["moe"],
        "quantization": detect_quantization(model),
        "layer_types": layers["layer_types"],
        "moe_per_layer": layers["moe_per_layer"],
        "n_params_scope": N_PARAMS_SCOPE,
        "unresolved": layers["unresolved"],
    }
    if text_config is not config:
        description["model_type"] = str(getattr(config, "model_type", "") or structure["model_type"])
        description["language_model_type"] = structure["model_type"]
    if layers["towers"]:
        description["towers"] = layers["towers"]
    if "not_in_config" in structure:
        description["not_in_config"] = structure["not_in_config"]
    initialized = newly_initialized(model)
    if initialized is not None:
        description["newly_initialized"] = initialized
    return description


def _vocab_size(model: Any, from_config: int, unresolved: list[dict[str, Any]]) -> int:
    """The rows of the output embedding (what the logits range over), checked against the config."""
    try:
        output = model.get_output_embeddings()
    except (AttributeError, NotImplementedError):
        output = None
    weight = getattr(output, "weight", None)
    rows = int(weight.shape[0]) if weight is not None and getattr(weight, "dim", lambda: 0)() == 2 else None
    if rows is None or not from_config or rows == from_config:
        return from_config or rows or 0
    unresolved.append(
        {
            "field": "vocab_size",
            "layers": None,
            "why": f"the config says {from_config}, the output embedding has {rows} rows",
        }
    )
    return 0


def tied_pairs(model: Any) -> dict[str, str]:
    """Tensor name → the name whose storage it shares, for every tied parameter.

    Tensors count as tied when they are the same bytes (same storage, offset, shape and strides);
    on the meta device, which has no storage, when they are the same tensor object. Each group
    maps onto the input embedding's name when it is in the group, else onto its first name.
    """
    return _tying(model, _walk_parameters(model)[1])


def _walk_parameters(model: Any) -> tuple[list[Any], list[list[str]]]:
    """One pass over the parameters: each distinct one once, and the names sharing each storage."""
    distinct: dict[int, Any] = {}
    groups: dict[Any, list[str]] = {}
    for name, tensor in _all_named_parameters(model):
        distinct.setdefault(id(tensor), tensor)
        groups.setdefault(_storage_key(tensor), []).append(name)
    return list(distinct.values()), list(groups.values())


def _all_named_parameters(model: Any) -> list[tuple[str, Any]]:
    """``model.named_parameters(remove_duplicate=False)``, in its order, read straight from the
    modules' own dicts: several times faster on models with tens of thousands of expert tensors."""
    found: list[tuple[str, Any]] = []

    def walk(prefix: str, module: Any) -> None:
        for name, parameter in module._parameters.items():
            if parameter is not None:
                found.append((prefix + name, parameter))
        for name, child in module._modules.items():
            if child is not None:
                walk(f"{prefix}{name}.", child)

    walk("", model)
    return found


def _tying(model: Any, storage_groups: list[list[str]]) -> dict[str, str]:
    tied = [names for names in storage_groups if len(names) > 1]
    if not tied:
        return {}
    embedding_names = _input_embedding_names(model)
    tying: dict[str, str] = {}
    for names in tied:
        owner = next((name for name in names if name in embedding_names), names[0])
        tying.update({name: owner for name in names if name != owner})
    return tying


def _input_embedding_names(model: Any) -> set[str]:
    """Names of the input embedding's weight (one per path to the module)."""
    try:
        embedding = model.get_input_embeddings()
    except (AttributeError, NotImplementedError):
        return set()
    return {
        f"{name}.weight"
        for name, module in model.named_modules(remove_duplicate=False)
        if module is embedding
    }


def _storage_key(tensor: Any) -> Any:
    if tensor.is_meta or tensor.numel() == 0:
        return id(tensor)
    return (
        tensor.untyped_storage().data_ptr(),
        tensor.storage_offset(),
        tuple(tensor.shape),
        tuple(tensor.stride()),
        tensor.dtype,
    )


def _main_dtype(parameters: list[Any]) -> str:
    counts: Counter[str] = Counter()
    for parameter in parameters:
        counts[str(parameter.dtype).removeprefix("torch.")] += parameter.numel()
    return counts.most_common(1)[0][0] if counts else "unknown"


def _input_device(model: Any, parameters: list[Any]) -> str:
    try:
        return str(input_device(model))
    except (AttributeError, NotImplementedError):  # no input embeddings to go by
        return str(parameters[0].device) if parameters else "cpu"


def _device_map(model: Any) -> dict[str, str] | None:
    device_map = getattr(model, "hf_device_map", None)
    if not device_map:
        return None
    # accelerate writes a bare int for a CUDA device index.
    return {
        str(module): f"cuda:{device}" if isinstance(device, int) else str(device)
        for module, device in device_map.items()
    }


def meta_model(config: Any, auto_class: str = "AutoModelForCausalLM", dtype: str | None = None) -> Any:
    """The model ``config`` describes, built on the meta device (no memory, no weights).

    Weight initialisation is skipped: on the meta device it computes nothing, and transformers
    4.x still spends seconds on it for models with many experts. Tying is redone afterwards, since
    skipping initialisation skips it too. ``dtype`` (``bfloat16``...) is the parameters' dtype;
    by default torch's.
    """
    import contextlib

    import torch
    import transformers

    try:  # transformers 5
        from transformers.initialization import no_init_weights
    except ImportError:  # transformers 4.x
        from transformers.modeling_utils import no_init_weights  # type: ignore[attr-defined,no-redef]
    previous = torch.get_default_dtype()
    try:
        if dtype is not None:
            torch.set_default_dtype(getattr(torch, dtype))
        with (
            torch.device("meta"),
            no_init_weights() if callable(no_init_weights) else contextlib.nullcontext(),
        ):
            model = getattr(transformers, auto_class).from_config(config)
    finally:
        torch.set_default_dtype(previous)
    model.tie_weights()
    return model
