"""The invarlock-awq plugin: registers hf_awq.

Loading is this plugin's own (through invarlock-gptq's shared loader); describe and snapshot/restore
go through invarlock-hf, with wrapper hooks that complete the quantization block and reset kernel
caches after a restore. Imports nothing heavy: torch, transformers and gptqmodel are imported
inside the hookimpls.
"""

from __future__ import annotations

from collections.abc import Generator
from pathlib import Path
from typing import Any

from invarlock import hookimpl
from invarlock.adapters import Adapter
from invarlock.types import AdapterSpec, GuardSupport, Role, SnapshotSupport
from invarlock_awq.family import AWQ


class HF_AWQ_Adapter(Adapter):
    """AWQ checkpoints on gptqmodel kernels: GEMM on CPU and CUDA, GEMV on CUDA."""

    name = "hf_awq"


@hookimpl
def invarlock_register_adapters() -> list[AdapterSpec]:
    return [
        AdapterSpec(
            AWQ.adapter,
            Role.CAUSAL,
            HF_AWQ_Adapter,
            backend=("gptqmodel", "transformers", "torch"),
            platforms=("linux",),
            snapshot=SnapshotSupport.YES,
            guards=GuardSupport.FULL,
            notes="AWQ GEMM checkpoints on gptqmodel's torch kernel (CPU, CUDA); GEMV on CUDA",
            superseded_backends={"autoawq": "gptqmodel"},
        )
    ]


@hookimpl
def invarlock_load_model(adapter: str, model_id: str, device: str, options: dict[str, Any]) -> Any | None:
    if adapter != AWQ.adapter:
        return None
    from invarlock_gptq.loading import load_packed_model

    return load_packed_model(AWQ, model_id, device, options)


@hookimpl
def invarlock_load_tokenizer(adapter: str, model_id: str, options: dict[str, Any]) -> Any | None:
    if adapter != AWQ.adapter:
        return None
    from invarlock_hf.loading import load_tokenizer

    return load_tokenizer(model_id, options)


@hookimpl(wrapper=True)
def invarlock_describe(model: Any) -> Generator[None, dict[str, Any] | None, dict[str, Any] | None]:
    description = yield
    if description is not None:
        from invarlock_gptq.kernels import complete_description

        complete_description(AWQ, model, description)
    return description


@hookimpl(wrapper=True)
def invarlock_restore(model: Any, snapshot: Any) -> Generator[None, bool | None, bool | None]:
    restored = yield
    if restored:
        from invarlock_gptq.kernels import after_restore

        after_restore(AWQ, model)
    return restored


@hookimpl(wrapper=True)
def invarlock_restore_chunked(model: Any, path: Path) -> Generator[None, bool | None, bool | None]:
    restored = yield
    if restored:
        from invarlock_gptq.kernels import after_restore

        after_restore(AWQ, model)
    return restored
