"""The invarlock-gptq plugin: registers hf_gptq.

The hookimpls are invarlock-packed's :class:`~invarlock_packed.PackedFamilyHooks` for the
GPTQ family, exposed under the hook names. Imports nothing heavy.
"""

from __future__ import annotations

from invarlock.adapters import Adapter
from invarlock.types import AdapterSpec, GuardSupport, Role, SnapshotSupport
from invarlock_gptq.family import GPTQ
from invarlock_hf.loading import LOAD_OPTIONS
from invarlock_packed import PackedFamilyHooks


class HF_GPTQ_Adapter(Adapter):
    """GPTQ checkpoints (formats gptq and gptq_v2) on gptqmodel's torch kernel, CPU or CUDA."""

    name = "hf_gptq"


_hooks = PackedFamilyHooks(
    GPTQ,
    AdapterSpec(
        GPTQ.adapter,
        Role.CAUSAL,
        HF_GPTQ_Adapter,
        backend=("gptqmodel", "optimum", "transformers", "torch"),
        platforms=("linux",),
        snapshot=SnapshotSupport.YES,
        guards=GuardSupport.FULL,
        notes="GPTQ v1/v2 checkpoints on gptqmodel's torch kernel (CPU, CUDA)",
        load_options=LOAD_OPTIONS,
        superseded_backends={"auto-gptq": "gptqmodel"},
    ),
)

invarlock_register_adapters = _hooks.invarlock_register_adapters
invarlock_load_model = _hooks.invarlock_load_model
invarlock_load_tokenizer = _hooks.invarlock_load_tokenizer
invarlock_describe = _hooks.invarlock_describe
invarlock_restore = _hooks.invarlock_restore
invarlock_restore_chunked = _hooks.invarlock_restore_chunked
