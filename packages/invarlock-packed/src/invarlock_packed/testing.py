"""Tiny GPTQ and AWQ checkpoints made by the real quantizer (gptqmodel, on CPU), for tests.

Used by invarlock-gptq's and invarlock-awq's tests and the GPTQ/AWQ benchmark: a tiny random
model of a real architecture is saved with :mod:`invarlock_hf.testing`, then quantized by
``GPTQModel.quantize`` on a few random calibration sequences and saved with gptqmodel's own
``save`` (GPTQ format ``gptq`` is v1).
Quantizing one tiny model takes a few seconds once gptqmodel is imported; the first quantization
on a machine also JIT-builds gptqmodel's CPU packing extension (about 30 s, cached under
``GPTQMODEL_TORCH_EXTENSIONS_DIR``). On a 2-core machine set ``GPTQMODEL_CPU_WORKERS=2``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pytest

__all__ = [
    "LLAMA_LINEARS",
    "QUANTIZATIONS",
    "TINY_SIZES",
    "batch",
    "calibration_samples",
    "copy_with_quantization_config",
    "legacy_only_readiness",
    "quantize_checkpoint",
    "relative_error",
    "save_base_checkpoint",
]

TINY_SIZES: dict[str, dict[str, Any]] = {
    # gptqmodel's AWQ clip search needs every Linear's output width to be a multiple of 64.
    "llama": {
        "hidden_size": 128,
        "intermediate_size": 256,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
    },
    "opt": {"hidden_size": 64, "ffn_dim": 128, "word_embed_proj_dim": 64, "num_hidden_layers": 3},
}
"""Overrides of :data:`invarlock_hf.testing.TINY_CONFIGS` that the quantizers accept."""

QUANTIZATIONS: dict[str, dict[str, Any]] = {
    "gptq": {"quant_method": "gptq", "format": "gptq", "sym": True},
    "gptq_v2": {"quant_method": "gptq", "format": "gptq_v2", "sym": False},
    "awq": {"quant_method": "awq", "format": "gemm", "sym": False},  # sym=False: zero points, as AutoAWQ
    "awq_gemv": {"quant_method": "awq", "format": "gemv", "sym": False},  # CUDA only, group size 64 or 128
}
"""Quantization kinds → gptqmodel ``QuantizeConfig`` settings."""


def save_base_checkpoint(model_type: str, directory: str | Path, *, seed: int = 0) -> Path:
    """A tiny full-precision ``model_type`` checkpoint with a tokenizer (gptqmodel loads one)."""
    from invarlock_hf.testing import save_tiny_checkpoint, save_tiny_tokenizer

    path = save_tiny_checkpoint(model_type, directory, seed=seed, **TINY_SIZES[model_type])
    save_tiny_tokenizer(path)
    return path


def calibration_samples(count: int = 16, length: int = 32, *, seed: int = 0) -> list[dict[str, list[int]]]:
    """Random token sequences for calibration (the models are random too; any text would do)."""
    import torch

    from invarlock_hf.testing import TINY_VOCAB

    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(4, TINY_VOCAB, (count, length), generator=generator)
    return [{"input_ids": row.tolist(), "attention_mask": [1] * length} for row in ids]


def quantize_checkpoint(
    source: str | Path,
    target: str | Path,
    kind: str,
    *,
    bits: int = 4,
    group_size: int = 32,
    device: str = "cpu",
    **settings: Any,
) -> Path:
    """Quantize the checkpoint at ``source`` with gptqmodel and save it to ``target``.

    :param kind: a key of :data:`QUANTIZATIONS` (``gptq``, ``gptq_v2``, ``awq``, ``awq_gemv``).
    :param device: where gptqmodel quantizes (``awq_gemv`` needs ``cuda``).
    :param settings: more ``QuantizeConfig`` fields (``desc_act=True``...).
    """
    import torch
    from gptqmodel import BACKEND, GPTQModel, QuantizeConfig

    config = QuantizeConfig(bits=bits, group_size=group_size, **{**QUANTIZATIONS[kind], **settings})
    # The automatic AWQ backend needs CUDA; the torch one runs anywhere. GEMV packs on CUDA only.
    backend = {"awq": BACKEND.AWQ_TORCH, "awq_gemv": BACKEND.AWQ_GEMV}.get(kind, BACKEND.AUTO)
    model = GPTQModel.load(str(source), config, device=device, dtype=torch.float16)
    model.quantize(calibration_samples(), batch_size=4, backend=backend)
    model.save(str(target))
    return Path(target)


def copy_with_quantization_config(source: str | Path, target: str | Path, **changes: Any) -> Path:
    """Copy a checkpoint and change fields of the quantization_config in its config.json (a key
    whose value is None is removed): checkpoints that contradict themselves, for error tests."""
    import json
    import shutil

    path = Path(shutil.copytree(source, target))
    config_path = path / "config.json"
    config = json.loads(config_path.read_text(encoding="utf-8"))
    settings = config["quantization_config"]
    for key, value in changes.items():
        if value is None:
            settings.pop(key, None)
        else:
            settings[key] = value
    config_path.write_text(json.dumps(config, indent=2), encoding="utf-8")
    (path / "quantize_config.json").unlink(missing_ok=True)  # gptqmodel's copy; config.json is what loads
    return path


# -- shared by the gptq and awq test suites -------------------------------------------------------

LLAMA_LINEARS = (
    "self_attn.q_proj",
    "self_attn.k_proj",
    "self_attn.v_proj",
    "self_attn.o_proj",
    "mlp.gate_proj",
    "mlp.up_proj",
    "mlp.down_proj",
)
"""The quantized Linear layers of one llama decoder block."""


def batch() -> dict[str, Any]:
    """A fixed batch of token ids for comparing logits."""
    import torch

    ids = torch.randint(4, 128, (2, 16), generator=torch.Generator().manual_seed(1))
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}


def relative_error(logits: Any, reference: Any) -> float:
    """Relative L2 error of ``logits`` against ``reference``."""
    return float((logits.float() - reference.float()).norm() / reference.float().norm())


def legacy_only_readiness(
    adapter: str, legacy: str, version: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Any:
    """Readiness of ``adapter`` when only the legacy ``legacy`` backend is installed.

    The legacy distribution is installed as pip leaves it (a real ``*.dist-info`` on sys.path);
    gptqmodel is hidden from the metadata lookup.
    """
    import invarlock.readiness as readiness
    from invarlock.manager import get_plugin_manager

    dist_info = tmp_path / f"{legacy.replace('-', '_')}-{version}.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {legacy}\nVersion: {version}\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    real = readiness.installed_version
    monkeypatch.setattr(
        readiness, "installed_version", lambda name: None if name == "gptqmodel" else real(name)
    )
    return readiness.check_backend(get_plugin_manager().adapter_spec(adapter))
