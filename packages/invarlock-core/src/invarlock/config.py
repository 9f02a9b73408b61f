"""``invarlock run --config FILE.yaml``: the run configuration, checked key by key.

Every key is declared below with its type and default. An unknown key, a wrong type, a missing
required value or a number that is not finite (``.nan``, ``.inf``) is a
:class:`~invarlock.errors.ConfigError` whose one sentence names the key and what was expected. The
result is a plain nested dict with every default filled in, so the report can record exactly what
ran.

The one open section is ``model``: a key core does not declare there is a load option of the
adapter (a quantization backend's own flag, say), passed to ``load_model`` and
to adapter resolution as given; the adapter decides what it means and refuses what it does not
know. A key that reads like a misspelt declared key (``devise``) is refused with a "did you mean".
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from invarlock.certification.evaluation.distribution import DEFAULT_TOP_K
from invarlock.certification.evaluation.gate import DEFAULT_BOOTSTRAP, DEFAULT_CONFIDENCE, DEFAULT_MAX_RATIO
from invarlock.certification.evaluation.scoring import DEFAULT_BATCH_SIZE
from invarlock.certification.evaluation.windows import DEFAULT_SEED, DEFAULT_SEQ_LEN, DEFAULT_WINDOWS
from invarlock.certification.structure_change import StructureChange
from invarlock.certification.structure_change import parse as parse_structure_change
from invarlock.errors import ConfigError, kind_of

SNAPSHOT_MODES = ("auto", "memory", "chunked")
DATASET_PROVIDERS = ("pydoc", "file", "hf", "wikitext2")
METRIC_KINDS = ("auto", "ppl_causal", "ppl_mlm", "ppl_seq2seq")
EDIT_NAMES = ("noop", "quant_rtn")


@dataclass(frozen=True)
class Key:
    types: tuple[type, ...]
    default: Any = None
    required: bool = False
    choices: tuple[Any, ...] = ()
    minimum: float | None = None


_STR, _INT, _BOOL, _NUM = (str,), (int,), (bool,), (int, float)
_OPT_INT = (int, type(None))
_OPT_NUM = (int, float, type(None))

Schema = dict[str, "Key | Schema"]

MODEL: Schema = {
    "id": Key(_STR, required=True),
    "adapter": Key(_STR, "auto"),
    "device": Key(_STR, "auto"),
    "dtype": Key(_STR),
    "torch_dtype": Key(_STR),
    "device_map": Key((str, dict)),
    "max_memory": Key((dict,)),
    "offload_folder": Key(_STR),
    "tp_plan": Key((str, dict)),
    "trust_remote_code": Key(_BOOL, False),
    "revision": Key(_STR),
    "cache_dir": Key(_STR),
    "attn_implementation": Key(_STR),
    "low_cpu_mem_usage": Key(_BOOL),
}
"""``model``: everything but id, adapter and device is passed to the adapter's load_model, and so
is every key not declared here (the adapter's own load options)."""
TEXT_MODEL_KEYS = frozenset(name for name, key in MODEL.items() if isinstance(key, Key) and key.types == _STR)
"""``model`` keys whose value is always text (``revision``, ``dtype``, ``offload_folder``...): a
command-line ``KEY=VALUE`` for one keeps VALUE as written, so ``revision=1234567`` names a revision."""
OPEN_SECTIONS = ("model",)
"""Sections whose undeclared keys are adapter load options rather than mistakes."""
_TYPO_CUTOFF = 0.8

SCHEMA: Schema = {
    "model": MODEL,
    "dataset": {
        "provider": Key(_STR, "pydoc", choices=DATASET_PROVIDERS),
        "path": Key(_STR),
        "name": Key(_STR),
        "config": Key(_STR),
        "split": Key(_STR),
        "text_field": Key(_STR, "text"),
        "seq_len": Key(_INT, DEFAULT_SEQ_LEN, minimum=2),
        "stride": Key(_OPT_INT, minimum=1),
        "windows": Key(_OPT_INT, minimum=1),
        "preview_n": Key(_OPT_INT, minimum=0),
        "final_n": Key(_OPT_INT, minimum=0),
        "seed": Key(_INT, DEFAULT_SEED),
    },
    "eval": {
        "batch_size": Key(_INT, DEFAULT_BATCH_SIZE, minimum=1),
        "top_k": Key(_INT, DEFAULT_TOP_K, minimum=0),
        "metric": {"kind": Key(_STR, "auto", choices=METRIC_KINDS)},
        "gate": {
            "max_ratio": Key(_NUM, DEFAULT_MAX_RATIO, minimum=1.0),
            "confidence": Key(_NUM, DEFAULT_CONFIDENCE, minimum=0.5),
            "bootstrap": Key(_INT, DEFAULT_BOOTSTRAP, minimum=100),
            "allow_inconclusive": Key(_BOOL, False),
            "max_kl": Key(_OPT_NUM, minimum=0.0),
            "min_top1_agreement": Key(_OPT_NUM, minimum=0.0),
        },
    },
    "edit": {
        "name": Key(_STR, "noop", choices=EDIT_NAMES),
        "plan": {
            "bitwidth": Key(_OPT_INT, minimum=2),
            "bits": Key(_OPT_INT, minimum=2),
            "group_size": Key(_OPT_INT, minimum=1),
            "per_channel": Key(_BOOL),
            "scope": Key(_STR, choices=("all", "attn", "ffn")),
        },
        "structure_change": Key((dict,)),
    },
    "context": {"snapshot": {"mode": Key(_STR, "auto", choices=SNAPSHOT_MODES), "directory": Key(_STR)}},
    "output": {"dir": Key(_STR, "runs")},
}


def load_config(path: str | Path) -> dict[str, Any]:
    """Read, check and complete a run configuration file."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist; pass the path of a YAML file")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        line = f" at line {where.line + 1}" if where is not None else ""
        raise ConfigError(f"{path} is not valid YAML{line}; fix the syntax there") from exc
    return parse_config(raw, source=str(path))


def parse_config(raw: Any, *, source: str = "config") -> dict[str, Any]:
    """Check ``raw`` (the YAML document) against the schema and fill in defaults."""
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{source} must be a YAML mapping with a 'model' section, got {kind_of(raw)}")
    _refuse_non_finite(raw, "", source)
    config = _walk(raw, SCHEMA, "", source)
    _check_combinations(config, source)
    return config


def _refuse_non_finite(raw: Any, prefix: str, source: str) -> None:
    """No NaN or infinity anywhere: every number in a run config is compared or passed on."""
    items = raw.items() if isinstance(raw, Mapping) else enumerate(raw) if isinstance(raw, list) else ()
    for key, value in items:
        dotted = f"{prefix}{key}" if isinstance(raw, Mapping) else f"{prefix[:-1]}[{key}]"
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{source}: '{dotted}' must be a finite number, got {value!r}")
        _refuse_non_finite(value, f"{dotted}.", source)


def _walk(raw: Mapping[str, Any], schema: Schema, prefix: str, source: str) -> dict[str, Any]:
    is_open = prefix[:-1] in OPEN_SECTIONS
    extra: dict[str, Any] = {}
    for key in raw:
        if key in schema:
            continue
        dotted = f"{prefix}{key}"
        cutoff = _TYPO_CUTOFF if is_open else 0.6
        close = difflib.get_close_matches(str(key), [str(k) for k in schema], n=1, cutoff=cutoff)
        hint = f" (did you mean {prefix}{close[0]}?)" if close else ""
        where = f"under '{prefix[:-1]}'" if prefix else "at the top level"
        if is_open and not close and isinstance(key, str):
            extra[key] = raw[key]  # the adapter's own load option
            continue
        allowed = ", ".join(schema) + (" or the adapter's own load options" if is_open else "")
        raise ConfigError(f"{source}: unknown key '{dotted}'{hint}; keys allowed {where} are {allowed}")
    result: dict[str, Any] = {}
    for key, spec in schema.items():
        dotted = f"{prefix}{key}"
        value = raw.get(key)
        if isinstance(spec, dict):
            if value is None:
                value = {}
            if not isinstance(value, Mapping):
                raise ConfigError(f"{source}: '{dotted}' must be a mapping of keys, got {kind_of(value)}")
            result[key] = _walk(value, spec, f"{dotted}.", source)
            continue
        if value is None:
            if spec.required:
                raise ConfigError(f"{source}: '{dotted}' is required ({_expected(spec)})")
            result[key] = spec.default
            continue
        result[key] = _check_value(value, spec, dotted, source)
    result.update(extra)
    return result


def _check_value(value: Any, spec: Key, dotted: str, source: str) -> Any:
    wrong_bool = isinstance(value, bool) and bool not in spec.types
    if wrong_bool or not isinstance(value, spec.types):
        raise ConfigError(f"{source}: '{dotted}' must be {_expected(spec)}, got {kind_of(value)}")
    if spec.choices and value not in spec.choices:
        raise ConfigError(
            f"{source}: '{dotted}' must be one of {', '.join(map(str, spec.choices))}, got {value!r}"
        )
    if spec.minimum is not None and isinstance(value, (int, float)) and value < spec.minimum:
        raise ConfigError(f"{source}: '{dotted}' must be at least {spec.minimum:g}, got {value!r}")
    numeric = spec.types in (_NUM, _OPT_NUM)
    return float(value) if numeric and isinstance(value, (int, float)) else value


def _check_combinations(config: dict[str, Any], source: str) -> None:
    model = config["model"]
    if model["dtype"] is not None and model["torch_dtype"] is not None:
        raise ConfigError(
            f"{source}: give only one of 'model.dtype' and 'model.torch_dtype' (they are the same)"
        )
    structure_change(config, source)  # refused now, before anything is loaded
    plan = config["edit"]["plan"]
    given = [k for k, v in plan.items() if v is not None]
    if config["edit"]["name"] == "noop" and given:
        raise ConfigError(f"{source}: 'edit.plan.{given[0]}' applies to quant_rtn, but 'edit.name' is noop")
    if plan["bits"] is not None and plan["bitwidth"] is not None:
        raise ConfigError(f"{source}: give only one of 'edit.plan.bitwidth' and 'edit.plan.bits'")
    bits = plan["bitwidth"] if plan["bitwidth"] is not None else plan["bits"]
    if bits is not None and not 2 <= bits <= 8:
        raise ConfigError(f"{source}: 'edit.plan.bitwidth' must be between 2 and 8, got {bits}")
    dataset = config["dataset"]
    if dataset["provider"] == "file" and not dataset["path"]:
        raise ConfigError(f"{source}: 'dataset.path' is required when 'dataset.provider' is file")
    if dataset["provider"] == "hf" and not dataset["name"]:
        raise ConfigError(f"{source}: 'dataset.name' is required when 'dataset.provider' is hf")
    gate = config["eval"]["gate"]
    confidence = gate["confidence"]
    if not confidence < 1.0:
        raise ConfigError(f"{source}: 'eval.gate.confidence' must be below 1, got {confidence!r}")
    if gate["min_top1_agreement"] is not None and gate["min_top1_agreement"] > 1.0:
        raise ConfigError(
            f"{source}: 'eval.gate.min_top1_agreement' is a rate between 0 and 1, "
            f"got {gate['min_top1_agreement']!r}"
        )
    gated = [k for k in ("max_kl", "min_top1_agreement") if gate[k] is not None]
    if gated and config["eval"]["top_k"] == 0:
        raise ConfigError(
            f"{source}: 'eval.gate.{gated[0]}' gates a distribution metric, "
            "but 'eval.top_k' 0 turns them off; set eval.top_k to 1 or more, or remove the gate"
        )


# -- views the runner uses ----------------------------------------------------------------------


def load_options(config: Mapping[str, Any]) -> dict[str, Any]:
    """The ``model`` keys passed to ``Adapter.load_model`` (unset keys left out; dtype spelt ``dtype``)."""
    model = config["model"]
    options = {k: v for k, v in model.items() if k not in ("id", "adapter", "device") and v is not None}
    if "torch_dtype" in options:
        options["dtype"] = options.pop("torch_dtype")
    return options


def dataset_spec(config: Mapping[str, Any]) -> tuple[str, str | None]:
    """The dataset as ``load_corpus`` takes it: (spec, split)."""
    dataset = config["dataset"]
    provider = dataset["provider"]
    if provider == "file":
        return dataset["path"], dataset["split"]
    if provider == "hf":
        name = dataset["name"] + (f":{dataset['config']}" if dataset["config"] else "")
        return f"hf:{name}", dataset["split"]
    if provider == "wikitext2":
        return "hf:wikitext:wikitext-2-raw-v1", dataset["split"] or "validation"
    return "pydoc", dataset["split"]


def structure_change(config: Mapping[str, Any], source: str = "config") -> StructureChange:
    """``edit.structure_change``: the structure change the edit is declared to make (checked)."""
    return parse_structure_change(config["edit"]["structure_change"], f"{source}: 'edit.structure_change'")


def window_count(config: Mapping[str, Any]) -> int:
    """``dataset.windows``, else ``preview_n + final_n`` (the seed's two window sets), else the default."""
    dataset = config["dataset"]
    if dataset["windows"] is not None:
        return int(dataset["windows"])
    seed_style = (dataset["preview_n"] or 0) + (dataset["final_n"] or 0)
    return seed_style or DEFAULT_WINDOWS


def edit_plan(config: Mapping[str, Any]) -> dict[str, Any]:
    """The edit's keyword arguments (``bits`` spelt ``bitwidth``, unset keys left out)."""
    plan = {k: v for k, v in config["edit"]["plan"].items() if v is not None}
    if "bits" in plan:
        plan["bitwidth"] = plan.pop("bits")
    return plan


def _expected(spec: Key) -> str:
    names = {str: "a string", int: "an integer", bool: "true or false", float: "a number", dict: "a mapping"}
    if spec.types == _NUM:
        return "a number"
    if spec.types == _OPT_NUM:
        return "a number or null"
    parts = [names.get(t, "null") for t in spec.types if t is not type(None)]
    text = " or ".join(parts)
    if type(None) in spec.types:
        text += " or null"
    if spec.choices:
        text += f" (one of {', '.join(map(str, spec.choices))})"
    return text
