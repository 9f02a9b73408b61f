"""Tensor identity: distinct tensors are never merged, DTensors are their local shards, subclasses
the engine cannot read are refused by name, and every capture checks its storage count."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

import invarlock_torch.layout
from invarlock.errors import SnapshotMismatchError, UnsupportedOperationError
from invarlock.testing import differing_tensors, mutate_weights
from invarlock_torch import restore_chunked_snapshot, restore_snapshot, take_snapshot, write_chunked_snapshot


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A one-rank gloo process group and device mesh in this process."""
    import torch.distributed as dist
    from torch.distributed.device_mesh import init_device_mesh

    if not dist.is_available():
        pytest.skip("this torch build has no torch.distributed")
    store = tmp_path_factory.mktemp("dist") / "store"
    dist.init_process_group("gloo", rank=0, world_size=1, init_method=f"file://{store}")
    try:
        yield init_device_mesh("cpu", (1,))
    finally:
        dist.destroy_process_group()


def sharded_pair(mesh: Any) -> nn.Module:
    """Two same-shaped Linear layers whose weights are DTensors (DTensor.data_ptr() is 0 for both)."""
    from torch.distributed.tensor import Shard, distribute_tensor

    torch.manual_seed(0)
    module = nn.Sequential(nn.Linear(8, 8, bias=False), nn.Linear(8, 8, bias=False))
    for layer in module:
        layer.weight = nn.Parameter(distribute_tensor(layer.weight.detach(), mesh, [Shard(0)]))
    return module


def local_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {
        name: (t.to_local() if hasattr(t, "to_local") else t).detach().clone()
        for name, t in model.named_parameters(remove_duplicate=False)
    }


def test_same_shaped_dtensors_are_two_slots_and_restore_exactly(mesh: Any, tmp_path: Path) -> None:
    model = sharded_pair(mesh)
    before = local_state(model)
    snapshot = take_snapshot(model)
    assert [slot.names for slot in snapshot.layout.slots] == [("0.weight",), ("1.weight",)]
    placement = snapshot.layout.slots[0].placement
    assert placement == {
        "placements": ["Shard(dim=0)"],
        "mesh_shape": [1],
        "coordinate": [0],
        "global_shape": [8, 8],
    }
    path = write_chunked_snapshot(model, tmp_path)
    for restore in (lambda: restore_snapshot(model, snapshot), lambda: restore_chunked_snapshot(model, path)):
        with torch.no_grad():
            model[0].weight.to_local().zero_()
        assert differing_tensors(before, local_state(model))
        restore()
        assert not differing_tensors(before, local_state(model))


def test_a_plain_snapshot_is_refused_by_a_sharded_model_untouched(mesh: Any) -> None:
    torch.manual_seed(0)
    plain = nn.Sequential(nn.Linear(8, 8, bias=False), nn.Linear(8, 8, bias=False))
    model = sharded_pair(mesh)
    snapshot = take_snapshot(plain)
    mutate_weights(model)
    edited = local_state(model)
    with pytest.raises(SnapshotMismatchError, match="sharded Shard\\(dim=0\\) on a mesh of shape \\(1,\\)"):
        restore_snapshot(model, snapshot)
    assert not differing_tensors(edited, local_state(model))


