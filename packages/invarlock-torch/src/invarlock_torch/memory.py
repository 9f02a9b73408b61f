"""In-memory snapshots: copies of a model's tensors held in a :class:`ModelSnapshot` object."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import torch

from invarlock.errors import SnapshotMismatchError
from invarlock_torch.layout import Settings, SnapshotLayout, capture_layout, plan_restore
from invarlock_torch.offload import is_offloaded, values_of


@dataclass(frozen=True, eq=False)  # compared by identity: tensors have no truth value
class ModelSnapshot:
    """Copies of a model's parameters, buffers and extra tensors; tied tensors are held once.

    ``tensors[i]`` holds the values of ``layout.slots[i]``, on the CPU unless taken with
    ``same_device=True``. Restore with :func:`restore_snapshot`.
    """

    layout: SnapshotLayout
    tensors: tuple[torch.Tensor, ...] = field(repr=False)

    @property
    def names(self) -> list[str]:
        """Every captured name, tied aliases included."""
        return [name for slot in self.layout.slots for name in slot.names]

    @property
    def nbytes(self) -> int:
        """Bytes held by the copies."""
        return self.layout.nbytes

    def __repr__(self) -> str:
        scope = "complete" if self.layout.complete else "partial"
        return (
            f"<ModelSnapshot of {self.layout.model_class}: {scope}, {len(self.layout.slots)} tensors, "
            f"{self.nbytes / 2**20:.1f} MiB>"
        )


def take_snapshot(
    model: torch.nn.Module,
    *,
    include: Sequence[str] | None = None,
    same_device: bool = False,
    extra_tensors: Mapping[str, torch.Tensor] | None = None,
    settings: Settings | None = None,
) -> ModelSnapshot:
    """Copy every parameter and buffer (persistent or not) of ``model``, or only those under ``include``.

    :param include: module or tensor names (whole dotted components, ``"transformer.h.1"``); a tied
        tensor is captured with all its names when any of them is included.
    :param same_device: keep each copy on its tensor's device instead of the CPU.
    :param extra_tensors: live tensors outside parameters and buffers to capture too, by name.
    :param settings: JSON values by module name that a restore must find unchanged (e.g. a
        quantized layer's settings); with ``include``, those of the included modules.
    :raises SnapshotMismatchError: an ``include`` entry names nothing in the model.
    :raises UnsupportedOperationError: some weights are on the meta device without values (or
        offloaded by accelerate to no store it indexes).
    :raises OffloadStoreError: a weight offloaded to disk cannot be read from its offload store.
    """
    layout, sources = capture_layout(model, include, extra_tensors, settings)
    with torch.no_grad():  # a weight offloaded to disk is read into a new CPU tensor, one at a time
        copies = tuple(
            values_of(t)
            if is_offloaded(t)
            else t.detach().clone()
            if same_device
            else t.detach().to("cpu", copy=True)
            for t in sources
        )
    return ModelSnapshot(layout, copies)


def restore_snapshot(
    model: torch.nn.Module,
    snapshot: ModelSnapshot,
    *,
    extra_tensors: Mapping[str, torch.Tensor] | None = None,
    settings: Settings | None = None,
) -> None:
    """Write ``snapshot`` back into ``model`` in place, bit for bit, re-tying what an edit untied.

    Every name, shape, dtype and setting is checked before the first byte is written.

    :param extra_tensors: the live extra tensors to restore into; the same names as at snapshot time.
    :param settings: the model's settings now, by module name, as passed at snapshot time.
    :raises SnapshotMismatchError: the snapshot is not of this model, a setting changed since it
        was taken, or the snapshot's own tensors were replaced or resized; the model is untouched.
    :raises SnapshotPartiallyRestoredError: a copy failed after writing into the model began.
    """
    if not isinstance(snapshot, ModelSnapshot):
        raise SnapshotMismatchError(
            f"expected a snapshot taken by invarlock-torch, got a {type(snapshot).__name__}; pass the "
            "object that snapshot() returned"
        )
    _check_held_tensors(snapshot)
    plan = plan_restore(model, snapshot.layout, extra_tensors, settings)
    from invarlock_torch.chunked import note_partial_restore, partially_restored

    try:
        plan.retie()
        with torch.no_grad():
            for targets, copy in zip(plan.targets, snapshot.tensors, strict=True):
                for target in targets:
                    target.copy_(copy)
    except Exception as error:
        raise partially_restored("the snapshot", f"{type(error).__name__}: {error}") from error
    except BaseException as interrupt:
        note_partial_restore(interrupt)
        raise


def _check_held_tensors(snapshot: ModelSnapshot) -> None:
    """Refuse a snapshot whose held copies no longer match its layout (replaced or resized since)."""
    slots, tensors = snapshot.layout.slots, snapshot.tensors
    problems = (
        [] if len(tensors) == len(slots) else [f"it holds {len(tensors)} tensors for {len(slots)} slots"]
    )
    for slot, held in zip(slots, tensors, strict=False):
        name = slot.names[0]
        if not isinstance(held, torch.Tensor):
            problems.append(f"{name} is held as a {type(held).__name__}, not a tensor")
        elif tuple(held.shape) != slot.shape or held.dtype != slot.dtype:
            problems.append(
                f"{name} is held as {held.dtype} {tuple(held.shape)}, recorded as {slot.dtype} {slot.shape}"
            )
        elif held.device.type == "meta":
            problems.append(f"{name} is held on the meta device, without values")
    if problems:
        raise SnapshotMismatchError(
            f"the snapshot's own tensors were changed since it was taken ({'; '.join(problems[:3])}), "
            "so nothing was restored and the model is untouched; take a new snapshot"
        )
