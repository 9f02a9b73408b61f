"""Chunked snapshots: safetensors shards of bounded size plus a manifest, for models too big to copy in RAM.

On disk::

    <directory>/invarlock-snapshot-XXXXXXXX/
        manifest.json                 names, kinds, shapes, dtypes, tying, CRC-32 per tensor, shard sizes,
                                      the caller's settings
        shard-00000.safetensors       each tensor once, under the first of its names
        shard-00001.safetensors ...

Writing happens in ``.invarlock-snapshot-XXXXXXXX.partial`` next to it. Every file is fsynced, then
the staging directory is renamed into place and the parent directory fsynced, so a snapshot that
looks complete survives a power cut. A failed write removes the staging directory and raises
:class:`~invarlock.errors.SnapshotWriteError` naming the directory, the OS reason and the bytes
needed. A writer holds a lock on ``.lock`` inside its staging directory; a staging directory whose
lock no live process holds was left by a killed writer, and the next write into the same parent
removes it.

Restoring first checks everything that can be checked without reading the data: the manifest
against the model (model class, every name, shape, dtype and setting), each shard's presence, exact
size and safetensors header. Every shard is opened and mapped read-only once, and held until the
restore ends, so a shard removed or replaced by rename meanwhile is still read as it was verified.
The CRC-32 of every tensor of every shard is verified from those mappings before any byte reaches
the model (no copy of the model in memory: the page cache serves both passes). A shard rewritten in
place is detected by its size and modification time, checked before and after each shard is copied:
before the first write the restore is refused with the model untouched; after it the restore raises
:class:`~invarlock.errors.SnapshotPartiallyRestoredError` ("partially restored"), as does any other
failure once writing began, never "untouched".

A shard restored into weights accelerate offloaded to disk is *streamed* instead of mapped (such a
model is on disk because memory is short, and the mappings of every shard would hold about the
whole model): it is opened and held open like the others, but its verification reads it a few MiB
at a time into one buffer and keeps nothing, and its copy reads one tensor at a time into memory of
its own, checks that tensor's CRC-32 again and copies exactly those bytes. So every shard is still
verified before the first write (a failure then leaves the model untouched), what is written is
what was verified (a mismatch on the second reading is a partial restore), and the restore holds
about one tensor besides what the offload store's write needs.
"""

from __future__ import annotations

import contextlib
import errno
import json
import mmap
import os
import re
import shutil
import struct
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import torch

from invarlock.errors import SnapshotCorruptError, SnapshotPartiallyRestoredError, SnapshotWriteError
from invarlock_torch.layout import Settings, SnapshotLayout, TensorSlot, capture_layout, plan_restore
from invarlock_torch.offload import is_offloaded, values_of

try:  # ISA-L computes the very same CRC-32 as zlib about four times faster; zlib is the fallback
    from isal.isal_zlib import crc32 as crc32  # re-exported: part of invarlock_torch's API
except ImportError:
    from zlib import crc32 as crc32

FORMAT = "invarlock-chunked-snapshot"
FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"
DEFAULT_SHARD_BYTES = 512 * 2**20
"""Shard size bound: restore holds about this much in memory (a bigger tensor gets a shard of its own)."""

_DIRECTORY_PREFIX = "invarlock-snapshot-"
_STAGING_SUFFIX = ".partial"
_LOCK_NAME = ".lock"
_UNLOCKED_STAGING_GRACE_S = 3600.0
"""A staging directory without a lock file (its writer died before taking it, or is just renaming)
is removed only once this old."""
_SHARD_NAME = re.compile(r"shard-\d{5}\.safetensors")
_STREAM_READ_BYTES = 2**20
"""The read size of a streamed shard's verification pass (see :class:`_OpenShard`)."""

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
        tensor = _as_stored(values_of(source))  # a weight offloaded to disk is read here, one at a time
        storage = tensor.untyped_storage().data_ptr()
        if tensor.numel() and storage in storages:
            tensor = tensor.clone()  # safetensors refuses two entries over one memory block
        storages.add(storage)
        stored[slot.names[0]] = tensor
    # CRC-32 runs beside the write; both release the GIL, so the checksum costs little wall time.
    checksums = pool.submit(_crc32s, list(stored.values()))
    save_file(stored, str(path), metadata={"format": "pt", "producer": FORMAT})
    return checksums.result()


