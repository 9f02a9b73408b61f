"""Make the demo's two subjects from demo/model: an 8-bit and a 2-bit round-to-nearest edit.

The model is loaded once through InvarLock's hf_causal adapter; each edit is applied to it,
saved as an ordinary checkpoint (weights quantized then dequantized, so any transformers version
loads it), and undone with the adapter's snapshot/restore before the next edit.

    python demo/make_subjects.py OUT_DIR      # writes OUT_DIR/rtn8 and OUT_DIR/rtn2
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from invarlock.adapters import get_adapter
from invarlock.certification.edits.quant_rtn import apply_quant_rtn

MODEL = Path(__file__).resolve().parent / "model"
EDITS = {"rtn8": 8, "rtn2": 2}
GROUP_SIZE = 32
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")


def main(out: Path) -> None:
    adapter = get_adapter("hf_causal")
    model = adapter.load_model(MODEL, device="cpu")
    snapshot = adapter.snapshot(model)
    for name, bits in EDITS.items():
        summary = apply_quant_rtn(model, bitwidth=bits, group_size=GROUP_SIZE)
        target = out / name
        model.save_pretrained(target)
        for file in TOKENIZER_FILES:
            shutil.copy(MODEL / file, target / file)
        print(f"{name}: {bits}-bit RTN, groups of {GROUP_SIZE}, {summary['modules']} layers -> {target}")
        adapter.restore(model, snapshot)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python demo/make_subjects.py OUT_DIR")
    main(Path(sys.argv[1]))
