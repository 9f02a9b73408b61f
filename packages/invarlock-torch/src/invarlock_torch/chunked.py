"""Chunked snapshots: safetensors shards of bounded size plus a manifest, for models too big to copy in RAM.

On disk::

    <directory>/invarlock-snapshot-XXXXXXXX/
        manifest.json                 names, kinds, shapes, dtypes, tying, CRC-32 per tensor, shard sizes,
                                      the caller's settings
        shard-00000.safetensors       each tensor once, under the first of its names
        shard-00001.safetensors ...

Writing happens in ``.invarlock-snapshot-XXXXXXXX.partial`` next to it, renamed into place only when
complete; a failed write removes it.

Restoring reads the shards through memory maps (no copy of the model in memory). Before it writes
anything it checks everything that can be checked without reading the data: the manifest against
the model (model class, every name, shape, dtype and setting), each shard's presence, exact size and
safetensors header.
Then it verifies the CRC-32 of every tensor of every shard before any byte reaches the model,
because bytes altered inside a later shard would otherwise be found after earlier shards were
written; a failed restore must leave the model as it was. The copy then reads each shard a second
time (from the page cache, unless memory is short), starting with the shard verified last, which is
still mapped. On a 2-core machine the checksum pass costs a third to a half of the copy.
"""

from __future__ import annotations

import json
import mmap
import os
import re
import shutil
import struct
import tempfile
import warnings
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from invarlock.errors import SnapshotCorruptError
from invarlock_torch.layout import Settings, SnapshotLayout, TensorSlot, capture_layout, plan_restore

try:  # ISA-L computes the very same CRC-32 as zlib about four times faster; zlib is the fallback
    from isal.isal_zlib import crc32
except ImportError:
    from zlib import crc32

FORMAT = "invarlock-chunked-snapshot"
FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"
DEFAULT_SHARD_BYTES = 512 * 2**20
"""Shard size bound: restore holds about this much in memory (a bigger tensor gets a shard of its own)."""

_DIRECTORY_PREFIX = "invarlock-snapshot-"
_STAGING_SUFFIX = ".partial"
_SHARD_NAME = re.compile(r"shard-\d{5}\.safetensors")

# Dtypes every supported safetensors release reads; others are stored as their raw bytes ("U8").
_SAFETENSORS_DTYPES: dict[torch.dtype, str] = {
    torch.float64: "F64",
    torch.float32: "F32",
    torch.float16: "F16",
    torch.bfloat16: "BF16",
    torch.int64: "I64",
    torch.int32: "I32",
    torch.int16: "I16",
    torch.int8: "I8",
    torch.uint8: "U8",
    torch.bool: "BOOL",
    torch.float8_e4m3fn: "F8_E4M3",
    torch.float8_e5m2: "F8_E5M2",
}


@dataclass(frozen=True)
class ShardRecord:
    file: str
    bytes: int
    slots: tuple[int, ...]
    """Indexes into the layout's slots of the tensors this shard holds."""


@dataclass(frozen=True)
class SnapshotManifest:
    """The parsed ``manifest.json`` of a chunked snapshot."""

    layout: SnapshotLayout
    checksums: tuple[int, ...]
    """CRC-32 of each slot's bytes, in slot order."""
    shards: tuple[ShardRecord, ...]


# -- writing -------------------------------------------------------------------------------------


def _stored_form(slot: TensorSlot) -> tuple[str, list[int]]:
    """The safetensors dtype code and shape a slot is written with."""
    code = _SAFETENSORS_DTYPES.get(slot.dtype)
    return (code, list(slot.shape)) if code is not None else ("U8", [slot.nbytes])


def _as_stored(tensor: torch.Tensor) -> torch.Tensor:
    cpu = tensor.detach().to("cpu").contiguous()
    return cpu if cpu.dtype in _SAFETENSORS_DTYPES else cpu.reshape(-1).view(torch.uint8)