def _fsync(path: Path) -> None:
    """Flush a file's or a directory's data and metadata to disk."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


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
                **({"placement": dict(slot.placement)} if slot.placement is not None else {}),
                **({"component": dict(slot.component)} if slot.component is not None else {}),
            }
            for index, slot in enumerate(layout.slots)
        ],
        "shards": [{"file": shard.file, "bytes": shard.bytes} for shard in shards],
    }
    return json.dumps(document)  # no indent: json then uses its C encoder, ~10x faster on big models


def _bytes_needed(layout: SnapshotLayout) -> int:
    """A lower bound on the disk space a chunked snapshot of ``layout`` takes: its tensors' bytes
    plus, per tensor, its safetensors header and manifest entries (names and a few numbers)."""
    names = sum(len(name) for slot in layout.slots for name in slot.names)
    return layout.nbytes + 2 * names + 200 * len(layout.slots) + 4096


def _write_failed(parent: Path, error: BaseException, needed: int) -> SnapshotWriteError:
    reason = error.strerror if isinstance(error, OSError) and error.strerror else str(error)
    if isinstance(error, FileExistsError) or (isinstance(error, OSError) and error.errno == errno.ENOTDIR):
        reason = f"{reason}: a path on the way is a file, not a directory"
    return SnapshotWriteError(
        f"cannot write a chunked snapshot into {parent} ({reason}; it needs about {needed} bytes), "
        "nothing was left there; pass a writable directory with enough free space"
    )


@contextlib.contextmanager
def _staging_directory(parent: Path) -> Iterator[Path]:
    """A new hidden staging directory in ``parent``, locked against cleaners while it exists."""
    import fcntl

    staging = Path(tempfile.mkdtemp(prefix="." + _DIRECTORY_PREFIX, suffix=_STAGING_SUFFIX, dir=parent))
    try:
        with (staging / _LOCK_NAME).open("wb") as lock:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
            yield staging
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def _remove_stale_staging(parent: Path) -> list[Path]:
    """Remove staging directories in ``parent`` that killed writers left; returns what was removed.

    A staging directory is stale when no process holds its lock, or when it has no lock file and is
    older than an hour. Only directories holding nothing but snapshot files are removed.
    """
    import fcntl

    removed: list[Path] = []
    try:
        candidates = [
            entry
            for entry in parent.iterdir()
            if entry.name.startswith("." + _DIRECTORY_PREFIX) and entry.name.endswith(_STAGING_SUFFIX)
        ]
    except OSError:
        return removed
    for staging in candidates:
        try:
            if not staging.is_dir() or any(
                entry.name != _LOCK_NAME and not _is_snapshot_file(entry) for entry in staging.iterdir()
            ):
                continue
            lock_path = staging / _LOCK_NAME
            if lock_path.exists():
                with lock_path.open("rb") as lock:
                    try:
                        fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                    except OSError:
                        continue  # a live writer holds it
                    shutil.rmtree(staging)
            elif time.time() - staging.stat().st_mtime > _UNLOCKED_STAGING_GRACE_S:
                shutil.rmtree(staging)
            else:
                continue
            removed.append(staging)
        except OSError:
            continue  # vanished meanwhile, or not ours to remove: leave it
    return removed


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
    :returns: the finished snapshot directory; it appears under this name only when complete and
        on disk.
    :raises SnapshotWriteError: the directory cannot be created or written (a file on the way,
        read-only, too little free space); nothing is left behind.
    """
    from safetensors import SafetensorError

    limit = DEFAULT_SHARD_BYTES if shard_bytes is None else int(shard_bytes)
    if limit <= 0:
        raise ValueError(f"shard_bytes must be a positive number of bytes, got {shard_bytes}")
    layout, sources = capture_layout(model, include, extra_tensors, settings)
    parent = Path(directory) if directory is not None else Path(tempfile.gettempdir())
    needed = _bytes_needed(layout)
    try:
        parent.mkdir(parents=True, exist_ok=True)
        _remove_stale_staging(parent)
        free = shutil.disk_usage(parent).free
    except OSError as error:
        raise _write_failed(parent, error, needed) from None
    if free < needed:
        raise SnapshotWriteError(
            f"cannot write a chunked snapshot into {parent}: it needs about {needed} bytes and "
            f"{free} are free there, nothing was written; free space or pass another directory"
        )
    try:
        with _staging_directory(parent) as staging:
            final = parent / staging.name[1 : -len(_STAGING_SUFFIX)]
            checksums = [0] * len(layout.slots)
            shards = []
            with ThreadPoolExecutor(max_workers=1) as pool:
                for number, indexes in enumerate(_group_into_shards(layout, limit)):
                    file = staging / f"shard-{number:05d}.safetensors"
                    crcs = _write_shard(
                        file, [layout.slots[i] for i in indexes], [sources[i] for i in indexes], pool
                    )
                    for index, crc in zip(indexes, crcs, strict=True):
                        checksums[index] = crc
                    shards.append(ShardRecord(file.name, file.stat().st_size, tuple(indexes)))
            manifest = staging / MANIFEST_NAME
            manifest.write_text(_manifest_json(model, layout, checksums, shards), encoding="utf-8")
            for shard in shards:
                _fsync(staging / shard.file)
            _fsync(manifest)
            (staging / _LOCK_NAME).unlink()  # still held: a cleaner now sees a young unlocked dir
            _fsync(staging)
            os.rename(staging, final)
            _fsync(parent)
    except (OSError, SafetensorError) as error:
        raise _write_failed(parent, error, needed) from error
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
        placement, component = entry.get("placement"), entry.get("component")
        if any(value is not None and not isinstance(value, dict) for value in (placement, component)):
            raise ValueError("a tensor's placement or component is not an object")
        dtype = _parse_dtype(entry["dtype"])
        slots.append(TensorSlot(names, kinds, shape, dtype, str(entry["device"]), placement, component))
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


