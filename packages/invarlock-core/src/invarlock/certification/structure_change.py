"""A declared structure change: what an edit does to a model's structure, which the structure
invariant then holds the subject to exactly.

One format, read from ``--declare-edit FILE`` (YAML or JSON), from ``edit.structure_change`` in a
run configuration, from the ``structure_change`` key of an edit's summary, and from the subject's
own ``vocab_growth`` description key::

    heads_per_layer: {3: 6}        # layer 3 keeps 6 query heads
    kv_heads_per_layer: {3: 2}     # ... and 2 KV heads
    mlp_dims: {0: 1024, 1: 1024}   # MLP widths shrunk in layers 0 and 1
    num_experts: {1: 6}            # MoE layer 1 keeps 6 routed experts
    vocab_size: 32128              # the vocabulary grown to 32128 tokens
    added_tokens: ["<tool>"]       # optional with vocab_size: the tokens appended, in id order
    layers_removed: [10, 11]       # whole blocks removed

Values are what the subject has after the edit; layer indices are the baseline's. Every value is
checked when the declaration is read (one sentence, ``structure_declaration_invalid``), and again
against the baseline's description before anything is scored (a layer it does not have, a value it
already has).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

from invarlock.description import VOCAB_GROWTH_KEY
from invarlock.errors import StructureDeclarationError, kind_of

PER_LAYER_KEYS = ("heads_per_layer", "kv_heads_per_layer", "mlp_dims", "num_experts")
"""Declared per layer: ``{baseline layer index: value after the edit}``. The first three are the
describe keys of the same name; ``num_experts`` is the routed experts of a layer's
``moe_per_layer`` entry."""
DECLARATION_KEYS = (*PER_LAYER_KEYS, "vocab_size", "added_tokens", "layers_removed")


@dataclass(frozen=True)
class StructureChange:
    """How the subject's structure differs from the baseline's, as declared (empty: not at all)."""

    per_layer: Mapping[str, Mapping[int, int]] = field(default_factory=dict)
    vocab_size: int | None = None
    added_tokens: tuple[str, ...] | None = None
    layers_removed: tuple[int, ...] = ()
    sources: tuple[str, ...] = ()
    """Where the declaration came from (``--declare-edit FILE``, ``edit quant_rtn``...)."""

    def __bool__(self) -> bool:
        return bool(self.per_layer or self.vocab_size is not None or self.layers_removed)

    def to_dict(self) -> dict[str, Any]:
        """The declaration as JSON (layer indices as string keys), with its sources."""
        declared: dict[str, Any] = {
            key: {str(layer): value for layer, value in sorted(values.items())}
            for key, values in self.per_layer.items()
        }
        if self.vocab_size is not None:
            declared["vocab_size"] = self.vocab_size
            if self.added_tokens is not None:
                declared["added_tokens"] = list(self.added_tokens)
        if self.layers_removed:
            declared["layers_removed"] = list(self.layers_removed)
        return {**declared, "sources": list(self.sources)}

    def merged(self, other: StructureChange) -> StructureChange:
        """Both declarations at once; refused where they declare one thing two ways."""
        if not other:
            return self
        if not self:
            return other
        sources = f"{' and '.join(self.sources)} and {' and '.join(other.sources)}"
        per_layer = {key: dict(values) for key, values in self.per_layer.items()}
        for key, values in other.per_layer.items():
            for layer, value in values.items():
                if per_layer.setdefault(key, {}).get(layer, value) != value:
                    raise StructureDeclarationError(
                        f"{sources} declare {key} of layer {layer} as {per_layer[key][layer]} and {value}; "
                        "declare each change once, with one value"
                    )
                per_layer[key][layer] = value
        vocab = (self.vocab_size, self.added_tokens)
        other_vocab = (other.vocab_size, other.added_tokens)
        both = self.vocab_size is not None and other.vocab_size is not None and vocab != other_vocab
        # One may name the added tokens and the other not; any other disagreement is two vocabularies.
        if both and (
            self.vocab_size != other.vocab_size or None not in (self.added_tokens, other.added_tokens)
        ):
            raise StructureDeclarationError(
                f"{sources} declare two vocabularies ({self.vocab_size} and {other.vocab_size} tokens, "
                "or other added tokens); declare the vocabulary growth once"
            )
        return StructureChange(
            per_layer,
            self.vocab_size if self.vocab_size is not None else other.vocab_size,
            self.added_tokens if self.added_tokens is not None else other.added_tokens,
            tuple(sorted({*self.layers_removed, *other.layers_removed})),
            (*self.sources, *other.sources),
        )

    def check_applies_to(self, baseline: Mapping[str, Any]) -> None:
        """Raise :class:`StructureDeclarationError` unless every declared change is a change of
        something the baseline has (its layers, its MoE layers, a larger vocabulary)."""
        where = " and ".join(self.sources) or "the declaration"
        n_layer = int(baseline["n_layer"])
        moe_per_layer = baseline.get("moe_per_layer")

        def refuse(what: str) -> NoReturn:
            raise StructureDeclarationError(
                f"{where} declares {what}; declare only changes from the baseline's structure "
                "(invarlock describe BASELINE shows it)"
            )

        for layer in self.layers_removed:
            if layer >= n_layer:
                refuse(f"layer {layer} removed, but the baseline has {n_layer} layers (0-{n_layer - 1})")
        if self.layers_removed and len(self.layers_removed) >= n_layer:
            refuse(f"all {n_layer} layers removed")
        if self.layers_removed and baseline.get("encoder_decoder") is not None:
            refuse(
                "layers removed from an encoder-decoder model, whose encoder/decoder split it cannot state"
            )
        for key, values in self.per_layer.items():
            for layer, value in sorted(values.items()):
                if layer >= n_layer:
                    refuse(
                        f"{key} for layer {layer}, but the baseline has {n_layer} layers (0-{n_layer - 1})"
                    )
                if layer in self.layers_removed:
                    refuse(f"{key} for layer {layer}, a layer it also declares removed")
                if key == "num_experts":
                    entry = moe_per_layer[layer] if isinstance(moe_per_layer, list) else None
                    if not isinstance(entry, Mapping):
                        kind = "dense" if isinstance(moe_per_layer, list) else "not described per layer"
                        refuse(f"num_experts for layer {layer}, but that baseline layer's MoE is {kind}")
                    before = entry["num_experts"]
                else:
                    before = baseline[key][layer]
                if before == value:
                    refuse(f"{key} {value} for layer {layer}, which is the baseline's own value")
        if self.vocab_size is not None:
            base_vocab = int(baseline["vocab_size"])
            if self.vocab_size <= base_vocab:
                refuse(
                    f"a vocabulary of {self.vocab_size} tokens, but the baseline's has {base_vocab} "
                    "(a declared vocabulary grows)"
                )
            if self.added_tokens is not None and len(self.added_tokens) != self.vocab_size - base_vocab:
                refuse(
                    f"{len(self.added_tokens)} added token(s) for a vocabulary grown by "
                    f"{self.vocab_size - base_vocab} from the baseline's {base_vocab}"
                )

    def expected(self, baseline: Mapping[str, Any]) -> dict[str, Any]:
        """The baseline's structural keys with the declared changes applied: what the subject must
        describe."""
        kept = [i for i in range(int(baseline["n_layer"])) if i not in self.layers_removed]
        result = dict(baseline)
        result["n_layer"] = len(kept)
        for key in ("heads_per_layer", "kv_heads_per_layer", "mlp_dims"):
            values = self.per_layer.get(key, {})
            result[key] = [values.get(i, baseline[key][i]) for i in kept]
        if isinstance(baseline.get("layer_types"), list):
            result["layer_types"] = [baseline["layer_types"][i] for i in kept]
        moe_per_layer = baseline.get("moe_per_layer")
        if isinstance(moe_per_layer, list):
            experts = self.per_layer.get("num_experts", {})
            result["moe_per_layer"] = [
                {**moe_per_layer[i], "num_experts": experts[i]} if i in experts else moe_per_layer[i]
                for i in kept
            ]
        if self.vocab_size is not None:
            result["vocab_size"] = self.vocab_size
        return result


def from_vocab_growth(baseline: Mapping[str, Any], subject: Mapping[str, Any]) -> StructureChange:
    """The subject's own ``vocab_growth`` as a declaration, when it declares the step from the
    baseline's vocabulary to its own (another step declares nothing: the difference stays undeclared)."""
    growth = subject.get(VOCAB_GROWTH_KEY)
    if not isinstance(growth, Mapping):
        return StructureChange()
    if (growth.get("base_vocab_size"), growth.get("vocab_size")) != (
        baseline.get("vocab_size"),
        subject.get("vocab_size"),
    ):
        return StructureChange()
    tokens = growth.get("added_tokens")
    return StructureChange(
        vocab_size=int(growth["vocab_size"]),
        added_tokens=tuple(tokens) if tokens is not None else None,
        sources=("the subject's description (vocab_growth)",),
    )


