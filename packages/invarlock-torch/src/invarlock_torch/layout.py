"""Which tensors a snapshot holds, and how a restore maps them back onto a live model.

Shared by the in-memory and the chunked snapshot: both capture a :class:`SnapshotLayout` (names,
kinds, shapes, dtypes, tying, and the caller's settings) and both restore through
:func:`plan_restore`, which checks every name, shape, dtype and setting before anything is written.

A *live tensor* is the tensor that holds a name's values right now: the module's parameter or
buffer, or, for a module whose weights accelerate offloaded to CPU memory, the tensor in the offload
hook's weights map (the module itself then holds a meta placeholder). Weights offloaded to disk
have no live tensor we may write into, so they are refused.

Identity: two names are one tied tensor when their live tensors are the same view of the same
memory (device, address, dtype, shape, strides). A ``DTensor`` (tensor parallelism) is represented
by its local shard, whose memory is this rank's; its placements, mesh shape and this rank's mesh
coordinate are recorded with the slot and must match at restore. Another wrapper tensor subclass
(its storage is not its data: torchao's quantized weights) is captured through its own components,
``__tensor_flatten__``: each inner tensor is a slot named ``<name>.<component>`` (recursively), with
the subclass and its flatten context recorded and checked at restore; one that cannot be
decomposed into plain tensors is refused by class name before anything is captured or written.
Every capture checks that it holds as many distinct storages as the captured names' tensors have
between them: a merge of two distinct tensors into one slot can never pass silently.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from invarlock.errors import SnapshotMismatchError, UnsupportedOperationError

PARAMETER = "parameter"
BUFFER = "buffer"
EXTRA = "extra"
"""Kinds of tensor: module parameters, module buffers (persistent or not), and extra tensors the
caller passes in (``extra_tensors``: state outside parameters and buffers, e.g. bitsandbytes
``quant_state.absmax``)."""

Settings = Mapping[str, Any]
"""JSON values by module name that a module's tensors mean something only under, and that a restore
cannot write back: e.g. a bitsandbytes layer's quant type and block size. A snapshot records them;
a restore refuses a model whose settings differ from the recorded ones."""

_MAX_LISTED = 3  # problems quoted in one error message


@dataclass(frozen=True)
class LiveTensor:
    """A name's current values. ``module``/``attr`` are set when it can be re-tied by assignment."""

    kind: str
    tensor: torch.Tensor
    """What is read and written: the tensor itself, or a DTensor's local shard."""
    module: torch.nn.Module | None = None
    attr: str = ""
    registered: torch.Tensor | None = None
    """The object in the module's registry when that is not ``tensor`` (a DTensor), for re-tying."""
    placement: Mapping[str, Any] | None = None
    """For a DTensor: placements, mesh shape, this rank's coordinate and the global shape."""
    component: Mapping[str, Any] | None = None
    """For a component of a tensor subclass: the subclass, the component and the flatten context."""

    @property
    def owner(self) -> torch.Tensor:
        return self.registered if self.registered is not None else self.tensor


@dataclass(frozen=True)
class TensorSlot:
    """One stored tensor and every name that shares it; it is restored through ``names[0]``."""

    names: tuple[str, ...]
    kinds: tuple[str, ...]
    shape: tuple[int, ...]
    dtype: torch.dtype
    device: str
    """Where the live tensor was when captured (informative: restore writes wherever it is now)."""
    placement: Mapping[str, Any] | None = None
    """For a DTensor's local shard (``shape`` is the shard's): see :attr:`LiveTensor.placement`."""
    component: Mapping[str, Any] | None = None
    """For a tensor subclass's component: see :attr:`LiveTensor.component`."""

    @property
    def numel(self) -> int:
        n = 1
        for size in self.shape:
            n *= size
        return n

    @property
    def nbytes(self) -> int:
        return self.numel * self.dtype.itemsize