class _ShardProblem(Exception):
    """A shard is not as its manifest describes; the caller words it (untouched, or partially restored)."""

    def __init__(self, path: Path, what: str) -> None:
        super().__init__(f"{path} {what}")
        self.path, self.what = path, what


def _signature(file: IO[bytes]) -> tuple[int, ...]:
    """What changes when a file's data is rewritten in place: size and modification time (its change
    time also moves when the file is only unlinked or renamed, which does not alter what is mapped)."""
    stat = os.fstat(file.fileno())
    return (stat.st_ino, stat.st_dev, stat.st_size, stat.st_mtime_ns)


class _OpenShard:
    """A shard opened once, checked against the manifest from its header, and held open until the
    restore ends: removing or replacing the file by name no longer changes what is read. It is
    mapped whole, or (``streamed``) read a tensor at a time and checksummed again as it is copied."""

    def __init__(
        self, directory: Path, manifest: SnapshotManifest, record: ShardRecord, *, streamed: bool = False
    ) -> None:
        self.path = directory / record.file
        self.record = record
        self.streamed = streamed
        """Verified and copied one tensor at a time through reads of the open file, never mapped:
        nothing of the shard stays in memory between the verification and the copy."""
        self.mapped: mmap.mmap | None = None
        try:
            self.file: IO[bytes] = self.path.open("rb", buffering=0)
        except FileNotFoundError:
            raise _ShardProblem(self.path, "is missing, so the snapshot is incomplete") from None
        except OSError as error:
            raise _ShardProblem(self.path, f"cannot be opened ({error.strerror})") from error
        try:
            self.signature = _signature(self.file)
            self.size = self.signature[2]
            self.ranges = self._check_header(manifest)
        except BaseException:
            self.file.close()
            raise

    def _check_header(self, manifest: SnapshotManifest) -> dict[int, tuple[int, int]]:
        """Slot index -> (begin, end) byte offsets in the file, from the header alone."""
        try:
            prefix = os.pread(self.file.fileno(), 8, 0)
            header_bytes = struct.unpack("<Q", prefix)[0] if len(prefix) == 8 else -1
            if not 0 < header_bytes <= self.size - 8:
                raise _ShardProblem(self.path, "has no valid safetensors header")
            header = json.loads(os.pread(self.file.fileno(), header_bytes, 8))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise _ShardProblem(self.path, f"has an unreadable header ({error})") from error
        if self.size != self.record.bytes:
            raise _ShardProblem(
                self.path,
                f"is {self.size} bytes, the manifest says {self.record.bytes}: it is truncated or damaged",
            )
        data_start = 8 + header_bytes
        ranges = {}
        for index in self.record.slots:
            slot = manifest.layout.slots[index]
            entry = header.get(slot.names[0]) if isinstance(header, dict) else None
            dtype, shape = _stored_form(slot)
            try:
                begin, end = (int(x) for x in entry["data_offsets"])  # type: ignore[index]
                agrees = entry["dtype"] == dtype and list(entry["shape"]) == shape  # type: ignore[index]
            except (TypeError, KeyError, ValueError):
                agrees = False
            if not agrees or end - begin != slot.nbytes or not 0 <= begin <= end <= self.size - data_start:
                raise _ShardProblem(self.path, f"does not hold {slot.names[0]} as the manifest describes it")
            ranges[index] = (data_start + begin, data_start + end)
        return ranges

    def map(self) -> None:
        """Map the whole shard read-only (the mapping keeps the file's data even once it is unlinked);
        a streamed shard is never mapped."""
        if self.streamed or not self.size:
            return
        self.mapped = mmap.mmap(self.file.fileno(), 0, access=mmap.ACCESS_READ)
        if self.mapped is not None and hasattr(self.mapped, "madvise"):  # not on Windows
            self.mapped.madvise(mmap.MADV_WILLNEED)  # read ahead: the whole shard is needed now

    def close(self) -> None:
        if self.mapped is not None:
            with contextlib.suppress(BufferError):  # a tensor still views it: unmapped when freed
                self.mapped.close()
        self.file.close()

    def check_unchanged(self) -> None:
        """:raises _ShardProblem: the file was rewritten in place since it was opened."""
        if _signature(self.file) != self.signature:
            raise _ShardProblem(self.path, "changed on disk while the snapshot was being restored")

    def verify(self, manifest: SnapshotManifest, pool: ThreadPoolExecutor) -> None:
        """Verify every tensor's CRC-32 in the mapping.

        :raises _ShardProblem: a checksum fails, or the file changed meanwhile.
        """
        self.check_unchanged()  # a mapping past the end of a truncated file cannot be read
        if self.streamed:
            self._verify_streamed(manifest)
            return
        everything = memoryview(self.mapped) if self.mapped is not None else memoryview(b"")

        def checksum_run(run: Sequence[tuple[int, int]]) -> list[int]:
            return [crc32(everything[begin:end]) for begin, end in run]

        # CRC-32 releases the GIL: two runs of about equal bytes, one on the pool's thread and one
        # here (a future per tensor would cost more than checksumming a small tensor).
        first, second = _halves(list(self.ranges.values()))
        later = pool.submit(checksum_run, second)
        checksums = checksum_run(first) + later.result()
        everything.release()
        self.check_unchanged()
        for index, checksum in zip(self.ranges, checksums, strict=True):
            self._check_checksum(manifest, index, checksum)

    def _check_checksum(self, manifest: SnapshotManifest, index: int, checksum: int) -> None:
        if checksum != manifest.checksums[index]:
            name = manifest.layout.slots[index].names[0]
            raise _ShardProblem(self.path, f"fails its checksum at {name}: its bytes changed on disk")

    def _read_into(self, buffer: memoryview, offset: int) -> None:
        """Fill ``buffer`` with the file's bytes from ``offset`` on.

        :raises _ShardProblem: the file ends first (it was truncated meanwhile).
        """
        done = 0
        while done < len(buffer):
            got = os.preadv(self.file.fileno(), [buffer[done:]], offset + done)
            if got <= 0:
                raise _ShardProblem(self.path, "ends early: it was truncated while being restored")
            done += got

    def _verify_streamed(self, manifest: SnapshotManifest) -> None:
        """Verify every tensor's CRC-32 from reads of a few MiB into one buffer: nothing is held after."""
        buffer = memoryview(bytearray(min(_STREAM_READ_BYTES, max(self.size, 1))))
        for index, (begin, end) in self.ranges.items():
            checksum, offset = 0, begin
            while offset < end:
                part = buffer[: min(len(buffer), end - offset)]
                self._read_into(part, offset)
                checksum = crc32(part, checksum)
                offset += len(part)
            self._check_checksum(manifest, index, checksum)
        buffer.release()
        self.check_unchanged()

    def copy_into(self, manifest: SnapshotManifest, targets: Sequence[Sequence[torch.Tensor]]) -> None:
        """Copy this shard's tensors from the mapping, checking the file is unchanged before and after.

        A streamed shard is read one tensor at a time into memory of its own, whose CRC-32 is checked
        again before it is copied: what is written is exactly what was verified, and at most one
        tensor of the shard is held.
        """
        import warnings

        self.check_unchanged()
        if self.streamed:
            self._copy_streamed(manifest, targets)
            self.check_unchanged()
            return
        if self.mapped is None:
            return
        with warnings.catch_warnings():  # the mapping is read-only, and is only read from
            warnings.filterwarnings("ignore", "The given buffer is not writable")
            data = torch.frombuffer(self.mapped, dtype=torch.uint8)
        for index, (begin, end) in self.ranges.items():
            slot = manifest.layout.slots[index]
            if slot.numel:
                source = _typed(data, begin, end, slot)
                for target in targets[index]:
                    target.copy_(source)
                del source
        del data
        self.check_unchanged()

    def _copy_streamed(self, manifest: SnapshotManifest, targets: Sequence[Sequence[torch.Tensor]]) -> None:
        for index, (begin, end) in self.ranges.items():
            slot = manifest.layout.slots[index]
            if not slot.numel:
                continue
            held = torch.empty(end - begin, dtype=torch.uint8)  # fresh memory: aligned for any dtype
            self._read_into(_byte_view(held), begin)
            self._check_checksum(manifest, index, crc32(_byte_view(held)))
            source = held.view(slot.dtype).view(slot.shape)
            for target in targets[index]:
                target.copy_(source)
            del source, held


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


