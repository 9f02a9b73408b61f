"""Snapshots of models dispatched by accelerate: they work, or they refuse with a clear error."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
import transformers
from accelerate import cpu_offload, dispatch_model
from accelerate.utils import align_module_device, has_offloaded_params

from invarlock.errors import UnsupportedOperationError
from invarlock.testing import differing_tensors, mutate_weights
from invarlock_hf.testing import save_tiny_checkpoint
from invarlock_torch import (
    restore_chunked_snapshot,
    restore_snapshot,
    take_snapshot,
    write_chunked_snapshot,
)

INPUTS = torch.tensor([[1, 5, 9, 14, 3]])


@pytest.fixture(scope="module")
def gpt2_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_checkpoint("gpt2", tmp_path_factory.mktemp("gpt2"))


def load(path: Path, **kwargs: Any) -> Any:
    return transformers.AutoModelForCausalLM.from_pretrained(path, **kwargs).eval()


def logits(model: Any) -> torch.Tensor:
    with torch.no_grad():
        return model(INPUTS).logits.cpu()  # accelerate moves the inputs to the execution device


def bit_equal(a: torch.Tensor, b: torch.Tensor) -> bool:
    return not differing_tensors({"x": a}, {"x": b})


def files_of(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir()) if p.is_file()}


def test_model_dispatched_by_accelerate_round_trips(gpt2_path: Path, tmp_path: Path) -> None:
    model = dispatch_model(load(gpt2_path), device_map={"transformer": "cpu", "lm_head": "cpu"})
    assert model.hf_device_map == {"transformer": "cpu", "lm_head": "cpu"}
    expected = logits(model)
    snapshot = take_snapshot(model)
    path = write_chunked_snapshot(model, tmp_path)
    for restore in (lambda: restore_snapshot(model, snapshot), lambda: restore_chunked_snapshot(model, path)):
        mutate_weights(model)
        assert not bit_equal(logits(model), expected)
        restore()
        assert bit_equal(logits(model), expected)


def edit_offloaded_weights(model: torch.nn.Module) -> None:
    """An edit through accelerate's own API: materialise each offloaded module, change it in place."""
    with torch.no_grad():
        for module in model.modules():
            if has_offloaded_params(module):
                with align_module_device(module):
                    for parameter in module.parameters(recurse=False):
                        parameter.add_(0.25)


def test_cpu_offloaded_model_round_trips_through_the_offloaded_weights(
    gpt2_path: Path, tmp_path: Path
) -> None:
    model = load(gpt2_path)
    cpu_offload(model, execution_device=torch.device("cpu"))
    assert all(p.device.type == "meta" for p in model.parameters()), "accelerate did not offload"
    expected = logits(model)
    snapshot = take_snapshot(model)
    assert snapshot.nbytes > 0 and all(t.device.type == "cpu" for t in snapshot.tensors)
    path = write_chunked_snapshot(model, tmp_path)
    for restore in (lambda: restore_snapshot(model, snapshot), lambda: restore_chunked_snapshot(model, path)):
        edit_offloaded_weights(model)
        assert not bit_equal(logits(model), expected), "the edit did not reach the offloaded weights"
        restore()
        assert bit_equal(logits(model), expected)
        assert all(p.device.type == "meta" for p in model.parameters()), "restore changed the dispatch"


@pytest.fixture
def disk_offloaded(gpt2_path: Path, tmp_path: Path) -> Any:
    device_map = {
        "transformer.wte": "cpu",
        "transformer.wpe": "cpu",
        "transformer.h.0": "cpu",
        "transformer.h.1": "disk",
        "transformer.ln_f": "cpu",
        "lm_head": "cpu",
    }
    model = load(gpt2_path, device_map=device_map, offload_folder=str(tmp_path / "offload"))
    assert model.transformer.h[1].attn.c_attn.weight.device.type == "meta", "accelerate did not offload"
    return model


