"""The baseline cache: a baseline's scores stored under a digest of everything that made them.

A second ``certify`` against the same baseline reads the baseline's per-window scores (and any
named arrays, such as its top-K distribution) from here instead of loading and scoring it again.
An entry is found only under its key, :func:`cache_key`: the SHA-256 of the parts it is given
(the baseline's content digest, the dataset digest and window plan, framing, dtype, device kind,
adapter and backend versions, invarlock-core's version, the load options), so any change to any
part is another key and misses.

Where: under ``baselines/`` in :func:`invarlock.paths.cache_dir` (``$INVARLOCK_CACHE_DIR`` when set,
else the platform's user cache directory, ``~/.cache/invarlock`` on Linux).

An entry is one file, ``baselines/<key[:2]>/<key>.entry``::

    MAGIC | header length (8 bytes, little endian) | header (JSON) | array bytes | SHA-256 of all before

The header holds the format, the key, the JSON metadata and each array's name, dtype, shape and
offset. An entry is trusted only when its trailing digest matches, its key is the one asked for and
every array lies inside it: a flipped byte, a truncated file or a file renamed under another key is
ignored with one warning and rewritten by the run that missed. Writes go to a temporary file in the
same directory and are renamed into place, so readers see a whole entry or none, and concurrent
writers of one key each rename a whole entry.

numpy is imported only to store or read arrays: invarlock-core alone imports this module.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import tempfile
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from invarlock import __version__
from invarlock.certification.datasets import Corpus
from invarlock.certification.evaluate import Evaluation, ScoredModel
from invarlock.certification.evaluation.distribution import BaselineDistribution
from invarlock.certification.evaluation.gate import InvariantCheck
from invarlock.certification.evaluation.stats import WindowScore
from invarlock.paths import CACHE_DIR_ENV, cache_dir
from invarlock.readiness import installed_version

CACHE_ENV = CACHE_DIR_ENV
"""Environment variable naming the cache directory (:func:`invarlock.paths.cache_dir`)."""
FORMAT = 1
"""Entry format; part of every key, so entries of another format are never read."""
MAGIC = b"INVARLOCK-CACHE\n"
_LENGTH = struct.Struct("<Q")
_DIGEST = 32


class BaselineCacheWarning(UserWarning):
    """A cache entry was ignored (corrupt) or could not be written; the run goes on without it."""


def cache_key(parts: Mapping[str, Any]) -> str:
    """The key of an entry: SHA-256 over ``parts`` (JSON, sorted keys) and the entry format."""
    text = json.dumps({"format": FORMAT, **parts}, sort_keys=True, ensure_ascii=True, default=str)
    return hashlib.sha256(text.encode("ascii")).hexdigest()


@dataclass(frozen=True)
class CacheEntry:
    key: str
    meta: dict[str, Any]
    """JSON metadata, as stored."""
    arrays: dict[str, Any] = field(default_factory=dict)
    """Named numpy arrays, as stored (opaque to the cache)."""


@dataclass(frozen=True)
class Lookup:
    """What a lookup found: the entry, or why there is none."""

    entry: CacheEntry | None
    detail: str
    """``found``, ``absent`` or ``corrupt (...)``."""


_warned: set[tuple[str, str]] = set()


def _warn_once(path: Path, message: str) -> None:
    if (str(path), message) not in _warned:
        _warned.add((str(path), message))
        warnings.warn(message, BaselineCacheWarning, stacklevel=3)


class CorruptEntry(ValueError):
    """Raised inside the cache only: why an entry's bytes cannot be trusted."""


