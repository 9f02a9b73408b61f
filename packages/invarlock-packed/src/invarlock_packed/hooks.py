"""The hookimpls of a packed-integer family's plugin, written once for hf_gptq and hf_awq.

Each plugin module builds one :class:`PackedFamilyHooks` for its family and exposes its bound
methods under the hook names. Loading is the family's own; describe and snapshot/restore go
through invarlock-hf, with wrappers that complete the quantization block and reset kernel caches
after a restore. Imports nothing heavy: torch, transformers and gptqmodel are imported inside.
"""

from __future__ import annotations

from collections.abc import Generator
from pathlib import Path
from typing import Any

from invarlock import hookimpl
from invarlock.types import AdapterSpec
from invarlock_packed.family import PackedFamily

__all__ = ["PackedFamilyHooks"]


class PackedFamilyHooks:
    def __init__(self, family: PackedFamily, spec: AdapterSpec) -> None:
        self.family, self.spec = family, spec

    @hookimpl
    def invarlock_register_adapters(self) -> list[AdapterSpec]:
        return [self.spec]

    @hookimpl
    def invarlock_load_model(
        self, adapter: str, model_id: str, device: str, options: dict[str, Any]
    ) -> Any | None:
        if adapter != self.family.adapter:
            return None
        from invarlock_packed.loading import load_packed_model

        return load_packed_model(self.family, model_id, device, options)

    @hookimpl
    def invarlock_load_tokenizer(self, adapter: str, model_id: str, options: dict[str, Any]) -> Any | None:
        if adapter != self.family.adapter:
            return None
        from invarlock_hf.loading import load_tokenizer

        return load_tokenizer(model_id, options)

    @hookimpl(wrapper=True)
    def invarlock_describe(self, model: Any) -> Generator[None, dict[str, Any] | None, dict[str, Any] | None]:
        description = yield
        if description is not None:
            from invarlock_packed.kernels import complete_description

            complete_description(self.family, model, description)
        return description

    @hookimpl(wrapper=True)
    def invarlock_restore(self, model: Any, snapshot: Any) -> Generator[None, bool | None, bool | None]:
        restored = yield
        if restored:
            from invarlock_packed.kernels import after_restore

            after_restore(self.family, model)
        return restored

    @hookimpl(wrapper=True)
    def invarlock_restore_chunked(self, model: Any, path: Path) -> Generator[None, bool | None, bool | None]:
        restored = yield
        if restored:
            from invarlock_packed.kernels import after_restore

            after_restore(self.family, model)
        return restored
