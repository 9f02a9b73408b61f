"""What differs between the packed-integer formats gptqmodel runs: one :class:`PackedFamily` each.

GPTQ is described in invarlock-gptq and AWQ in invarlock-awq; the loading, checking, describing and
hook code that uses a family is shared here (:mod:`invarlock_packed.loading`, ``.checkpoint``,
``.kernels``, ``.hooks``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["PackedFamily", "PackedShapes"]

PackedShapes = Mapping[str, tuple[int, ...]]
"""The packed tensors of one quantized Linear by short name (``qweight``, ``qzeros``, ``scales``...)."""


@dataclass(frozen=True)
class PackedFamily:
    """A quantization method whose Linear layers are packed int32 tensors run by gptqmodel kernels.

    :param adapter: the adapter name that loads it (``hf_gptq``).
    :param method: the ``quant_method`` of its quantization config, as ``detect_quantization`` reports it.
    :param format_field: the field of that report naming the tensor layout (``checkpoint_format``).
    :param default_format: the layout of checkpoints that do not state one.
    :param kernels: layout → device type → the ``backend`` value of the transformers quantization
        config that selects the kernel. Only kernels whose state is the packed tensors themselves
        are listed, so a snapshot of the buffers is a snapshot of the model.
    :param config_class: the transformers quantization config class that carries ``backend``.
    :param packed_tensors: the tensor names of one quantized Linear in a checkpoint.
    :param packing: reads (bits, in_features) off the shapes of one Linear's packed tensors.
    :param settings: report fields shown in the describe block besides bits and group size.
    :param dtypes: the dtypes the kernels keep their tensors stable in, the first being the default;
        None allows any (the default is then the checkpoint's).
    :param dtype_reason: why other dtypes are refused, for the error message.
    """

    adapter: str
    method: str
    format_field: str
    default_format: str
    kernels: Mapping[str, Mapping[str, str]]
    config_class: str
    packed_tensors: tuple[str, ...]
    packing: Callable[[PackedShapes], tuple[float, float]]
    settings: tuple[str, ...]
    dtypes: tuple[str, ...] | None = None
    dtype_reason: str = ""

    @property
    def label(self) -> str:
        return self.method.upper()

    def format_of(self, quantization: Mapping[str, Any]) -> str:
        """The tensor layout a ``detect_quantization`` report states (lower case), or the default."""
        stated = quantization.get(self.format_field)
        return str(stated).lower() if stated else self.default_format

    def formats_on(self, device_type: str) -> list[str]:
        """The layouts this adapter has a kernel for on ``device_type`` (``cpu``, ``cuda``...)."""
        return sorted(fmt for fmt, by_device in self.kernels.items() if device_type in by_device)
