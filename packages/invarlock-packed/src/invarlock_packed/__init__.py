"""invarlock-packed: what the packed-integer adapters (GPTQ in invarlock-gptq, AWQ in invarlock-awq)
share. Both are int32-packed formats loaded through transformers and gptqmodel.

A library, not an adapter: it registers no plugin, so depending on it registers no adapter. An
adapter distribution states its own :class:`PackedFamily` and exposes a :class:`PackedFamilyHooks`
built for it under the hook names. The public API is ``__all__`` (plus the test helpers in
:mod:`invarlock_packed.testing`); the modules behind it (``loading``, ``checkpoint``, ``kernels``)
are private. Importing this package imports nothing heavy.
"""

from __future__ import annotations

from invarlock_packed.family import PackedFamily, PackedShapes
from invarlock_packed.hooks import PackedFamilyHooks

__all__ = ["PackedFamily", "PackedFamilyHooks", "PackedShapes"]