@dataclass(frozen=True)
class SnapshotLayout:
    """What a snapshot holds: enough to refuse a model it was not taken from."""

    model_class: str
    complete: bool
    """Taken without ``include``: the model may then hold no tensor the snapshot lacks."""
    slots: tuple[TensorSlot, ...]
    settings: Settings = field(default_factory=dict)
    """The caller's settings (see :data:`Settings`) of the captured modules, as JSON values."""

    @property
    def nbytes(self) -> int:
        return sum(slot.nbytes for slot in self.slots)


@dataclass
class RestorePlan:
    """Where each slot's bytes go, and which ties to put back; built only when everything matches."""

    targets: list[list[torch.Tensor]]
    """Per slot: the live tensors to copy into (the first, plus any alias that cannot be re-tied)."""
    reties: list[tuple[torch.nn.Module, str, str, torch.Tensor]] = field(default_factory=list)
    """``(module, "_parameters" | "_buffers", attr, tensor)`` assignments that re-tie untied aliases."""

    def retie(self) -> None:
        for module, registry, attr, tensor in self.reties:
            getattr(module, registry)[attr] = tensor


def model_class_name(model: Any) -> str:
    return type(model).__name__


def normalize_include(include: Sequence[str] | str | None) -> tuple[str, ...] | None:
    if include is None:
        return None
    prefixes = (include,) if isinstance(include, str) else tuple(include)
    return tuple(p.rstrip(".") for p in prefixes)


def _matches(name: str, prefixes: tuple[str, ...]) -> bool:
    # Prefixes match whole dotted components: "h.1" covers "h.1.attn.weight", not "h.10.attn.weight".
    return any(p == "" or name == p or name.startswith(p + ".") for p in prefixes)


# -- finding live tensors ------------------------------------------------------------------------


def _offload_hook_weights(module: torch.nn.Module) -> Mapping[str, Any] | None:
    """The weights map of an accelerate hook that offloads this module's weights, if any."""
    hook = vars(module).get("_hf_hook")  # a plain attribute: no nn.Module.__getattr__ fallback per module
    if hook is None:
        return None
    for candidate in getattr(hook, "hooks", (hook,)):  # a SequentialHook holds several
        if getattr(candidate, "offload", False) and getattr(candidate, "weights_map", None) is not None:
            return candidate.weights_map  # type: ignore[no-any-return]
    return None


def _in_memory_offloaded(weights_map: Mapping[str, Any], key: str) -> torch.Tensor | None:
    """The CPU tensor behind an offloaded weight, or None when it is read from disk on use."""
    dataset: Any = getattr(weights_map, "dataset", weights_map)  # accelerate's PrefixedDataset
    full_key = getattr(weights_map, "prefix", "") + key
    if isinstance(dataset, dict):
        value = dataset.get(full_key)
    else:  # OffloadedWeightsLoader: in-memory tensors live in .state_dict, the rest on disk
        value = getattr(dataset, "state_dict", {}).get(full_key)
    return value if isinstance(value, torch.Tensor) and value.device.type != "meta" else None


def _named_module_tensors(
    model: torch.nn.Module, offloaded: dict[str, Mapping[str, Any]]
) -> Iterator[tuple[str, str, torch.Tensor, torch.nn.Module, str]]:
    """Like named_parameters/named_buffers(remove_duplicate=False), plus the owning module and attr.

    Fills ``offloaded`` (module name -> weights map of its accelerate offload hook) on the way; a
    module comes before its children, so a tensor's enclosing hooks are known when it is yielded.
    """
    for module_name, module in model.named_modules(remove_duplicate=False):
        weights_map = _offload_hook_weights(module)
        if weights_map is not None:
            offloaded[module_name] = weights_map
        prefix = f"{module_name}." if module_name else ""
        for attr, tensor in module._parameters.items():
            if tensor is not None:
                yield prefix + attr, PARAMETER, tensor, module, attr
        for attr, tensor in module._buffers.items():
            if tensor is not None:
                yield prefix + attr, BUFFER, tensor, module, attr


_OFFLOAD_ADVICE = (
    "load the model with its weights in memory (a device_map without 'disk', or more max_memory for "
    "'cpu'), or pass include= naming only modules held in memory"
)


