"""Content identity of a checkpoint: every file with its size and SHA-256, and one digest over them.

A side's identity is what a certificate is about, so it never depends on how the path was spelt.
The manifest lists every regular file under the checkpoint directory (weights shards, config,
tokenizer, ONNX or GGUF files, anything else that ships with it), by its path relative to the
directory, skipping names that start with a dot (``.git``, ``.cache``). A hub id is looked up in
the local Hugging Face cache (never downloaded here); its snapshot's commit is the ``revision``.

The manifest's ``digest`` is the SHA-256 of its lines ``<sha256>  <size>  <path>\\n`` in path order,
so it changes with any byte of any file, any file added or removed, and nothing else.

Hashing reads each byte once, in large blocks, with one thread per file up to the CPU count
(``hashlib`` releases the GIL while it hashes). A safetensors file can be read through a
:class:`TensorVisitor`: the bytes of each tensor are hashed and then handed to the visitor while
they are in memory, so proving the loaded weights (:mod:`.weights`) costs no second read.
"""

from __future__ import annotations

import hashlib
import json
import mmap
import os
import struct
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from invarlock.errors import ModelLoadError, ModelNotFoundError

BLOCK = 8 * 2**20
"""Bytes read per call: large enough that the read and hash loop runs at disk or memory speed."""
SAFETENSORS = ".safetensors"

_KINDS = (
    ("weights", (".safetensors", ".bin", ".pt", ".pth", ".onnx", ".onnx_data", ".gguf", ".h5", ".msgpack")),
    (
        "tokenizer",
        (
            "tokenizer.json",
            "tokenizer_config.json",
            "vocab.json",
            "vocab.txt",
            "merges.txt",
            "special_tokens_map.json",
            "tokenizer.model",
            "spiece.model",
            "added_tokens.json",
        ),
    ),
    (
        "config",
        (
            "config.json",
            "generation_config.json",
            "quantize_config.json",
            "quant_config.json",
            "adapter_config.json",
            "preprocessor_config.json",
            ".index.json",
        ),
    ),
)


def file_kind(path: str) -> str:
    """``weights``, ``tokenizer``, ``config`` or ``other``: what a manifest entry is, for reading it."""
    name = path.rsplit("/", 1)[-1]
    for kind, endings in _KINDS:
        if kind == "weights" and name.endswith(".index.json"):
            continue
        if any(name == ending or name.endswith(ending) for ending in endings):
            return kind
    return "other"


@dataclass(frozen=True)
class FileEntry:
    path: str
    """Relative to the checkpoint directory, with ``/`` separators."""
    size: int
    sha256: str

    def line(self) -> str:
        return f"{self.sha256}  {self.size}  {self.path}\n"

    def info(self) -> dict[str, Any]:
        return {"path": self.path, "size": self.size, "sha256": self.sha256, "kind": file_kind(self.path)}


@dataclass(frozen=True)
class Manifest:
    root: Path
    files: tuple[FileEntry, ...]
    source: str
    """``directory``, ``file`` (a single-file checkpoint) or ``hub-cache``."""
    repo_id: str | None = None
    revision: str | None = None
    seconds: float = 0.0

    @property
    def digest(self) -> str:
        return manifest_digest(self.files)

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)

    def info(self) -> dict[str, Any]:
        """The ``identity`` block of a certificate side."""
        seconds = round(self.seconds, 4)
        rate = self.total_bytes / 2**20 / self.seconds if self.seconds > 0 else None
        return {
            "digest": self.digest,
            "source": self.source,
            "repo_id": self.repo_id,
            "revision": self.revision,
            "bytes": self.total_bytes,
            "files": [f.info() for f in self.files],
            "hashing": {"seconds": seconds, "mib_per_s": round(rate, 1) if rate else None},
        }


def manifest_digest(files: Iterable[FileEntry]) -> str:
    digest = hashlib.sha256()
    for entry in sorted(files, key=lambda f: f.path):
        digest.update(entry.line().encode("utf-8"))
    return digest.hexdigest()


def digest_of_listing(files: Sequence[Mapping[str, Any]]) -> str:
    """The digest of a manifest as a certificate records it (``identity.files``)."""
    return manifest_digest(FileEntry(f["path"], int(f["size"]), f["sha256"]) for f in files)


# -- where a checkpoint's files are -------------------------------------------------------------


@dataclass(frozen=True)
class CheckpointLocation:
    root: Path
    source: str
    repo_id: str | None = None
    revision: str | None = None
    single_file: str | None = None
    """A checkpoint that is one file (a GGUF file): only it is hashed, not its directory."""

    def files(self) -> list[str]:
        return [self.single_file] if self.single_file else checkpoint_files(self.root)


def locate(model_id: str, revision: str | None = None, cache_dir: str | None = None) -> CheckpointLocation:
    """The directory holding ``model_id``'s files: the directory itself, or its hub cache snapshot."""
    path = Path(model_id).expanduser()
    if path.is_dir():
        return CheckpointLocation(path, "directory")
    if path.is_file():
        return CheckpointLocation(path.parent, "file", single_file=path.name)
    try:
        from huggingface_hub import snapshot_download
    except ImportError as exc:
        raise ModelNotFoundError(
            f"{model_id} is not a directory, and without huggingface_hub its hub cache cannot be read; "
            "pass the checkpoint's directory"
        ) from exc
    try:
        snapshot = Path(
            snapshot_download(model_id, revision=revision, cache_dir=cache_dir, local_files_only=True)
        )
    except Exception as exc:
        raise ModelNotFoundError(
            f"{model_id} is not a directory and not in the local Hugging Face cache, so its files cannot "
            "be hashed; pass the checkpoint's directory"
        ) from exc
    return CheckpointLocation(snapshot, "hub-cache", model_id, snapshot.name)


