"""``invarlock describe MODEL``: load a model through its adapter and print its description.

With ``--config-only`` nothing is loaded: the plugin that answers ``invarlock_describe_config``
builds the model its config.json states on the meta device, describes it, and adds a memory
estimate. The text output fits 80 columns, layers grouped into ranges.
"""

from __future__ import annotations

import argparse
import json
import textwrap
from collections.abc import Callable, Mapping
from typing import Any

from invarlock.cli.certify import add_model_options, load_options, quiet_backend_progress

DESCRIBE_SCHEMA = "invarlock.describe/v1"
WIDTH = 80
_TYPE_WORDS = {
    "full_attention": "full",
    "sliding_attention": "sliding",
    "chunked_attention": "chunked",
    "linear_attention": "linear",
}


def add_parser(commands: Any) -> None:
    parser = commands.add_parser("describe", help="print a model's structure as its adapter describes it")
    parser.add_argument("model", help="a checkpoint directory or hub id")
    parser.add_argument("--adapter", default="auto", help="adapter name, or auto (default) to resolve it")
    add_model_options(parser)
    parser.add_argument(
        "--config-only",
        action="store_true",
        help="describe from config.json alone on the meta device (no weights loaded), with a memory estimate",
    )
    parser.add_argument("--revision", help="hub revision of the config (--config-only)")
    parser.add_argument(
        "--json", action="store_true", help="print JSON (schema docs/schemas/describe.v1.json)"
    )
    parser.set_defaults(handler=_describe_command)


def _describe_command(args: argparse.Namespace) -> int:
    from invarlock.certification import preflight, sides

    quiet_backend_progress()
    options = load_options(args)
    preflight.check_model_location(args.model, "model")
    if args.config_only:
        description = describe_config(args.model, options, revision=args.revision)
        adapter_info: dict[str, Any] | None = None
        headline = (
            f"{args.model}  (from {description.get('config_source', 'config.json')}, no weights loaded)"
        )
    else:
        chosen = sides.choose_adapter(args.model, args.adapter, flag="--adapter", load_options=options)
        model = sides.load_model(chosen, args.model, "model", args.device, options)
        description = dict(chosen.adapter.describe(model))
        adapter_info = chosen.info()
        headline = f"{args.model}  (adapter {chosen.name}: {chosen.resolution.reason})"
    if args.json:
        document = {
            "schema": DESCRIBE_SCHEMA,
            "model_id": args.model,
            "config_only": bool(args.config_only),
            "adapter": adapter_info,
            "description": description,
        }
        print(json.dumps(document, indent=2))
        return 0
    print("\n".join(describe_text(description, headline)))
    return 0


def describe_config(model_id: str, options: dict[str, Any], *, revision: str | None = None) -> dict[str, Any]:
    """The description (plus ``memory``) of the model ``model_id``'s config states, from the first
    plugin that can read it; validated against the describe contract."""
    from invarlock.description import validate_description
    from invarlock.errors import AdapterNotFoundError
    from invarlock.manager import get_plugin_manager
    from invarlock.network import hub_offline_unless_allowed

    hook_options = {key: value for key, value in options.items() if key == "trust_remote_code"}
    hook_options.setdefault("trust_remote_code", False)
    if revision:
        hook_options["revision"] = revision
    with hub_offline_unless_allowed():
        description = get_plugin_manager().hook.invarlock_describe_config(
            model_id=model_id, options=hook_options
        )
    if description is None:
        raise AdapterNotFoundError(
            f"no installed plugin can describe {model_id} from its config alone; pip install invarlock-hf"
        )
    return dict(validate_description(description, adapter="invarlock_describe_config"))


# -- text -------------------------------------------------------------------------------------------


