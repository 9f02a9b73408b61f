"""Loading through ``from_pretrained``: options passed through, failures explained, nothing retried.

Every adapter of this package, and the quantized adapters built on it, load through
:func:`load_pretrained`, so dtype names, device placement and error messages are the same
everywhere. torch and transformers are imported inside the functions.
"""

from __future__ import annotations

import os
import weakref
from pathlib import Path
from typing import Any

from invarlock.errors import (
    ModelLoadError,
    NetworkDisabledError,
    RemoteCodeRefusedError,
    TokenizerNotFoundError,
    UnsafeCheckpointError,
    UnsupportedOperationError,
)
from invarlock.network import (
    ALLOW_NETWORK_ENV,
    hub_offline_unless_allowed,
    network_allowed,
    not_available_offline,
)
from invarlock_hf.checkpoint import (
    TOKENIZER_FILES,
    check_local_checkpoint,
    has_tokenizer_files,
    require_directory,
)
from invarlock_hf.quantization import BITSANDBYTES_FLAGS

DTYPE_NAMES = {
    "float16": "float16",
    "fp16": "float16",
    "half": "float16",
    "bfloat16": "bfloat16",
    "bf16": "bfloat16",
    "float32": "float32",
    "fp32": "float32",
    "float": "float32",
}
"""Accepted dtype names → the torch dtype they mean (``"auto"`` keeps the checkpoint's dtype)."""

LOAD_OPTIONS = frozenset(
    {
        "dtype",
        "torch_dtype",
        "device_map",
        "max_memory",
        "offload_folder",
        "offload_state_dict",
        "offload_buffers",
        "revision",
        "cache_dir",
        "subfolder",
        "variant",
        "use_safetensors",
        "trust_remote_code",
        "tp_plan",
        "tp_size",
        "attn_implementation",
        "low_cpu_mem_usage",
        "quantization_config",
        "key_mapping",
        *BITSANDBYTES_FLAGS,
    }
)
"""The load options the adapters of this package accept (``AdapterSpec.load_options``): the
``from_pretrained`` keywords that choose how a checkpoint is read and placed. Keywords that would
change the model itself (a config attribute such as ``num_hidden_layers``) are refused, not passed:
a certificate is about the checkpoint as saved."""

_newly_initialized: weakref.WeakKeyDictionary[Any, tuple[str, ...]] = weakref.WeakKeyDictionary()


def parse_dtype(value: Any) -> Any:
    """``torch.dtype``, ``"auto"`` or None from a dtype option (a name, ``torch.float16``, a dtype)."""
    import torch

    if value is None or isinstance(value, torch.dtype):
        return value
    name = str(value).strip().lower().removeprefix("torch.")
    if name == "auto":
        return "auto"
    if name not in DTYPE_NAMES:
        accepted = ", ".join([*DTYPE_NAMES, "auto"])
        raise ModelLoadError(f"dtype {value!r} is not a dtype InvarLock knows; use one of {accepted}")
    return getattr(torch, DTYPE_NAMES[name])


def pick_device(device: str) -> str:
    """``"auto"`` → ``cuda`` if available, else ``mps``, else ``cpu``; any other value unchanged."""
    if device != "auto":
        return device
    import torch

    if torch.cuda.is_available():
        return "cuda"
    if torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def from_pretrained_kwargs(options: dict[str, Any]) -> dict[str, Any]:
    """The keyword arguments ``from_pretrained`` gets for ``options``.

    ``torch_dtype`` is accepted as the older name of ``dtype`` and dtype names are parsed;
    ``load_in_8bit`` / ``load_in_4bit`` set to false are dropped (they ask for nothing); ``tp_plan``
    goes where the installed transformers wants it (:func:`tensor_parallel_kwargs`); everything
    else passes through unchanged. ``trust_remote_code`` is False unless given.
    """
    kwargs = dict(options)
    dtype, torch_dtype = kwargs.pop("dtype", None), kwargs.pop("torch_dtype", None)
    if dtype is not None and torch_dtype is not None and parse_dtype(dtype) != parse_dtype(torch_dtype):
        raise ModelLoadError(
            f"dtype={dtype!r} and torch_dtype={torch_dtype!r} disagree; pass only dtype "
            "(torch_dtype is its older name)"
        )
    chosen = parse_dtype(dtype if dtype is not None else torch_dtype)
    if chosen is not None:
        kwargs["dtype"] = chosen  # transformers 4.57 and 5.x both take dtype=
    kwargs.setdefault("trust_remote_code", False)
    for flag in BITSANDBYTES_FLAGS:  # false asks for nothing, and transformers 5 refuses the keyword
        if flag in kwargs and not kwargs[flag]:
            del kwargs[flag]
    kwargs.pop("output_loading_info", None)  # always requested; the model is what loaders return
    return tensor_parallel_kwargs(kwargs)


