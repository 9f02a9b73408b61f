"""The shared snapshot hookimpls answer for their own models only, through the real plugin manager."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import pluggy
import pytest

from invarlock import PROJECT_NAME, hookspecs
from invarlock.errors import UnsupportedOperationError
from invarlock.snapshot_hooks import InferenceOnlySnapshots, ModuleSnapshots


class Ours:
    pass


def manager(*plugins: object) -> pluggy.PluginManager:
    pm = pluggy.PluginManager(PROJECT_NAME)
    pm.add_hookspecs(hookspecs)
    for plugin in plugins:
        pm.register(plugin)
    return pm


def test_inference_only_refuses_every_operation_on_its_models_and_passes_others() -> None:
    hooks = InferenceOnlySnapshots(lambda m: isinstance(m, Ours), "ours cannot {operation}; use edit: noop")
    pm = manager(hooks)
    calls = {
        "be snapshotted": [
            lambda m: pm.hook.invarlock_snapshot(model=m, include=None, same_device=False),
            lambda m: pm.hook.invarlock_snapshot_chunked(
                model=m, directory=None, include=None, shard_bytes=None
            ),
        ],
        "be restored from a snapshot": [
            lambda m: pm.hook.invarlock_restore(model=m, snapshot=object()),
            lambda m: pm.hook.invarlock_restore_chunked(model=m, path=Path("x")),
        ],
    }
    for operation, hooks_for in calls.items():
        for call in hooks_for:
            with pytest.raises(UnsupportedOperationError, match=f"^ours cannot {operation}; use edit: noop$"):
                call(Ours())
            assert call(object()) in (None, [])


def test_module_snapshots_delegates_to_the_module_for_its_models_only(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: list[tuple[str, object]] = []
    engine = types.ModuleType("fake_engine_for_test")
    engine.snapshot = lambda model, include, same_device: seen.append(("snapshot", include)) or "snap"  # type: ignore[attr-defined]
    engine.restore = lambda model, snapshot: seen.append(("restore", snapshot))  # type: ignore[attr-defined]
    engine.snapshot_chunked = lambda model, d, include, shard: seen.append(("chunked", shard)) or Path("d")  # type: ignore[attr-defined]
    engine.restore_chunked = lambda model, path: seen.append(("restore_chunked", path))  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, engine.__name__, engine)
    pm = manager(ModuleSnapshots(lambda m: isinstance(m, Ours), engine.__name__))
    model = Ours()
    assert pm.hook.invarlock_snapshot(model=model, include=["a"], same_device=True) == "snap"
    assert pm.hook.invarlock_restore(model=model, snapshot="snap") is True
    assert pm.hook.invarlock_snapshot_chunked(
        model=model, directory=None, include=None, shard_bytes=7
    ) == Path("d")
    assert pm.hook.invarlock_restore_chunked(model=model, path=Path("d")) is True
    assert seen == [("snapshot", ["a"]), ("restore", "snap"), ("chunked", 7), ("restore_chunked", Path("d"))]
    seen.clear()
    other = object()
    assert pm.hook.invarlock_snapshot(model=other, include=None, same_device=False) is None
    assert pm.hook.invarlock_restore(model=other, snapshot="snap") is None
    assert seen == []
