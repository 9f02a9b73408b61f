"""`context.snapshot.mode: auto`: chunked exactly when the model would not fit twice in free RAM."""

from __future__ import annotations

from typing import Any

import pytest

from invarlock.certification import run as runner
from invarlock.types import SnapshotSupport


def description(n_params: int, dtype: str = "float32") -> Any:
    return {"n_params": n_params, "dtype": dtype}


@pytest.fixture
def free_ram(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runner, "available_memory_bytes", lambda: 10 * 2**30)  # 10 GiB free


def test_auto_keeps_a_model_that_fits_twice_in_memory(free_ram: None) -> None:
    plan = runner.plan_snapshot("auto", description(1_000_000_000), SnapshotSupport.YES, "quant_rtn")  # 4 GB
    assert plan.mode == "memory" and "fits twice" in plan.reason


def test_auto_goes_to_disk_when_two_copies_do_not_fit(free_ram: None) -> None:
    plan = runner.plan_snapshot("auto", description(1_500_000_000), SnapshotSupport.YES, "quant_rtn")  # 6 GB
    assert plan.mode == "chunked" and "would not fit twice" in plan.reason
    half = runner.plan_snapshot(
        "auto", description(1_500_000_000, "bfloat16"), SnapshotSupport.YES, "quant_rtn"
    )
    assert half.mode == "memory", "size follows the dtype"


def test_explicit_modes_and_adapters_without_snapshots(free_ram: None) -> None:
    assert runner.plan_snapshot("chunked", description(10), SnapshotSupport.YES, "noop").mode == "chunked"
    assert runner.plan_snapshot("memory", description(10**12), SnapshotSupport.YES, "noop").mode == "memory"
    assert runner.plan_snapshot("auto", description(10), SnapshotSupport.NO, "noop").mode == "skipped"


def test_available_memory_is_read_here() -> None:
    free = runner.available_memory_bytes()
    assert free is None or free > 0
