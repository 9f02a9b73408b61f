"""Loading a PEFT adapter: find its base, load the base with the base's own adapter, wrap it.

The base comes from the ``base`` option or the adapter's ``base_model_name_or_path``; it is loaded
by the adapter the resolve hook (core's one decider) picks for it (``hf_causal``, ``hf_mlm``, ``hf_seq2seq``,
``hf_bnb`` for a bitsandbytes base: the QLoRA case...), with the remaining load options. When the
adapter carries embedding rows for tokens it added, the base's embeddings are resized to that
vocabulary first. ``peft.PeftModel.from_pretrained`` then wraps the base; with ``merge=True`` the
adapter is merged into the base weights (``merge_and_unload``).
"""

from __future__ import annotations

import json
import weakref
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from invarlock.errors import ModelLoadError, PeftBaseNotFoundError
from invarlock.network import (
    ALLOW_NETWORK_ENV,
    hub_offline_unless_allowed,
    network_allowed,
    not_available_offline,
)

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
BASE_FIELD = "base_model_name_or_path"
BASE_OPTION_WORDS = "base=PATH in Python, --subject-base PATH or model.base in a run configuration"
"""How a user names the base explicitly, quoted in every error about a base that cannot be found."""

SNAPSHOT_MODES = ("adapter", "full")
"""Values of the ``snapshot`` load option: adapter-only snapshots (the default) or full ones."""

_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json")


@dataclass(frozen=True)
class PeftLoad:
    """How a model was loaded by ``hf_peft``: what describe reports and snapshots need to know."""

    adapter_path: str
    """The local directory holding ``adapter_config.json`` (a hub id's cached snapshot)."""
    config: dict[str, Any]
    """``adapter_config.json`` as read."""
    base: str
    base_source: str
    """``"base option"`` or ``"adapter_config.json"``: where the base's name came from."""
    base_adapter: str
    """The adapter that loaded the base (``hf_causal``, ``hf_bnb``...)."""
    base_vocab_size: int
    """Rows of the base's input embeddings as the base checkpoint holds them."""
    vocab_size: int
    """Rows after loading: larger than ``base_vocab_size`` when the adapter added tokens."""
    added_tokens: tuple[str, ...] | None
    """Tokens in the adapter's tokenizer that the base's lacks, in id order; None when the adapter
    directory has no tokenizer to compare."""
    merged: bool
    snapshot: str
    adapted_layers: tuple[str, ...] = ()
    """The modules that carried the adapter when it was loaded (merged into, for a merged model)."""
    adapter_parameters: int = 0


_loads: weakref.WeakKeyDictionary[Any, PeftLoad] = weakref.WeakKeyDictionary()


def load_info(model: Any) -> PeftLoad | None:
    """How ``model`` was loaded by ``hf_peft``; None for a model it did not load."""
    try:
        return _loads.get(model)
    except TypeError:  # not weak-referenceable: certainly not ours
        return None


def is_adapter_directory(path: str | Path) -> bool:
    return (Path(path).expanduser() / ADAPTER_CONFIG).is_file()