def _subclass_name(tensor: torch.Tensor) -> str:
    cls = type(tensor)
    return f"{cls.__module__}.{cls.__qualname__}"


def is_dtensor(tensor: torch.Tensor) -> bool:
    if "torch.distributed.tensor" not in sys.modules:  # no DTensor exists before it is imported
        return False
    from torch.distributed.tensor import DTensor

    return isinstance(tensor, DTensor)


def _is_wrapper_subclass(tensor: torch.Tensor) -> bool:
    """A tensor subclass whose storage is not its data (torchao's quantized tensors, DTensor...)."""
    if type(tensor) in (torch.Tensor, torch.nn.Parameter):
        return False
    from torch.utils._python_dispatch import is_traceable_wrapper_subclass

    return bool(is_traceable_wrapper_subclass(tensor)) or not _has_real_storage(tensor)


def _has_real_storage(tensor: torch.Tensor) -> bool:
    try:
        tensor.untyped_storage().data_ptr()
    except (RuntimeError, NotImplementedError):
        return False
    return True


def _components(name: str, tensor: torch.Tensor) -> list[tuple[str, torch.Tensor, dict[str, Any]]] | None:
    """The plain tensors a wrapper subclass is made of (``__tensor_flatten__``, recursively), or None
    when it cannot be decomposed into plain tensors with real storage."""
    flatten = getattr(tensor, "__tensor_flatten__", None)
    if flatten is None:
        return None
    try:
        attributes, context = flatten()
        inner = [(attribute, getattr(tensor, attribute)) for attribute in attributes]
    except Exception:
        return None
    description = {
        "subclass": _subclass_name(tensor),
        "context": repr(context),
        "shape": list(tensor.shape),
        "dtype": str(tensor.dtype).removeprefix("torch."),
    }
    found: list[tuple[str, torch.Tensor, dict[str, Any]]] = []
    for attribute, value in inner:
        if not isinstance(value, torch.Tensor) or value.device.type == "meta":
            return None
        if _is_wrapper_subclass(value):
            nested = _components(f"{name}.{attribute}", value)
            if nested is None:
                return None
            found += [(n, t, {**d, "within": {**description, "component": attribute}}) for n, t, d in nested]
        else:
            found.append((f"{name}.{attribute}", value, {**description, "component": attribute}))
    return found


def _placement(tensor: torch.Tensor) -> dict[str, Any]:
    mesh = tensor.device_mesh  # type: ignore[attr-defined]
    return {
        "placements": [repr(p) for p in tensor.placements],  # type: ignore[attr-defined]
        "mesh_shape": list(mesh.shape),
        "coordinate": list(mesh.get_coordinate() or []),
        "global_shape": list(tensor.shape),
    }


@dataclass
class LiveModel:
    """A model's tensors by name, and the names whose values we cannot read and write in place
    (with why, and what to do)."""

    tensors: dict[str, LiveTensor]
    unavailable: dict[str, tuple[str, str]]

    def require(self, names: Iterable[str]) -> None:
        """Refuse when any of ``names`` has no values we can read and write in place."""
        for name in names:
            found = self.unavailable.get(name)
            if found is not None:
                where, advice = found
                raise UnsupportedOperationError(
                    f"{name} is {where}, so it cannot be snapshotted or restored in place; {advice}"
                )


