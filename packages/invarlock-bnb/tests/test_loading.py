"""Loading through hf_bnb: the seed's options, quantized checkpoints, placement, hf_auto."""

from __future__ import annotations

import inspect
import logging
from pathlib import Path
from typing import Any

import bitsandbytes as bnb
import pytest
import torch
from transformers import BitsAndBytesConfig

from invarlock.adapters import HF_BNB_Adapter, get_adapter, resolve_adapter
from invarlock.errors import InvalidLoadOptionError, ModelLoadError, UnsupportedOperationError
from invarlock.testing import differing_tensors, full_state
from invarlock_bnb.plugin import HF_BNB_Adapter as PluginClass
from invarlock_hf.quantization import BITSANDBYTES_OPTIONS
from invarlock_hf.resolve import resolve
from invarlock_hf.testing import save_tiny_checkpoint

# Logits of a quantized tiny random model against its full-precision original, as
# ||quantized - full|| / ||full||. Measured: int8 <= 0.005, nf4/fp4 <= 0.17 on these models;
# an unrelated model of the same shape is at ~1.4.
RELATIVE_ERROR = {"int8": 0.02, "nf4": 0.3, "fp4": 0.3}


def relative_error(logits: torch.Tensor, reference: torch.Tensor) -> float:
    return float((logits - reference).norm() / reference.norm())


def bnb_modules(model: Any) -> dict[str, Any]:
    kinds = (bnb.nn.Linear8bitLt, bnb.nn.Linear4bit)
    return {name: m for name, m in model.named_modules() if isinstance(m, kinds)}


@pytest.fixture(scope="module")
def adapter() -> Any:
    return get_adapter("hf_bnb")


def test_seed_class_name_is_this_plugins_adapter() -> None:
    assert HF_BNB_Adapter is PluginClass
    assert HF_BNB_Adapter().name == "hf_bnb"


def test_default_is_8bit_on_cpu(adapter: Any, llama_path: Path) -> None:
    model = adapter.load_model(llama_path, device="cpu")
    layers = bnb_modules(model)
    assert len(layers) == 14  # 7 linears per llama block, lm_head stays full precision
    assert all(isinstance(m, bnb.nn.Linear8bitLt) and m.weight.dtype == torch.int8 for m in layers.values())
    assert type(model.lm_head) is torch.nn.Linear
    assert model.config.quantization_config.load_in_8bit
    assert {p.device.type for p in model.parameters()} == {"cpu"}


@pytest.mark.parametrize(
    ("options", "quant_type", "nested", "compute_dtype"),
    [
        (
            {
                "load_in_4bit": True,
                "bnb_4bit_quant_type": "nf4",
                "bnb_4bit_use_double_quant": True,
                "bnb_4bit_compute_dtype": "bf16",
            },
            "nf4",
            True,
            torch.bfloat16,
        ),
        ({"load_in_4bit": True, "bnb_4bit_quant_type": "fp4"}, "fp4", False, torch.float32),
        ({"bnb_4bit_quant_type": "nf4"}, "nf4", False, torch.float32),  # bnb_4bit_* alone means 4-bit
        (
            {
                "quantization_config": {
                    "load_in_4bit": True,
                    "bnb_4bit_quant_type": "fp4",
                    "bnb_4bit_compute_dtype": "float16",
                }
            },
            "fp4",
            False,
            torch.float16,
        ),
        (
            {
                "quantization_config": BitsAndBytesConfig(
                    load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True
                )
            },
            "nf4",
            True,
            torch.float32,
        ),
        (  # as config.json stores it: every field, private ones and quant_method included
            {
                "quantization_config": BitsAndBytesConfig(
                    load_in_4bit=True, bnb_4bit_quant_type="nf4"
                ).to_dict()
            },
            "nf4",
            False,
            torch.float32,
        ),
    ],
    ids=["seed-nf4-dq-bf16", "seed-fp4", "bnb_4bit-only", "dict-config", "BitsAndBytesConfig", "saved-dict"],
)
def test_4bit_settings_reach_the_layers(
    adapter: Any, gpt2_path: Path, options: dict[str, Any], quant_type: str, nested: bool, compute_dtype: Any
) -> None:
    model = adapter.load_model(gpt2_path, device="cpu", **options)
    layers = bnb_modules(model)
    assert len(layers) == 8  # c_attn, c_proj, c_fc, mlp.c_proj per gpt2 block (Conv1D in full precision)
    for module in layers.values():
        assert isinstance(module, bnb.nn.Linear4bit)
        state = module.weight.quant_state
        assert (state.quant_type, state.nested, module.compute_dtype) == (quant_type, nested, compute_dtype)