def parse(raw: Any, source: str) -> StructureChange:
    """Check a declaration (the parsed YAML/JSON mapping) key by key; ``source`` names it in errors."""

    def refuse(what: str) -> NoReturn:
        raise StructureDeclarationError(
            f"{source}: {what}; see 'Declared structure changes' in docs/certify.md"
        )

    if raw is None:
        return StructureChange()
    if not isinstance(raw, Mapping):
        refuse(f"a structure declaration is a mapping of {', '.join(DECLARATION_KEYS)}, not {kind_of(raw)}")
    unknown = [str(key) for key in raw if key not in DECLARATION_KEYS]
    if unknown:
        refuse(f"unknown key {unknown[0]!r}; the keys are {', '.join(DECLARATION_KEYS)}")
    per_layer: dict[str, dict[int, int]] = {}
    for key in PER_LAYER_KEYS:
        if key not in raw:
            continue
        values = raw[key]
        if not isinstance(values, Mapping) or not values:
            refuse(
                f"'{key}' must map layer indices to the value after the edit ({{3: 2}}), "
                f"not {kind_of(values)}"
            )
        minimum = 1 if key == "num_experts" else 0
        parsed: dict[int, int] = {}
        for layer, value in values.items():
            index = _layer_index(layer)
            if index is None:
                refuse(f"'{key}' has the layer {layer!r}; layers are non-negative integers (0 is the first)")
            if not _is_int(value) or value < minimum:
                refuse(
                    f"'{key}' of layer {layer} must be an integer of at least {minimum}, not {kind_of(value)}"
                )
            if index in parsed:
                refuse(f"'{key}' names layer {index} twice")
            parsed[index] = value
        per_layer[key] = parsed
    vocab_size = raw.get("vocab_size")
    if vocab_size is not None and (not _is_int(vocab_size) or vocab_size < 1):
        refuse(
            f"'vocab_size' must be a positive integer (the vocabulary after the edit), "
            f"not {kind_of(vocab_size)}"
        )
    tokens = raw.get("added_tokens")
    if tokens is not None:
        if vocab_size is None:
            refuse("'added_tokens' needs 'vocab_size', the vocabulary they grow")
        if not isinstance(tokens, list) or not all(isinstance(t, str) for t in tokens):
            refuse(f"'added_tokens' must be a list of token strings, not {kind_of(tokens)}")
    removed = raw.get("layers_removed")
    if removed is not None:
        indices = [_layer_index(layer) for layer in removed] if isinstance(removed, list) else [None]
        if not removed or None in indices or len(set(indices)) != len(indices):
            refuse(f"'layers_removed' must be a list of distinct layer indices ([10, 11]), not {removed!r}")
    return StructureChange(
        per_layer,
        vocab_size,
        tuple(tokens) if tokens is not None else None,
        tuple(sorted(i for i in indices if i is not None)) if removed is not None else (),
        (source,),
    )


