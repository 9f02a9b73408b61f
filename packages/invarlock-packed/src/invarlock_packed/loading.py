"""Loading a packed checkpoint (GPTQ, AWQ) through transformers + gptqmodel, on a kernel chosen here.

The adapter, not gptqmodel's automatic choice, picks the kernel: one whose only state is the
checkpoint's packed tensors (the torch kernels on CPU), so snapshot and restore of those buffers
are a snapshot and restore of the model. It also owns placement: the whole model goes to one
device at load, and ``.to()`` / ``.cuda()`` / ``.cpu()`` on it raise afterwards.
"""

from __future__ import annotations

import warnings
from typing import Any

from invarlock.errors import ModelLoadError
from invarlock_packed.checkpoint import check_packed_tensors, read_checkpoint_config
from invarlock_packed.family import PackedFamily

AUTO_CLASS = "AutoModelForCausalLM"


def load_packed_model(family: PackedFamily, model_id: str, device: str, options: dict[str, Any]) -> Any:
    """Load a ``family`` checkpoint onto ``device`` with the family's kernel for its format there.

    Checks before loading: the checkpoint is of this family, its format has a kernel on this
    device, and (for local weights) its packed tensors agree with its quantization config.
    """
    import transformers

    from invarlock_hf.loading import (
        load_pretrained,
        parse_dtype,
        pick_device,
        pin_placement,
        placement_device,
    )

    _refuse_placement_options(family, options)
    config, directory = read_checkpoint_config(model_id, options)
    quantization = _family_quantization(family, model_id, config)
    target = _device(pick_device(device))
    backend = kernel_for(family, family.format_of(quantization), target.type)
    check_packed_tensors(family, model_id, directory, quantization)
    placement = placement_device(str(target))

    load_options = dict(options)
    if family.dtypes is not None:
        dtype, torch_dtype = load_options.pop("dtype", None), load_options.pop("torch_dtype", None)
        requested = dtype if dtype is not None else torch_dtype  # torch_dtype: the older name
        load_options["dtype"] = _checked_dtype(family, parse_dtype(requested or family.dtypes[0]))
    config_class = getattr(transformers, family.config_class)
    load_options["quantization_config"] = config_class(bits=quantization["bits"], backend=backend)
    load_options["device_map"] = {"": placement}
    with warnings.catch_warnings():
        # Passing quantization_config for a quantized checkpoint is how transformers takes the
        # kernel ("loading attributes"); its warning about that is expected here.
        warnings.filterwarnings("ignore", message="You passed `quantization_config`")
        model = load_pretrained(AUTO_CLASS, model_id, placement, load_options, move_to_device=False)
    pin_placement(
        model, family.adapter, f"it placed the model on {placement} with kernels chosen for that device"
    )
    return model


def kernel_for(family: PackedFamily, fmt: str, device_type: str) -> str:
    """The ``backend`` value that selects the family's kernel for ``fmt`` on ``device_type``."""
    by_device = family.kernels.get(fmt)
    if by_device is None:
        raise ModelLoadError(
            f"{family.adapter} does not load {family.label} format {fmt!r}; it loads "
            f"{', '.join(sorted(family.kernels))}"
        )
    backend = by_device.get(device_type)
    if backend is None:
        here = ", ".join(family.formats_on(device_type)) or "none"
        raise ModelLoadError(
            f"{family.label} format {fmt} has no kernel on {device_type} (formats that run on "
            f"{device_type}: {here}); load it with device={sorted(by_device)[0]!r}, or use a checkpoint "
            "in a format that runs here"
        )
    return backend


def _family_quantization(family: PackedFamily, model_id: str, config: dict[str, Any]) -> dict[str, Any]:
    from invarlock_hf.quantization import QUANTIZED_ADAPTERS, detect_quantization

    quantization = detect_quantization(config)
    if quantization is None:
        raise ModelLoadError(
            f"{model_id} is not quantized (its config.json has no quantization_config); load it with "
            "hf_causal, or hf_auto to choose"
        )
    if quantization["method"] != family.method:
        other = QUANTIZED_ADAPTERS.get(quantization["method"])
        hint = f"load it with {other}" if other else "load it with hf_auto"
        raise ModelLoadError(f"{model_id} is {quantization['method']}-quantized, not {family.method}; {hint}")
    if not isinstance(quantization.get("bits"), int):
        raise ModelLoadError(
            f"{model_id} has a {family.method} quantization_config without bits; add them to config.json"
        )
    return quantization


def _refuse_placement_options(family: PackedFamily, options: dict[str, Any]) -> None:
    for name, instead in (
        ("device_map", "pass device= (the whole model goes to that device)"),
        ("quantization_config", "drop it: the checkpoint's own quantization_config is used"),
    ):
        if options.get(name) is not None:
            raise ModelLoadError(f"{family.adapter} chooses {name} itself; {instead}")


def _checked_dtype(family: PackedFamily, dtype: Any) -> Any:
    import torch

    allowed = [getattr(torch, name) for name in family.dtypes or ()]
    if dtype not in allowed:
        raise ModelLoadError(
            f"{family.adapter} loads in {' or '.join(family.dtypes or ())}, not {dtype} "
            f"({family.dtype_reason}); pass one of those as dtype"
        )
    return dtype


def _device(device: str) -> Any:
    import torch

    try:
        return torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ModelLoadError(
            f"device {device!r} is not a device torch knows; use cpu, cuda, cuda:N or auto"
        ) from exc
