"""The engine's seam to the plugin frame: choosing each side's adapter and loading through it.

This module and :mod:`invarlock.certification.context` are the only parts of the engine that
import the frame (:mod:`invarlock.adapters`, :mod:`invarlock.manager`, :mod:`invarlock.listing`);
every other contact with a model goes through the :class:`~invarlock.adapters.Adapter` chosen here
(its hooks: ``describe``, ``logits``, ``snapshot``, ``restore``).
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from invarlock.adapters import Adapter, get_adapter, resolve_adapter
from invarlock.errors import InvarlockError, ModelLoadError
from invarlock.manager import get_plugin_manager
from invarlock.readiness import installed_version
from invarlock.types import AdapterSpec, Resolution

AUTO = "auto"


@dataclass(frozen=True)
class ChosenAdapter:
    adapter: Adapter
    spec: AdapterSpec
    resolution: Resolution

    @property
    def name(self) -> str:
        return self.spec.name

    def info(self) -> dict[str, Any]:
        """Which adapter served a side, why, and the versions behind it."""
        distribution = self.spec.distribution
        return {
            "name": self.spec.name,
            "reason": self.resolution.reason,
            "distribution": distribution,
            "version": installed_version(distribution) if distribution else None,
            "backend": {name: installed_version(name) for name in self.spec.backend},
        }


def choose_adapter(
    model_id: str, requested: str, *, flag: str, load_options: Mapping[str, Any]
) -> ChosenAdapter:
    """The adapter for one side: named explicitly, or resolved from that side's own checkpoint."""
    if requested != AUTO:
        resolution = Resolution(requested, f"named with {flag}")
    else:  # the plugins decide, from the checkpoint and the load options
        resolution = resolve_adapter(model_id, load_options)
    manager = get_plugin_manager()
    spec = manager.require_ready(resolution.adapter)
    return ChosenAdapter(get_adapter(spec.name), spec, resolution)


def load_tokenizer(chosen: ChosenAdapter, model_id: str, side: str, options: Mapping[str, Any]) -> Any:
    tokenizer_options = {
        # "base": a PEFT adapter's base, where hf_peft finds the tokenizer when the adapter saved none.
        k: options[k]
        for k in ("revision", "cache_dir", "trust_remote_code", "base")
        if k in options
    }
    try:
        return chosen.adapter.load_tokenizer(model_id, **tokenizer_options)
    except InvarlockError:
        raise
    except Exception as exc:
        raise ModelLoadError(
            f"the {side} tokenizer at {model_id} could not be loaded ({type(exc).__name__}: {exc}); "
            "check that the directory holds the tokenizer files"
        ) from exc


def load_model(
    chosen: ChosenAdapter, model_id: str, side: str, device: str, options: Mapping[str, Any]
) -> Any:
    try:
        return chosen.adapter.load_model(model_id, device=device, **options)
    except InvarlockError:
        raise
    except Exception as exc:
        raise ModelLoadError(
            f"the {side} model at {model_id} could not be loaded by {chosen.name} "
            f"({type(exc).__name__}: {exc})"
        ) from exc


def free_memory() -> None:
    """Give a dropped model's memory back before loading the next one."""
    import gc

    gc.collect()
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()