def tensor_parallel_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
    """``tp_plan`` / ``tp_size`` as the installed transformers takes them: inside
    ``distributed_config=DistributedConfig(tp_plan=..., tp_size=...)`` where that class has them
    (transformers 5, which deprecates the bare keywords), as the bare keywords otherwise (4.57)."""
    if kwargs.get("tp_plan") is None and kwargs.get("tp_size") is None:
        return kwargs
    import dataclasses

    import transformers

    config_class: Any = getattr(transformers, "DistributedConfig", None)
    fields = (
        {f.name for f in dataclasses.fields(config_class)}
        if isinstance(config_class, type) and dataclasses.is_dataclass(config_class)
        else set()
    )
    if not {"tp_plan", "tp_size"} <= fields:
        return kwargs
    parallel = {key: kwargs.pop(key) for key in ("tp_plan", "tp_size") if key in kwargs}
    kwargs["distributed_config"] = config_class(**parallel)
    return kwargs


def load_pretrained(
    auto_class: str, model_id: str, device: str, options: dict[str, Any], *, move_to_device: bool = True
) -> Any:
    """Load ``model_id`` with ``transformers.<auto_class>.from_pretrained`` and place it on ``device``.

    With a ``device_map`` or ``tp_plan`` option (or ``move_to_device=False``) the placement is left
    to transformers and accelerate: ``.to()`` is never called (under ``tp_plan`` each rank holds its
    shards on its own device). Failures raise
    :class:`~invarlock.errors.ModelLoadError` with transformers' message inside; nothing is
    retried with arguments dropped.
    """
    check_local_checkpoint(model_id)
    import transformers

    kwargs = from_pretrained_kwargs(options)
    tensor_parallel = kwargs.get("tp_plan") is not None
    if tensor_parallel and hasattr(transformers, "DistributedConfig"):
        # transformers 5 deprecates the bare keyword for the config; 4.57 knows only the keyword
        kwargs["distributed_config"] = transformers.DistributedConfig(tp_plan=kwargs.pop("tp_plan"))
    loader = getattr(transformers, auto_class)
    with hub_offline_unless_allowed():
        try:
            loaded = loader.from_pretrained(model_id, output_loading_info=True, **kwargs)
        except Exception as exc:
            raise load_error(model_id, f"{auto_class}.from_pretrained", exc, kwargs) from exc
    model, loading_info = loaded if isinstance(loaded, tuple) else (loaded, {})
    _newly_initialized[model] = _initialized_names(loading_info)
    if move_to_device and kwargs.get("device_map") is None and not tensor_parallel:
        _move(model, pick_device(device))  # a tensor-parallel model is on each rank's own device
    return model


def load_tokenizer(model_id: str, options: dict[str, Any]) -> Any:
    """``AutoTokenizer.from_pretrained`` under the same offline rules and error messages as models.

    A local directory without any tokenizer file is refused (:class:`TokenizerNotFoundError`)
    before transformers is asked: transformers 5 builds a near-empty tokenizer there instead of
    failing, which would make certify compare vocabularies instead of using the baseline's.
    """
    require_directory(model_id)
    directory = Path(model_id).expanduser()
    if directory.is_dir() and not has_tokenizer_files(directory):
        raise TokenizerNotFoundError(
            f"{model_id} holds no tokenizer files ({', '.join(TOKENIZER_FILES[:5])}...); copy the "
            "tokenizer files of the model it was made from into it"
        )
    from transformers import AutoTokenizer

    kwargs = {"trust_remote_code": False, **options}
    with hub_offline_unless_allowed():
        try:
            return AutoTokenizer.from_pretrained(model_id, **kwargs)
        except Exception as exc:
            raise load_error(model_id, "AutoTokenizer.from_pretrained", exc, kwargs) from exc


def newly_initialized(model: Any) -> list[str] | None:
    """Parameters the loader had to initialise because the checkpoint lacks them (a missing
    head, say); None when the model was not loaded through :func:`load_pretrained`."""
    names = _newly_initialized.get(model)
    return list(names) if names is not None else None