def load(path: str | Path) -> StructureChange:
    """Read and check a declaration file: YAML or JSON (JSON is YAML)."""
    import yaml

    source = f"--declare-edit {path}"
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise StructureDeclarationError(
            f"{source}: cannot read the file ({exc.strerror or exc}); pass the path of a YAML or JSON file"
        ) from exc
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" at line {mark.line + 1}" if mark is not None else ""
        raise StructureDeclarationError(
            f"{source} is not valid YAML or JSON{line}; fix the syntax there"
        ) from exc
    return parse(raw, source)


# -- the comparison -----------------------------------------------------------------------------


@dataclass(frozen=True)
class LayerDelta:
    """One structural difference between baseline and subject, and whether it was declared."""

    key: str
    layer: int | None
    """The baseline's layer index; None for a model-level key."""
    baseline: Any
    subject: Any
    declared: Any
    status: str
    """``declared`` (as declared), ``undeclared`` (a difference nobody declared), ``not_made``
    (declared, but the subject has another value)."""

    def info(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "layer": self.layer,
            "baseline": self.baseline,
            "subject": self.subject,
            "declared": self.declared,
            "status": self.status,
        }

    def phrase(self) -> str:
        where = f"layer {self.layer} {self.key}" if self.layer is not None else self.key
        if self.status == "declared":
            return f"{where} {_short(self.baseline)} -> {_short(self.subject)} as declared"
        if self.status == "undeclared":
            return f"{where}: baseline {_short(self.baseline)}, subject {_short(self.subject)}, not declared"
        return f"{where}: declared {_short(self.declared)}, subject has {_short(self.subject)}"


