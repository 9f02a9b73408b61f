"""GPTQ as a packed family: its layouts, the kernel for each on each device, and its packing."""

from __future__ import annotations

from invarlock_packed import PackedFamily, PackedShapes


def _gptq_packing(shapes: PackedShapes) -> tuple[float, float]:
    # qweight [in * bits / 32, out], qzeros [groups, out * bits / 32], scales [groups, out]
    bits = 32 * shapes["qzeros"][1] / shapes["scales"][1]
    return bits, shapes["qweight"][0] * 32 / bits


GPTQ = PackedFamily(
    adapter="hf_gptq",
    method="gptq",
    format_field="checkpoint_format",
    default_format="gptq",  # checkpoints written before v2 existed state no format
    kernels={
        "gptq": {"cpu": "gptq_torch", "cuda": "gptq_torch"},
        "gptq_v2": {"cpu": "gptq_torch", "cuda": "gptq_torch"},
    },
    config_class="GPTQConfig",
    packed_tensors=("qweight", "qzeros", "scales", "g_idx"),
    packing=_gptq_packing,
    settings=("desc_act", "sym"),
)