def live_tensors(model: torch.nn.Module, extra_tensors: Mapping[str, torch.Tensor] | None) -> LiveModel:
    """Every parameter, buffer and extra tensor of the model by name, resolved to where its values live."""
    offloaded: dict[str, Mapping[str, Any]] = {}
    live = LiveModel({}, {})
    for name, kind, tensor, module, attr in _named_module_tensors(model, offloaded):
        if is_dtensor(tensor):
            with torch.no_grad():
                local = tensor.to_local()  # type: ignore[attr-defined]
            live.tensors[name] = LiveTensor(kind, local, module, attr, tensor, _placement(tensor))
            continue
        if _is_wrapper_subclass(tensor):
            components = _components(name, tensor)
            if components is not None:
                for component_name, component, description in components:
                    live.tensors[component_name] = LiveTensor(kind, component, component=description)
                continue
            live.unavailable[name] = (
                f"a {_subclass_name(tensor)}, a tensor subclass whose data the snapshot engine cannot read",
                "snapshot the model before converting its weights to that tensor type, or pass include= "
                "naming only modules with plain tensors",
            )
            continue
        if tensor.device.type != "meta":
            live.tensors[name] = LiveTensor(kind, tensor, module, attr)
            continue
        under_hook, value = _offloaded_value(name, offloaded)
        if value is not None:
            live.tensors[name] = LiveTensor(kind, value)
        elif under_hook:
            live.unavailable[name] = ("offloaded to disk by accelerate", _OFFLOAD_ADVICE)
        else:
            live.unavailable[name] = ("on the meta device, without values", _OFFLOAD_ADVICE)
    for name, tensor in (extra_tensors or {}).items():
        if name in live.tensors or name in live.unavailable:
            raise ValueError(f"extra tensor name {name!r} is also a parameter or buffer name; rename it")
        if not isinstance(tensor, torch.Tensor) or tensor.device.type == "meta":
            kind = type(tensor).__name__
            raise ValueError(f"extra tensor {name!r} must be a tensor with values, not a {kind}")
        if is_dtensor(tensor) or _is_wrapper_subclass(tensor):
            raise ValueError(f"extra tensor {name!r} is a {_subclass_name(tensor)}; pass plain tensors")
        live.tensors[name] = LiveTensor(EXTRA, tensor)
    return live


def _offloaded_value(
    name: str, offloaded: Mapping[str, Mapping[str, Any]]
) -> tuple[bool, torch.Tensor | None]:
    """Whether an offload hook covers ``name``, and its in-memory value if it has one."""
    # The nearest enclosing module with an offload hook holds the name, relative to that module.
    parts = name.split(".")
    for cut in range(len(parts) - 1, -1, -1):
        weights_map = offloaded.get(".".join(parts[:cut]))
        if weights_map is not None:
            return True, _in_memory_offloaded(weights_map, ".".join(parts[cut:]))
    return False, None


def _storage_key(tensor: torch.Tensor) -> tuple[Any, ...]:
    # Tensors that are the same object or the same view of the same memory are one tied tensor.
    # Only plain tensors get here (live_tensors turns DTensors into their shards, refuses others).
    if tensor.numel() == 0:
        return ("object", id(tensor))
    return (tensor.device, tensor.data_ptr(), tensor.dtype, tensor.shape, tensor.stride())


def storage_identity(tensor: torch.Tensor) -> tuple[Any, ...]:
    """The memory block behind a plain tensor (views of one block share it)."""
    storage = tensor.untyped_storage()
    if storage.nbytes() == 0:
        return ("empty", id(tensor))
    return (str(tensor.device), storage.data_ptr())


def _check_storage_count(members: Iterable[LiveTensor], sources: Sequence[torch.Tensor]) -> None:
    """The captured tensors must cover exactly the distinct storages of the captured names."""
    held = {storage_identity(entry.tensor) for entry in members}
    captured = {storage_identity(source) for source in sources}
    if held != captured:
        raise UnsupportedOperationError(
            f"the snapshot would hold {len(captured)} distinct storages where the captured tensors have "
            f"{len(held)}, so it could not restore them exactly; nothing was captured: report this model's "
            "tensor types to invarlock-torch"
        )


# -- capturing -----------------------------------------------------------------------------------


def _json_settings(settings: Settings | None) -> dict[str, Any]:
    """``settings`` as plain JSON values (tuples become lists), so a snapshot compares them alike
    whether it was kept in memory or read back from a manifest."""
    if not settings:
        return {}
    try:
        return json.loads(json.dumps(dict(settings)))  # type: ignore[no-any-return]
    except (TypeError, ValueError) as error:
        raise ValueError(
            f"settings must be JSON values (str, number, bool, None, list, dict): {error}"
        ) from None


