"""Which GGUF file a model id names: a ``.gguf`` file, or a directory holding exactly one.

Used by resolution (``--adapter auto``) and by loading, so both agree on what a GGUF checkpoint is.
"""

from __future__ import annotations

import re
from pathlib import Path

from invarlock.errors import AmbiguousCheckpointError, ModelLoadError

SUFFIX = ".gguf"
# llama.cpp's gguf-split names: model-00001-of-00003.gguf
_SPLIT = re.compile(r"-(\d{5})-of-(\d{5})\.gguf$")


def gguf_files(directory: Path) -> list[Path]:
    """The ``.gguf`` files directly inside ``directory``, sorted by name."""
    return sorted(p for p in directory.iterdir() if p.is_file() and p.suffix.lower() == SUFFIX)


def find_gguf_file(model_id: str) -> Path | None:
    """The GGUF file ``model_id`` names, or None when it names no GGUF checkpoint.

    :raises AmbiguousCheckpointError: a directory holding several GGUF files.
    :raises ModelLoadError: a checkpoint split into shards by ``gguf-split`` (not supported).
    """
    path = Path(model_id).expanduser()
    if path.is_file():
        found = path if path.suffix.lower() == SUFFIX else None
    elif path.is_dir():
        files = gguf_files(path)
        if len(files) > 1:
            _refuse_split(files)
            raise AmbiguousCheckpointError(
                f"{model_id} holds {len(files)} GGUF files ({', '.join(p.name for p in files)}); pass the "
                "path of the one to load"
            )
        found = files[0] if files else None
    else:
        found = None
    if found is not None:
        _refuse_split([found])
    return found


def _refuse_split(files: list[Path]) -> None:
    shards = [(p, m) for p in files if (m := _SPLIT.search(p.name)) and int(m.group(2)) > 1]
    if shards:
        total = int(shards[0][1].group(2))
        raise ModelLoadError(
            f"{shards[0][0].name} is one of {total} shards of a split GGUF checkpoint, which the gguf "
            "adapter does not load; merge them with `llama-gguf-split --merge FIRST_SHARD OUT.gguf` and "
            "pass OUT.gguf"
        )
