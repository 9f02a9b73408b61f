"""Every quantization method the installed transformers registers, and what it can do here.

The methods are transformers' own registry (``AUTO_QUANTIZER_MAPPING``); the status of each comes
from its own quantizer class: the quantizer is built for a default config of the method, as for a
pre-quantized checkpoint, and its ``validate_environment`` is run for this machine's device. No
model is loaded. Its refusals are sorted by what they say (a pip command: ``needs_extra``; a GPU:
``needs_gpu``); a quantizer that passes but switches itself to dequantizing (FP8 without a GPU,
say) is ``loads_dequantized``. What InvarLock adds is only what it has tested: which adapter owns a
method (:data:`invarlock_hf.quantization.QUANTIZED_ADAPTERS`) and which methods a test of this
package loads on the CPU, kept quantized (:data:`TESTED_LOADS`). A method that passes its check
but that no test covers is ``unsupported``, with that reason.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from invarlock.quantizers import QuantizationMethod, QuantizerStatus
from invarlock_hf.quantization import QUANTIZED_ADAPTERS

LIBRARY = "transformers"

TESTED_LOADS: dict[str, str] = {}
"""Method → the test of this package that loads a tiny checkpoint of it on the CPU, kept quantized."""

FILE_FORMAT_ADAPTERS = {"gguf": "gguf"}
"""Methods an InvarLock adapter owns although no ``quantization_config`` names them: GGUF files are
the gguf adapter's (invarlock-gguf runs them with llama.cpp; transformers would dequantize every
tensor to float through ``gguf_file=``)."""

_DETECTED_METHOD = {"bitsandbytes_4bit": "bitsandbytes", "bitsandbytes_8bit": "bitsandbytes"}
"""transformers' registry key → the method name detect_quantization (and QUANTIZED_ADAPTERS) use."""

_CONFIG_SETTINGS: dict[str, dict[str, Any]] = {
    "bitsandbytes_4bit": {"load_in_4bit": True},
    "bitsandbytes_8bit": {"load_in_8bit": True},
    "gptq": {"bits": 4},
    "torchao": {"quant_type": "int4_weight_only"},
}
"""The settings a method's config cannot be built without (a default config otherwise)."""

_PIP_QUOTED = re.compile(r"`pip install ([^`]+)`")
_PIP_BARE = re.compile(r"pip install ((?:[^\s`\"()]+ ?)+)")
_ACCELERATOR = re.compile(r"\b(GPU|CUDA|XPU|MPS|accelerator)\b", re.IGNORECASE)


def quantization_methods() -> list[QuantizationMethod]:
    """One row per key of transformers' quantizer registry, in its order."""
    import torch
    from transformers.quantizers.auto import AUTO_QUANTIZATION_CONFIG_MAPPING, AUTO_QUANTIZER_MAPPING

    device_map = "cuda" if torch.cuda.is_available() else "cpu"
    rows = []
    # A copy: checking a quantizer imports its backend, which can register more methods meanwhile.
    for key, quantizer_class in list(AUTO_QUANTIZER_MAPPING.items()):
        rows.append(
            _check(key, quantizer_class, AUTO_QUANTIZATION_CONFIG_MAPPING.get(key), device_map, torch)
        )
    return rows


def _check(
    key: str, quantizer_class: Any, config_class: Any, device_map: str, torch: Any
) -> QuantizationMethod:
    adapter = QUANTIZED_ADAPTERS.get(_DETECTED_METHOD.get(key, key)) or FILE_FORMAT_ADAPTERS.get(key)
    row = {"method": key, "library": LIBRARY, "quantizer": quantizer_class.__name__, "adapter": adapter}
    notices: list[str] = []
    try:
        with _transformers_warnings(notices):
            config = config_class.from_dict({"quant_method": key, **_CONFIG_SETTINGS.get(key, {})})
            quantizer = quantizer_class(config, pre_quantized=True)
            quantizer.validate_environment(device_map=device_map, dtype=torch.float32)
    except Exception as exc:
        refused = _refusal(exc)
        if adapter is not None:
            return QuantizationMethod(
                status=QuantizerStatus.ADAPTER,
                reason=f"{adapter} owns it; transformers' own check refuses it here: {_sentence(exc)}",
                **row,
            )
        return QuantizationMethod(**refused, **row)
    if adapter is not None:
        return QuantizationMethod(
            status=QuantizerStatus.ADAPTER,
            reason=f"{adapter} owns it; transformers' own check passes here",
            **row,
        )
    dequantizing = bool(getattr(quantizer.quantization_config, "dequantize", False))
    if dequantizing:
        why = notices[0] if notices else "its quantizer switched to dequantize=True"
        return QuantizationMethod(
            status=QuantizerStatus.LOADS_DEQUANTIZED, reason=f"its weights become float here: {why}", **row
        )
    if key in TESTED_LOADS:
        return QuantizationMethod(
            status=QuantizerStatus.LOADS,
            reason=f"loads through the role adapter, kept quantized ({TESTED_LOADS[key]})",
            **row,
        )
    return QuantizationMethod(
        status=QuantizerStatus.UNSUPPORTED,
        reason=(
            "transformers' own check passes here, but no InvarLock test loads it, so nothing shows "
            "that it works; it is not supported"
        ),
        **row,
    )


def _refusal(exc: BaseException) -> dict[str, Any]:
    """Status, reason and install command for a quantizer's refusal, from what it says."""
    message = _sentence(exc)
    found = _PIP_QUOTED.search(message) or _PIP_BARE.search(message)
    if found:
        return {
            "status": QuantizerStatus.NEEDS_EXTRA,
            "reason": message,
            "install": f"pip install {found.group(1).strip().rstrip('.')}",
        }
    if _ACCELERATOR.search(message):
        return {"status": QuantizerStatus.NEEDS_GPU, "reason": message}
    missing = getattr(exc, "name", None)
    if isinstance(exc, ImportError):
        install = f"pip install {missing}" if isinstance(missing, str) and missing else None
        return {"status": QuantizerStatus.NEEDS_EXTRA, "reason": message, "install": install}
    return {"status": QuantizerStatus.UNSUPPORTED, "reason": message}


def _sentence(exc: BaseException) -> str:
    return " ".join(f"{type(exc).__name__}: {exc}".split())


class _Collect(logging.Handler):
    def __init__(self, into: list[str]) -> None:
        super().__init__(logging.WARNING)
        self.into = into

    def emit(self, record: logging.LogRecord) -> None:
        self.into.append(" ".join(record.getMessage().split()))


@contextmanager
def _transformers_warnings(into: list[str]) -> Iterator[None]:
    """Collect what transformers' quantizers log (their "we will default to dequantizing" notices)."""
    logger = logging.getLogger("transformers")
    handlers, propagate, level = list(logger.handlers), logger.propagate, logger.level
    for handler in handlers:  # shown in the row's reason instead of on stderr
        logger.removeHandler(handler)
    # transformers says each notice once per process (an lru_cache on Logger.warning_once); two
    # methods sharing a quantizer (fp8, mxfp8) must each hear it.
    cache_clear = getattr(getattr(logging.Logger, "warning_once", None), "cache_clear", None)
    if callable(cache_clear):
        cache_clear()
    collector = _Collect(into)
    logger.addHandler(collector)
    logger.propagate = False
    logger.setLevel(logging.WARNING)  # heard whatever TRANSFORMERS_VERBOSITY says
    try:
        yield
    finally:
        logger.removeHandler(collector)
        for handler in handlers:
            logger.addHandler(handler)
        logger.propagate = propagate
        logger.setLevel(level)
