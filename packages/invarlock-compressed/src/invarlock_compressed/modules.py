"""Which modules of a model compressed-tensors quantized, and what each one holds.

compressed-tensors marks every module it quantizes with a ``quantization_scheme`` (a pydantic
``QuantizationScheme``) and a ``quantization_status``; a module in status ``compressed`` holds its
weight in the checkpoint's compressed form (``weight_packed`` + ``weight_shape`` for
pack-quantized, an int8 or fp8 ``weight`` for int- and float-quantized) next to its scales.
"""

from __future__ import annotations

from typing import Any

from invarlock_hf.models import is_transformers_model
from invarlock_hf.quantization import detect_quantization

METHOD = "compressed-tensors"
ADAPTER = "hf_compressed"
COMPRESSED = "compressed"


def is_compressed_tensors_model(model: Any) -> bool:
    """True for a transformers model whose config says compressed-tensors (no heavy import)."""
    if not is_transformers_model(model):
        return False
    return (detect_quantization(model) or {}).get("method") == METHOD


def quantized_modules(model: Any) -> dict[str, Any]:
    """Every module carrying a compressed-tensors scheme, by name, in model order."""
    return {
        name: module
        for name, module in model.named_modules()
        if getattr(module, "quantization_scheme", None) is not None
    }


def status_name(module: Any) -> str | None:
    status = getattr(module, "quantization_status", None)
    return None if status is None else str(getattr(status, "value", status))


def is_compressed(module: Any) -> bool:
    """True while the module holds its weight in compressed form."""
    return status_name(module) == COMPRESSED


def scheme_settings(module: Any) -> dict[str, Any]:
    """The module's scheme (its format included) and status as JSON values: what a restore must
    find unchanged."""
    scheme = module.quantization_scheme
    return {"scheme": scheme.model_dump(mode="json", exclude={"targets"}), "status": status_name(module)}


def module_format(module: Any) -> str | None:
    """The compression format of a module (``pack-quantized``, ``int-quantized``...), set by
    compressed-tensors when it compressed the module."""
    value = getattr(module.quantization_scheme, "format", None)
    return None if value is None else str(getattr(value, "value", value))