def test_disk_offloaded_model_refuses_snapshots_and_writes_nothing(
    disk_offloaded: Any, tmp_path: Path
) -> None:
    with pytest.raises(UnsupportedOperationError, match=r"transformer\.h\.1\..* is offloaded to disk"):
        take_snapshot(disk_offloaded)
    target = tmp_path / "snapshots"
    target.mkdir()
    with pytest.raises(UnsupportedOperationError, match="offloaded to disk"):
        write_chunked_snapshot(disk_offloaded, target)
    assert list(target.iterdir()) == []


def test_disk_offloaded_model_refuses_restore_and_stays_untouched(
    disk_offloaded: Any, gpt2_path: Path, tmp_path: Path
) -> None:
    in_memory = load(gpt2_path)
    snapshot, path = take_snapshot(in_memory), write_chunked_snapshot(in_memory, tmp_path / "snapshots")
    mutate_weights(disk_offloaded)  # changes the tensors held in memory only
    edited = {n: t.detach().clone() for n, t in disk_offloaded.named_parameters() if t.device.type != "meta"}
    checkpoint_files = files_of(gpt2_path)
    for restore in (
        lambda: restore_snapshot(disk_offloaded, snapshot),
        lambda: restore_chunked_snapshot(disk_offloaded, path),
    ):
        with pytest.raises(UnsupportedOperationError, match="offloaded to disk"):
            restore()
    after = {n: t.detach() for n, t in disk_offloaded.named_parameters() if t.device.type != "meta"}
    assert not differing_tensors(edited, after)
    assert files_of(gpt2_path) == checkpoint_files


def test_disk_offloaded_model_snapshots_the_modules_held_in_memory(
    disk_offloaded: Any, tmp_path: Path
) -> None:
    block = disk_offloaded.transformer.h[0]
    before = {n: t.detach().clone() for n, t in block.state_dict().items()}
    snapshot = take_snapshot(disk_offloaded, include=["transformer.h.0"])
    path = write_chunked_snapshot(disk_offloaded, tmp_path, include=["transformer.h.0"])
    for restore in (
        lambda: restore_snapshot(disk_offloaded, snapshot),
        lambda: restore_chunked_snapshot(disk_offloaded, path),
    ):
        mutate_weights(block)
        assert differing_tensors(before, block.state_dict())
        restore()
        assert not differing_tensors(before, block.state_dict())
    with pytest.raises(UnsupportedOperationError, match="offloaded to disk"):
        take_snapshot(disk_offloaded, include=["transformer.h.0", "transformer.h.1.attn"])


def test_model_on_the_meta_device_is_refused(gpt2_path: Path, tmp_path: Path) -> None:
    config = transformers.AutoConfig.from_pretrained(gpt2_path)
    with torch.device("meta"):
        model = transformers.AutoModelForCausalLM.from_config(config)
    with pytest.raises(UnsupportedOperationError, match="meta device"):
        take_snapshot(model)
    with pytest.raises(UnsupportedOperationError, match="meta device"):
        write_chunked_snapshot(model, tmp_path)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_model_with_a_layer_offloaded_to_cpu_round_trips(gpt2_path: Path, tmp_path: Path) -> None:
    device_map = {
        "transformer.wte": 0,
        "transformer.wpe": 0,
        "transformer.h.0": 0,
        "transformer.h.1": "cpu",
        "transformer.ln_f": 0,
        "lm_head": 0,
    }
    model = load(gpt2_path, device_map=device_map)
    assert model.transformer.h[1].attn.c_attn.weight.device.type == "meta", "accelerate did not offload"
    expected = logits(model)
    snapshot = take_snapshot(model)
    offloaded = [slot for slot in snapshot.layout.slots if slot.names[0].startswith("transformer.h.1.")]
    assert offloaded and all(slot.device == "cpu" for slot in offloaded)
    path = write_chunked_snapshot(model, tmp_path)
    for restore in (lambda: restore_snapshot(model, snapshot), lambda: restore_chunked_snapshot(model, path)):
        mutate_weights(model)  # the weights on the GPU
        assert not bit_equal(logits(model), expected)
        restore()
        assert bit_equal(logits(model), expected)
