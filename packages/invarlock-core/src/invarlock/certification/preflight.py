"""Everything that can be checked before a model is loaded is checked before a model is loaded.

Loading and scoring take minutes; a typo found after them wastes those minutes. So the output
directory, the device, each model path and the gate's numbers are refused up front, each with its
own error code (docs/errors.md).
"""

from __future__ import annotations

import importlib.util
import math
import os
import sys
from pathlib import Path

from invarlock.errors import (
    DeviceUnavailableError,
    InvalidArgumentError,
    ModelNotFoundError,
    OutputWriteError,
)
from invarlock.network import check_model_path, network_allowed


def check_output_directory(directory: str | Path, flag: str = "--out") -> None:
    """The results can be written there: a directory we may write, or one we may create."""
    path = Path(directory).expanduser()
    if path.exists() and not path.is_dir():
        raise OutputWriteError(
            f"{flag} {directory} is an existing file, not a directory; pass a directory for the results"
        )
    existing = path
    while not existing.exists():
        if existing.parent == existing:
            break
        existing = existing.parent
    if not existing.is_dir():
        raise OutputWriteError(
            f"{flag} {directory} cannot be created: {existing} is a file; pass another directory"
        )
    if not os.access(existing, os.W_OK | os.X_OK):
        what = "is not writable" if existing == path else f"cannot be created: {existing} is not writable"
        raise OutputWriteError(f"{flag} {directory} {what}; pass a directory you can write to")


def check_device(device: str, flag: str = "--device") -> None:
    """The installed torch has ``device``; without torch the adapter reports what is missing."""
    if device in ("auto", "cpu") or importlib.util.find_spec("torch") is None:
        return
    import torch

    try:
        parsed = torch.device(device)
    except (RuntimeError, ValueError) as exc:
        raise DeviceUnavailableError(
            f"{flag} {device} is not a device torch knows; use auto, cpu, cuda, cuda:N or mps"
        ) from exc
    backend = getattr(torch, parsed.type, None) if parsed.type != "mps" else torch.backends.mps
    available = backend is not None and hasattr(backend, "is_available") and bool(backend.is_available())
    build = f"torch {torch.__version__}"
    if not available:
        raise DeviceUnavailableError(
            f"{flag} {device}: {build} has no {parsed.type} device here; use cpu or auto, "
            f"or install a torch build with {parsed.type} support"
        )
    count = getattr(backend, "device_count", None)
    if parsed.index is not None and callable(count) and parsed.index >= count():
        raise DeviceUnavailableError(
            f"{flag} {device}: {build} sees {count()} {parsed.type} device(s), "
            f"numbered 0 to {count() - 1}; pick one of those"
        )


def check_model_location(
    model_id: str, side: str, revision: str | None = None, cache_dir: str | None = None
) -> None:
    """A checkpoint directory that exists, or (network off) a hub id in the local cache.

    A missing path and a relative path that is not a directory are refused as such, not as "set
    INVARLOCK_ALLOW_NETWORK=1": only an id that could be a hub id, with the network on, is left to
    the adapter to download.
    """
    path = Path(model_id).expanduser()
    if path.exists():
        return  # a directory, or a single-file checkpoint (GGUF) its adapter judges
    check_model_path(model_id, side)  # a path-shaped id that does not exist
    if network_allowed():
        return
    if not _in_hub_cache(model_id, revision, cache_dir):
        raise ModelNotFoundError(
            f"{side} {model_id} is not a directory here, nor a hub id in the local Hugging Face cache; "
            "pass an existing checkpoint directory (a hub id that is not cached needs "
            "INVARLOCK_ALLOW_NETWORK=1)"
        )


def _in_hub_cache(model_id: str, revision: str | None, cache_dir: str | None) -> bool:
    if "huggingface_hub" not in sys.modules and importlib.util.find_spec("huggingface_hub") is None:
        return False
    from huggingface_hub import snapshot_download

    try:
        snapshot_download(model_id, revision=revision, cache_dir=cache_dir, local_files_only=True)
    except Exception:
        return False
    return True


def check_gate_numbers(max_ratio: float, confidence: float) -> None:
    """``--max-ratio`` a finite number of at least 1; ``--confidence`` in [0.5, 1)."""
    if not math.isfinite(max_ratio) or max_ratio < 1.0:
        raise InvalidArgumentError(f"--max-ratio must be a finite number of at least 1.0, got {max_ratio}")
    if not (math.isfinite(confidence) and 0.5 <= confidence < 1.0):
        raise InvalidArgumentError(f"--confidence must be at least 0.5 and below 1, got {confidence}")


def check_distribution_gate(max_kl: float | None, min_top1_agreement: float | None, top_k: int) -> None:
    """``--max-kl`` a finite number of at least 0, ``--min-top1-agreement`` in [0, 1], and neither
    with ``--top-k 0`` (which turns the distribution metrics they bound off)."""
    if max_kl is not None and not (math.isfinite(max_kl) and max_kl >= 0.0):
        raise InvalidArgumentError(f"--max-kl must be a finite number of at least 0, got {max_kl}")
    if min_top1_agreement is not None and not 0.0 <= min_top1_agreement <= 1.0:
        raise InvalidArgumentError(
            f"--min-top1-agreement is a rate between 0 and 1, got {min_top1_agreement}"
        )
    gated = [
        flag
        for flag, v in (("--max-kl", max_kl), ("--min-top1-agreement", min_top1_agreement))
        if v is not None
    ]
    if gated and top_k == 0:
        raise InvalidArgumentError(
            f"{gated[0]} gates a distribution metric, but --top-k 0 turns them off; "
            "pass --top-k 1 or more, or drop the gate"
        )