class Wrapped(torch.Tensor):
    """A minimal wrapper tensor subclass (its storage is not its data) that does not say what it is
    made of (no ``__tensor_flatten__``), so the engine cannot decompose it."""

    @staticmethod
    def __new__(cls, inner: torch.Tensor) -> Wrapped:
        return torch.Tensor._make_wrapper_subclass(cls, inner.shape, dtype=inner.dtype)  # type: ignore[attr-defined,no-any-return]

    def __init__(self, inner: torch.Tensor) -> None:
        self.inner = inner

    @classmethod
    def __torch_dispatch__(cls, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        unwrap = lambda t: t.inner if isinstance(t, Wrapped) else t  # noqa: E731
        return func(
            *torch.utils._pytree.tree_map(unwrap, args), **torch.utils._pytree.tree_map(unwrap, kwargs or {})
        )


def test_a_subclass_the_engine_cannot_read_is_refused_by_name_before_anything(tmp_path: Path) -> None:
    model = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 4))
    model[1].register_buffer("scale", Wrapped(torch.randn(4, 4)))
    for operation in (lambda: take_snapshot(model), lambda: write_chunked_snapshot(model, tmp_path)):
        with pytest.raises(UnsupportedOperationError, match=r"1\.scale is a .*Wrapped, a tensor subclass"):
            operation()
    assert list(tmp_path.iterdir()) == []
    partial = take_snapshot(model, include=["0"])  # the plain layers can still be snapshotted
    assert partial.names == ["0.weight", "0.bias"]


def test_a_capture_that_merged_distinct_tensors_raises(model: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    # The failure the invariant exists for: an identity key that calls two tensors one (as
    # data_ptr() == 0 did for DTensors) must never produce a snapshot.
    monkeypatch.setattr(invarlock_torch.layout, "_storage_key", lambda tensor: (tensor.shape, tensor.dtype))
    with pytest.raises(UnsupportedOperationError, match="distinct storages"):
        take_snapshot(model)


def test_views_of_one_storage_are_kept_apart_and_restored(full_state: Any, assert_restored: Any) -> None:
    class Split(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            whole = torch.randn(6, 4)
            self.register_buffer("top", whole[:3])
            self.register_buffer("bottom", whole[3:])

    model = Split()
    before = full_state(model)
    snapshot = take_snapshot(model)
    assert len(snapshot.layout.slots) == 2
    mutate_weights(model)
    restore_snapshot(model, snapshot)
    assert_restored(before, model)


def test_torchao_int8_weights_round_trip_through_their_components(tmp_path: Path) -> None:
    quantization = pytest.importorskip("torchao.quantization", reason="needs torchao")
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 16)).eval()
    quantization.quantize_(model, quantization.Int8WeightOnlyConfig())
    weight = model[0].weight
    assert type(weight).__name__ == "Int8Tensor"
    components = weight.__tensor_flatten__()[0]
    inputs = torch.randn(4, 32)
    with torch.no_grad():
        expected = model(inputs)

    def state() -> dict[str, torch.Tensor]:
        return {f"{i}.{c}": getattr(model[i].weight, c).detach().clone() for i in (0, 2) for c in components}

    before = state()
    snapshot = take_snapshot(model)
    assert {f"0.weight.{c}" for c in components} <= set(snapshot.names)
    path = write_chunked_snapshot(model, tmp_path)
    for restore in (lambda: restore_snapshot(model, snapshot), lambda: restore_chunked_snapshot(model, path)):
        with torch.no_grad():
            for i in (0, 2):
                model[i].weight.qdata.bitwise_not_()
                model[i].weight.scale.mul_(3.0)
        assert differing_tensors(before, state())
        restore()
        assert not differing_tensors(before, state())
        with torch.no_grad():
            assert torch.equal(model(inputs), expected)


def test_a_torchao_snapshot_is_refused_by_a_plain_model_untouched() -> None:
    quantization = pytest.importorskip("torchao.quantization", reason="needs torchao")
    torch.manual_seed(0)
    quantized = nn.Sequential(nn.Linear(32, 64)).eval()
    quantization.quantize_(quantized, quantization.Int8WeightOnlyConfig())
    plain = nn.Sequential(nn.Linear(32, 64)).eval()
    before = {k: v.clone() for k, v in plain.state_dict().items()}
    with pytest.raises(SnapshotMismatchError, match="missing from the model"):
        restore_snapshot(plain, take_snapshot(quantized))
    assert all(torch.equal(v, plain.state_dict()[k]) for k, v in before.items())
