"""Reading a GGUF file's header (key-value metadata and tensor table) with the ``gguf`` package.

Only the header is parsed: tensor data stays on disk (the reader memory-maps the file and reads
no weight bytes), so describing a multi-gigabyte checkpoint costs what its metadata costs.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from invarlock.errors import DependencyMissingError, ModelLoadError
from invarlock_gguf.models import ADAPTER, GGUFMetadata

GGUF_MAGIC = b"GGUF"
# Kept apart from ``values``: long string arrays that only the tokenizer view needs.
_TOKEN_KEYS = ("tokenizer.ggml.tokens", "tokenizer.ggml.token_type", "tokenizer.ggml.merges")
_SKIPPED_KEYS = ("tokenizer.ggml.scores", "tokenizer.chat_template", "GGUF.version")


def read_metadata(path: Path) -> GGUFMetadata:
    """The header of the GGUF file at ``path``; a file that is not GGUF gets a :class:`ModelLoadError`."""
    check_is_gguf(path)
    try:
        import gguf
    except ImportError as exc:
        raise DependencyMissingError(
            f"{ADAPTER} reads GGUF metadata with the gguf package ({exc}); run: pip install gguf"
        ) from exc
    try:
        reader = gguf.GGUFReader(str(path), "r")
    except Exception as exc:
        raise ModelLoadError(
            f"{path} has a GGUF header that the gguf package cannot parse ({type(exc).__name__}: {exc}); "
            "the file is truncated or was written by a newer GGUF version: re-download or re-convert it"
        ) from exc
    values: dict[str, Any] = {}
    for key, reader_field in reader.fields.items():
        if key in _TOKEN_KEYS or key in _SKIPPED_KEYS or not reader_field.types:
            continue
        values[key] = _plain(reader_field.contents())
    architecture = values.get("general.architecture")
    if not isinstance(architecture, str):
        raise ModelLoadError(
            f"{path} has no general.architecture key, which every GGUF model file carries; "
            "it is not a model checkpoint (a LoRA adapter or a vocabulary-only file?)"
        )
    fields = reader.fields
    tokens = tuple(fields["tokenizer.ggml.tokens"].contents()) if "tokenizer.ggml.tokens" in fields else ()
    types = (
        tuple(int(t) for t in fields["tokenizer.ggml.token_type"].contents())
        if "tokenizer.ggml.token_type" in fields
        else ()
    )
    merges = len(fields["tokenizer.ggml.merges"].data) if "tokenizer.ggml.merges" in fields else 0
    tensor_types: Counter[str] = Counter()
    tensor_elements: Counter[str] = Counter()
    for tensor in reader.tensors:
        tensor_types[tensor.tensor_type.name] += 1
        tensor_elements[tensor.tensor_type.name] += int(tensor.n_elements)
    return GGUFMetadata(
        path=path,
        architecture=architecture,
        values=values,
        tokens=tokens,
        token_types=types,
        merges=merges,
        tensor_types=tensor_types,
        tensor_elements=tensor_elements,
        tensor_names=frozenset(tensor.name for tensor in reader.tensors),
        tensor_bytes=sum(int(tensor.n_bytes) for tensor in reader.tensors),
    )


def check_is_gguf(path: Path) -> None:
    """Refuse, before any backend sees it, a path that is not a readable file starting with the GGUF magic."""
    try:
        with path.open("rb") as handle:
            magic = handle.read(4)
    except OSError as exc:
        raise ModelLoadError(
            f"{path} cannot be read ({exc.strerror}); check the path and its permissions"
        ) from exc
    if magic != GGUF_MAGIC:
        raise ModelLoadError(
            f"{path} is not a GGUF file (it does not start with the bytes 'GGUF'); pass a .gguf checkpoint "
            "written by llama.cpp's convert_hf_to_gguf.py or llama-quantize"
        )


def _plain(value: Any) -> Any:
    """JSON-friendly Python values (numpy scalars and arrays become ints, floats and lists)."""
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        return value.item()
    return value
