"""Loading bitsandbytes models: the seed's options translated, placement owned by the adapter.

transformers 5 no longer takes ``load_in_8bit=`` / ``load_in_4bit=`` / ``bnb_4bit_*=`` keywords,
but InvarLock configs still use them, so they are turned into a ``BitsAndBytesConfig`` here.
Loading itself goes through :func:`invarlock_hf.loading.load_pretrained`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from invarlock.errors import ModelLoadError
from invarlock.network import hub_offline_unless_allowed
from invarlock_bnb.layers import pin_4bit_layout
from invarlock_hf.loading import load_error, load_pretrained, parse_dtype, pin_placement, placement_device
from invarlock_hf.quantization import BITSANDBYTES_OPTIONS, QUANTIZED_ADAPTERS, detect_quantization

AUTO_CLASS = "AutoModelForCausalLM"
# from_pretrained options that also decide which config.json is read.
_CONFIG_OPTIONS = ("revision", "cache_dir", "trust_remote_code", "token", "subfolder", "local_files_only")
_4BIT_PREFIX = "bnb_4bit_"
_COMPUTE_DTYPE = "bnb_4bit_compute_dtype"  # takes invarlock-hf's dtype names (bf16, half...)


def load_bnb_model(model_id: str, device: str, options: dict[str, Any]) -> Any:
    """Load ``model_id`` quantized with bitsandbytes (8-bit unless asked otherwise), placed on ``device``.

    A checkpoint that is already bitsandbytes-quantized loads with the settings it was saved with.
    """
    kwargs = dict(options)
    requested = _requested_config(kwargs)
    existing = _checkpoint_quantization(model_id, kwargs)
    if existing is not None:
        _check_prequantized(model_id, existing, requested)
    if requested is not None or existing is None:
        # For a quantized checkpoint transformers keeps the saved settings and warns about the others.
        kwargs["quantization_config"] = (
            requested if requested is not None else _bnb_config({"load_in_8bit": True})
        )
    if kwargs.get("device_map") is None:
        # bitsandbytes quantizes weights for the device they are loaded on: place them while loading.
        kwargs["device_map"] = placement_device(device)
    model = load_pretrained(AUTO_CLASS, model_id, device, kwargs, move_to_device=False)
    _log_int8_cast_once()
    pin_4bit_layout(model)
    pin_placement(model, "hf_bnb", _MOVING_BREAKS_QUANTIZATION)
    return model


class _FirstCastNoticeOnly(logging.Filter):
    """Lets bitsandbytes' "MatMul8bitLt: inputs will be cast ... to float16" through once per process.

    bitsandbytes logs it at every forward pass of every 8-bit layer whose input is not float16, which
    is every pass of an 8-bit model run in float32 or bfloat16 (the CPU default): hundreds of
    identical lines per evaluation.
    """

    notice = "MatMul8bitLt: inputs will be cast"

    def __init__(self) -> None:
        super().__init__()
        self.shown = False

    def filter(self, record: logging.LogRecord) -> bool:
        if not str(record.msg).startswith(self.notice):
            return True
        shown, self.shown = self.shown, True
        return not shown


def _log_int8_cast_once() -> None:
    logger = logging.getLogger("bitsandbytes.autograd._functions")  # bitsandbytes' module logger
    if not any(isinstance(f, _FirstCastNoticeOnly) for f in logger.filters):
        logger.addFilter(_FirstCastNoticeOnly())


def _requested_config(kwargs: dict[str, Any]) -> Any | None:
    """Pop the quantization options out of ``kwargs`` and return the ``BitsAndBytesConfig`` they ask for."""
    flags = {name: kwargs.pop(name) for name in list(kwargs) if name in BITSANDBYTES_OPTIONS}
    config = kwargs.pop("quantization_config", None)
    if config is not None and flags:
        raise ModelLoadError(
            f"got both quantization_config and {', '.join(sorted(flags))}; pass the settings one way only"
        )
    if config is None:
        return _bnb_config(flags) if flags else None
    if isinstance(config, Mapping):
        settings = dict(config)
        method = settings.pop("quant_method", "bitsandbytes")
        _require_bitsandbytes(str(getattr(method, "value", method)))
        return _bnb_config(settings)
    from transformers import BitsAndBytesConfig

    if not isinstance(config, BitsAndBytesConfig):
        _require_bitsandbytes(str((detect_quantization({"quantization_config": config}) or {}).get("method")))
    return config


def _bnb_config(flags: dict[str, Any]) -> Any:
    """A ``BitsAndBytesConfig`` from seed-style settings; ``bnb_4bit_*`` alone implies 4-bit."""
    from transformers import BitsAndBytesConfig

    settings = dict(flags)
    if not settings.get("load_in_8bit") and not settings.get("load_in_4bit"):
        asks_4bit = any(name.startswith(_4BIT_PREFIX) for name in settings)
        if not asks_4bit and ("load_in_8bit" in settings or "load_in_4bit" in settings):
            raise ModelLoadError(
                "hf_bnb loads models quantized, but load_in_8bit and load_in_4bit are both false; set "
                "one of them, or load the full-precision model with hf_causal"
            )
        settings["load_in_4bit" if asks_4bit else "load_in_8bit"] = True
    if isinstance(settings.get(_COMPUTE_DTYPE), str):
        settings[_COMPUTE_DTYPE] = parse_dtype(settings[_COMPUTE_DTYPE])
    try:
        return BitsAndBytesConfig(**settings)  # type: ignore[no-untyped-call]
    except (TypeError, ValueError) as exc:
        raise ModelLoadError(f"invalid bitsandbytes settings ({exc}); fix the quantization options") from exc


def _require_bitsandbytes(method: str) -> None:
    if method != "bitsandbytes":
        other = QUANTIZED_ADAPTERS.get(method)
        hint = f"use the {other} adapter" if other else "pass a BitsAndBytesConfig"
        raise ModelLoadError(f"hf_bnb loads bitsandbytes quantization, not {method}; {hint}")


def _checkpoint_quantization(model_id: str, kwargs: dict[str, Any]) -> dict[str, Any] | None:
    """How the checkpoint itself is quantized, read from its config."""
    from transformers import AutoConfig

    config_kwargs = {name: kwargs[name] for name in _CONFIG_OPTIONS if name in kwargs}
    with hub_offline_unless_allowed():
        try:
            config = AutoConfig.from_pretrained(model_id, **config_kwargs)
        except Exception as exc:
            raise load_error(model_id, "AutoConfig.from_pretrained", exc, config_kwargs) from exc
    return detect_quantization(config)


def _check_prequantized(model_id: str, existing: dict[str, Any], requested: Any | None) -> None:
    """A quantized checkpoint keeps its own settings: refuse another method or another bit width."""
    _require_bitsandbytes(existing["method"])
    if requested is None:
        return
    wanted = detect_quantization({"quantization_config": requested}) or {}
    if wanted.get("bits") != existing.get("bits"):
        raise ModelLoadError(
            f"{model_id} is already quantized to {existing.get('bits')}-bit with bitsandbytes and cannot "
            f"be loaded as {wanted.get('bits')}-bit; drop the quantization options, or quantize the "
            "full-precision checkpoint instead"
        )


_MOVING_BREAKS_QUANTIZATION = (
    "bitsandbytes quantized its weights for the device they were loaded on, and moving or casting "
    "them afterwards breaks their quantization state"
)