def _byte_view(tensor: torch.Tensor) -> memoryview:
    """The bytes of a contiguous CPU tensor, without copying."""
    if tensor.numel() == 0:
        return memoryview(b"")
    return memoryview(tensor.reshape(-1).view(torch.uint8).numpy())  # type: ignore[arg-type]


def _crc32s(tensors: Sequence[torch.Tensor]) -> list[int]:
    return [crc32(_byte_view(t)) for t in tensors]


def _group_into_shards(layout: SnapshotLayout, limit: int) -> list[list[int]]:
    shards: list[list[int]] = [[]]
    size = 0
    for index, slot in enumerate(layout.slots):
        if shards[-1] and size + slot.nbytes > limit:
            shards.append([])
            size = 0
        shards[-1].append(index)
        size += slot.nbytes
    return shards if shards[-1] else []


def _write_shard(
    path: Path, slots: Sequence[TensorSlot], sources: Sequence[torch.Tensor], pool: ThreadPoolExecutor
) -> list[int]:
    from safetensors.torch import save_file

    stored: dict[str, torch.Tensor] = {}
    storages: set[int] = set()
    for slot, source in zip(slots, sources, strict=True):
        tensor = _as_stored(source)
        storage = tensor.untyped_storage().data_ptr()
        if tensor.numel() and storage in storages:
            tensor = tensor.clone()  # safetensors refuses two entries over one memory block
        storages.add(storage)
        stored[slot.names[0]] = tensor
    # CRC-32 runs beside the write; both release the GIL, so the checksum costs little wall time.
    checksums = pool.submit(_crc32s, list(stored.values()))
    save_file(stored, str(path), metadata={"format": "pt", "producer": FORMAT})
    return checksums.result()


def _manifest_json(
    model: Any, layout: SnapshotLayout, checksums: Sequence[int], shards: Sequence[ShardRecord]
) -> str:
    config = getattr(model, "config", None)
    shard_of = {slot: number for number, shard in enumerate(shards) for slot in shard.slots}
    document = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "model": {
            "class": layout.model_class,
            "model_type": getattr(config, "model_type", None),
            "name_or_path": getattr(config, "_name_or_path", None),
        },
        "complete": layout.complete,
        "settings": layout.settings,
        "tensors": [
            {
                "names": list(slot.names),
                "kinds": list(slot.kinds),
                "shape": list(slot.shape),
                "dtype": str(slot.dtype).removeprefix("torch."),
                "device": slot.device,
                "shard": shard_of[index],
                "crc32": checksums[index],
            }
            for index, slot in enumerate(layout.slots)
        ],
        "shards": [{"file": shard.file, "bytes": shard.bytes} for shard in shards],
    }
    return json.dumps(document)  # no indent: json then uses its C encoder, ~10x faster on big models


