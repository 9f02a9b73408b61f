"""AWQ as a packed family: its layouts, the kernel for each on each device, and its packing."""

from __future__ import annotations

from invarlock_packed import PackedFamily, PackedShapes


def _awq_packing(shapes: PackedShapes) -> tuple[float, float]:
    # qweight [in, out * bits / 32], qzeros [groups, out * bits / 32], scales [groups, out]
    return 32 * shapes["qweight"][1] / shapes["scales"][1], float(shapes["qweight"][0])


AWQ = PackedFamily(
    adapter="hf_awq",
    method="awq",
    format_field="version",
    default_format="gemm",
    kernels={
        # The torch kernel dequantizes the GEMM layout on any device; GEMV has CUDA kernels only.
        # gemv_fast is left out: its kernel rewrites qzeros on the first forward pass.
        "gemm": {"cpu": "torch_awq", "cuda": "torch_awq"},
        "gemv": {"cuda": "gemv"},
    },
    config_class="AwqConfig",
    packed_tensors=("qweight", "qzeros", "scales"),
    packing=_awq_packing,
    settings=("zero_point",),
    dtypes=("float16", "float32"),
    dtype_reason=(
        "AWQ scales are float16, and in a bfloat16 model the kernel recasts them on the first forward "
        "pass, which would change the tensors a snapshot holds"
    ),
)
