"""Built-in edits applied by ``invarlock run``: ``noop`` and ``quant_rtn``.

An edit changes a loaded PyTorch model in place and returns a JSON-serialisable summary. An edit
that changes the model's structure (prunes heads, shrinks MLPs, removes experts or layers, grows
the vocabulary) says so in its summary's ``structure_change`` key, in the format of
:mod:`invarlock.certification.structure_change`; the structure invariant then holds the edited
model to exactly that. An edit without the key declares no structure change.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from invarlock.certification.edits.noop import apply_noop
from invarlock.certification.edits.quant_rtn import apply_quant_rtn
from invarlock.errors import EditError

EDITS: dict[str, Callable[..., dict[str, Any]]] = {"noop": apply_noop, "quant_rtn": apply_quant_rtn}


def apply_edit(name: str, model: Any, plan: Mapping[str, Any]) -> dict[str, Any]:
    """Apply the edit ``name`` with ``plan`` (its keyword arguments) to ``model`` in place."""
    edit = EDITS.get(name)
    if edit is None:
        raise EditError(f"no edit named {name!r}; built-in edits are {', '.join(EDITS)}")
    return edit(model, **plan)


def changes_weights(name: str) -> bool:
    return name != "noop"
