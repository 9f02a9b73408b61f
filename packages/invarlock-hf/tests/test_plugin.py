"""The plugin as users meet it: registration, light import, the seed snippet, other models left alone."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest
import torch

from invarlock.adapters import get_adapter
from invarlock.errors import AdapterNotFoundError
from invarlock.manager import get_plugin_manager
from invarlock.types import Role

ADAPTERS = {
    "hf_causal": Role.CAUSAL,
    "hf_mlm": Role.MASKED_LM,
    "hf_seq2seq": Role.SEQ2SEQ,
    "hf_auto": Role.ANY,
}


def test_importing_the_plugin_imports_neither_torch_nor_transformers() -> None:
    code = (
        "import sys, invarlock_hf.plugin\n"
        "heavy = sorted(m for m in ('torch', 'transformers') if m in sys.modules)\n"
        "print(','.join(heavy))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == ""


@pytest.mark.parametrize(("name", "role"), list(ADAPTERS.items()))
def test_adapters_are_registered_by_invarlock_hf(name: str, role: Role) -> None:
    spec = get_plugin_manager().adapter_spec(name)
    assert spec.distribution == "invarlock-hf"
    assert spec.role is role
    assert spec.backend == ("transformers", "torch")


def test_seed_snippet(checkpoints: Any) -> None:
    """The seed's two lines, on a local checkpoint."""
    from invarlock.adapters import HF_Auto_Adapter

    adapter = HF_Auto_Adapter()
    model = adapter.load_model(checkpoints.path("qwen2"), device="auto")
    assert adapter.describe(model)["model_type"] == "qwen2"


def test_models_that_are_not_transformers_models_are_left_to_other_plugins() -> None:
    adapter = get_adapter("hf_causal")
    module = torch.nn.Linear(4, 4)
    for call in (adapter.describe, adapter.snapshot):
        with pytest.raises(AdapterNotFoundError):
            call(module)
    with pytest.raises(AdapterNotFoundError):
        adapter.logits(module, {"input_ids": torch.zeros(1, 2, dtype=torch.long)})


def test_hooks_answer_none_for_adapters_they_do_not_provide() -> None:
    from invarlock_hf import plugin

    assert plugin.invarlock_load_model(adapter="hf_other", model_id="x", device="cpu", options={}) is None
    assert plugin.invarlock_load_tokenizer(adapter="hf_other", model_id="x", options={}) is None


# -- on a GPU ----------------------------------------------------------------------------------------

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.mark.gpu
@needs_cuda
def test_auto_device_is_cuda_and_logits_come_back_on_the_cpu(checkpoints: Any) -> None:
    adapter = get_adapter("hf_auto")
    model = adapter.load_model(checkpoints.path("llama"), device="auto", dtype="fp16")
    description = adapter.describe(model)
    assert description["device"] == "cuda:0"
    assert description["dtype"] == "float16"
    logits = adapter.logits(
        model, {"input_ids": torch.tensor([[3, 4, 5]]), "attention_mask": torch.ones(1, 3)}
    )
    assert logits.device.type == "cpu" and logits.dtype == torch.float32


@pytest.mark.gpu
@needs_cuda
def test_device_map_auto_is_left_to_accelerate(checkpoints: Any) -> None:
    adapter = get_adapter("hf_causal")
    model = adapter.load_model(checkpoints.path("mistral"), device="cpu", device_map="auto")
    description = adapter.describe(model)
    assert description["device"].startswith("cuda")  # device="cpu" was not applied with a device_map
    logits = adapter.logits(
        model, {"input_ids": torch.tensor([[3, 4, 5]]), "attention_mask": torch.ones(1, 3)}
    )
    assert logits.shape == (1, 3, 128)
