"""One rank of the tensor-parallel snapshot test (test_snapshot_tp.py runs it under torchrun, gloo).

    python -m torch.distributed.run --nproc-per-node 2 tp_worker.py CHECKPOINT OUT PLAIN_SNAPSHOT

Loads CHECKPOINT with ``tp_plan="auto"``, runs snapshots and restores through the hf_causal adapter
and writes what it saw to OUT/rank<N>.json for the test to assert on. Not a test module itself.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import torch
import torch.distributed as dist
from torch.distributed.tensor import DTensor
from transformers import AutoModelForCausalLM

from invarlock.adapters import get_adapter
from invarlock.errors import InvarlockError
from invarlock.testing import mutate_weights


def local_state(model: Any) -> dict[str, torch.Tensor]:
    """Every name's values on this rank (a DTensor's local shard), copied."""
    named = [*model.named_parameters(remove_duplicate=False), *model.named_buffers(remove_duplicate=False)]
    return {
        name: (t.to_local() if isinstance(t, DTensor) else t).detach().clone().contiguous()
        for name, t in named
    }


def bit_equal(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(
        a[n].dtype == b[n].dtype and torch.equal(a[n].view(torch.uint8), b[n].view(torch.uint8)) for n in a
    )


def refusal(adapter: Any, model: Any, path: Path) -> dict[str, Any]:
    """Restore a snapshot that must be refused: its code and message, and whether the model stayed."""
    mutate_weights(model)
    edited = local_state(model)
    try:
        adapter.restore_chunked(model, path)
        outcome: dict[str, Any] = {"code": None, "message": "restored"}
    except InvarlockError as error:
        outcome = {"code": error.code, "message": str(error)}
    outcome["untouched"] = bit_equal(edited, local_state(model))
    return outcome


def main() -> None:
    checkpoint, out, plain_snapshot = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(checkpoint, tp_plan="auto", dtype=torch.float32).eval()
    rank, world = dist.get_rank(), dist.get_world_size()
    adapter = get_adapter("hf_causal")
    ids = torch.tensor([[1, 5, 9, 14, 3, 7]])
    with torch.no_grad():
        logits_before = model(ids).logits
    before = local_state(model)
    result: dict[str, Any] = {
        "rank": rank,
        "world": world,
        "dtensors": sum(isinstance(p, DTensor) for p in model.parameters()),
        "names": len(before),
    }

    snapshot = adapter.snapshot(model)
    result["slots"] = len(snapshot.layout.slots)
    result["placements"] = {s.names[0]: s.placement for s in snapshot.layout.slots if s.placement}
    with torch.no_grad():  # one shard zeroed, as the report that found the bug did
        model.model.layers[0].self_attn.q_proj.weight.to_local().zero_()
    mutate_weights(model)
    result["memory_changed"] = not bit_equal(before, local_state(model))
    adapter.restore(model, snapshot)
    result["memory_exact"] = bit_equal(before, local_state(model))

    path = adapter.snapshot_chunked(model, out / "snapshots")
    manifest = json.loads((path / "manifest.json").read_text())
    result["manifest_placements"] = sum("placement" in entry for entry in manifest["tensors"])
    mutate_weights(model)
    adapter.restore_chunked(model, path)
    result["chunked_exact"] = bit_equal(before, local_state(model))

    paths: list[Any] = [None] * world
    dist.all_gather_object(paths, str(path))
    result["other_rank"] = refusal(adapter, model, Path(paths[(rank + 1) % world]))
    result["single_process"] = refusal(adapter, model, plain_snapshot)

    adapter.restore_chunked(model, path)
    result["restored_again"] = bit_equal(before, local_state(model))
    with torch.no_grad():
        result["logits_identical"] = torch.equal(model(ids).logits, logits_before)
    try:
        description = adapter.describe(model)
        result["describe"] = {"n_params": description["n_params"]}
    except Exception as error:  # describe is not this test's subject; recorded for the report
        result["describe"] = {"error": f"{type(error).__name__}: {error}"}
    (out / f"rank{rank}.json").write_text(json.dumps(result))
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