def test_int8_settings_reach_the_layers(adapter: Any, llama_path: Path) -> None:
    model = adapter.load_model(
        llama_path,
        device="cpu",
        load_in_8bit=True,
        llm_int8_threshold=0.0,
        llm_int8_skip_modules=["down_proj", "lm_head"],
    )
    layers = bnb_modules(model)
    assert all(m.state.threshold == 0.0 for m in layers.values())
    assert not any(name.endswith("down_proj") for name in layers)
    assert type(model.model.layers[0].mlp.down_proj) is torch.nn.Linear


@pytest.mark.parametrize(
    ("options", "says"),
    [
        (
            {"quantization_config": BitsAndBytesConfig(load_in_8bit=True), "load_in_8bit": True},
            "pass the settings one way only",
        ),
        ({"load_in_8bit": False}, "both false"),
        ({"load_in_8bit": True, "load_in_4bit": True}, "invalid bitsandbytes settings"),
        ({"bnb_4bit_compute_dtype": "float13"}, "not a dtype"),
        ({"quantization_config": {"quant_method": "gptq", "bits": 4}}, "use the hf_gptq adapter"),
    ],
    ids=["config-and-flags", "both-false", "8-and-4", "bad-dtype", "gptq"],
)
def test_contradictory_options_refused(
    adapter: Any, llama_path: Path, options: dict[str, Any], says: str
) -> None:
    with pytest.raises(ModelLoadError, match=says):
        adapter.load_model(llama_path, device="cpu", **options)


def test_the_declared_bitsandbytes_options_are_the_installed_configs_settings() -> None:
    """hf_bnb accepts exactly BitsAndBytesConfig's settings as load options: a setting transformers
    adds (or drops) fails here instead of being refused (or passed on) without a word."""
    named = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    parameters = inspect.signature(BitsAndBytesConfig.__init__).parameters.values()
    assert {p.name for p in parameters if p.kind in named and p.name != "self"} == BITSANDBYTES_OPTIONS


def test_an_option_that_would_change_the_model_is_refused_before_loading(llama_path: Path) -> None:
    """from_pretrained would set an unknown keyword on the config (a one-layer model, certified as
    the checkpoint): hf_bnb refuses it, naming what it accepts, whether asked for by name or by hf_auto."""
    for name in ("hf_bnb", "hf_auto"):
        with pytest.raises(
            InvalidLoadOptionError, match="'num_hidden_layers' is not one adapter hf_bnb accepts"
        ):
            get_adapter(name).load_model(llama_path, device="cpu", load_in_8bit=True, num_hidden_layers=1)


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
@pytest.mark.parametrize("quantization", ["int8", "nf4", "fp4"])
def test_logits_close_to_full_precision(
    adapter: Any,
    checkpoints: dict[str, Path],
    quantizations: dict[str, Any],
    inputs: Any,
    arch: str,
    quantization: str,
) -> None:
    full = get_adapter("hf_causal")
    reference = full.logits(full.load_model(checkpoints[arch], device="cpu"), inputs)
    model = adapter.load_model(checkpoints[arch], device="cpu", **quantizations[quantization])
    assert relative_error(adapter.logits(model, inputs), reference) <= RELATIVE_ERROR[quantization]


def test_tolerance_tells_an_unrelated_model_apart(tmp_path: Path, llama_path: Path, inputs: Any) -> None:
    full = get_adapter("hf_causal")
    reference = full.logits(full.load_model(llama_path, device="cpu"), inputs)
    other = full.load_model(save_tiny_checkpoint("llama", tmp_path, seed=1), device="cpu")
    assert relative_error(full.logits(other, inputs), reference) > 3 * max(RELATIVE_ERROR.values())


def test_the_int8_cast_notice_is_logged_once_not_at_every_layer(
    adapter: Any, llama_path: Path, inputs: Any, caplog: pytest.LogCaptureFixture
) -> None:
    model = adapter.load_model(llama_path, device="cpu")  # float32 activations, cast by each int8 layer
    caplog.set_level(logging.WARNING, logger="bitsandbytes")
    adapter.logits(model, inputs)
    adapter.logits(model, inputs)
    notices = [r for r in caplog.records if r.getMessage().startswith("MatMul8bitLt: inputs will be cast")]
    assert len(notices) <= 1  # once per process; bitsandbytes alone logs it per layer and pass