def read_adapter_config(directory: Path) -> dict[str, Any]:
    try:
        config = json.loads((directory / ADAPTER_CONFIG).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelLoadError(
            f"{directory / ADAPTER_CONFIG} cannot be read as JSON ({type(exc).__name__}: {exc}); "
            "save the adapter again with save_pretrained"
        ) from exc
    if not isinstance(config, dict):
        raise ModelLoadError(f"{directory / ADAPTER_CONFIG} is not a JSON object; save the adapter again")
    return config


def load_peft_model(model_id: str, device: str, options: dict[str, Any]) -> Any:
    """Load the adapter at ``model_id`` (a local directory or a hub id) over its base.

    :param options: ``base`` (the base's path or hub id, overriding ``base_model_name_or_path``),
        ``merge`` (merge the adapter into the base), ``snapshot`` (``"adapter"`` or ``"full"``);
        everything else goes to the base's loader (``dtype``, bitsandbytes settings...).
    :raises PeftBaseNotFoundError: the base cannot be found.
    :raises ModelLoadError: the adapter or its base cannot be loaded.
    """
    options = dict(options)
    base_option = options.pop("base", None)
    merge = options.pop("merge", False)
    snapshot = options.pop("snapshot", "adapter")
    revision, cache_dir = options.pop("revision", None), options.get("cache_dir")
    if not isinstance(merge, bool):
        raise ModelLoadError(f"merge={merge!r} is not a bool; pass merge=True to merge the adapter")
    if snapshot not in SNAPSHOT_MODES:
        raise ModelLoadError(f"snapshot={snapshot!r} is not one of {', '.join(map(repr, SNAPSHOT_MODES))}")

    directory = adapter_directory(model_id, revision, cache_dir)
    config = read_adapter_config(directory)
    base, source = find_base(model_id, config, base_option, cache_dir)
    base_model, base_adapter = _load_base(base, device, options, config)
    base_rows = base_model.get_input_embeddings().weight.shape[0]
    rows = _adapter_vocab_rows(directory, base_model)
    if rows is not None and rows > base_rows:
        base_model.resize_token_embeddings(rows, mean_resizing=False)

    from peft import PeftModel

    from invarlock_peft.adapters import adapter_layers, adapter_tensors

    try:
        model = PeftModel.from_pretrained(base_model, str(directory), is_trainable=False)
    except Exception as exc:
        raise ModelLoadError(
            f"peft could not load the adapter {model_id} over {base} ({type(exc).__name__}: {exc}); "
            f"check that the adapter was trained on this base, or pass the right one ({BASE_OPTION_WORDS})"
        ) from exc
    model.eval()
    info = PeftLoad(
        adapter_path=str(directory),
        config=config,
        base=str(base),
        base_source=source,
        base_adapter=base_adapter,
        base_vocab_size=int(base_rows),
        vocab_size=int(model.get_input_embeddings().weight.shape[0]),
        added_tokens=_added_tokens(directory, base, base_rows, rows, options),
        merged=merge,
        snapshot=snapshot,
        adapted_layers=tuple(adapter_layers(model)),
        adapter_parameters=sum(t.numel() for _, t in adapter_tensors(model)),
    )
    if merge:
        try:
            model = model.merge_and_unload()
        except Exception as exc:
            raise ModelLoadError(
                f"peft could not merge the adapter {model_id} into its base ({type(exc).__name__}: {exc}); "
                "load it unmerged (merge=False)"
            ) from exc
        model.eval()
        info = replace(info, snapshot="full")  # merged: there is no adapter left to snapshot alone
    _loads[model] = info
    return model


def adapter_directory(model_id: str, revision: str | None, cache_dir: str | None) -> Path:
    """The local directory of the adapter: ``model_id`` itself, or a hub id's snapshot in the cache."""
    path = Path(model_id).expanduser()
    if path.is_dir():
        if not (path / ADAPTER_CONFIG).is_file():
            raise ModelLoadError(
                f"{model_id} holds no {ADAPTER_CONFIG}, so it is not a PEFT adapter; load it with "
                "hf_auto (or the adapter `invarlock plugins adapters` lists for it)"
            )
        return path
    from huggingface_hub import snapshot_download

    with hub_offline_unless_allowed() as network:
        try:
            downloaded = snapshot_download(
                model_id, revision=revision, cache_dir=cache_dir, local_files_only=not network
            )
        except Exception as exc:
            if not network:
                raise not_available_offline(model_id) from exc
            raise ModelLoadError(
                f"the adapter {model_id} could not be downloaded ({type(exc).__name__}: {exc}); check the id"
            ) from exc
    return adapter_directory(downloaded, None, None)


def find_base(
    label: str, config: dict[str, Any], base_option: Any, cache_dir: str | None = None
) -> tuple[str, str]:
    """The base's path or hub id and where it was named; refuses a base that is not available here."""
    if base_option is not None:
        base, source = str(base_option), "base option"
        named = f"the base {base!r} passed as the base option"
    else:
        base, source = str(config.get(BASE_FIELD) or ""), ADAPTER_CONFIG
        named = f"the base {base!r} named by {BASE_FIELD} in {ADAPTER_CONFIG} of {label}"
        if not base:
            raise PeftBaseNotFoundError(
                f"{ADAPTER_CONFIG} of {label} names no base model ({BASE_FIELD} is empty); "
                f"pass the base explicitly: {BASE_OPTION_WORDS}"
            )
    path = Path(base).expanduser()
    if path.exists():
        return str(path), source
    if path.is_absolute() or base.startswith((".", "~")) or base.count("/") > 1 or "\\" in base:
        raise PeftBaseNotFoundError(
            f"{named} does not exist on this machine; pass the base explicitly: {BASE_OPTION_WORDS}"
        )
    if not network_allowed() and not _in_hub_cache(base, config.get("revision"), cache_dir):
        raise PeftBaseNotFoundError(
            f"{named} is a hub id that is not in the Hugging Face cache and network access is off; "
            f"set {ALLOW_NETWORK_ENV}=1 to download it, or pass a local base: {BASE_OPTION_WORDS}"
        )
    return base, source


def _in_hub_cache(model_id: str, revision: str | None, cache_dir: str | None) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(model_id, "config.json", cache_dir=cache_dir, revision=revision)
    except Exception:  # not a valid hub id
        return False
    return isinstance(cached, str)


def _load_base(base: str, device: str, options: dict[str, Any], config: dict[str, Any]) -> tuple[Any, str]:
    """The base model, loaded by the adapter invarlock-hf's resolver chooses for it, and that name."""
    from invarlock.adapters import get_adapter, resolve_adapter

    base_options = dict(options)
    if config.get("revision") and not Path(base).exists():
        base_options.setdefault("revision", config["revision"])
    chosen = resolve_adapter(base, base_options).adapter
    if chosen == "hf_peft":
        raise ModelLoadError(
            f"the base {base} is itself a PEFT adapter; pass the base model it was trained on"
        )
    # Through the base adapter's own entry: a missing distribution or backend gets its pip command.
    return get_adapter(chosen).load_model(base, device=device, **base_options), chosen


def _adapter_vocab_rows(directory: Path, base_model: Any) -> int | None:
    """Rows of the embedding (or output head) weights the adapter file carries, if it carries any.

    An adapter that added tokens saves the resized embedding and head (peft's
    ``save_embedding_layers`` or ``modules_to_save``); their first dimension is its vocabulary.
    """
    weights = directory / ADAPTER_WEIGHTS
    if not weights.is_file():
        return None
    embedding_names = _embedding_module_names(base_model)
    from safetensors import safe_open

    rows: list[int] = []
    try:
        with safe_open(str(weights), framework="pt") as archive:
            for key in archive.keys():  # noqa: SIM118 (safe_open is not a mapping)
                name = key.removeprefix("base_model.model.")
                if not any(name.startswith(f"{module}.") for module in embedding_names):
                    continue
                shape = archive.get_slice(key).get_shape()
                if len(shape) == 2:
                    rows.append(int(shape[0]))
    except Exception as exc:
        raise ModelLoadError(
            f"{weights} is not a readable safetensors file ({type(exc).__name__}: {exc}); "
            "save the adapter again"
        ) from exc
    return max(rows) if rows else None


def _embedding_module_names(model: Any) -> list[str]:
    wanted = [model.get_input_embeddings()]
    output = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if output is not None:
        wanted.append(output)
    return [name for name, module in model.named_modules() if any(module is w for w in wanted) and name]


def _added_tokens(
    directory: Path, base: str, base_rows: int, rows: int | None, options: dict[str, Any]
) -> tuple[str, ...] | None:
    """The tokens the adapter's tokenizer has and the base's lacks (None without two tokenizers)."""
    if not any((directory / name).is_file() for name in _TOKENIZER_FILES):
        return None if rows is not None and rows > base_rows else ()
    from invarlock_hf.loading import load_tokenizer

    trust = {"trust_remote_code": bool(options.get("trust_remote_code", False))}
    try:
        adapter_vocab = load_tokenizer(str(directory), trust).get_vocab()
        base_vocab = load_tokenizer(base, trust).get_vocab()
    except ModelLoadError:
        return None
    added = sorted((index, token) for token, index in adapter_vocab.items() if token not in base_vocab)
    return tuple(token for _, token in added)


def tokenizer_source(model_id: str, base_option: Any, options: dict[str, Any]) -> str:
    """Where the tokenizer of an adapter is: the adapter directory when it saved one (an adapter
    that added tokens must have), else its base."""
    directory = adapter_directory(model_id, options.get("revision"), options.get("cache_dir"))
    if any((directory / name).is_file() for name in _TOKENIZER_FILES):
        return str(directory)
    base, _ = find_base(model_id, read_adapter_config(directory), base_option, options.get("cache_dir"))
    return base
