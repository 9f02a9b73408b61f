"""The invarlock-awq plugin: registers hf_awq.

The hookimpls are invarlock-packed's :class:`~invarlock_packed.PackedFamilyHooks` for the
AWQ family, exposed under the hook names. Imports nothing heavy.
"""

from __future__ import annotations

from invarlock.adapters import Adapter
from invarlock.types import AdapterSpec, GuardSupport, Role, SnapshotSupport
from invarlock_awq.family import AWQ
from invarlock_hf.loading import LOAD_OPTIONS
from invarlock_packed import PackedFamilyHooks


class HF_AWQ_Adapter(Adapter):
    """AWQ checkpoints on gptqmodel kernels: GEMM on CPU and CUDA, GEMV on CUDA."""

    name = "hf_awq"


_hooks = PackedFamilyHooks(
    AWQ,
    AdapterSpec(
        AWQ.adapter,
        Role.CAUSAL,
        HF_AWQ_Adapter,
        backend=("gptqmodel", "transformers", "torch"),
        platforms=("linux",),
        snapshot=SnapshotSupport.YES,
        guards=GuardSupport.FULL,
        notes="AWQ GEMM checkpoints on gptqmodel's torch kernel (CPU, CUDA); GEMV on CUDA",
        load_options=LOAD_OPTIONS,
        superseded_backends={"autoawq": "gptqmodel"},
    ),
)

invarlock_register_adapters = _hooks.invarlock_register_adapters
invarlock_load_model = _hooks.invarlock_load_model
invarlock_load_tokenizer = _hooks.invarlock_load_tokenizer
invarlock_describe = _hooks.invarlock_describe
invarlock_restore = _hooks.invarlock_restore
invarlock_restore_chunked = _hooks.invarlock_restore_chunked
