"""Reading a packed checkpoint before loading it: its quantization config, and whether its tensors agree.

transformers only notices a wrong ``bits`` or ``group_size`` when shapes clash deep in loading, with
a table of mismatches; here the same contradiction is found from the safetensors headers alone
(no tensor data is read) and named in one sentence.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from invarlock.errors import ModelLoadError
from invarlock.network import hub_offline_unless_allowed
from invarlock_packed.family import PackedFamily

# Options of from_pretrained that also locate config.json.
_LOCATING_OPTIONS = ("revision", "cache_dir", "token", "subfolder", "local_files_only")


def read_checkpoint_config(model_id: str, options: dict[str, Any]) -> tuple[dict[str, Any], Path]:
    """``config.json`` of ``model_id`` (a local directory or a hub id) and the directory holding it.

    A hub id is read from the Hugging Face cache, or downloaded when the network is allowed.
    """
    from transformers.utils.hub import cached_file

    from invarlock_hf.loading import load_error

    kwargs = {name: options[name] for name in _LOCATING_OPTIONS if name in options}
    with hub_offline_unless_allowed():
        try:
            found = cached_file(model_id, "config.json", **kwargs)
            if found is None:  # cached_file raises for a missing file unless told not to
                raise FileNotFoundError(f"{model_id} has no config.json")
            path = Path(found)
        except Exception as exc:
            raise load_error(model_id, "reading config.json", exc, kwargs) from exc
    return json.loads(path.read_text(encoding="utf-8")), path.parent


def packed_shapes(directory: Path, family: PackedFamily) -> dict[str, dict[str, tuple[int, ...]]]:
    """Module name → the shapes of its packed tensors, from the headers of the safetensors files
    in ``directory`` (none when the weights are not there yet, e.g. not yet downloaded)."""
    from safetensors import safe_open

    modules: dict[str, dict[str, tuple[int, ...]]] = {}
    for path in sorted(directory.glob("*.safetensors")):
        with safe_open(str(path), framework="numpy") as handle:
            for name in handle.keys():  # noqa: SIM118 - safe_open is not a mapping
                module, _, short = name.rpartition(".")
                if short in family.packed_tensors:
                    modules.setdefault(module, {})[short] = tuple(handle.get_slice(name).get_shape())
    return modules


def check_packed_tensors(
    family: PackedFamily, model_id: str, directory: Path, quantization: dict[str, Any]
) -> None:
    """Raise :class:`ModelLoadError` naming the first Linear whose packed tensors contradict the
    ``bits`` or ``group_size`` of the quantization config."""
    bits, group_size = quantization.get("bits"), quantization.get("group_size")
    fix = "correct quantization_config in config.json or export the checkpoint again"
    for module, shapes in sorted(packed_shapes(directory, family).items()):
        missing = [name for name in ("qweight", "qzeros", "scales") if name not in shapes]
        if missing:
            raise ModelLoadError(
                f"{model_id} is incomplete: {module} has no {', '.join(missing)} tensor; "
                "export the checkpoint again"
            )
        found_bits, in_features = family.packing(shapes)
        described = ", ".join(f"{name} {list(shape)}" for name, shape in sorted(shapes.items()))
        if bits is not None and found_bits != bits:
            packed_as = f"{found_bits:g}-bit" if found_bits.is_integer() else "no whole number of bits"
            raise ModelLoadError(
                f"{model_id} is inconsistent: its quantization_config says bits={bits}, but the tensors "
                f"of {module} are packed as {packed_as} ({described}); {fix}"
            )
        if isinstance(group_size, int) and in_features.is_integer():
            groups = 1 if group_size <= 0 else math.ceil(in_features / group_size)
            if shapes["scales"][0] != groups:
                raise ModelLoadError(
                    f"{model_id} is inconsistent: its quantization_config says group_size={group_size}, "
                    f"so {module} with {in_features:g} inputs needs {groups} scale rows, but it has "
                    f"{shapes['scales'][0]} ({described}); {fix}"
                )
