"""A local checkpoint directory, checked before transformers sees it.

:func:`read_config` is the one reader of ``config.json`` for this package: invalid JSON, or a key
InvarLock reads with the wrong type (``architectures`` not a list of names, ``quantization_config``
not a mapping...), is one :class:`~invarlock.errors.CheckpointConfigError`.

:func:`check_plausible` refuses a config whose sizes the weight files cannot hold, before a model
is built from it (``n_layer: 1000000000`` would otherwise grow memory until killed). The shapes come
from the safetensors headers (the JSON at the start of each file), no tensor data is read. The
rule, for each key the config states at its top level:

- a layer count (``num_hidden_layers``, ``n_layer``, ``num_layers``, ``num_decoder_layers``,
  ``encoder_layers``, ``decoder_layers``...) is at most one more than the largest number that
  appears as a component of a tensor name (``model.layers.11.mlp...`` → 12), unless the config
  shares one set of weights across layers (ALBERT's ``num_hidden_groups``);
- a width (``hidden_size``, ``n_embd``, ``d_model``, ``intermediate_size``, ``n_inner``, ``d_ff``,
  ``vocab_size``, head counts, ``head_dim``...) is at most the largest dimension of any tensor;
- a position count (``max_position_embeddings``, ``n_positions``) is at most the first dimension of
  the position-embedding tensor, when the checkpoint has one (a name with ``wpe`` or ``position``).

Directories without safetensors files (pickled ``.bin`` weights) are not checked: their shapes
cannot be read without unpickling.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from invarlock.errors import CheckpointConfigError, CheckpointNotADirectoryError, ImplausibleConfigError

CONFIG_FILE = "config.json"
TOKENIZER_FILES = (
    "tokenizer.json",  # fast tokenizers (transformers 5 writes this for every family)
    "tokenizer_config.json",
    "vocab.json",  # GPT-2 style BPE, with merges.txt
    "merges.txt",
    "vocab.txt",  # BERT style WordPiece
    "spiece.model",  # T5 style SentencePiece
    "sentencepiece.bpe.model",
    "tokenizer.model",  # Llama style SentencePiece
)
"""Files any of which makes a directory hold a tokenizer (one is enough for transformers to try)."""

LAYER_KEYS = (
    "num_hidden_layers",
    "n_layer",
    "n_layers",
    "num_layers",
    "num_decoder_layers",
    "encoder_layers",
    "decoder_layers",
)
WIDTH_KEYS = (
    "hidden_size",
    "n_embd",
    "d_model",
    "intermediate_size",
    "n_inner",
    "d_ff",
    "ffn_dim",
    "encoder_ffn_dim",
    "decoder_ffn_dim",
    "vocab_size",
    "num_attention_heads",
    "n_head",
    "num_heads",
    "num_key_value_heads",
    "head_dim",
    "d_kv",
)
POSITION_KEYS = ("max_position_embeddings", "n_positions")
_POSITION_WORDS = ("wpe", "position")
_TYPED_KEYS: dict[str, tuple[tuple[type, ...], str]] = {
    "model_type": ((str,), "a string"),
    "is_encoder_decoder": ((bool,), "true or false"),
    "quantization_config": ((dict,), "a mapping of quantization settings"),
    "auto_map": ((dict,), "a mapping"),
}
_SHARED_LAYERS_KEY = "num_hidden_groups"  # ALBERT: every layer reuses one group's weights
_MAX_HEADER_BYTES = 100_000_000  # safetensors' own limit


def require_directory(model_id: str) -> None:
    """Refuse a file where a checkpoint directory is expected (transformers would try to unpickle it)."""
    path = Path(model_id).expanduser()
    if path.is_file():
        raise CheckpointNotADirectoryError(
            f"{model_id} is a file, but a Hugging Face checkpoint is a directory (config.json, weights "
            "and tokenizer files); pass the directory that holds them"
        )


def read_config(directory: Path) -> dict[str, Any] | None:
    """The checked ``config.json`` of a local checkpoint directory, or None when it has none."""
    path = directory / CONFIG_FILE
    if not path.is_file():
        return None
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise CheckpointConfigError(
            f"{path} is not UTF-8 text (byte {exc.start}); regenerate it with save_pretrained"
        ) from exc
    except json.JSONDecodeError as exc:
        raise CheckpointConfigError(
            f"{path} is not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno}); fix it or "
            "regenerate it with save_pretrained"
        ) from exc
    if not isinstance(config, dict):
        raise CheckpointConfigError(
            f"{path} must hold a JSON object of settings, not {type(config).__name__}; regenerate it "
            "with save_pretrained"
        )
    architectures = config.get("architectures")
    if architectures is not None and not (
        isinstance(architectures, list) and all(isinstance(name, str) for name in architectures)
    ):
        raise CheckpointConfigError(
            f"{path}: 'architectures' must be a list of class names such as [\"GPT2LMHeadModel\"], "
            f"got {_json(architectures)}; fix it or regenerate the file with save_pretrained"
        )
    for key, (types, words) in _TYPED_KEYS.items():
        value = config.get(key)
        if value is not None and not isinstance(value, types):
            raise CheckpointConfigError(
                f"{path}: '{key}' must be {words}, got {_json(value)}; fix it or regenerate the file "
                "with save_pretrained"
            )
    for key in (*LAYER_KEYS, *WIDTH_KEYS, *POSITION_KEYS):
        value = config.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
            raise CheckpointConfigError(
                f"{path}: '{key}' must be a whole number, got {_json(value)}; fix it or regenerate the "
                "file with save_pretrained"
            )
    return config


def tensor_shapes(directory: Path) -> dict[str, tuple[int, ...]] | None:
    """Every tensor's shape from the safetensors headers in ``directory``; None when there are none
    or one cannot be read (loading then reports the broken file)."""
    files = sorted(directory.glob("*.safetensors"))
    if not files:
        return None
    shapes: dict[str, tuple[int, ...]] = {}
    for file in files:
        try:
            with file.open("rb") as handle:
                (length,) = struct.unpack("<Q", handle.read(8))
                if length > min(_MAX_HEADER_BYTES, file.stat().st_size - 8):
                    return None
                header = json.loads(handle.read(length))
        except (OSError, struct.error, ValueError):
            return None
        if not isinstance(header, dict):
            return None
        for name, entry in header.items():
            if name == "__metadata__":
                continue
            shape = entry.get("shape") if isinstance(entry, dict) else None
            if not isinstance(shape, list) or not all(isinstance(d, int) for d in shape):
                return None
            shapes[name] = tuple(shape)
    return shapes


def check_plausible(directory: Path, config: Mapping[str, Any]) -> None:
    """Refuse ``config`` when its sizes cannot match the tensors in ``directory`` (the module's rule)."""
    shapes = tensor_shapes(directory)
    if not shapes:
        return
    numbered = [int(part) for name in shapes for part in name.split(".") if part.isdigit()]
    layers_in_files = max(numbered) + 1 if numbered else 0
    largest_dim = max((d for shape in shapes.values() for d in shape), default=0)
    positions = [
        shape[0] for name, shape in shapes.items() if shape and any(w in name for w in _POSITION_WORDS)
    ]
    where = f"{directory / CONFIG_FILE}"
    shared_layers = config.get(_SHARED_LAYERS_KEY) is not None
    for key in () if shared_layers else LAYER_KEYS:
        value = config.get(key)
        if isinstance(value, int) and value > layers_in_files:
            raise ImplausibleConfigError(
                f"{where} says {key} is {value}, but the weight files number at most {layers_in_files} "
                "layers; fix the config (InvarLock refuses it before building a model that big)"
            )
    for key in WIDTH_KEYS:
        value = config.get(key)
        if isinstance(value, int) and value > largest_dim:
            raise ImplausibleConfigError(
                f"{where} says {key} is {value}, but no tensor in the weight files has a dimension over "
                f"{largest_dim}; fix the config (InvarLock refuses it before building the model)"
            )
    for key in POSITION_KEYS:
        value = config.get(key)
        if isinstance(value, int) and positions and value > max(positions):
            raise ImplausibleConfigError(
                f"{where} says {key} is {value}, but the position embeddings in the weight files hold "
                f"{max(positions)}; fix the config (InvarLock refuses it before building the model)"
            )


def check_local_checkpoint(model_id: str) -> None:
    """Before ``from_pretrained``: a file is refused, and a local directory's config must be valid
    and plausible. A hub id is left to transformers."""
    require_directory(model_id)
    directory = Path(model_id).expanduser()
    if not directory.is_dir():
        return
    config = read_config(directory)
    if config is not None:
        check_plausible(directory, config)


def has_tokenizer_files(directory: Path) -> bool:
    return any((directory / name).is_file() for name in TOKENIZER_FILES)


def _json(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) <= 60 else text[:57] + "..."
