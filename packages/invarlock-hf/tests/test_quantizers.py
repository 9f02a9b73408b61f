"""The quantization methods of the installed transformers, checked by their own quantizers here."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch
import transformers
from transformers.quantizers.auto import AUTO_QUANTIZER_MAPPING

from invarlock.quantizers import QuantizerStatus
from invarlock_hf.quantization import QUANTIZED_ADAPTERS
from invarlock_hf.quantizers import FILE_FORMAT_ADAPTERS, TESTED_LOADS, _refusal, quantization_methods

TESTS = Path(__file__).parent


@pytest.fixture(scope="module")
def rows() -> dict[str, object]:
    listed = quantization_methods()
    assert len(listed) == len({row.method for row in listed}), "a method is listed twice"
    return {row.method: row for row in listed}


def test_one_row_per_method_transformers_registers(rows: dict[str, object]) -> None:
    assert list(rows) == list(AUTO_QUANTIZER_MAPPING)
    for method, row in rows.items():
        assert row.library == "transformers"
        assert row.quantizer == AUTO_QUANTIZER_MAPPING[method].__name__
        assert row.reason


def test_adapter_methods_name_their_adapter(rows: dict[str, object]) -> None:
    owned = {method: row.adapter for method, row in rows.items() if row.status is QuantizerStatus.ADAPTER}
    owners = {**QUANTIZED_ADAPTERS, **FILE_FORMAT_ADAPTERS}
    expected = {
        method: owners[method.removesuffix("_4bit").removesuffix("_8bit")]
        for method in rows
        if method.removesuffix("_4bit").removesuffix("_8bit") in owners
    }
    assert owned == expected
    assert owned["compressed-tensors"] == "hf_compressed"
    assert owned["bitsandbytes_4bit"] == owned["bitsandbytes_8bit"] == "hf_bnb"


def test_loads_only_where_a_test_loads_it(rows: dict[str, object]) -> None:
    loads = {method for method, row in rows.items() if row.status is QuantizerStatus.LOADS}
    assert loads <= set(TESTED_LOADS)
    sources = "\n".join(path.read_text() for path in TESTS.glob("test_*.py"))
    for method, test in TESTED_LOADS.items():
        assert f"def {test.rpartition('::')[2]}(" in sources, f"{method}: {test} does not exist"


def test_a_missing_backend_is_needs_extra_with_its_pip_command(rows: dict[str, object]) -> None:
    if importlib.util.find_spec("torchao") is not None:
        pytest.skip("torchao is installed here")
    row = rows["torchao"]
    assert row.status is QuantizerStatus.NEEDS_EXTRA
    assert row.install == "pip install torchao"


@pytest.mark.skipif(torch.cuda.is_available(), reason="on a GPU FP8 checkpoints stay FP8")
def test_fp8_without_a_gpu_is_what_this_transformers_does_with_it(rows: dict[str, object]) -> None:
    fp8_methods = [method for method in ("fp8", "mxfp8") if method in rows]  # mxfp8: transformers 5
    assert fp8_methods, "this transformers registers no fp8 quantizer"
    # transformers 5 dequantizes FP8 checkpoints on a CPU (and says so); 4.57's quantizer refuses a CPU.
    dequantizes = int(transformers.__version__.split(".")[0]) >= 5
    expected = QuantizerStatus.LOADS_DEQUANTIZED if dequantizes else QuantizerStatus.NEEDS_GPU
    for method in fp8_methods:  # one quantizer class, one notice each
        row = rows[method]
        assert row.status is expected, row.reason
        assert "GPU" in row.reason


def test_gguf_files_are_the_gguf_adapters(rows: dict[str, object]) -> None:
    if "gguf" not in rows:
        pytest.skip("this transformers registers no gguf quantizer")
    assert (rows["gguf"].status, rows["gguf"].adapter) == (QuantizerStatus.ADAPTER, "gguf")


@pytest.mark.parametrize(
    ("message", "status", "install"),
    [
        (
            "Using `vptq` requires VPTQ>=0.0.4: `pip install -U vptq`",
            QuantizerStatus.NEEDS_EXTRA,
            "pip install -U vptq",
        ),
        (
            "requires auto-round library (`pip install 'auto-round>=0.5'`)",
            QuantizerStatus.NEEDS_EXTRA,
            "pip install 'auto-round>=0.5'",
        ),
        (
            "requires optimum-quanto library (pip install optimum-quanto)",
            QuantizerStatus.NEEDS_EXTRA,
            "pip install optimum-quanto",
        ),
        ("GPU is required to run SpQR quantized model.", QuantizerStatus.NEEDS_GPU, None),
        ("Loading pre-quantized NVFP4 checkpoints is not supported yet.", QuantizerStatus.UNSUPPORTED, None),
    ],
)
def test_refusals_are_sorted_by_what_they_say(
    message: str, status: QuantizerStatus, install: str | None
) -> None:
    refused = _refusal(RuntimeError(message))
    assert refused["status"] is status
    assert refused.get("install") == install
    assert message in refused["reason"]


def test_the_hook_answers_through_core(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from invarlock.quantizers import CACHE_DIR_ENV
    from invarlock.quantizers import quantization_methods as listed

    monkeypatch.setenv(CACHE_DIR_ENV, str(tmp_path))
    listing = listed(refresh=True)
    assert listing.errors == ()
    assert {row.method for row in listing.methods} == set(AUTO_QUANTIZER_MAPPING)
    assert listed().cached is True