def deltas(
    baseline: Mapping[str, Any],
    subject: Mapping[str, Any],
    declared: StructureChange,
    compared: Sequence[str],
) -> list[LayerDelta]:
    """Every difference between ``subject`` and the baseline as declared, over the ``compared`` keys,
    per layer where the layers line up (the baseline's indices), else per key."""
    expected = declared.expected(baseline)
    kept = [i for i in range(int(baseline["n_layer"])) if i not in declared.layers_removed]
    found: list[LayerDelta] = []
    for layer in declared.layers_removed:
        status = "declared" if subject.get("n_layer") == len(kept) else "not_made"
        found.append(
            LayerDelta(
                "layer", layer, "present", "removed" if status == "declared" else "?", "removed", status
            )
        )
    aligned = subject.get("n_layer") == len(kept)
    moe_compared_per_layer = (
        bool(declared.per_layer.get("num_experts") or declared.layers_removed)
        and "moe_per_layer" in compared
        and aligned
    )
    for key in compared:
        if key == "n_layer" and declared.layers_removed:
            if not aligned:
                found.append(
                    LayerDelta(key, None, baseline.get(key), subject.get(key), len(kept), "not_made")
                )
            continue
        per_layer = key in (
            "heads_per_layer",
            "kv_heads_per_layer",
            "mlp_dims",
            "layer_types",
            "moe_per_layer",
        )
        if (
            per_layer
            and aligned
            and isinstance(subject.get(key), list)
            and isinstance(expected.get(key), list)
        ):
            for position, index in enumerate(kept):
                found += _layer_deltas(
                    key, index, baseline, subject[key][position], expected[key][position], declared
                )
            continue
        if key == "moe" and moe_compared_per_layer:
            continue  # a summary of moe_per_layer, whose entries are compared layer by layer
        before, after, want = baseline.get(key), subject.get(key), expected.get(key)
        if after == want:
            if after != before:
                found.append(LayerDelta(key, None, before, after, want, "declared"))
        elif want != before:
            found.append(LayerDelta(key, None, before, after, want, "not_made"))
        else:
            found.append(LayerDelta(key, None, before, after, None, "undeclared"))
    return found


def _layer_deltas(
    key: str, index: int, baseline: Mapping[str, Any], after: Any, want: Any, declared: StructureChange
) -> list[LayerDelta]:
    before = baseline[key][index]
    moe_layers = all(isinstance(entry, Mapping) for entry in (before, after, want))
    if key != "moe_per_layer" or not moe_layers:
        return _layer_deltas_value(key, index, before, after, want, declared)
    # An MoE layer on both sides: its routed experts (the declared key) on their own, then the rest.
    out = _layer_deltas_value(
        "num_experts", index, before["num_experts"], after.get("num_experts"), want["num_experts"], declared
    )
    rest = sorted(k for k in {*before, *after} if k != "num_experts" and before.get(k) != after.get(k))
    out += [
        LayerDelta(f"moe_per_layer.{name}", index, before.get(name), after.get(name), None, "undeclared")
        for name in rest
    ]
    return out


def _layer_deltas_value(
    key: str, index: int, before: Any, after: Any, want: Any, declared: StructureChange
) -> list[LayerDelta]:
    declared_value = declared.per_layer.get(key, {}).get(index)
    if after == want:
        return [LayerDelta(key, index, before, after, declared_value, "declared")] if after != before else []
    if declared_value is not None or want != before:
        return [LayerDelta(key, index, before, after, want, "not_made")]
    return [LayerDelta(key, index, before, after, None, "undeclared")]


def _short(value: Any) -> str:
    text = json.dumps(value, default=str) if not isinstance(value, str) else value
    return text if len(text) <= 80 else text[:77] + "..."


def _layer_index(value: Any) -> int | None:
    if _is_int(value) and value >= 0:
        return int(value)
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