def write_chunked_snapshot(
    model: torch.nn.Module,
    directory: str | os.PathLike[str] | None = None,
    *,
    include: Sequence[str] | None = None,
    shard_bytes: int | None = None,
    extra_tensors: Mapping[str, torch.Tensor] | None = None,
    settings: Settings | None = None,
) -> Path:
    """Write a chunked snapshot of ``model`` into a new directory under ``directory``.

    :param directory: where to create the snapshot directory (created if missing); None uses the
        system temp dir.
    :param include: as for :func:`~invarlock_torch.take_snapshot`.
    :param shard_bytes: largest shard size in bytes (default :data:`DEFAULT_SHARD_BYTES`); a tensor
        bigger than that gets a shard of its own.
    :param extra_tensors: live tensors outside parameters and buffers to capture too, by name.
    :param settings: as for :func:`~invarlock_torch.take_snapshot`; kept in the manifest.
    :returns: the finished snapshot directory; it appears under this name only when complete.
    """
    limit = DEFAULT_SHARD_BYTES if shard_bytes is None else int(shard_bytes)
    if limit <= 0:
        raise ValueError(f"shard_bytes must be a positive number of bytes, got {shard_bytes}")
    layout, sources = capture_layout(model, include, extra_tensors, settings)
    parent = Path(directory) if directory is not None else Path(tempfile.gettempdir())
    parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix="." + _DIRECTORY_PREFIX, suffix=_STAGING_SUFFIX, dir=parent))
    final = parent / staging.name[1 : -len(_STAGING_SUFFIX)]
    try:
        checksums = [0] * len(layout.slots)
        shards = []
        with ThreadPoolExecutor(max_workers=1) as pool:
            for number, indexes in enumerate(_group_into_shards(layout, limit)):
                file = f"shard-{number:05d}.safetensors"
                crcs = _write_shard(
                    staging / file, [layout.slots[i] for i in indexes], [sources[i] for i in indexes], pool
                )
                for index, crc in zip(indexes, crcs, strict=True):
                    checksums[index] = crc
                shards.append(ShardRecord(file, (staging / file).stat().st_size, tuple(indexes)))
        (staging / MANIFEST_NAME).write_text(
            _manifest_json(model, layout, checksums, shards), encoding="utf-8"
        )
        os.rename(staging, final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return final


# -- reading -------------------------------------------------------------------------------------


def _corrupt(path: Path, what: str) -> SnapshotCorruptError:
    return SnapshotCorruptError(f"{path} {what}; take a new snapshot (the model is untouched)")


def read_manifest(path: str | os.PathLike[str]) -> SnapshotManifest:
    """Parse and check the manifest of the chunked snapshot at ``path``.

    :raises SnapshotCorruptError: the directory or its manifest is missing, unreadable or not ours.
    """
    path = Path(path)
    manifest_path = path / MANIFEST_NAME
    if not path.is_dir():
        raise _corrupt(path, "is not a chunked snapshot directory (it does not exist or is a file)")
    try:
        document = json.loads(manifest_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise _corrupt(path, f"has no {MANIFEST_NAME}, so it is not a complete chunked snapshot") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise _corrupt(manifest_path, f"cannot be read ({error})") from error
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise _corrupt(manifest_path, "is not an InvarLock chunked-snapshot manifest")
    if document.get("version") != FORMAT_VERSION:
        raise SnapshotCorruptError(
            f"{manifest_path} has format version {document.get('version')}, this invarlock-torch reads "
            f"version {FORMAT_VERSION}; restore it with the invarlock-torch release that wrote it"
        )
    try:
        return _parse_manifest(document)
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        detail = f"{type(error).__name__}: {error}"
        raise _corrupt(manifest_path, f"is incomplete or damaged ({detail})") from error


def _parse_dtype(name: str) -> torch.dtype:
    dtype = getattr(torch, name, None)
    if not isinstance(dtype, torch.dtype):
        raise ValueError(f"unknown dtype {name!r}")
    return dtype


def _parse_manifest(document: dict[str, Any]) -> SnapshotManifest:
    slots, checksums, shard_of = [], [], []
    for entry in document["tensors"]:
        names, kinds = tuple(map(str, entry["names"])), tuple(map(str, entry["kinds"]))
        if not names or len(names) != len(kinds):
            raise ValueError("a tensor entry has no names, or names and kinds of different lengths")
        shape = tuple(int(size) for size in entry["shape"])
        slots.append(TensorSlot(names, kinds, shape, _parse_dtype(entry["dtype"]), str(entry["device"])))
        checksums.append(int(entry["crc32"]))
        shard_of.append(int(entry["shard"]))
    files = [(str(shard["file"]), int(shard["bytes"])) for shard in document["shards"]]
    bad_names = any(not _SHARD_NAME.fullmatch(file) for file, _ in files)
    if bad_names or not all(0 <= s < len(files) for s in shard_of):
        raise ValueError("shard entries do not match the tensor entries")
    shards = tuple(
        ShardRecord(file, size, tuple(i for i, s in enumerate(shard_of) if s == number))
        for number, (file, size) in enumerate(files)
    )
    settings = document.get("settings", {})
    if not isinstance(settings, dict):
        raise ValueError("settings is not an object")
    layout = SnapshotLayout(
        str(document["model"]["class"]), bool(document["complete"]), tuple(slots), settings
    )
    return SnapshotManifest(layout, tuple(checksums), shards)


@dataclass(frozen=True)
class _ShardData:
    """A checked shard: where its data section starts and where each tensor lies within it."""

    path: Path
    size: int
    data_start: int
    offsets: dict[int, tuple[int, int]]
    """Slot index -> (begin, end) byte offsets, relative to the data section."""


def _check_shard(directory: Path, manifest: SnapshotManifest, shard: ShardRecord) -> _ShardData:
    """Check a shard's presence, size and header against the manifest, reading only the header."""
    path = directory / shard.file
    try:
        size = path.stat().st_size
        with path.open("rb") as file:
            prefix = file.read(8)
            header_bytes = struct.unpack("<Q", prefix)[0] if len(prefix) == 8 else -1
            if not 0 < header_bytes <= size - 8:
                raise _corrupt(path, "has no valid safetensors header")
            header = json.loads(file.read(header_bytes))
    except FileNotFoundError:
        raise _corrupt(path, "is missing, so the snapshot is incomplete") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise _corrupt(path, f"has an unreadable header ({error})") from error
    if size != shard.bytes:
        raise _corrupt(path, f"is {size} bytes, the manifest says {shard.bytes}: it is truncated or damaged")
    data_start = 8 + header_bytes
    offsets = {}
    for index in shard.slots:
        slot = manifest.layout.slots[index]
        entry = header.get(slot.names[0]) if isinstance(header, dict) else None
        dtype, shape = _stored_form(slot)
        try:
            begin, end = (int(x) for x in entry["data_offsets"])  # type: ignore[index]
            agrees = entry["dtype"] == dtype and list(entry["shape"]) == shape  # type: ignore[index]
        except (TypeError, KeyError, ValueError):
            agrees = False
        if not agrees or end - begin != slot.nbytes or not 0 <= begin <= end <= size - data_start:
            raise _corrupt(path, f"does not hold {slot.names[0]} as the manifest describes it")
        offsets[index] = (begin, end)
    return _ShardData(path, size, data_start, offsets)


def _halves(ranges: list[tuple[int, int]]) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """Consecutive byte ranges cut in two runs of about equal bytes (a range is never cut)."""
    half = sum(end - begin for begin, end in ranges) / 2
    done = 0
    for cut, (begin, end) in enumerate(ranges):
        if done + (end - begin) / 2 > half:
            return ranges[:cut], ranges[cut:]
        done += end - begin
    return ranges, []


def _typed(data: torch.Tensor, begin: int, end: int, slot: TensorSlot) -> torch.Tensor:
    raw = data[begin:end]
    if begin % slot.dtype.itemsize:
        raw = raw.clone()  # a byte-stored tensor of a wider dtype may sit unaligned
    return raw.view(slot.dtype).view(slot.shape)


class _MappedShard:
    """A shard mapped read-only into memory, with its tensors' byte ranges."""

    def __init__(self, shard: _ShardData) -> None:
        with shard.path.open("rb") as file:
            if os.fstat(file.fileno()).st_size != shard.size:
                raise _corrupt(shard.path, "changed size while it was being read")
            self.mapped = mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ)
        if hasattr(self.mapped, "madvise"):  # not on Windows
            self.mapped.madvise(mmap.MADV_WILLNEED)  # read ahead: the whole shard is needed now
        self.shard = shard
        self.ranges = {i: (shard.data_start + b, shard.data_start + e) for i, (b, e) in shard.offsets.items()}

    def verify(self, manifest: SnapshotManifest, pool: ThreadPoolExecutor) -> None:
        """Raise SnapshotCorruptError unless every tensor's CRC-32 matches the manifest."""
        everything = memoryview(self.mapped)

        def checksum_run(run: Sequence[tuple[int, int]]) -> list[int]:
            return [crc32(everything[begin:end]) for begin, end in run]

        # CRC-32 releases the GIL: two runs of about equal bytes, one on the pool's thread and one
        # here (a future per tensor would cost more than checksumming a small tensor).
        first, second = _halves(list(self.ranges.values()))
        later = pool.submit(checksum_run, second)
        checksums = checksum_run(first) + later.result()
        for index, checksum in zip(self.ranges, checksums, strict=True):
            if checksum != manifest.checksums[index]:
                name = manifest.layout.slots[index].names[0]
                raise _corrupt(self.shard.path, f"fails its checksum at {name}: its bytes changed on disk")

    def copy_into(self, manifest: SnapshotManifest, targets: Sequence[Sequence[torch.Tensor]]) -> None:
        with warnings.catch_warnings():  # the mapping is read-only, and is only read from
            warnings.filterwarnings("ignore", "The given buffer is not writable")
            data = torch.frombuffer(self.mapped, dtype=torch.uint8)
        for index, (begin, end) in self.ranges.items():
            slot = manifest.layout.slots[index]
            if slot.numel:
                source = _typed(data, begin, end, slot)
                for target in targets[index]:
                    target.copy_(source)


def restore_chunked_snapshot(
    model: torch.nn.Module,
    path: str | os.PathLike[str],
    *,
    extra_tensors: Mapping[str, torch.Tensor] | None = None,
    settings: Settings | None = None,
) -> None:
    """Restore ``model`` in place from the chunked snapshot at ``path``, bit for bit.

    :param extra_tensors: the live extra tensors to restore into; the same names as at snapshot time.
    :param settings: the model's settings now, by module name, as passed at snapshot time.
    :raises SnapshotMismatchError: the snapshot is of another model, or a setting changed since it
        was taken; the model is untouched.
    :raises SnapshotCorruptError: a file is missing, truncated or fails its checksum; the model is
        untouched.
    """
    directory = Path(path)
    manifest = read_manifest(directory)
    plan = plan_restore(
        model, manifest.layout, extra_tensors, settings, source=f"the snapshot at {directory}"
    )
    shards = [_check_shard(directory, manifest, shard) for shard in manifest.shards]
    with torch.no_grad(), ThreadPoolExecutor(max_workers=1) as pool:
        last: _MappedShard | None = None
        for shard in shards:
            last = _MappedShard(shard)
            last.verify(manifest, pool)
        plan.retie()
        if last is not None:  # still mapped, and read last: copied first
            last.copy_into(manifest, plan.targets)
        for shard in shards[:-1]:
            _MappedShard(shard).copy_into(manifest, plan.targets)


# -- removing ------------------------------------------------------------------------------------


def remove_chunked_snapshot(path: str | os.PathLike[str]) -> None:
    """Delete a chunked snapshot directory; does nothing if it does not exist.

    Refuses a directory holding anything but a manifest and shards, so a wrong path deletes nothing.
    """
    directory = Path(path)
    if not directory.exists():
        return
    strangers = (
        [entry.name for entry in directory.iterdir() if not _is_snapshot_file(entry)]
        if directory.is_dir()
        else [directory.name]
    )
    if strangers:
        raise SnapshotCorruptError(
            f"{directory} is not a chunked snapshot (it holds {strangers[0]!r}), so nothing was deleted; "
            "pass the path that snapshot_chunked returned"
        )
    shutil.rmtree(directory)


def _is_snapshot_file(entry: Path) -> bool:
    return entry.is_file() and (entry.name == MANIFEST_NAME or bool(_SHARD_NAME.fullmatch(entry.name)))
