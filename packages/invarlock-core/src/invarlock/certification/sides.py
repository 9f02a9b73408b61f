"""The engine's seam to the plugin frame: choosing each side's adapter and loading through it.

This module and :mod:`invarlock.certification.context` are the only parts of the engine that
import the frame (:mod:`invarlock.adapters`, :mod:`invarlock.manager`, :mod:`invarlock.listing`);
every other contact with a model goes through the :class:`~invarlock.adapters.Adapter` chosen here
(its hooks: ``describe``, ``logits``, ``snapshot``, ``restore``).
"""

from __future__ import annotations

import contextlib
import copy
import importlib
import importlib.util
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from invarlock.adapters import Adapter, check_load_options, get_adapter, resolve_adapter
from invarlock.errors import InvarlockError, ModelLoadError
from invarlock.manager import get_plugin_manager
from invarlock.readiness import installed_version
from invarlock.types import AdapterSpec, Resolution

AUTO = "auto"


@dataclass(frozen=True)
class SideOptions:
    """How one side of a certify is loaded: its adapter, its device and its load options."""

    adapter: str = AUTO
    """An adapter name, or ``auto``: resolved from the side's own checkpoint and options."""
    device: str = AUTO
    load_options: dict[str, Any] = field(default_factory=dict)
    """Passed to the adapter's ``load_model`` (and to resolution) as given: ``dtype``,
    ``device_map``, ``max_memory``, ``offload_folder``, ``revision``, ``trust_remote_code``,
    ``tp_plan`` (:data:`invarlock.adapters.COMMON_LOAD_OPTIONS`) and the adapter's own keys."""

    def record(self) -> dict[str, Any]:
        """What the certificate records of this side's loading: the device and every load option."""
        return {"device": self.device, **self.load_options}


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
    model_id: str, requested: str, *, flag: str, load_options: Mapping[str, Any], side: str = "model"
) -> ChosenAdapter:
    """The adapter for one side: named explicitly, or resolved from that side's own checkpoint."""
    if requested != AUTO:
        resolution = Resolution(requested, f"named with {flag}")
    else:  # the plugins decide, from the checkpoint and the load options
        resolution = resolve_adapter(model_id, load_options)
    manager = get_plugin_manager()
    spec = manager.require_ready(resolution.adapter)
    check_load_options(spec, load_options, f"the {side}")
    return ChosenAdapter(get_adapter(spec.name), spec, resolution)


def backends_to_import(*chosen: ChosenAdapter) -> list[str]:
    """The chosen adapters' backend modules (torch, transformers...) not imported yet, in order."""
    names: list[str] = []
    for side in chosen:
        for distribution in side.spec.backend:
            module = distribution.replace("-", "_")
            if module not in names and module not in sys.modules and importlib.util.find_spec(module):
                names.append(module)
    return names


def import_backends(modules: Sequence[str]) -> None:
    """Import them now, so the time they take is shown as importing, not as loading a file.
    A backend that fails to import is left for its adapter to report when it loads."""
    for module in modules:
        with contextlib.suppress(Exception):  # reported, with its error code, by the adapter's load
            importlib.import_module(module)


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
    # A copy: transformers rewrites max_memory in place ("100KB" -> 100000); the record keeps what was given.
    try:
        return chosen.adapter.load_model(model_id, device=device, **copy.deepcopy(dict(options)))
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
