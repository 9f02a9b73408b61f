"""Weights accelerate offloaded to disk: read from, and written back to, their offload store.

accelerate keeps a disk-offloaded module on the meta device and reads its weights on every forward
pass from an ``OffloadedWeightsLoader``: each weight's index entry names either a safetensors file
and the tensor in it (transformers 5 serves them straight from the checkpoint) or a ``<key>.dat``
file in the offload folder (raw C-order bytes; bfloat16 stored as int16, float8 as int8, a 0-d
tensor as one element). We read a weight through the loader itself, so a snapshot holds exactly what
the next forward pass sees, one weight at a time. A restore writes back where the next forward pass
reads: into the ``.dat`` file in place, or, for a weight served from a checkpoint file (which is never
written), into a new ``.dat`` file in the offload folder that its index entry then points to; a
weight whose bytes are unchanged is not written at all. Every store is checked (file present, of the
right size, or a safetensors header naming the tensor with its shape and dtype; the offload folder
writable) before the first byte of a restore is written.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from invarlock.errors import OffloadStoreError

DISK = "disk"
"""The device recorded for a slot read from an offload store."""

# Numpy dtype names accelerate's .dat index uses, by torch dtype (float8/bfloat16 as accelerate names them).
_DAT_DTYPES: dict[torch.dtype, str] = {
    torch.float64: "float64",
    torch.float32: "float32",
    torch.float16: "float16",
    torch.bfloat16: "bfloat16",
    torch.int64: "int64",
    torch.int32: "int32",
    torch.int16: "int16",
    torch.int8: "int8",
    torch.uint8: "uint8",
    torch.bool: "bool",
}
for _name in ("float8_e4m3fn", "float8_e5m2", "float8_e4m3fnuz", "float8_e5m2fnuz"):
    if hasattr(torch, _name):
        _DAT_DTYPES[getattr(torch, _name)] = _name

_ADVICE = (
    "reload the model from its checkpoint (or load it with its weights in memory) and take a new snapshot"
)


@dataclass(eq=False)
class OffloadedTensor:
    """A weight offloaded to disk by accelerate: its loader's key, and the shape and dtype the module
    declares for it (its meta placeholder's)."""

    name: str
    loader: Any
    """accelerate's ``OffloadedWeightsLoader`` (the weights map's dataset)."""
    key: str
    shape: torch.Size
    dtype: torch.dtype

    @property
    def device(self) -> str:
        return DISK

    def numel(self) -> int:
        return self.shape.numel()

    @property
    def nbytes(self) -> int:
        return self.numel() * self.dtype.itemsize

    def _entry(self) -> dict[str, Any]:
        entry = self.loader.index.get(self.key)
        if not isinstance(entry, dict):
            raise self._error(f"has no entry {self.key!r} in accelerate's offload index")
        return entry

    def _dat_path(self) -> Path | None:
        folder = getattr(self.loader, "save_folder", None)
        return None if folder is None else Path(folder) / f"{self.key}.dat"

    def identity(self) -> tuple[Any, ...]:
        """Where the bytes live: one file region per distinct stored tensor."""
        entry = self._entry()
        if entry.get("safetensors_file") is not None:
            return ("safetensors", str(entry["safetensors_file"]), entry.get("weight_name", self.key))
        return ("dat", str(self._dat_path()))

    def _error(self, what: str) -> OffloadStoreError:
        return OffloadStoreError(
            f"{self.name}, offloaded to disk by accelerate, {what}, so nothing was captured or written and "
            f"the model is untouched; {_ADVICE}"
        )

    def check(self, *, writable: bool) -> None:
        """Refuse a store that cannot be read as this weight (or, ``writable``, written back).

        Reads headers and file sizes only, never tensor data.
        """
        entry = self._entry()
        if entry.get("safetensors_file") is not None:
            self._check_safetensors(entry)
            if writable:
                folder = getattr(self.loader, "save_folder", None)
                if self.dtype not in _DAT_DTYPES:
                    raise self._error(
                        f"is {self.dtype}, which accelerate's offload files cannot hold, so a restore "
                        "could not write it back"
                    )
                if folder is None or not os.path.isdir(folder) or not os.access(folder, os.W_OK):
                    raise self._error(
                        f"is read from {entry['safetensors_file']}, which is never written, and there is no "
                        f"writable offload folder to restore it into (offload_folder is {folder!r})"
                    )
            return
        path = self._dat_path()
        if path is None:
            raise self._error("has a .dat entry in the offload index but the loader has no offload folder")
        if list(entry.get("shape", [])) != list(self.shape) or entry.get("dtype") != _DAT_DTYPES.get(
            self.dtype
        ):
            raise self._error(
                f"is recorded in the offload index as {entry.get('dtype')} {entry.get('shape')}, not as the "
                f"module's {self.dtype} {list(self.shape)}"
            )
        try:
            size = path.stat().st_size
        except OSError as error:
            raise self._error(f"cannot be read from {path} ({error.strerror or error})") from None
        expected = max(self.numel(), 1) * self.dtype.itemsize
        if size != expected:
            raise self._error(f"is stored in {path}, which holds {size} bytes where it needs {expected}")
        if writable and not os.access(path, os.W_OK):
            raise self._error(f"is stored in {path}, which cannot be written")

    def _check_safetensors(self, entry: dict[str, Any]) -> None:
        from safetensors import safe_open

        file = entry["safetensors_file"]
        weight = entry.get("weight_name", self.key)
        try:
            with safe_open(file, framework="pt", device="cpu") as handle:
                if weight not in handle.keys():  # noqa: SIM118 (safe_open is not a mapping)
                    raise self._error(f"is not in {file} (no tensor {weight!r})")
                shape = list(handle.get_slice(weight).get_shape())
        except OffloadStoreError:
            raise
        except Exception as error:  # SafetensorError, OSError: a damaged or missing file
            raise self._error(f"cannot be read from {file} ({error})") from None
        if shape != list(self.shape):
            raise self._error(f"is {shape} in {file}, not the module's {list(self.shape)}")

    def _loaded(self) -> torch.Tensor:
        """The values the next forward pass would see, as accelerate's loader returns them (possibly
        a view of a mapped file)."""
        self.check(writable=False)
        try:
            value = self.loader[self.key]
        except Exception as error:
            raise self._error(f"cannot be read ({type(error).__name__}: {error})") from None
        if (
            not isinstance(value, torch.Tensor)
            or tuple(value.shape) != tuple(self.shape)
            or value.dtype != self.dtype
        ):
            got = (
                f"{value.dtype} {tuple(value.shape)}"
                if isinstance(value, torch.Tensor)
                else type(value).__name__
            )
            raise self._error(f"reads back as {got}, not the module's {self.dtype} {tuple(self.shape)}")
        return value

    def read(self) -> torch.Tensor:
        """The values the next forward pass would see, as a new CPU tensor that owns its memory."""
        # A copy the snapshot owns: safetensors may hand back a view of the mapped file, which a
        # later write to that file would change underneath the snapshot.
        return self._loaded().detach().to("cpu", memory_format=torch.contiguous_format, copy=True)

    def copy_(self, source: torch.Tensor) -> None:
        """Write ``source`` back to the store the next forward pass reads (see the module docstring).

        Written from ``source``'s own memory (a CPU tensor is not copied), with no mapping of the
        file: a restore holds about one weight at a time.
        """
        values = source.detach().to("cpu").contiguous().reshape(-1)
        raw = _byte_view(values)
        entry = self._entry()
        if entry.get("safetensors_file") is None:
            path = self._dat_path()
            assert path is not None  # checked before the first write
            with open(path, "r+b", buffering=0) as file:
                _write_all(file, raw)
                os.fsync(file.fileno())
            return
        current = self._loaded().detach().to("cpu").contiguous().reshape(-1)
        unchanged = torch.equal(_uint8(current), _uint8(values))
        del current
        if unchanged:
            return  # the checkpoint already holds these bytes
        path = self._dat_path()
        assert path is not None
        staging = path.with_name(f".{path.name}.restoring")
        with open(staging, "wb", buffering=0) as file:
            _write_all(file, raw if len(raw) else memoryview(bytes(self.dtype.itemsize)))
            os.fsync(file.fileno())
        os.replace(staging, path)
        # Replaced, not updated: accelerate reads a .dat file when the entry names no safetensors file.
        self.loader.index[self.key] = {"dtype": _DAT_DTYPES[self.dtype], "shape": list(self.shape)}


def _uint8(values: torch.Tensor) -> torch.Tensor:
    """A contiguous 1-d tensor's bytes as uint8, without copying."""
    return values.view(torch.uint8) if values.numel() else torch.empty(0, dtype=torch.uint8)


def _byte_view(values: torch.Tensor) -> memoryview:
    """A contiguous 1-d CPU tensor's bytes, without copying."""
    data = _uint8(values).numpy()
    return memoryview(data).cast("B") if values.numel() else memoryview(b"")  # type: ignore[arg-type]


def _write_all(file: Any, data: memoryview) -> None:
    """Write all of ``data`` from the file's current position (a raw file may write part of it)."""
    done = 0
    while done < len(data):
        done += file.write(data[done:])


def offloaded_tensor(
    name: str, weights_map: Any, key: str, placeholder: torch.Tensor
) -> OffloadedTensor | None:
    """The disk store of an offloaded weight, or None when the weights map has none for ``key``."""
    dataset: Any = getattr(weights_map, "dataset", weights_map)  # accelerate's PrefixedDataset
    full_key = getattr(weights_map, "prefix", "") + key
    index = getattr(dataset, "index", None)
    if not isinstance(index, dict) or full_key not in index:
        return None
    return OffloadedTensor(name, dataset, full_key, placeholder.shape, placeholder.dtype)


def is_offloaded(tensor: Any) -> bool:
    return isinstance(tensor, OffloadedTensor)


def values_of(source: Any) -> torch.Tensor:
    """A capture source's values: a live tensor itself, or an offloaded weight read from disk."""
    return source.read() if isinstance(source, OffloadedTensor) else source
