"""``hf_auto``: which adapter serves a checkpoint, and the one-line reason why.

The order: ONNX files in the directory → ``hf_causal_onnx``; quantization asked for in the load
options or stated by the config → the matching quantized adapter; the role from the config's
``architectures``, ``is_encoder_decoder`` and ``model_type``. A hub id is read from its cached
config, or downloaded when ``INVARLOCK_ALLOW_NETWORK=1``; otherwise its name is the only hint, and
``hf_causal`` is the default.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from invarlock.network import ALLOW_NETWORK_ENV, network_allowed
from invarlock.types import Resolution
from invarlock_hf.checkpoint import read_config
from invarlock_hf.quantization import QUANTIZED_ADAPTERS, detect_quantization
from invarlock_hf.structure import CAUSAL, MASKED_LM, SEQ2SEQ, role_from_config

ONNX_ADAPTER = "hf_causal_onnx"
DEFAULT_ADAPTER = "hf_causal"
ADAPTER_OF_ROLE = {CAUSAL: "hf_causal", MASKED_LM: "hf_mlm", SEQ2SEQ: "hf_seq2seq"}

# Words in a hub id that hint at the adapter when its config cannot be read (offline, not cached).
_NAME_HINTS: tuple[tuple[frozenset[str], str], ...] = (
    (frozenset({"onnx"}), ONNX_ADAPTER),
    (frozenset({"gptq"}), "hf_gptq"),
    (frozenset({"awq"}), "hf_awq"),
    (frozenset({"bnb", "bitsandbytes"}), "hf_bnb"),
    (frozenset({"t5", "mt5", "byt5", "umt5", "bart", "mbart", "pegasus", "marian", "opus"}), "hf_seq2seq"),
    (
        frozenset(
            {"bert", "roberta", "distilbert", "albert", "electra", "deberta", "camembert", "modernbert"}
        ),
        "hf_mlm",
    ),
)


def resolve(model_id: str, options: dict[str, Any] | None = None) -> Resolution:
    """The adapter for ``model_id`` (a local directory or a hub id) and the reason for the choice.

    :param options: the load options, if known: a ``quantization_config`` or bitsandbytes flags
        there choose the quantized adapter.
    """
    path = Path(model_id).expanduser()
    if path.is_dir() and (found := _onnx_resolution(path, str(model_id))):
        return found
    if path.is_file() and path.suffix == ".onnx":
        return Resolution(ONNX_ADAPTER, f"{model_id} is an ONNX file")
    requested = detect_quantization(options or {})
    if requested is not None and requested["method"] in QUANTIZED_ADAPTERS:
        return Resolution(
            QUANTIZED_ADAPTERS[requested["method"]],
            f"the load options ask for {_quantization_words(requested)} quantization",
        )
    if path.is_dir():
        return _resolve_config(path, str(model_id))
    return _resolve_remote(model_id, options or {})


def _onnx_resolution(directory: Path, label: str) -> Resolution | None:
    onnx_files = sorted(p.name for p in directory.glob("*.onnx"))
    if not onnx_files:
        return None
    return Resolution(ONNX_ADAPTER, f"{label} holds ONNX files ({', '.join(onnx_files[:3])})")


def _resolve_config(directory: Path, label: str) -> Resolution:
    """Quantization, then role, from the config.json in ``directory``."""
    config = read_config(directory)
    if config is None:
        return Resolution(DEFAULT_ADAPTER, f"{label} has no config.json; {DEFAULT_ADAPTER} is the default")
    stated = detect_quantization(config)
    if stated is not None and stated["method"] in QUANTIZED_ADAPTERS:
        return Resolution(
            QUANTIZED_ADAPTERS[stated["method"]],
            f"config.json of {label} has a {_quantization_words(stated)} quantization_config",
        )
    found = role_from_config(config)
    if found is None:
        adapter, reason = (
            DEFAULT_ADAPTER,
            (
                f"config.json of {label} names no language-model head InvarLock recognises; "
                f"{DEFAULT_ADAPTER} is the default"
            ),
        )
    else:
        adapter, reason = ADAPTER_OF_ROLE[found[0]], f"{found[1]} ({label})"
    if stated is not None:  # a method without its own adapter (fp8, hqq...) loads through transformers
        reason += f"; its {stated['method']} quantization loads through transformers"
    return Resolution(adapter, reason)


def _resolve_remote(model_id: str, options: dict[str, Any]) -> Resolution:
    """A hub id: its cached config.json, or the hub's when the network is allowed, else its name."""
    revision, cache_dir = options.get("revision"), options.get("cache_dir")
    try:
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(model_id, "config.json", cache_dir=cache_dir, revision=revision)
    except Exception:  # not a valid hub id (a mistyped local path, say)
        return _resolve_by_name(model_id, f"{model_id} is neither a local directory nor a hub id")
    if isinstance(cached, str):
        snapshot, label = Path(cached).parent, f"the cached snapshot of {model_id}"
        return _onnx_resolution(snapshot, label) or _resolve_config(snapshot, label)
    if not network_allowed():
        return _resolve_by_name(
            model_id, f"{model_id} is not cached and network access is off ({ALLOW_NETWORK_ENV} is unset)"
        )
    try:
        from huggingface_hub import hf_hub_download, list_repo_files

        top_level_onnx = [
            name
            for name in list_repo_files(model_id, revision=revision)
            if name.endswith(".onnx") and "/" not in name
        ]
        if top_level_onnx:
            return Resolution(
                ONNX_ADAPTER, f"hub repository {model_id} holds ONNX files ({top_level_onnx[0]})"
            )
        downloaded = hf_hub_download(model_id, "config.json", revision=revision, cache_dir=cache_dir)
    except Exception as exc:
        return _resolve_by_name(
            model_id, f"config.json of {model_id} could not be fetched ({type(exc).__name__})"
        )
    return _resolve_config(Path(downloaded).parent, f"hub repository {model_id}")


def _resolve_by_name(model_id: str, why: str) -> Resolution:
    words = set(re.split(r"[^a-z0-9]+", model_id.lower()))
    for hints, adapter in _NAME_HINTS:
        matched = sorted(hints & words)
        if matched:
            return Resolution(
                adapter, f"{why}: chosen by name only, {matched[0]!r} in the id suggests {adapter}"
            )
    return Resolution(DEFAULT_ADAPTER, f"{why}: nothing in the name says otherwise, so {DEFAULT_ADAPTER}")


def _quantization_words(quantization: dict[str, Any]) -> str:
    bits = quantization.get("bits")
    return f"{quantization['method']} {bits}-bit" if bits else str(quantization["method"])
