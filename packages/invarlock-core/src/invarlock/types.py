"""Typed descriptors that plugins return from registration and resolution hooks."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from invarlock.adapters import Adapter


class Role(str, enum.Enum):
    """Which kind of model an adapter loads."""

    CAUSAL = "causal"
    MASKED_LM = "masked_lm"
    SEQ2SEQ = "seq2seq"
    ANY = "any"


class SnapshotSupport(str, enum.Enum):
    """Whether snapshot/restore (in memory and chunked) works for an adapter's models."""

    YES = "yes"
    BEST_EFFORT = "best-effort"
    NO = "no"


class GuardSupport(str, enum.Enum):
    """Whether guards may edit and restore weights (full) or only evaluate (eval-only)."""

    FULL = "full"
    EVAL_ONLY = "eval-only"


@dataclass(frozen=True)
class AdapterSpec:
    """What a plugin declares about one adapter, returned by ``invarlock_register_adapters``.

    :param name: the adapter name users type (``hf_causal``); unique across installed plugins.
    :param role: the kind of model it loads.
    :param adapter_class: the :class:`~invarlock.adapters.Adapter` subclass users instantiate.
    :param backend: distribution names of the libraries that do the work, most important first
        (``("transformers", "torch")``). Version bounds are read from the providing
        distribution's own metadata, never repeated here.
    :param platforms: ``sys.platform`` values the backend runs on; empty means any.
    :param snapshot: snapshot/restore capability.
    :param guards: guard compatibility.
    :param notes: one line shown in listings.
    :param superseded_backends: legacy distributions this backend replaces, mapped to the
        replacement (``{"auto-gptq": "gptqmodel"}``), so a listing can say why the legacy one
        does not count.
    :param distribution: the providing distribution; filled in by the plugin manager from the
        entry point when the plugin leaves it empty.
    :param resolves: the adapter loads nothing itself: for each checkpoint it picks an adapter
        through ``invarlock_resolve_adapter`` (given the load options) and loads with that one
        (``hf_auto``). Its plugin implements no loading hook for it.
    :param load_options: every load option key ``load_model`` accepts (``dtype``, ``device_map``,
        a backend's own flags...), or None when the adapter does not declare them. Declared keys are
        checked before anything is loaded: any other key is refused with the closest declared one
        (``InvalidLoadOptionError``). Undeclared (None), every key passes to ``load_model`` as given.
    """

    name: str
    role: Role
    adapter_class: type[Adapter]
    backend: tuple[str, ...] = ()
    platforms: tuple[str, ...] = ()
    snapshot: SnapshotSupport = SnapshotSupport.YES
    guards: GuardSupport = GuardSupport.FULL
    notes: str = ""
    superseded_backends: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    distribution: str | None = None
    resolves: bool = False
    load_options: frozenset[str] | None = None


@dataclass(frozen=True)
class Resolution:
    """The answer of ``invarlock_resolve_adapter``: which adapter serves a model, and why."""

    adapter: str
    reason: str
