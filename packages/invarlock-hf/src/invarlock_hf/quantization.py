"""The one place that decides whether, and how, a model is quantized.

The resolver (which adapter?), the loaders (which placement?) and describe (the ``quantization``
block) all ask :func:`detect_quantization`, so they can never disagree.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from invarlock.errors import ConfigError

QUANTIZED_ADAPTERS = {
    "bitsandbytes": "hf_bnb",
    "gptq": "hf_gptq",
    "awq": "hf_awq",
    "compressed-tensors": "hf_compressed",
}
"""Quantization method → the adapter that loads, describes and snapshots such models."""

BITSANDBYTES_FLAGS = ("load_in_8bit", "load_in_4bit")
"""Load options in the transformers 4.x style that ask for bitsandbytes quantization when true."""
BITSANDBYTES_OPTIONS = frozenset(
    {
        *BITSANDBYTES_FLAGS,
        "llm_int8_threshold",
        "llm_int8_skip_modules",
        "llm_int8_enable_fp32_cpu_offload",
        "llm_int8_has_fp16_weight",
        "bnb_4bit_compute_dtype",
        "bnb_4bit_quant_type",
        "bnb_4bit_use_double_quant",
        "bnb_4bit_quant_storage",
    }
)
"""``BitsAndBytesConfig``'s settings as load options (the 4.x keyword style), which the adapters that
load bitsandbytes models accept besides ``invarlock_hf.loading.LOAD_OPTIONS``; invarlock-bnb turns
them into the config, and its tests hold this set to the installed transformers' signature."""
_BNB_OPTION_PREFIX = "bnb_4bit_"
# Fields copied into the result when the quantization config states them, per method.
_FIELDS = {
    "bitsandbytes": (
        "bnb_4bit_quant_type",
        "bnb_4bit_use_double_quant",
        "bnb_4bit_compute_dtype",
        "llm_int8_threshold",
        "llm_int8_skip_modules",
    ),
    "gptq": ("group_size", "desc_act", "sym", "checkpoint_format"),
    "awq": ("group_size", "zero_point", "version"),
    "compressed-tensors": ("format",),
}


def detect_quantization(source: Any) -> dict[str, Any] | None:
    """How ``source`` is quantized, or None for full precision.

    :param source: a transformers config, a ``config.json`` dict, a loaded model, or load options
        (a dict with ``quantization_config``, ``load_in_8bit``, ``load_in_4bit`` or ``bnb_4bit_*``).
    :returns: None, or a dict with ``method`` (``bitsandbytes``, ``gptq``, ``awq`` or the method
        named by an other quantization config), ``bits`` (when the method fixes or states it) and
        the method's own settings (group size, quant type...).
    """
    if isinstance(source, Mapping):
        return _from_mapping(source)
    config = getattr(source, "config", source)  # a model carries its config
    quantization_config = getattr(config, "quantization_config", None)
    if quantization_config is None:
        return None
    return _from_quantization_config(quantization_config)


def _from_mapping(source: Mapping[str, Any]) -> dict[str, Any] | None:
    quantization_config = source.get("quantization_config")
    if quantization_config is not None:
        return _from_quantization_config(quantization_config)
    # Load options in the transformers 4.x style: bitsandbytes flags given directly.
    if source.get("load_in_8bit"):
        return _from_quantization_config({"load_in_8bit": True})
    if source.get("load_in_4bit") or any(key.startswith(_BNB_OPTION_PREFIX) for key in source):
        flags = {key: value for key, value in source.items() if key.startswith(_BNB_OPTION_PREFIX)}
        return _from_quantization_config({"load_in_4bit": True, **flags})
    return None


def _from_quantization_config(quantization_config: Any) -> dict[str, Any]:
    settings = _as_dict(quantization_config)
    method = _plain(settings.get("quant_method"))
    if method is None and (settings.get("load_in_8bit") or settings.get("load_in_4bit")):
        method = "bitsandbytes"  # bitsandbytes configs saved before quant_method existed
    result: dict[str, Any] = {"method": str(method) if method is not None else "unknown"}
    if result["method"] == "bitsandbytes":
        result["bits"] = 8 if settings.get("load_in_8bit") else 4
    elif isinstance(settings.get("bits"), int):
        result["bits"] = settings["bits"]
    for field in _FIELDS.get(result["method"], ()):
        if settings.get(field) is not None:
            result[field] = _plain(settings[field])
    if result["method"] == "bitsandbytes":
        _keep_only_fields_of_bits(result)
    return result


def _keep_only_fields_of_bits(result: dict[str, Any]) -> None:
    """An 8-bit config still carries 4-bit defaults (and vice versa); report only what applies."""
    prefix = "llm_int8_" if result["bits"] == 4 else _BNB_OPTION_PREFIX
    for key in [key for key in result if key.startswith(prefix)]:
        del result[key]


def _as_dict(quantization_config: Any) -> dict[str, Any]:
    if isinstance(quantization_config, Mapping):
        return dict(quantization_config)
    to_dict = getattr(quantization_config, "to_dict", None)
    if callable(to_dict):
        return dict(to_dict())
    if isinstance(quantization_config, (str, bytes, int, float, bool, list, tuple)):
        # config.json is checked when read (invarlock_hf.checkpoint); this is a load option.
        raise ConfigError(
            f"the load option quantization_config must be a quantization config (BitsAndBytesConfig, "
            f"GPTQConfig...) or a mapping of its settings, got {quantization_config!r}"
        )
    return dict(vars(quantization_config))


def _plain(value: Any) -> Any:
    """JSON-friendly values: enums become their value, dtypes their name."""
    value = getattr(value, "value", value)
    if type(value).__module__ == "torch":
        return str(value).removeprefix("torch.")
    return value
