"""The invarlock-gptq plugin: registers hf_gptq.

Loading is this plugin's own; describe and snapshot/restore go through invarlock-hf, with wrapper
hooks that complete the quantization block and reset kernel caches after a restore. Imports nothing
heavy: torch, transformers and gptqmodel are imported inside the hookimpls.
"""

from __future__ import annotations

from collections.abc import Generator
from pathlib import Path
from typing import Any

from invarlock import hookimpl
from invarlock.adapters import Adapter
from invarlock.types import AdapterSpec, GuardSupport, Role, SnapshotSupport
from invarlock_gptq.family import GPTQ


class HF_GPTQ_Adapter(Adapter):
    """GPTQ checkpoints (formats gptq and gptq_v2) on gptqmodel's torch kernel, CPU or CUDA."""

    name = "hf_gptq"


@hookimpl
def invarlock_register_adapters() -> list[AdapterSpec]:
    return [
        AdapterSpec(
            GPTQ.adapter,
            Role.CAUSAL,
            HF_GPTQ_Adapter,
            backend=("gptqmodel", "optimum", "transformers", "torch"),
            platforms=("linux",),
            snapshot=SnapshotSupport.YES,
            guards=GuardSupport.FULL,
            notes="GPTQ v1/v2 checkpoints on gptqmodel's torch kernel (CPU, CUDA)",
            superseded_backends={"auto-gptq": "gptqmodel"},
        )
    ]


@hookimpl
def invarlock_load_model(adapter: str, model_id: str, device: str, options: dict[str, Any]) -> Any | None:
    if adapter != GPTQ.adapter:
        return None
    from invarlock_gptq.loading import load_packed_model

    return load_packed_model(GPTQ, model_id, device, options)


@hookimpl
def invarlock_load_tokenizer(adapter: str, model_id: str, options: dict[str, Any]) -> Any | None:
    if adapter != GPTQ.adapter:
        return None
    from invarlock_hf.loading import load_tokenizer

    return load_tokenizer(model_id, options)


@hookimpl(wrapper=True)
def invarlock_describe(model: Any) -> Generator[None, dict[str, Any] | None, dict[str, Any] | None]:
    description = yield
    if description is not None:
        from invarlock_gptq.kernels import complete_description

        complete_description(GPTQ, model, description)
    return description


@hookimpl(wrapper=True)
def invarlock_restore(model: Any, snapshot: Any) -> Generator[None, bool | None, bool | None]:
    restored = yield
    if restored:
        from invarlock_gptq.kernels import after_restore

        after_restore(GPTQ, model)
    return restored


@hookimpl(wrapper=True)
def invarlock_restore_chunked(model: Any, path: Path) -> Generator[None, bool | None, bool | None]:
    restored = yield
    if restored:
        from invarlock_gptq.kernels import after_restore

        after_restore(GPTQ, model)
    return restored
