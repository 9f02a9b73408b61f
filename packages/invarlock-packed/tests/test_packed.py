"""invarlock-packed is a library: a declared API, no plugin of its own, nothing heavy at import."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import distribution

import invarlock_packed
from invarlock_packed import PackedFamily


def test_registers_no_plugin() -> None:
    assert [ep for ep in distribution("invarlock-packed").entry_points if ep.group == "invarlock"] == []


def test_public_api_is_declared_and_light() -> None:
    assert sorted(invarlock_packed.__all__) == ["PackedFamily", "PackedFamilyHooks", "PackedShapes"]
    code = (
        "import sys, invarlock_packed; "
        "heavy = sorted({'torch', 'transformers', 'gptqmodel'} & set(sys.modules)); "
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_a_family_states_its_layouts_and_the_kernels_per_device() -> None:
    family = PackedFamily(
        adapter="hf_example",
        method="example",
        format_field="version",
        default_format="gemm",
        kernels={"gemm": {"cpu": "torch", "cuda": "torch"}, "gemv": {"cuda": "gemv"}},
        config_class="ExampleConfig",
        packed_tensors=("qweight", "scales"),
        packing=lambda shapes: (4.0, float(shapes["qweight"][0])),
        settings=(),
    )
    assert family.label == "EXAMPLE"
    assert family.format_of({"version": "GEMV"}) == "gemv"
    assert family.format_of({}) == "gemm"
    assert family.formats_on("cpu") == ["gemm"]
    assert family.formats_on("cuda") == ["gemm", "gemv"]