def test_8bit_checkpoint_reloads_with_no_arguments(
    adapter: Any, llama_path: Path, llama_int8_path: Path, inputs: Any
) -> None:
    in_memory = adapter.load_model(llama_path, device="cpu", load_in_8bit=True)
    reloaded = adapter.load_model(llama_int8_path, device="cpu")
    assert all(isinstance(m, bnb.nn.Linear8bitLt) for m in bnb_modules(reloaded).values())
    assert not differing_tensors(full_state(in_memory), full_state(reloaded))
    assert torch.equal(adapter.logits(reloaded, inputs), adapter.logits(in_memory, inputs))


def test_nf4_checkpoint_reloads_with_no_arguments(
    adapter: Any, gpt2_path: Path, gpt2_nf4_path: Path, quantizations: dict[str, Any], inputs: Any
) -> None:
    in_memory = adapter.load_model(gpt2_path, device="cpu", **quantizations["nf4"])
    reloaded = adapter.load_model(gpt2_nf4_path, device="cpu")
    states = [m.weight.quant_state for m in bnb_modules(reloaded).values()]
    assert states and all(s.quant_type == "nf4" and s.nested for s in states)
    # Not promised bit-identical across bitsandbytes CPU kernels (see FACTS): compare with a tolerance.
    logits = adapter.logits(reloaded, inputs)
    assert relative_error(logits, adapter.logits(in_memory, inputs)) <= 1e-3


def test_quantized_checkpoint_keeps_its_bit_width(adapter: Any, llama_int8_path: Path) -> None:
    with pytest.warns(UserWarning, match="quantization_config"):  # transformers says it keeps the saved one
        model = adapter.load_model(llama_int8_path, device="cpu", load_in_8bit=True)
    assert bnb_modules(model)
    with pytest.raises(ModelLoadError, match="already quantized to 8-bit"):
        adapter.load_model(llama_int8_path, device="cpu", load_in_4bit=True)


@pytest.mark.parametrize(
    "move",
    [lambda m: m.to("cpu"), lambda m: m.to(torch.float16), lambda m: m.cuda(), lambda m: m.cpu()],
    ids=["to-device", "to-dtype", "cuda", "cpu"],
)
def test_moving_a_loaded_model_is_refused(adapter: Any, llama_path: Path, inputs: Any, move: Any) -> None:
    model = adapter.load_model(llama_path, device="cpu")
    before, logits = full_state(model), adapter.logits(model, inputs)
    with pytest.raises(UnsupportedOperationError, match=r"load it again where you want it.*device="):
        move(model)
    assert not differing_tensors(before, full_state(model))
    assert torch.equal(adapter.logits(model, inputs), logits)


def test_hf_auto_picks_hf_bnb_for_a_quantized_checkpoint(llama_int8_path: Path) -> None:
    resolution = resolve_adapter(llama_int8_path)
    assert resolution.adapter == "hf_bnb"
    assert "bitsandbytes" in resolution.reason


def test_hf_auto_picks_hf_bnb_for_the_seed_load_in_8bit_key(llama_path: Path) -> None:
    assert resolve(str(llama_path)).adapter == "hf_causal"
    assert resolve(str(llama_path), {"load_in_8bit": True}).adapter == "hf_bnb"
    model = get_adapter("hf_auto").load_model(llama_path, device="cpu", load_in_8bit=True)
    assert all(isinstance(m, bnb.nn.Linear8bitLt) for m in bnb_modules(model).values())
    with pytest.raises(UnsupportedOperationError):  # placed, and guarded, by hf_bnb
        model.to("cpu")


@pytest.mark.gpu
def test_loads_and_runs_on_cuda(
    adapter: Any, llama_path: Path, quantizations: dict[str, Any], inputs: Any
) -> None:
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device; none is available here")
    for options in (quantizations["int8"], quantizations["nf4"]):
        model = adapter.load_model(llama_path, device="cuda", **options)
        assert {p.device.type for p in model.parameters()} == {"cuda"}
        assert adapter.describe(model)["device"].startswith("cuda")
        logits = adapter.logits(model, inputs)
        snapshot = adapter.snapshot(model)
        with torch.no_grad():
            for parameter in model.parameters():
                parameter.bitwise_not_() if not parameter.is_floating_point() else parameter.add_(0.5)
        adapter.restore(model, snapshot)
        assert torch.equal(adapter.logits(model, inputs), logits)
