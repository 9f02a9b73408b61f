"""The conformance kit: the contract every adapter package runs on itself.

Subclass :class:`AdapterConformance` in your package's tests, set ``adapter_name`` and provide the
``model_id`` and ``other_model_id`` fixtures (two local checkpoints of different shapes)::

    from invarlock.testing import AdapterConformance

    class TestMyAdapter(AdapterConformance):
        adapter_name = "my_adapter"

        @pytest.fixture(scope="class")
        @classmethod
        def model_id(cls, tmp_path_factory): ...

        @pytest.fixture(scope="class")
        @classmethod
        def other_model_id(cls, tmp_path_factory): ...

A behaviour this kit does not test is not part of the contract. Requires pytest and torch
(``pip install invarlock-core[testing]`` plus your backend).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import pytest

from invarlock.adapters import Adapter, get_adapter
from invarlock.description import validate_description
from invarlock.errors import SnapshotCorruptError, SnapshotMismatchError, UnsupportedOperationError
from invarlock.manager import get_plugin_manager
from invarlock.readiness import Status, check_backend
from invarlock.types import Role, SnapshotSupport


def model_state(model: Any) -> dict[str, Any]:
    """CPU copies of every tensor in the model's state dict: what "bit-exact" is checked on."""
    return {
        name: t.detach().to("cpu", copy=True) for name, t in model.state_dict().items() if hasattr(t, "dtype")
    }


def tensors_bit_equal(a: Any, b: Any) -> bool:
    """True when two tensors have the same dtype, shape and bytes (NaN-safe, -0.0-safe)."""
    import torch

    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    if a.numel() == 0:
        return True
    a_bytes = a.detach().cpu().contiguous().reshape(-1).view(torch.uint8)
    b_bytes = b.detach().cpu().contiguous().reshape(-1).view(torch.uint8)
    return bool(torch.equal(a_bytes, b_bytes))


def states_bit_equal(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """Names whose tensors differ between two :func:`model_state` results (empty when identical)."""
    names = sorted(set(before) | set(after))
    return [
        n for n in names if n not in before or n not in after or not tensors_bit_equal(before[n], after[n])
    ]


def mutate_weights(model: Any) -> None:
    """The default edit: change every parameter and buffer in place (floats +0.5, ints bit-flipped)."""
    import torch

    with torch.no_grad():
        seen: set[int] = set()
        tensors = [t for _, t in model.named_parameters()] + [t for _, t in model.named_buffers()]
        for tensor in tensors:
            if id(tensor) in seen or tensor.device.type == "meta" or tensor.numel() == 0:
                continue
            seen.add(id(tensor))
            if tensor.is_floating_point():
                tensor.add_(0.5)
            else:
                tensor.bitwise_not_()


class AdapterConformance:
    """The adapter contract as pytest tests. See the module docstring for how to use it."""

    adapter_name: ClassVar[str]
    load_kwargs: ClassVar[dict[str, Any]] = {}
    device: ClassVar[str] = "cpu"

    # -- fixtures and hooks a subclass may override ---------------------------------------------

    @pytest.fixture(scope="class")
    @classmethod
    def model_id(cls) -> str:
        raise NotImplementedError("provide a `model_id` fixture: a local checkpoint for this adapter")

    @pytest.fixture(scope="class")
    @classmethod
    def other_model_id(cls) -> str:
        raise NotImplementedError("provide an `other_model_id` fixture: a checkpoint of another shape")

    @pytest.fixture
    def adapter(self) -> Adapter:
        return get_adapter(self.adapter_name)

    @pytest.fixture
    def model(self, adapter: Adapter, model_id: str) -> Any:
        return adapter.load_model(model_id, device=self.device, **self.load_kwargs)

    def mutate(self, model: Any) -> None:
        """The edit applied between snapshot and restore; override for exotic weight types."""
        mutate_weights(model)

    def state(self, model: Any) -> dict[str, Any]:
        """What must round-trip bit-exactly; override to add state outside ``state_dict``."""
        return model_state(model)

    # -- helpers ---------------------------------------------------------------------------------

    @property
    def snapshot_support(self) -> SnapshotSupport:
        return get_plugin_manager().adapter_spec(self.adapter_name).snapshot

    def _assert_changed_then_restored(self, model: Any, before: dict[str, Any], restore: Any) -> None:
        self.mutate(model)
        assert states_bit_equal(before, self.state(model)), "the edit did not change the model"
        restore()
        differing = states_bit_equal(before, self.state(model))
        assert not differing, f"restore is not bit-exact for: {differing[:5]}"

    # -- the contract ---------------------------------------------------------------------------

    def test_registered_and_ready(self) -> None:
        spec = get_plugin_manager().adapter_spec(self.adapter_name)
        assert spec.name == self.adapter_name
        readiness = check_backend(spec)
        assert readiness.status is Status.READY, readiness.reason

    def test_describe_passes_contract(self, adapter: Adapter, model: Any) -> None:
        description = adapter.describe(model)
        validate_description(description, adapter=self.adapter_name)
        assert description["n_layer"] > 0
        assert description["n_params"] > 0
        declared = get_plugin_manager().adapter_spec(self.adapter_name).role
        if declared is not Role.ANY:
            assert description["role"] == declared.value, (
                "describe reports another role than the adapter declares"
            )

    def test_snapshot_restore_bit_exact(self, adapter: Adapter, model: Any) -> None:
        if self.snapshot_support is SnapshotSupport.NO:
            with pytest.raises(UnsupportedOperationError):
                adapter.snapshot(model)
            return
        before = self.state(model)
        snapshot = adapter.snapshot(model)
        self._assert_changed_then_restored(model, before, lambda: adapter.restore(model, snapshot))

    def test_chunked_round_trip(self, adapter: Adapter, model: Any, tmp_path: Path) -> None:
        if self.snapshot_support is SnapshotSupport.NO:
            with pytest.raises(UnsupportedOperationError):
                adapter.snapshot_chunked(model, tmp_path)
            with pytest.raises(UnsupportedOperationError):
                adapter.restore_chunked(model, tmp_path)
            return
        before = self.state(model)
        path = adapter.snapshot_chunked(model, tmp_path)
        assert path.is_dir() and path.parent == tmp_path
        self._assert_changed_then_restored(model, before, lambda: adapter.restore_chunked(model, path))

    def test_foreign_snapshot_refused(
        self, adapter: Adapter, model: Any, other_model_id: str, tmp_path: Path
    ) -> None:
        if self.snapshot_support is SnapshotSupport.NO:
            with pytest.raises(UnsupportedOperationError):
                adapter.restore(model, object())
            return
        other = adapter.load_model(other_model_id, device=self.device, **self.load_kwargs)
        foreign = adapter.snapshot(other)
        foreign_path = adapter.snapshot_chunked(other, tmp_path)
        before = self.state(model)
        with pytest.raises(SnapshotMismatchError):
            adapter.restore(model, foreign)
        with pytest.raises((SnapshotMismatchError, SnapshotCorruptError)):
            adapter.restore_chunked(model, foreign_path)
        assert not states_bit_equal(before, self.state(model)), "a refused restore changed the model"
