"""The adapter API: ``get_adapter(name)`` and the seed's class names, all going through the hooks.

``from invarlock.adapters import HF_Auto_Adapter`` returns the class the installed plugin
provides; when its distribution is missing, the ImportError names the ``pip install`` that fixes it.
"""

from __future__ import annotations

import contextlib
import difflib
import weakref
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

from invarlock.catalogue import BY_CLASS_NAME
from invarlock.description import ModelDescription, validate_description
from invarlock.errors import AdapterNotFoundError, InvalidLoadOptionError, PluginHookError
from invarlock.network import check_model_path, hub_offline_unless_allowed, not_available_offline
from invarlock.types import AdapterSpec, Resolution

COMMON_LOAD_OPTIONS = (
    "dtype",
    "device_map",
    "max_memory",
    "offload_folder",
    "revision",
    "trust_remote_code",
    "tp_plan",
)
"""The load options each side of a certify may be given besides its device; an adapter declares
which it accepts, with its own (``AdapterSpec.load_options``)."""
_TYPO_CUTOFF = 0.8


def _manager() -> Any:
    from invarlock.manager import get_plugin_manager

    return get_plugin_manager()


_loaded_by: weakref.WeakKeyDictionary[Any, str] = weakref.WeakKeyDictionary()
"""Model → the adapter that loaded it: its plugin owns the model's hooks (a raise there is not skipped)."""


def loaded_by(model: Any) -> str | None:
    """The name of the adapter that loaded ``model`` through :meth:`Adapter.load_model`, if any."""
    try:
        return _loaded_by.get(model)
    except TypeError:  # neither hashable nor weak-referenceable: not recorded
        return None


def _remember_loader(model: Any, adapter: str) -> None:
    with contextlib.suppress(TypeError):  # neither hashable nor weak-referenceable: not recorded
        _loaded_by[model] = adapter


def _unrecognised(model: Any) -> AdapterNotFoundError:
    kind = f"{type(model).__module__}.{type(model).__qualname__}"
    return AdapterNotFoundError(
        f"no installed adapter recognises a model of type {kind}; load it through an InvarLock "
        "adapter (`invarlock plugins adapters` lists them)"
    )


class Adapter:
    """An adapter by name. Every method dispatches to the plugins through the ``invarlock_*`` hooks.

    Plugins subclass this only to set ``name`` (and add conveniences); the behaviour lives in
    their hookimpls, so the class and the hooks cannot disagree.
    """

    name: ClassVar[str] = ""

    def __init__(self, name: str | None = None) -> None:
        if name is not None:
            self.name = name  # type: ignore[misc]
        if not self.name:
            raise AdapterNotFoundError("an Adapter needs a name; use invarlock.adapters.get_adapter(name)")

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"

    # -- loading ------------------------------------------------------------------------------

    def load_model(self, model_id: str | Path, device: str = "auto", **from_pretrained_kwargs: Any) -> Any:
        """Load ``model_id`` (a local directory or, with the network allowed, a hub id).

        An adapter that resolves (``hf_auto``) picks the adapter for the checkpoint first, from the
        checkpoint and these options (:func:`resolve_adapter`), and loads with that one: readiness
        is checked once, for the adapter that loads, and the hub stays offline throughout.
        """
        options = {"trust_remote_code": False, **from_pretrained_kwargs}
        check_model_path(str(model_id))
        with hub_offline_unless_allowed() as network:
            name = self._loading_adapter(model_id, options)
            manager = _manager()
            manager.require_ready(name)
            check_load_options(manager.adapter_spec(name), from_pretrained_kwargs)
            model = self._load(
                "invarlock_load_model", name, model_id, network, device=device, options=options
            )
        if model is None:
            raise AdapterNotFoundError(
                f"no installed plugin answers for adapter {name}; reinstall the distribution "
                f"that provides it (`invarlock plugins adapters --explain {name}` shows which)"
            )
        _remember_loader(model, name)
        return model

    def load_tokenizer(self, model_id: str | Path, **options: Any) -> Any:
        """The tokenizer that goes with ``model_id``, from the adapter that loads its model."""
        options = {"trust_remote_code": False, **options}
        check_model_path(str(model_id))
        with hub_offline_unless_allowed() as network:
            name = self._loading_adapter(model_id, options)
            tokenizer = self._load("invarlock_load_tokenizer", name, model_id, network, options=options)
        if tokenizer is None:
            raise AdapterNotFoundError(f"adapter {name} does not load tokenizers")
        return tokenizer

    def _loading_adapter(self, model_id: str | Path, options: Mapping[str, Any]) -> str:
        """This adapter's name, or for a resolving adapter the one chosen for ``model_id``."""
        if not _manager().adapter_spec(self.name).resolves:
            return self.name
        return resolve_adapter(model_id, options).adapter

    def _load(self, hook_name: str, adapter: str, model_id: str | Path, network: bool, **kwargs: Any) -> Any:
        """Call a loading hook; offline, a hub id that is not cached gets one clear error."""
        manager = _manager()
        try:
            return manager.call_first(
                hook_name,
                owner=manager.plugin_of_adapter(adapter),
                adapter=adapter,
                model_id=str(model_id),
                **kwargs,
            )
        except PluginHookError as exc:
            # Offline, an id that is not a path here can only have come from the hub cache.
            if not network and not Path(model_id).expanduser().exists():
                raise not_available_offline(str(model_id)) from exc.__cause__
            raise

    # -- operations keyed by the model ---------------------------------------------------------

    def _call(self, hook_name: str, model: Any, **kwargs: Any) -> Any:
        manager = _manager()
        loader = loaded_by(model)
        owner = manager.plugin_of_adapter(loader) if loader is not None else None
        result = manager.call_first(hook_name, owner=owner, model=model, **kwargs)
        if result is None:
            raise _unrecognised(model)
        return result

    def describe(self, model: Any) -> ModelDescription:
        """The model's structure, checked against the describe contract."""
        return validate_description(self._call("invarlock_describe", model), adapter=self.name)

    def logits(self, model: Any, inputs: Mapping[str, Any]) -> Any:
        """One forward pass without gradients; logits ``(batch, seq, vocab)`` on the CPU."""
        return self._call("invarlock_logits", model, inputs=inputs)

    def snapshot(self, model: Any, *, include: Sequence[str] | None = None, same_device: bool = False) -> Any:
        """An in-memory snapshot (CPU copies unless ``same_device``), optionally of ``include`` only."""
        return self._call("invarlock_snapshot", model, include=include, same_device=same_device)

    def restore(self, model: Any, snapshot: Any) -> None:
        """Restore in place, bit for bit; a mismatching snapshot raises and leaves the model untouched."""
        self._call("invarlock_restore", model, snapshot=snapshot)

    def snapshot_chunked(
        self,
        model: Any,
        directory: str | Path | None = None,
        *,
        include: Sequence[str] | None = None,
        shard_bytes: int | None = None,
    ) -> Path:
        """Write a chunked snapshot under ``directory`` (default: the temp dir); returns its path."""
        target = Path(directory) if directory is not None else None
        return Path(
            self._call(
                "invarlock_snapshot_chunked",
                model,
                directory=target,
                include=include,
                shard_bytes=shard_bytes,
            )
        )

    def restore_chunked(self, model: Any, path: str | Path) -> None:
        """Restore in place from a chunked snapshot, verifying checksums before writing."""
        self._call("invarlock_restore_chunked", model, path=Path(path))


