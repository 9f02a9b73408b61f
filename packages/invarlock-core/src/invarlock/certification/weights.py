"""Weights proven: the loaded model's tensors are the checkpoint's on-disk tensors.

Each tensor of each safetensors file is compared, byte for byte, with the loaded model's tensor of
the same name while the identity pass (:func:`invarlock.certification.identity.read_checkpoint`)
has its bytes in memory, so the proof adds no read of the weights. A tensor loaded in another
dtype is compared after converting the file's tensor to that dtype, and listed as converted (the
conversion is declared, not hidden). The invariant fails when a tensor differs, or when a model
parameter is in no file and is not tied to one that is: the loader initialised it anew, so the
model that was scored is not the checkpoint. Tensors the loader transformed into another shape
(quantized at load time), persistent buffers computed at load, and file tensors the model does not
hold are listed, and named in the detail, without failing the check.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from invarlock.certification.evaluation.gate import InvariantCheck
from invarlock.certification.ranks import is_dtensor, local_part

_TORCH_DTYPES = {
    "F64": "float64",
    "F32": "float32",
    "F16": "float16",
    "BF16": "bfloat16",
    "F8_E4M3": "float8_e4m3fn",
    "F8_E5M2": "float8_e5m2",
    "I64": "int64",
    "I32": "int32",
    "I16": "int16",
    "I8": "int8",
    "U8": "uint8",
    "U16": "uint16",
    "U32": "uint32",
    "U64": "uint64",
    "BOOL": "bool",
}
_SHOWN = 5


@dataclass
class WeightProof:
    """Collects the comparison of each file tensor with the model's; thread-safe."""

    tensors: dict[str, Any]
    """The model's state dict (name -> tensor)."""
    parameters: set[str]
    equal: int = 0
    converted: dict[str, str] = field(default_factory=dict)
    """name -> "F32 -> torch.float16": compared after the declared dtype conversion."""
    differing: list[str] = field(default_factory=list)
    transformed: dict[str, str] = field(default_factory=dict)
    """name -> why it could not be compared (another shape: quantized when loaded)."""
    unused: list[str] = field(default_factory=list)
    """File tensors the model does not hold."""
    seen: set[str] = field(default_factory=set)
    parameter_ids: dict[str, int] = field(default_factory=dict)
    """name -> id of its Parameter object: tied names share one, even on the meta device (accelerate's
    offloaded weights), where there is no storage to go by."""
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def of(cls, model: Any) -> WeightProof | None:
        """A proof for a PyTorch model, or None when the model exposes no state dict (ONNX)."""
        if not (hasattr(model, "state_dict") and hasattr(model, "named_parameters")):
            return None
        tensors = dict(model.state_dict())
        named = list(model.named_parameters(remove_duplicate=False))
        return cls(tensors, {name for name, _ in named}, parameter_ids={name: id(p) for name, p in named})

    def visit(self, name: str, dtype: str, shape: list[int], data: memoryview) -> None:
        """The :data:`~invarlock.certification.identity.TensorVisitor` of the identity pass."""
        import torch

        loaded = self.tensors.get(name)
        if loaded is None:
            with self._lock:
                self.unused.append(name)
            return
        torch_dtype = getattr(torch, _TORCH_DTYPES.get(dtype, ""), None)
        outcome: tuple[str, str] = ("equal", "")
        if torch_dtype is None:
            outcome = ("transformed", f"safetensors dtype {dtype} has no torch dtype here")
        elif loaded.device.type == "meta":
            outcome = ("transformed", "on the meta device (not loaded)")
        elif list(loaded.shape) != shape:
            outcome = (
                "transformed",
                f"{dtype}{shape} on disk, {loaded.dtype}{list(loaded.shape)} loaded (quantized when loaded)",
            )
        else:
            on_disk = torch.frombuffer(data, dtype=torch_dtype).reshape(shape) if data.nbytes else None
            here = loaded.detach().to("cpu")
            if on_disk is not None and is_dtensor(here):  # tensor parallel: this rank's shard
                on_disk, here = local_part(on_disk, here), here.to_local()
            if on_disk is None:
                same = here.numel() == 0
            elif here.dtype != torch_dtype:
                if not (here.is_floating_point() and on_disk.is_floating_point()):
                    outcome = ("transformed", f"{dtype} on disk, {here.dtype} loaded")
                    same = True
                else:
                    same = _bitwise_equal(on_disk.to(here.dtype), here)
                    if same:
                        outcome = ("converted", f"{dtype} -> {here.dtype}")
            else:
                same = _bitwise_equal(on_disk, here)
            del on_disk  # the bytes belong to the identity pass's map, which closes after this call
            if not same:
                outcome = ("differing", "")
        with self._lock:
            self.seen.add(name)
            kind, detail = outcome
            if kind == "equal":
                self.equal += 1
            elif kind == "converted":
                self.converted[name] = detail
            elif kind == "transformed":
                self.transformed[name] = detail
            else:
                self.differing.append(name)

    def _on_disk_storages(self) -> set[Any]:
        return {self._storage(name) for name in self.seen}

    def parameters_in_files(self) -> list[str]:
        """Parameters found in a file, directly or tied to one that is."""
        on_disk = self._on_disk_storages()
        return sorted(
            name
            for name in self.parameters
            if name in self.tensors and (name in self.seen or self._storage(name) in on_disk)
        )

    def newly_initialised(self) -> list[str]:
        """Parameters in no file, not tied to one that is, and whose module has no tensor in the
        files either (a module with file tensors under other names was built from them at load:
        packed or quantized formats)."""
        found = set(self.parameters_in_files())
        file_modules = {name.rpartition(".")[0] for name in self.seen | set(self.unused)}
        return sorted(
            name
            for name in self.parameters
            if name in self.tensors and name not in found and name.rpartition(".")[0] not in file_modules
        )

    def computed_buffers(self) -> list[str]:
        return sorted(name for name in self.tensors if name not in self.seen and name not in self.parameters)

    def _storage(self, name: str) -> Any:
        tensor = self.tensors[name]
        if tensor.device.type == "meta":
            return ("meta", self.parameter_ids.get(name, id(tensor)))
        if is_dtensor(tensor):  # a DTensor's own storage is not its data; its local shard's is
            tensor = tensor.to_local()
        return (tensor.device.type, tensor.untyped_storage().data_ptr())

    def info(self) -> dict[str, Any]:
        """The ``weights`` block of a certificate side."""
        return {
            "parameters": len([n for n in self.parameters if n in self.tensors]),
            "parameters_in_files": len(self.parameters_in_files()),
            "compared": len(self.seen),
            "equal": self.equal,
            "converted": dict(sorted(self.converted.items())),
            "differing": sorted(self.differing),
            "transformed": dict(sorted(self.transformed.items())),
            "newly_initialised": self.newly_initialised(),
            "computed_buffers": self.computed_buffers(),
            "unused_on_disk": sorted(self.unused),
        }