def capture_layout(
    model: torch.nn.Module,
    include: Sequence[str] | str | None,
    extra_tensors: Mapping[str, torch.Tensor] | None,
    settings: Settings | None = None,
) -> tuple[SnapshotLayout, list[torch.Tensor]]:
    """The layout of what to capture and, per slot, the live tensor to read it from.

    With ``include``, only the settings of modules it covers are recorded.
    """
    prefixes = normalize_include(include)
    live = live_tensors(model, extra_tensors)
    live.require(n for n in live.unavailable if prefixes is None or _matches(n, prefixes))
    groups: dict[tuple[Any, ...], list[tuple[str, LiveTensor]]] = {}
    for name, entry in live.tensors.items():
        groups.setdefault(_storage_key(entry.tensor), []).append((name, entry))

    slots: list[TensorSlot] = []
    sources: list[torch.Tensor] = []
    captured_members: list[LiveTensor] = []
    matched: set[str] = set()
    for members in groups.values():
        names = tuple(name for name, _ in members)
        if prefixes is not None:
            hits = {p for p in prefixes if any(_matches(n, (p,)) for n in names)}
            if not hits:
                continue
            matched |= hits
        tensor = members[0][1].tensor
        slots.append(
            TensorSlot(
                names=names,
                kinds=tuple(entry.kind for _, entry in members),
                shape=tuple(tensor.shape),
                dtype=tensor.dtype,
                device=str(tensor.device),
                placement=members[0][1].placement,
                component=members[0][1].component,
            )
        )
        sources.append(tensor)
        captured_members.extend(entry for _, entry in members)
    if prefixes is not None and len(matched) < len(set(prefixes)):
        unknown = ", ".join(repr(p) for p in prefixes if p not in matched)
        raise SnapshotMismatchError(
            f"include names {unknown}, which matches no parameter, buffer or extra tensor of this "
            "model; use module or tensor names from model.named_parameters() or model.named_modules()"
        )
    _check_storage_count(captured_members, sources)
    recorded = _json_settings(settings)
    if prefixes is not None:
        recorded = {name: value for name, value in recorded.items() if _matches(name, prefixes)}
    layout = SnapshotLayout(model_class_name(model), prefixes is None, tuple(slots), recorded)
    return layout, sources


# -- restoring -----------------------------------------------------------------------------------


def _slot_problems(slot: TensorSlot, live: Mapping[str, LiveTensor]) -> list[str]:
    problems = []
    for name, kind in zip(slot.names, slot.kinds, strict=True):
        entry = live.get(name)
        if entry is None:
            problems.append(f"{name} is missing from the model")
        elif entry.kind != kind:
            problems.append(f"{name} is a {entry.kind} in the model but a {kind} in the snapshot")
        elif tuple(entry.tensor.shape) != slot.shape:
            shape = tuple(entry.tensor.shape)
            problems.append(f"{name} has shape {shape} in the model, {slot.shape} in the snapshot")
        elif entry.tensor.dtype != slot.dtype:
            problems.append(f"{name} is {entry.tensor.dtype} in the model, {slot.dtype} in the snapshot")
        elif _json_placement(entry.component) != _json_placement(slot.component):
            problems.append(
                f"{name} is {_component_text(entry.component)} in the model, "
                f"{_component_text(slot.component)} in the snapshot"
            )
        elif _json_placement(entry.placement) != _json_placement(slot.placement):
            problems.append(
                f"{name} is {_placement_text(entry.placement)} in the model, "
                f"{_placement_text(slot.placement)} in the snapshot"
            )
    return problems


def _json_placement(placement: Mapping[str, Any] | None) -> Any:
    return None if placement is None else json.loads(json.dumps(dict(placement)))


def _component_text(component: Mapping[str, Any] | None) -> str:
    if component is None:
        return "a plain tensor"
    return f"part of a {component.get('subclass')} with context {component.get('context')}"