def checkpoint_files(root: Path) -> list[str]:
    """Every regular file under ``root`` (links followed), relative, sorted; dot-names skipped."""
    found: list[str] = []
    for directory, subdirectories, names in os.walk(root, followlinks=True):
        subdirectories[:] = sorted(d for d in subdirectories if not d.startswith("."))
        for name in names:
            if name.startswith("."):
                continue
            full = Path(directory) / name
            if full.is_file():
                found.append(full.relative_to(root).as_posix())
    return sorted(found)


# -- reading each byte once ---------------------------------------------------------------------

TensorVisitor = Callable[[str, str, list[int], memoryview], None]
"""Called with (tensor name, safetensors dtype, shape, the tensor's bytes) for each tensor of a
safetensors file, right after those bytes were hashed. The memoryview is valid only during the call."""


BytesRead = Callable[[int], None]
"""Called with the number of bytes just hashed (from the hashing threads), for a progress display."""


def hash_file(
    path: Path, visitor: TensorVisitor | None = None, on_bytes: BytesRead | None = None
) -> tuple[int, str]:
    """(size, sha256) of ``path``, read once; safetensors files go through ``visitor`` when given."""
    if visitor is not None and path.name.endswith(SAFETENSORS):
        return _hash_safetensors(path, visitor, on_bytes)
    digest = hashlib.sha256()
    buffer = bytearray(BLOCK)
    view = memoryview(buffer)
    size = 0
    with open(path, "rb", buffering=0) as handle:
        while True:
            n = handle.readinto(buffer)
            if not n:
                break
            digest.update(view[:n])
            size += n
            if on_bytes is not None:
                on_bytes(n)
    return size, digest.hexdigest()


def _hash_safetensors(path: Path, visitor: TensorVisitor, on_bytes: BytesRead | None) -> tuple[int, str]:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        if size == 0:
            return 0, digest.hexdigest()
        # A private copy-on-write map: writable for torch.frombuffer, never written, nothing copied.
        with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_COPY) as mapped:
            view = memoryview(mapped)
            try:
                header_len, tensors = _safetensors_header(view, path)
                position = 0
                for name, info in tensors:
                    start, end = (8 + header_len + offset for offset in info["data_offsets"])
                    if start > position:
                        digest.update(view[position:start])
                    digest.update(view[start:end])
                    visitor(name, info["dtype"], list(info["shape"]), view[start:end])
                    if on_bytes is not None:
                        on_bytes(max(end, position) - position)
                    position = max(position, end)
                if position < size:
                    digest.update(view[position:size])
                    if on_bytes is not None:
                        on_bytes(size - position)
            finally:
                view.release()
    return size, digest.hexdigest()


def _safetensors_header(view: memoryview, path: Path) -> tuple[int, list[tuple[str, dict[str, Any]]]]:
    """(header length, [(name, {dtype, shape, data_offsets})] in file order); bytes outside it are
    hashed all the same, so a malformed file still gets its true digest before it is refused."""
    try:
        (header_len,) = struct.unpack("<Q", view[:8])
        header = json.loads(bytes(view[8 : 8 + header_len]))
        tensors = [(k, v) for k, v in header.items() if k != "__metadata__"]
        tensors.sort(key=lambda item: item[1]["data_offsets"][0])
        limit = len(view) - 8 - header_len
        for _, info in tensors:
            begin, end = info["data_offsets"]
            if not 0 <= begin <= end <= limit:
                raise ValueError("a tensor's data lies outside the file")
    except (struct.error, ValueError, KeyError, TypeError) as exc:
        raise ModelLoadError(f"{path} is not a valid safetensors file ({exc}); replace it") from exc
    return header_len, tensors


def read_checkpoint(
    location: CheckpointLocation,
    visitor: TensorVisitor | None = None,
    workers: int | None = None,
    on_bytes: BytesRead | None = None,
) -> Manifest:
    """Hash every file of the checkpoint, in parallel across files; see the module docstring.
    ``on_bytes`` hears of every block hashed (for a progress display)."""
    started = time.perf_counter()
    names = location.files()
    if not names:
        raise ModelNotFoundError(f"checkpoint directory {location.root} holds no files; pass a checkpoint")
    # Largest first, so one big shard does not start last and run alone.
    order = sorted(names, key=lambda n: -(location.root / n).stat().st_size)
    count = workers or min(len(order), os.cpu_count() or 1)

    def one(name: str) -> FileEntry:
        size, sha = hash_file(location.root / name, visitor, on_bytes)
        return FileEntry(name, size, sha)

    if count <= 1:
        entries = [one(name) for name in order]
    else:
        with ThreadPoolExecutor(max_workers=count, thread_name_prefix="invarlock-hash") as pool:
            entries = list(pool.map(one, order))
    return Manifest(
        location.root,
        tuple(sorted(entries, key=lambda e: e.path)),
        location.source,
        location.repo_id,
        location.revision,
        time.perf_counter() - started,
    )