class BaselineCache:
    """Entries under ``root``; see the module docstring for the file format and its guarantees."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = root if root is not None else cache_dir()

    def path(self, key: str) -> Path:
        return self.root / "baselines" / key[:2] / f"{key}.entry"

    def get(self, key: str) -> Lookup:
        """The entry stored under ``key``; a corrupt one is reported (warned once) and not returned."""
        path = self.path(key)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return Lookup(None, "absent")
        except OSError as exc:
            detail = f"unreadable ({exc.strerror or exc})"
        else:
            try:
                return Lookup(decode(data, key), "found")
            except CorruptEntry as exc:
                detail = f"corrupt ({exc})"
        _warn_once(
            path,
            f"baseline cache entry {path} is {detail}; it is ignored, the baseline is scored again "
            "and the entry rewritten",
        )
        return Lookup(None, detail)

    def put(self, key: str, meta: Mapping[str, Any], arrays: Mapping[str, Any] | None = None) -> Path | None:
        """Store an entry atomically; returns its path, or None (warned) when it cannot be written."""
        path = self.path(key)
        data = encode(key, meta, arrays or {})
        temporary: str | None = None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{key[:16]}.", suffix=".tmp")
            with os.fdopen(descriptor, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, path)
            temporary = None
        except OSError as exc:
            _warn_once(
                path,
                f"the baseline cache entry {path} could not be written ({exc.strerror or exc}); "
                f"the certificate is unaffected; set {CACHE_ENV} to a writable directory or pass --no-cache",
            )
            return None
        finally:
            if temporary is not None:
                Path(temporary).unlink(missing_ok=True)
        return path


def encode(key: str, meta: Mapping[str, Any], arrays: Mapping[str, Any]) -> bytes:
    """An entry's bytes (see the module docstring)."""
    listing: list[dict[str, Any]] = []
    blobs: list[bytes] = []
    offset = 0
    if arrays:
        import numpy

        for name in sorted(arrays):
            array = numpy.ascontiguousarray(arrays[name])
            if array.dtype.hasobject:
                raise TypeError(f"array {name!r} holds Python objects; the cache stores plain numbers only")
            blob = array.tobytes()
            listing.append(
                {
                    "name": name,
                    "dtype": array.dtype.str,
                    "shape": list(array.shape),
                    "offset": offset,
                    "nbytes": len(blob),
                }
            )
            blobs.append(blob)
            offset += len(blob)
    header = json.dumps(
        {"format": FORMAT, "key": key, "meta": meta, "arrays": listing},
        sort_keys=True,
    ).encode("utf-8")  # NaN and Infinity are kept (a non-finite score is evidence, not an error)
    body = b"".join([MAGIC, _LENGTH.pack(len(header)), header, *blobs])
    return body + hashlib.sha256(body).digest()


def decode(data: bytes, key: str) -> CacheEntry:
    """The entry in ``data``, stored under ``key``; :class:`CorruptEntry` when it cannot be trusted."""
    if len(data) < len(MAGIC) + _LENGTH.size + _DIGEST:
        raise CorruptEntry(f"{len(data)} bytes, shorter than any entry")
    body, digest = data[:-_DIGEST], data[-_DIGEST:]
    if hashlib.sha256(body).digest() != digest:
        raise CorruptEntry("its checksum does not match its content: truncated or altered")
    if not body.startswith(MAGIC):
        raise CorruptEntry("not an InvarLock cache entry")
    start = len(MAGIC) + _LENGTH.size
    (length,) = _LENGTH.unpack(body[len(MAGIC) : start])
    try:
        header = json.loads(body[start : start + length])
    except ValueError as exc:
        raise CorruptEntry(f"its header is not JSON ({exc})") from exc
    if not isinstance(header, dict) or header.get("format") != FORMAT or header.get("key") != key:
        raise CorruptEntry("its header is not a format-1 entry for this key")
    payload = memoryview(body)[start + length :]
    arrays: dict[str, Any] = {}
    listing = header.get("arrays") or []
    if listing:
        import numpy

        for item in listing:
            try:
                dtype = numpy.dtype(item["dtype"])
                begin, size, shape = int(item["offset"]), int(item["nbytes"]), tuple(item["shape"])
                if dtype.hasobject or begin < 0 or begin + size > len(payload):
                    raise ValueError("outside the entry")
                array = numpy.frombuffer(payload[begin : begin + size], dtype=dtype).reshape(shape)
            except (KeyError, TypeError, ValueError) as exc:
                raise CorruptEntry(f"array {item.get('name')!r} cannot be read ({exc})") from exc
            arrays[str(item["name"])] = array.copy()
    meta = header.get("meta")
    if not isinstance(meta, dict):
        raise CorruptEntry("its header holds no metadata")
    return CacheEntry(key, meta, arrays)


# -- the baseline's records ---------------------------------------------------------------------
# Two records per baseline: its plan (role, framing, position limit: what planning the windows
# needs from the loaded model) under the model's key, and its scores under the model's key plus the
# dataset, the window plan, the framing and the batch size.


def device_kind(device: str) -> str:
    """The device the scores are computed on, as far as numerics go: ``cpu``, ``mps`` or
    ``cuda:<GPU name>`` (``auto`` resolved as the adapters resolve it: CUDA, else MPS, else CPU)."""
    if device == "cpu":
        return device
    try:
        import torch
    except ImportError:  # no torch: the adapter (ONNX, llama.cpp) places the model itself
        return device
    if device == "auto":
        mps = torch.backends.mps.is_available()
        device = "cuda" if torch.cuda.is_available() else "mps" if mps else "cpu"
    parsed = torch.device(device)
    if parsed.type == "cuda":
        return f"cuda:{torch.cuda.get_device_name(parsed.index or 0)}"
    return str(parsed.type)