def _placement_text(placement: Mapping[str, Any] | None) -> str:
    if placement is None:
        return "a whole tensor (not sharded)"
    placements = ", ".join(placement.get("placements", []))
    return (
        f"sharded {placements} on a mesh of shape {tuple(placement.get('mesh_shape', []))} at "
        f"coordinate {tuple(placement.get('coordinate', []))}"
    )


def _settings_problems(recorded: Settings, current: Settings, complete: bool) -> list[str]:
    problems = []
    for name, then in recorded.items():
        if name not in current:
            problems.append(f"{name} has settings in the snapshot but none in the model")
            continue
        now = current[name]
        if isinstance(now, dict) and isinstance(then, dict):
            problems += [
                f"{name}: {key} is {now.get(key)!r} in the model, {then.get(key)!r} in the snapshot"
                for key in sorted({*now, *then})
                if now.get(key) != then.get(key)
            ]
        elif now != then:
            problems.append(f"{name}: {now!r} in the model, {then!r} in the snapshot")
    if complete:
        problems += [
            f"{name} has settings in the model but not in the snapshot"
            for name in current
            if name not in recorded
        ]
    return problems


def plan_restore(
    model: torch.nn.Module,
    layout: SnapshotLayout,
    extra_tensors: Mapping[str, torch.Tensor] | None,
    settings: Settings | None = None,
    *,
    source: str = "the snapshot",
) -> RestorePlan:
    """Check the model against the layout and return where to write; writes nothing.

    :param settings: the model's current settings (see :data:`Settings`), compared with the recorded ones.
    :raises SnapshotMismatchError: a name, kind, shape, dtype, setting or the model class differs,
        or (for a complete snapshot) the model has tensors or settings the snapshot lacks.
    """
    if model_class_name(model) != layout.model_class:
        raise SnapshotMismatchError(
            f"{source} was taken of a {layout.model_class}, not of this {model_class_name(model)}; "
            "restore it into the model it was taken from"
        )
    live = live_tensors(model, extra_tensors)
    known = {name for slot in layout.slots for name in slot.names}
    live.require(name for name in live.unavailable if layout.complete or name in known)
    problems: list[str] = []
    for slot in layout.slots:
        problems += _slot_problems(slot, live.tensors)
    if layout.complete:
        problems += [
            f"{name} is in the model but not in the snapshot" for name in live.tensors if name not in known
        ]
    problems += _settings_problems(layout.settings, _json_settings(settings), layout.complete)
    plan = RestorePlan(targets=[])
    if not problems:
        problems = _plan_targets(layout, live.tensors, plan)
    if problems:
        shown = "; ".join(problems[:_MAX_LISTED])
        more = f" (and {len(problems) - _MAX_LISTED} more)" if len(problems) > _MAX_LISTED else ""
        raise SnapshotMismatchError(
            f"{source} does not match this model: {shown}{more}; restore it into the model it was "
            "taken from, or take a new snapshot"
        )
    return plan


def _plan_targets(layout: SnapshotLayout, live: Mapping[str, LiveTensor], plan: RestorePlan) -> list[str]:
    claimed: dict[tuple[Any, ...], str] = {}
    problems = []
    for slot in layout.slots:
        first = live[slot.names[0]]
        targets = [first.tensor]
        for name in slot.names[1:]:
            alias = live[name]
            if _storage_key(alias.tensor) == _storage_key(first.tensor):
                continue  # still tied
            if alias.module is not None and first.module is not None and alias.kind == first.kind:
                registry = "_parameters" if alias.kind == PARAMETER else "_buffers"
                plan.reties.append((alias.module, registry, alias.attr, first.owner))
            else:
                targets.append(alias.tensor)  # cannot re-tie by assignment: restore its values
        for target in targets:
            other = claimed.setdefault(_storage_key(target), slot.names[0])
            if other != slot.names[0]:
                problems.append(f"{slot.names[0]} and {other} share memory in the model, not in the snapshot")
        plan.targets.append(targets)
    return problems