def partially_restored(source: str, reason: str) -> SnapshotPartiallyRestoredError:
    """The error for a restore that failed after its first write into the model."""
    return SnapshotPartiallyRestoredError(
        f"restoring {source} failed after writing into the model had begun ({reason}), so the model is "
        "partially restored: restore again from a good snapshot"
    )


def note_partial_restore(interrupt: BaseException) -> None:
    """Add to an interrupt (Ctrl-C) raised while writing into the model that it is partly restored."""
    if hasattr(interrupt, "add_note"):  # Python 3.11+
        interrupt.add_note("the model is partially restored: restore again from a good snapshot")


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
    :raises SnapshotPartiallyRestoredError: a shard changed or could not be read after writing into
        the model began; the model is partly restored.
    """
    directory = Path(path)
    manifest = read_manifest(directory)
    plan = plan_restore(
        model, manifest.layout, extra_tensors, settings, source=f"the snapshot at {directory}"
    )
    with contextlib.ExitStack() as held, torch.no_grad(), ThreadPoolExecutor(max_workers=1) as pool:
        try:
            shards = []
            for record in manifest.shards:
                # A shard restored into weights offloaded to disk is streamed: such a model is on
                # disk because memory is short, so no shard is held mapped while the others are read.
                streamed = any(is_offloaded(t) for index in record.slots for t in plan.targets[index])
                shards.append(_OpenShard(directory, manifest, record, streamed=streamed))
                held.callback(shards[-1].close)
            for shard in shards:
                shard.map()
                shard.verify(manifest, pool)
            # The shard verified last is the likeliest still in the page cache: copied first.
            order = shards[-1:] + shards[:-1]
            if order:
                order[0].check_unchanged()
        except _ShardProblem as problem:
            raise _corrupt(problem.path, problem.what) from None
        except OSError as error:
            raise _corrupt(directory, f"cannot be read ({error.strerror or error})") from error
        try:
            plan.retie()
            for shard in order:
                shard.copy_into(manifest, plan.targets)
        except _ShardProblem as problem:
            raise partially_restored(f"the snapshot at {directory}", str(problem)) from None
        except Exception as error:
            raise partially_restored(
                f"the snapshot at {directory}", f"{type(error).__name__}: {error}"
            ) from error
        except BaseException as interrupt:  # Ctrl-C: still an interrupt, but say what it left
            note_partial_restore(interrupt)
            raise


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
