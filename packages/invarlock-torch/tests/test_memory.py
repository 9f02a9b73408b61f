"""In-memory snapshots of plain PyTorch modules: round trips, tying, include, and refusals."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest
import torch

import invarlock_torch
from invarlock.errors import SnapshotMismatchError
from invarlock.testing import differing_tensors, mutate_weights
from invarlock_torch import ModelSnapshot, restore_snapshot, take_snapshot


def test_round_trip_is_bit_exact_and_holds_tied_tensors_once(
    model: Any, full_state: Any, assert_restored: Any
) -> None:
    before = full_state(model)
    snapshot = take_snapshot(model)
    assert isinstance(snapshot, ModelSnapshot)
    tied = next(slot for slot in snapshot.layout.slots if "head.weight" in slot.names)
    assert set(tied.names) == {"embed.weight", "head.weight"}
    assert "inv_freq" in snapshot.names, "non-persistent buffers are captured too"
    mutate_weights(model)
    assert differing_tensors(before, full_state(model))
    restore_snapshot(model, snapshot)
    assert_restored(before, model)
    assert model.head.weight is model.embed.weight


def test_restore_reties_what_an_edit_untied(model: Any, full_state: Any, assert_restored: Any) -> None:
    before = full_state(model)
    snapshot = take_snapshot(model)
    model.head.weight = torch.nn.Parameter(model.embed.weight.detach().clone() + 1)
    restore_snapshot(model, snapshot)
    assert model.head.weight is model.embed.weight
    assert_restored(before, model)


def test_include_captures_and_restores_only_the_named_modules(model: Any) -> None:
    snapshot = take_snapshot(model, include=["blocks.1"])
    assert snapshot.names and all(name.startswith("blocks.1.") for name in snapshot.names)
    block = {k: v.clone() for k, v in model.blocks[1].state_dict().items()}
    mutate_weights(model)
    edited_embed = model.embed.weight.detach().clone()
    restore_snapshot(model, snapshot)
    assert all(torch.equal(v, model.blocks[1].state_dict()[k]) for k, v in block.items())
    assert torch.equal(model.embed.weight, edited_embed), "a partial restore wrote outside its modules"


def test_snapshot_of_another_shape_is_refused_and_the_model_untouched(
    make_model: Any, full_state: Any
) -> None:
    model, other = make_model(), make_model(seed=1, hidden=24)
    snapshot = take_snapshot(other)
    mutate_weights(model)
    edited = full_state(model)
    with pytest.raises(SnapshotMismatchError, match="does not match this model"):
        restore_snapshot(model, snapshot)
    assert not differing_tensors(edited, full_state(model))


def test_an_object_that_is_not_a_snapshot_is_refused(model: Any) -> None:
    with pytest.raises(SnapshotMismatchError, match="expected a snapshot taken by invarlock-torch"):
        restore_snapshot(model, {"embed.weight": torch.zeros(1)})


def test_importing_the_package_imports_no_torch_and_declares_its_api() -> None:
    code = (
        "import sys, invarlock_torch; "
        "heavy = sorted({'torch', 'transformers', 'safetensors'} & set(sys.modules)); "
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    for name in invarlock_torch.__all__:
        assert getattr(invarlock_torch, name) is not None, name
    with pytest.raises(AttributeError):
        _ = invarlock_torch.capture_layout  # type: ignore[attr-defined]


def test_transformers_is_not_needed() -> None:
    code = (
        "import sys, torch; sys.modules['transformers'] = None; "  # importing it would now fail
        "from invarlock_torch import take_snapshot, restore_snapshot; "
        "m = torch.nn.Linear(3, 2); s = take_snapshot(m); restore_snapshot(m, s)"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
