"""The quantization methods the installed libraries register, and whether each works here.

Core knows no backend: the rows come from plugins through the ``invarlock_quantization_methods``
hook (invarlock-hf answers for every method transformers registers, from transformers' own
quantizer classes and their environment checks). Core adds what only it knows, which InvarLock
adapter owns a method and whether that adapter is ready, and caches the rows.

The plugins' answers depend only on what is installed and on the visible accelerators, so they are
cached under a fingerprint of both (every installed distribution with its version, the
interpreter, the platform, the GPU device files and the ``*_VISIBLE_DEVICES`` variables): the
first listing after any install imports the backends (seconds); later ones read the cache and
import nothing heavy.
"""

from __future__ import annotations

import enum
import hashlib
import json
import os
import sys
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, replace
from glob import glob
from pathlib import Path
from typing import Any, cast

from invarlock.paths import CACHE_DIR_ENV as CACHE_DIR_ENV  # where it was first defined
from invarlock.paths import cache_dir

_CACHE_FORMAT = 1
_DEVICE_FILES = ("/dev/nvidia[0-9]*", "/dev/kfd", "/dev/dri/renderD*")
_DEVICE_VARIABLES = (
    "CUDA_VISIBLE_DEVICES",
    "HIP_VISIBLE_DEVICES",
    "ROCR_VISIBLE_DEVICES",
    "ZE_AFFINITY_MASK",
)


class QuantizerStatus(str, enum.Enum):
    """What a quantization method can do on this machine."""

    ADAPTER = "adapter"
    """An InvarLock adapter owns it (``adapter`` names it); that adapter's readiness applies."""
    LOADS = "loads"
    """It loads through the role adapter (``hf_causal``...), kept quantized; a test loads one here."""
    LOADS_DEQUANTIZED = "loads_dequantized"
    """It loads, but its weights are dequantized to float: what runs is not the quantized model."""
    NEEDS_EXTRA = "needs_extra"
    """A backend is missing; ``install`` holds the pip command."""
    NEEDS_GPU = "needs_gpu"
    """It needs an accelerator this machine does not have."""
    UNSUPPORTED = "unsupported"
    """It cannot be used here, or nothing shows that it works; ``reason`` says which."""


@dataclass(frozen=True)
class QuantizationMethod:
    """One quantization method as a plugin reports it (the ``invarlock_quantization_methods`` hook).

    :param method: the name checkpoints use (``quant_method`` in ``config.json``, e.g. ``gptq``).
    :param status: what it can do here.
    :param reason: one sentence saying why (the backend's own message when it refused).
    :param library: the library that registers the method (``transformers``).
    :param quantizer: the library's class that handles it, for reference.
    :param adapter: the InvarLock adapter that owns it, if any.
    :param install: the pip command that makes it usable, for ``needs_extra``.
    :param adapter_status: the owning adapter's readiness (``ready``, ``needs_extra``...); set by core.
    """

    method: str
    status: QuantizerStatus
    reason: str
    library: str
    quantizer: str | None = None
    adapter: str | None = None
    install: str | None = None
    adapter_status: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {**asdict(self), "status": self.status.value}

    @classmethod
    def from_json(cls, item: dict[str, Any]) -> QuantizationMethod:
        return cls(**{**item, "status": QuantizerStatus(item["status"])})


@dataclass(frozen=True)
class QuantizerListing:
    methods: tuple[QuantizationMethod, ...]
    errors: tuple[str, ...]
    """One line per plugin whose hook raised or returned something else than rows."""
    cached: bool


def accelerator_device_files() -> list[str]:
    """The GPU device files present (``/dev/nvidia0``, ``/dev/kfd``...), sorted; no backend asked."""
    return sorted(path for pattern in _DEVICE_FILES for path in glob(pattern))


def environment_fingerprint() -> str:
    """What the plugins' answers depend on, hashed: installed distributions and visible devices."""
    installed = sorted(_installed_distributions())
    devices = accelerator_device_files()
    variables = [f"{name}={os.environ.get(name)}" for name in _DEVICE_VARIABLES]
    parts = [str(_CACHE_FORMAT), sys.executable, sys.platform, *installed, *devices, *variables]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:32]


def _installed_distributions() -> Iterator[str]:
    """``<dir>/<name>-<version>.dist-info`` of every installed distribution on ``sys.path``: the
    directory names say name and version, so no metadata file is read."""
    for entry in sys.path:
        try:
            names = os.listdir(entry or ".")
        except OSError:
            continue
        for name in names:
            if name.endswith((".dist-info", ".egg-info")):
                yield f"{entry}/{name}"


def quantization_methods(*, refresh: bool = False) -> QuantizerListing:
    """Every method the plugins report, one row each (sorted by name), with adapter readiness."""
    path = cache_dir() / f"quantizers-{environment_fingerprint()}.json"
    rows = None if refresh else _read_cache(path)
    cached = rows is not None
    errors: tuple[str, ...] = ()
    if rows is None:
        rows, errors = _ask_plugins()
        if not errors:
            _write_cache(path, rows)
    return QuantizerListing(tuple(_with_adapter_readiness(rows)), errors, cached)


def _ask_plugins() -> tuple[list[QuantizationMethod], tuple[str, ...]]:
    from invarlock.manager import get_plugin_manager

    manager = get_plugin_manager()
    rows: dict[str, QuantizationMethod] = {}
    errors: list[str] = []
    # One implementation at a time: a plugin that raises costs its own rows only.
    for hookimpl in reversed(manager.hook.invarlock_quantization_methods.get_hookimpls()):
        try:
            answer: list[Any] = list(cast(Iterable[Any], hookimpl.function()))
        except Exception as exc:
            errors.append(f"plugin {hookimpl.plugin_name} failed to list quantization methods: {exc!r}")
            continue
        for row in answer:
            if not isinstance(row, QuantizationMethod) or not isinstance(row.status, QuantizerStatus):
                errors.append(f"plugin {hookimpl.plugin_name} returned {row!r}, not a QuantizationMethod")
                continue
            rows.setdefault(row.method, row)  # the first plugin asked answers for a method
    return sorted(rows.values(), key=lambda row: row.method), tuple(errors)


def _with_adapter_readiness(rows: Iterable[QuantizationMethod]) -> list[QuantizationMethod]:
    from invarlock.manager import get_plugin_manager

    records = {record.name: record for record in get_plugin_manager().adapter_records()}
    completed = []
    for row in rows:
        record = records.get(row.adapter) if row.adapter else None
        if record is not None:
            row = replace(
                row,
                adapter_status=record.readiness.status.value,
                install=row.install or record.readiness.install,
            )
        completed.append(row)
    return completed


def _read_cache(path: Path) -> list[QuantizationMethod] | None:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
        return [QuantizationMethod.from_json(item) for item in document["methods"]]
    except (OSError, ValueError, KeyError, TypeError):
        return None  # absent, unreadable or from another format: computed again


def _write_cache(path: Path, rows: Sequence[QuantizationMethod]) -> None:
    document = {
        "format": _CACHE_FORMAT,
        "methods": [replace(row, adapter_status=None).as_json() for row in rows],
    }
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=path.parent, suffix=".tmp", delete=False) as handle:
            temporary = Path(handle.name)
            try:
                json.dump(document, handle)
            except BaseException:
                handle.close()
                temporary.unlink(missing_ok=True)
                raise
        os.replace(temporary, path)  # whole or not at all
    except OSError:
        pass  # a read-only cache directory only costs the next listing its speed