def load_error(model_id: str, call: str, exc: BaseException, options: dict[str, Any]) -> ModelLoadError:
    """The error to raise for a failed load: offline and not cached, or transformers' own reason."""
    if not Path(model_id).expanduser().exists() and not _in_hub_cache(model_id, options):
        if not network_allowed():
            return not_available_offline(model_id)
        if _hub_offline_env():
            return NetworkDisabledError(
                f"{model_id} is not a local path and is not in the Hugging Face cache, and HF_HUB_OFFLINE "
                f"is set although {ALLOW_NETWORK_ENV}=1; unset HF_HUB_OFFLINE to download it"
            )
    known = _known_failure(model_id, exc)
    if known is not None:
        return known
    return ModelLoadError(
        f"{call} could not load {model_id} ({one_line(exc)}); fix what transformers reports "
        "(InvarLock does not retry with other arguments)"
    )


_MAX_REASON = 300


def one_line(exc: BaseException) -> str:
    """``Type: message`` on one line, at most a few hundred characters (transformers' messages run to
    paragraphs)."""
    text = " ".join(str(exc).split())
    if len(text) > _MAX_REASON:
        text = text[: _MAX_REASON - 3].rstrip() + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _chain(exc: BaseException) -> list[BaseException]:
    found: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in found:
        found.append(current)
        current = current.__cause__ or current.__context__
    return found


def _known_failure(model_id: str, exc: BaseException) -> ModelLoadError | None:
    """Backend failures with advice of our own, instead of the backend's (which may be unsafe)."""
    import pickle

    for cause in _chain(exc):
        text = str(cause)
        if isinstance(cause, pickle.UnpicklingError) or "weights_only" in text:
            return UnsafeCheckpointError(
                f"{model_id} holds pickled weights that torch refused to unpickle because they would run "
                "code or load objects it does not trust; convert the checkpoint to safetensors with a "
                "tool you trust (never load it with weights_only=False)"
            )
        if "trust_remote_code" in text and "custom code" in text:
            return RemoteCodeRefusedError(
                f"{model_id} needs its own Python code to load (auto_map in config.json) and remote code "
                "is off; pass --trust-remote-code (trust_remote_code=True) only if you trust that code"
            )
    return None


def _in_hub_cache(model_id: str, options: dict[str, Any]) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(
            model_id, "config.json", cache_dir=options.get("cache_dir"), revision=options.get("revision")
        )
    except Exception:  # not a valid repo id: certainly not cached
        return False
    return isinstance(cached, str)


def _hub_offline_env() -> bool:
    value = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE") or ""
    return value.strip().upper() in {"1", "ON", "YES", "TRUE"}


def _initialized_names(loading_info: dict[str, Any]) -> tuple[str, ...]:
    # missing keys are names; mismatched keys are names (5.x) or (name, shape, shape) tuples (4.57).
    names = {key if isinstance(key, str) else key[0] for key in loading_info.get("missing_keys", ())}
    names |= {key if isinstance(key, str) else key[0] for key in loading_info.get("mismatched_keys", ())}
    return tuple(sorted(names))


def _move(model: Any, device: str) -> None:
    if device == "cpu" and model.device.type == "cpu":
        return
    try:
        model.to(device)
    except Exception as exc:
        raise ModelLoadError(
            f"the model loaded but could not be moved to {device} ({type(exc).__name__}: {exc}); "
            'choose another device, or device="auto"'
        ) from exc


# -- placement owned by a quantized adapter --------------------------------------------------------


def placement_device(device: str) -> str:
    """The one device a quantized model is placed on while loading (``cuda`` → ``cuda:<current>``)."""
    import torch

    target = torch.device(pick_device(device))
    if target.type == "cuda":
        if not torch.cuda.is_available():
            raise ModelLoadError(
                f"device {device!r} was asked for, but torch sees no CUDA device; use cpu or auto"
            )
        return f"cuda:{target.index if target.index is not None else torch.cuda.current_device()}"
    return str(target)


class _RefuseMove:
    """Stands in for ``model.to`` / ``.cuda`` / ``.cpu`` on a model whose placement its adapter owns.

    A plain object (not a closure over the model) keeps the model picklable and deep-copyable.
    """

    def __init__(self, method: str, adapter: str, why: str) -> None:
        self.method, self.adapter, self.why = method, adapter, why

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise UnsupportedOperationError(
            f"model.{self.method}() is not supported on a model loaded by {self.adapter}: {self.why}; "
            "load it again where you want it, e.g. "
            f'get_adapter("{self.adapter}").load_model(path, device="cuda")'
        )


def pin_placement(model: Any, adapter: str, why: str) -> None:
    """Make ``.to()``, ``.cuda()`` and ``.cpu()`` on this model instance raise instead of moving it."""
    for method in ("to", "cuda", "cpu"):
        setattr(model, method, _RefuseMove(method, adapter, why))