def model_parts(
    digest: str, adapter: Mapping[str, Any], device: str, load_options: Mapping[str, Any]
) -> dict[str, Any]:
    """The key parts that say which model computes the scores, known before it is loaded:
    the baseline's content digest, its adapter (name, distribution, version, backend versions),
    torch's and invarlock-core's versions, the device kind, the dtype and every load option but
    ``cache_dir`` (where the hub cache is says nothing about the content)."""
    return {
        "baseline": digest,
        "adapter": {k: adapter.get(k) for k in ("name", "distribution", "version", "backend")},
        "torch": installed_version("torch"),
        "invarlock_core": __version__,
        "device": device_kind(device),
        "dtype": load_options.get("dtype", "checkpoint"),
        "load_options": {k: v for k, v in load_options.items() if k != "cache_dir"},
    }


def plan_key(parts: Mapping[str, Any]) -> str:
    return cache_key({"record": "plan", **parts})


def scores_key(parts: Mapping[str, Any], corpus: Corpus, evaluation: Evaluation) -> str:
    framing = evaluation.framing
    return cache_key(
        {
            "record": "baseline",
            **parts,
            "dataset": corpus.digest,
            "windows": evaluation.windows.info(),
            "framing": {
                "role": framing.role,
                "seed": framing.seed,
                "prefix": list(framing.prefix),
                "suffix": list(framing.suffix),
                "mask_token_id": framing.mask_token_id,
                "decoder_start_token_id": framing.decoder_start_token_id,
            },
            "batch_size": evaluation.batch_size,
            "top_k": evaluation.top_k,
        }
    )


@dataclass(frozen=True)
class BaselinePlan:
    """What planning the windows needs from the loaded baseline."""

    role: str
    framing: dict[str, Any]
    """:class:`~invarlock.certification.evaluation.scoring.Framing`'s fields but the seed."""
    max_positions: int | None

    def meta(self) -> dict[str, Any]:
        return {"role": self.role, "framing": self.framing, "max_positions": self.max_positions}

    @classmethod
    def from_meta(cls, meta: Mapping[str, Any]) -> BaselinePlan:
        return cls(str(meta["role"]), dict(meta["framing"]), meta["max_positions"])


@dataclass(frozen=True)
class CachedBaseline:
    """A scored baseline as the cache keeps it: what certify would otherwise load the model for."""

    scored: ScoredModel
    weights: dict[str, Any] | None
    """The ``weights`` block of the baseline side (the proof of its loaded weights)."""
    weights_check: InvariantCheck

    def meta(
        self, parts: Mapping[str, Any], identity: Mapping[str, Any], windows: Mapping[str, Any]
    ) -> dict[str, Any]:
        """The entry's metadata; ``parts`` are the key's, recorded so an entry says what it is for."""
        return {
            "parts": dict(parts),
            "description": self.scored.description,
            "scores": [[s.window_id, s.nll, s.tokens] for s in self.scored.scores],
            "nonfinite_weights": self.scored.nonfinite_weights,
            "weights": self.weights,
            "weights_check": {
                "name": self.weights_check.name,
                "passed": self.weights_check.passed,
                "detail": self.weights_check.detail,
            },
            "identity": dict(identity),
            "windows": dict(windows),
            "distribution": self.scored.distribution is not None,
        }

    def arrays(self) -> dict[str, Any]:
        """The baseline's top-K distribution (:class:`BaselineDistribution`), when it was kept."""
        distribution = self.scored.distribution
        return distribution.arrays() if distribution is not None else {}

    @classmethod
    def from_entry(cls, entry: CacheEntry) -> CachedBaseline:
        meta = entry.meta
        check = meta["weights_check"]
        distribution = BaselineDistribution.from_arrays(entry.arrays) if meta["distribution"] else None
        scored = ScoredModel(
            dict(meta["description"]),
            [WindowScore(int(i), float(nll), int(tokens)) for i, nll, tokens in meta["scores"]],
            meta["nonfinite_weights"],
            distribution=distribution,
        )
        return cls(
            scored,
            meta["weights"],
            InvariantCheck(str(check["name"]), bool(check["passed"]), str(check["detail"])),
        )