def _bitwise_equal(a: Any, b: Any) -> bool:
    """Same bytes (NaN payloads and signed zeros included), not merely equal values."""
    import torch

    if a.numel() != b.numel():
        return False
    if a.numel() == 0:
        return True
    a, b = a.contiguous().reshape(-1).view(torch.uint8), b.contiguous().reshape(-1).view(torch.uint8)
    # Compared as the widest integers that tile the bytes: several times faster than byte by byte.
    for width, dtype in ((8, torch.int64), (4, torch.int32), (2, torch.int16)):
        if a.numel() % width == 0 and a.data_ptr() % width == 0 and b.data_ptr() % width == 0:
            return bool(torch.equal(a.view(dtype), b.view(dtype)))
    return bool(torch.equal(a, b))


def weights_check(
    side: str,
    proof: WeightProof | None,
    safetensors_files: int,
    reason: str = "",
    partial_by_design: str | None = None,
) -> InvariantCheck:
    """The ``weights_match_checkpoint_<side>`` invariant. ``partial_by_design`` says why the files
    hold only part of the model (an adapter over a base named in its description); only then do
    parameters missing from them not fail the check."""
    name = f"weights_match_checkpoint_{side}"
    if proof is None:
        return InvariantCheck(
            name, True, f"not applicable: {reason or 'the model exposes no PyTorch weights'}"
        )
    if not safetensors_files:
        return InvariantCheck(
            name, True, "not applicable: the checkpoint has no safetensors files to compare with"
        )
    info = proof.info()
    if info["compared"] == 0:
        return InvariantCheck(
            name,
            True,
            "not proven: no tensor of the safetensors files has a model tensor's name (the loader renames "
            "them, or the files hold another part of the model, such as an adapter)",
        )
    new = info["newly_initialised"]
    if new and partial_by_design and not info["differing"]:
        return InvariantCheck(
            name,
            True,
            f"partly proven: the files hold {info['parameters_in_files']} of the model's "
            f"{info['parameters']} parameters ({partial_by_design}), and those equal their on-disk "
            f"bytes; the other {len(new)} come from elsewhere and are not proven here",
        )
    if info["differing"] or new:
        parts = []
        if info["differing"]:
            parts.append(
                f"{len(info['differing'])} tensor(s) differ from the file, e.g. {_some(info['differing'])}"
            )
        if new:
            parts.append(f"{len(new)} parameter(s) are in no file (initialised anew), e.g. {_some(new)}")
        return InvariantCheck(name, False, "; ".join(parts))
    detail = (
        f"{info['equal'] + len(info['converted'])} of {info['compared']} tensors equal their on-disk bytes"
    )
    notes = []
    if info["converted"]:
        conversions = sorted(set(info["converted"].values()))
        notes.append(f"{len(info['converted'])} after declared dtype conversion ({', '.join(conversions)})")
    if info["transformed"]:
        transformed = info["transformed"]
        notes.append(f"{len(transformed)} transformed when loaded, not comparable: {_some(transformed)}")
    if info["computed_buffers"]:
        notes.append(
            f"{len(info['computed_buffers'])} buffer(s) computed at load: {_some(info['computed_buffers'])}"
        )
    if info["unused_on_disk"]:
        notes.append(
            f"{len(info['unused_on_disk'])} file tensor(s) not in the model: {_some(info['unused_on_disk'])}"
        )
    return InvariantCheck(name, True, detail + ("; " + "; ".join(notes) if notes else ""))


def _some(names: Mapping[str, Any] | list[str]) -> str:
    listed = sorted(names)
    more = f" (+{len(listed) - _SHOWN} more)" if len(listed) > _SHOWN else ""
    return ", ".join(listed[:_SHOWN]) + more