def describe_text(description: Mapping[str, Any], headline: str) -> list[str]:
    """The description as lines of at most 80 columns: the model, then its layers grouped into ranges."""
    d = description
    lines = _wrap(headline, "")
    name = d["model_type"] + (
        f" (language model {d['language_model_type']})" if d.get("language_model_type") else ""
    )
    lines += _field("model", f"{name}, {d['model_class']}, {d['role']}")
    scope = ", the whole model (all towers, tied tensors once)" if d.get("n_params_scope") else ""
    lines += _field("parameters", f"{_count(d['n_params'])}{scope}")
    lines += _field("width", f"hidden {d['hidden_size']}, vocabulary {d['vocab_size']}")
    lines += _field("dtype", f"{d['dtype']} on {d['device']}")
    split = d.get("encoder_decoder")
    if split:
        lines += _field(
            "blocks", f"{d['n_layer']}: encoder {split['encoder_layers']}, decoder {split['decoder_layers']}"
        )
    else:
        lines += _field("blocks", str(d["n_layer"]))
    lines += _field("attention", ", ".join(_runs(d, _attention_word)) or "none")
    lines += _field("mlp", ", ".join(_runs(d, _mlp_word)) or "none")
    if d.get("towers"):
        towers = [
            f"{key} {tower['n_layer']} blocks, width {tower['hidden_size']}, "
            f"{_count(tower['n_params'])} parameters"
            for key, tower in d["towers"].items()
        ]
        lines += _field("towers", "; ".join(towers))
    if d.get("tying"):
        lines += _field("tied", ", ".join(f"{name} = {owner}" for name, owner in d["tying"].items()))
    if d.get("quantization"):
        lines += _field("quantized", json.dumps(d["quantization"]))
    for entry in d.get("unresolved") or []:
        where = f" (layers {_ranges(entry['layers'])})" if entry.get("layers") else ""
        lines += _field("unresolved", f"{entry['field']}{where}: {entry['why']}")
    memory = d.get("memory")
    if memory:
        sizes = ", ".join(f"{dtype} {_bytes(size)}" for dtype, size in memory["bytes_per_dtype"].items())
        lines += _field("memory", f"parameters in {sizes}")
        packed = memory.get("packed")
        if packed and packed.get("bytes") is not None:
            lines += _field(
                "packed",
                f"{packed['method']} {packed['bits']}-bit: {_bytes(packed['bytes'])} "
                f"({packed['quantized_linears']} linear layers packed, "
                f"the rest in {packed['unquantized_dtype']})",
            )
        elif packed:
            lines += _field("packed", f"{packed['method']}: not computed, {packed['refused']}")
    return lines


def _field(label: str, text: str) -> list[str]:
    return _wrap(f"{label:<11} {text}", " " * 12)


def _wrap(text: str, indent: str) -> list[str]:
    return textwrap.wrap(text, WIDTH, subsequent_indent=indent, break_on_hyphens=False) or [""]


def _attention_word(d: Mapping[str, Any], i: int) -> str:
    kind = (d.get("layer_types") or [None] * d["n_layer"])[i]
    heads, kv = d["heads_per_layer"][i], d["kv_heads_per_layer"][i]
    if kind is not None and kind not in _TYPE_WORDS:
        return str(kind)
    word = _TYPE_WORDS.get(kind or "", "attention")
    if kind == "linear_attention":
        return word
    return f"{word} {heads}/{kv} heads"


def _mlp_word(d: Mapping[str, Any], i: int) -> str:
    layer = (d.get("moe_per_layer") or [None] * d["n_layer"])[i]
    if layer is not None:
        top_k = f" top-{layer['experts_per_token']}" if layer["experts_per_token"] else ""
        shared = f" +shared {layer['shared_expert_mlp_dim']}" if layer.get("shared_expert_mlp_dim") else ""
        return f"MoE {layer['num_experts']}×{layer['expert_mlp_dim']}{top_k}{shared}"
    width = d["mlp_dims"][i]
    return f"dense {width}" if width else "no MLP"


def _runs(d: Mapping[str, Any], word: Callable[[Mapping[str, Any], int], str]) -> list[str]:
    """``layers 0-2 dense 18432, 3-60 MoE 256×2048 top-8``: consecutive layers alike, grouped."""
    runs: list[tuple[int, int, str]] = []
    for i in range(d["n_layer"]):
        text = word(d, i)
        if runs and runs[-1][2] == text:
            runs[-1] = (runs[-1][0], i, text)
        else:
            runs.append((i, i, text))
    if len(runs) > 6:  # a pattern repeating all the way down: say it once per kind
        kinds: dict[str, list[int]] = {}
        for start, end, text in runs:
            kinds.setdefault(text, []).extend(range(start, end + 1))
        return [f"{text} in layers {_ranges(layers)}" for text, layers in kinds.items()]
    words = [f"{start}-{end} {text}" if start != end else f"{start} {text}" for start, end, text in runs]
    if words:
        words[0] = f"layers {words[0]}"
    return words


def _ranges(indices: list[int]) -> str:
    from invarlock.description import _ranges as ranges

    return ranges(indices)


def _count(n: int) -> str:
    for size, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "k")):
        if n >= size:
            return f"{n / size:.2f}{suffix}"
    return str(n)


def _bytes(n: int) -> str:
    for size, suffix in ((2**40, "TiB"), (2**30, "GiB"), (2**20, "MiB"), (2**10, "KiB")):
        if n >= size:
            return f"{n / size:.1f}{suffix}"
    return f"{n}B"