def check_load_options(spec: AdapterSpec, options: Mapping[str, Any], given_to: str = "") -> None:
    """Refuse a load option ``spec``'s adapter does not declare (``AdapterSpec.load_options``), naming
    the closest one it does. An adapter that declares none gets every key, except one that reads
    like a misspelt :data:`COMMON_LOAD_OPTIONS` key. ``given_to`` names whose options they are
    (``the subject``) in the message."""
    of = f" of {given_to}" if given_to else ""
    if "device" in options:
        raise InvalidLoadOptionError(
            f"device{of} was given as a load option to adapter {spec.name}; it is a side's own setting "
            "(load_model's device argument, --device, --SIDE-option device=...)"
        )
    declared = spec.load_options
    if declared is None:
        for key in options:
            close = difflib.get_close_matches(key, COMMON_LOAD_OPTIONS, n=1, cutoff=_TYPO_CUTOFF)
            if close and close[0] != key:
                raise InvalidLoadOptionError(
                    f"load option {key!r}{of} looks misspelt; did you mean {close[0]}? (adapter "
                    f"{spec.name} declares no load options, so every other key is passed as given)"
                )
        return
    unknown = sorted(key for key in options if key not in declared)
    if not unknown:
        return
    close = difflib.get_close_matches(unknown[0], sorted(declared), n=1, cutoff=0.6)
    hint = f"did you mean {close[0]}? " if close else ""
    raise InvalidLoadOptionError(
        f"load option {unknown[0]!r}{of} is not one adapter {spec.name} accepts; "
        f"{hint}it accepts {', '.join(sorted(declared))}"
    )


def get_adapter(name: str) -> Adapter:
    """An instance of the adapter ``name``, as provided by the installed plugin."""
    spec = _manager().adapter_spec(name)
    adapter: Adapter = spec.adapter_class(spec.name)
    return adapter


def resolve_adapter(model_id: str | Path, options: Mapping[str, Any] | None = None) -> Resolution:
    """Which adapter serves ``model_id`` and why (what ``--adapter auto`` and ``hf_auto`` use).

    :param options: the load options the model will be loaded with (a ``quantization_config``
        there can choose a quantized adapter); the plugins decide what they mean, core does not.
    """
    resolution = _manager().call_first(
        "invarlock_resolve_adapter", model_id=str(model_id), options=dict(options or {})
    )
    if resolution is None:
        raise AdapterNotFoundError(
            f"no installed plugin can choose an adapter for {model_id}; "
            f"{_resolver_hint()}name an adapter explicitly (`invarlock plugins adapters` lists them)"
        )
    return resolution  # type: ignore[no-any-return]


def _resolver_hint() -> str:
    """Why the first-party adapter that chooses per checkpoint (``hf_auto``) did not answer, with its
    fix (install, re-enable, repair), or nothing when it is installed."""
    from invarlock.catalogue import FIRST_PARTY
    from invarlock.types import Role

    manager = _manager()
    for entry in FIRST_PARTY.values():
        if entry.role is Role.ANY and entry.adapter not in manager.installed_adapters():
            readiness = manager.catalogue_readiness(entry)
            fix = f" ({readiness.install})" if readiness.install else ""
            return (
                f"{entry.adapter} ({entry.distribution}), the first-party adapter that chooses per "
                f"checkpoint, is unavailable: {readiness.reason}{fix}; or "
            )
    return ""


def __dir__() -> list[str]:
    return sorted([*globals(), *BY_CLASS_NAME])


def __getattr__(attr: str) -> type[Adapter]:
    entry = BY_CLASS_NAME.get(attr)
    if entry is None:
        raise AttributeError(f"module 'invarlock.adapters' has no attribute {attr!r}")
    return _manager().adapter_spec(entry.adapter).adapter_class  # type: ignore[no-any-return]
