"""Steps shared by ``invarlock certify`` and ``invarlock run``: choosing adapters, loading through
them, checking tokenizers, building windows, and assembling the evidence blocks of the outputs.

Every contact with a model goes through an :class:`~invarlock.adapters.Adapter` (its hooks).
"""

from __future__ import annotations

import hashlib
import json
import math
import platform
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from invarlock import __version__, network
from invarlock.adapters import Adapter, get_adapter, resolve_adapter
from invarlock.datasets import Corpus
from invarlock.errors import (
    DatasetError,
    InvarlockError,
    ModelLoadError,
    TokenizerMismatchError,
)
from invarlock.evaluation.gate import GatePolicy, GateResult, InvariantCheck, policy_dict
from invarlock.evaluation.scoring import Framing, framing_for
from invarlock.evaluation.stats import PairedRatio, WindowScore
from invarlock.evaluation.windows import WindowSet, make_windows
from invarlock.manager import get_plugin_manager
from invarlock.readiness import installed_version
from invarlock.types import AdapterSpec, Resolution

AUTO = "auto"
PROBE_TEXT = (
    "InvarLock compares an edited model with its baseline: naïve café, Straße, 東京, 12345, "
    "def f(x):\n    return x ** 2  # ✓\n"
)
"""Tokenized by both sides' tokenizers; any difference means the tokenizers differ."""


@dataclass(frozen=True)
class ChosenAdapter:
    adapter: Adapter
    spec: AdapterSpec
    resolution: Resolution

    @property
    def name(self) -> str:
        return self.spec.name

    def info(self) -> dict[str, Any]:
        """Which adapter served a side, why, and the versions behind it."""
        distribution = self.spec.distribution
        return {
            "name": self.spec.name,
            "reason": self.resolution.reason,
            "distribution": distribution,
            "version": installed_version(distribution) if distribution else None,
            "backend": {name: installed_version(name) for name in self.spec.backend},
        }


def check_model_path(model_id: str, side: str) -> None:
    """Refuse a path-shaped model id that does not exist; a hub id (``org/name``) is left to the adapter."""
    network.check_model_path(model_id, side)


def choose_adapter(
    model_id: str, requested: str, *, flag: str, load_options: Mapping[str, Any]
) -> ChosenAdapter:
    """The adapter for one side: named explicitly, or resolved from that side's own checkpoint."""
    if requested != AUTO:
        resolution = Resolution(requested, f"named with {flag}")
    else:  # the plugins decide, from the checkpoint and the load options
        resolution = resolve_adapter(model_id, load_options)
    manager = get_plugin_manager()
    spec = manager.require_ready(resolution.adapter)
    return ChosenAdapter(get_adapter(spec.name), spec, resolution)


def load_tokenizer(chosen: ChosenAdapter, model_id: str, side: str, options: Mapping[str, Any]) -> Any:
    tokenizer_options = {
        k: options[k] for k in ("revision", "cache_dir", "trust_remote_code") if k in options
    }
    try:
        return chosen.adapter.load_tokenizer(model_id, **tokenizer_options)
    except InvarlockError:
        raise
    except Exception as exc:
        raise ModelLoadError(
            f"the {side} tokenizer at {model_id} could not be loaded ({type(exc).__name__}: {exc}); "
            "check that the directory holds the tokenizer files"
        ) from exc


def load_model(
    chosen: ChosenAdapter, model_id: str, side: str, device: str, options: Mapping[str, Any]
) -> Any:
    try:
        return chosen.adapter.load_model(model_id, device=device, **options)
    except InvarlockError:
        raise
    except Exception as exc:
        raise ModelLoadError(
            f"the {side} model at {model_id} could not be loaded by {chosen.name} "
            f"({type(exc).__name__}: {exc})"
        ) from exc


# -- tokenizers ---------------------------------------------------------------------------------

_SPECIAL_IDS = ("bos_token_id", "eos_token_id", "mask_token_id", "cls_token_id", "sep_token_id")


def tokenizer_fingerprint(tokenizer: Any) -> dict[str, Any]:
    vocab = tokenizer.get_vocab()
    vocab_hash = hashlib.sha256(json.dumps(sorted(vocab.items()), ensure_ascii=False).encode()).hexdigest()
    # Without special tokens, as windows are tokenized; the special ids framing uses are compared apart.
    probe = list(tokenizer(PROBE_TEXT, add_special_tokens=False)["input_ids"])
    return {
        "class": type(tokenizer).__name__,
        "vocab_size": len(vocab),
        "vocab_sha256": vocab_hash,
        "probe_ids": probe,
        "special_ids": {name: getattr(tokenizer, name, None) for name in _SPECIAL_IDS},
    }


def compare_tokenizers(baseline: Mapping[str, Any], subject: Mapping[str, Any]) -> None:
    """Raise :class:`TokenizerMismatchError` naming the first difference."""
    if baseline["vocab_sha256"] != subject["vocab_sha256"]:
        what = f"vocabularies differ ({baseline['vocab_size']} vs {subject['vocab_size']} tokens)"
    elif baseline["probe_ids"] != subject["probe_ids"]:
        what = "they split the same probe text into different tokens"
    elif baseline["special_ids"] != subject["special_ids"]:
        what = f"special token ids differ ({baseline['special_ids']} vs {subject['special_ids']})"
    else:
        return
    raise TokenizerMismatchError(
        f"the subject's tokenizer differs from the baseline's: {what}; certify compares models that share "
        "one tokenizer, so pass a subject derived from this baseline (with the baseline's tokenizer files)"
    )


def tokenizer_block(fingerprint: Mapping[str, Any], subject_note: str | None) -> dict[str, Any]:
    return {
        "class": fingerprint["class"],
        "vocab_size": fingerprint["vocab_size"],
        "vocab_sha256": fingerprint["vocab_sha256"],
        "probe_sha256": hashlib.sha256(json.dumps(fingerprint["probe_ids"]).encode()).hexdigest(),
        "shared": subject_note is None,
        "note": subject_note
        or "subject and baseline tokenizers are identical (vocabulary, probe text, special ids)",
    }


# -- windows ------------------------------------------------------------------------------------


def max_positions(model: Any) -> int | None:
    config = getattr(model, "config", None)
    for name in ("max_position_embeddings", "n_positions", "max_seq_len"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def prepare_windows(
    tokenizer: Any,
    corpus: Corpus,
    stream: Sequence[int],
    role: str,
    model: Any,
    *,
    seq_len: int,
    stride: int | None,
    count: int,
    seed: int,
) -> tuple[WindowSet, Framing]:
    framing = framing_for(role, tokenizer, model, seed)
    limit = max_positions(model)
    if limit is not None and seq_len > limit:
        raise DatasetError(
            f"windows of {seq_len} tokens are longer than the model's {limit} positions; "
            f"pass --seq-len {limit} or less"
        )
    length = seq_len - framing.special_tokens
    windows = make_windows(
        stream, length=length, stride=stride, count=count, seed=seed, source=f"dataset {corpus.source}"
    )
    return windows, framing


# -- evidence blocks ----------------------------------------------------------------------------


def finite(value: float) -> float | None:
    """JSON has no NaN or Inf: non-finite numbers are written as null."""
    return value if math.isfinite(value) else None


def stats_block(
    paired: PairedRatio, baseline: Sequence[WindowScore], subject: Sequence[WindowScore]
) -> dict[str, Any]:
    return {
        "ratio": finite(paired.ratio),
        "ci": [finite(paired.ci_low), finite(paired.ci_high)],
        "confidence": paired.confidence,
        "method": "paired percentile bootstrap over windows",
        "bootstrap": paired.bootstrap,
        "seed": paired.seed,
        "baseline_ppl": finite(paired.baseline_ppl),
        "subject_ppl": finite(paired.subject_ppl),
        "mean_delta_log_loss": finite(paired.mean_delta_log_loss),
        "windows": paired.windows,
        "tokens": paired.tokens,
        "per_window": [
            {
                "id": b.window_id,
                "tokens": b.tokens,
                "baseline": finite(b.log_loss),
                "subject": finite(s.log_loss),
            }
            for b, s in zip(baseline, subject, strict=True)
        ],
    }


def gate_block(policy: GatePolicy, result: GateResult) -> dict[str, Any]:
    return {**policy_dict(policy), "passed": result.passed, "ratio_passed": result.ratio_passed}


def invariants_block(checks: Sequence[InvariantCheck]) -> dict[str, Any]:
    return {
        "passed": all(c.passed for c in checks),
        "checks": [{"name": c.name, "passed": c.passed, "detail": c.detail} for c in checks],
    }


def environment() -> dict[str, Any]:
    env: dict[str, Any] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "invarlock_core": __version__,
    }
    torch = sys.modules.get("torch")
    if torch is not None:
        env["torch"] = torch.__version__
        env["cuda"] = torch.version.cuda if torch.cuda.is_available() else None
    transformers = sys.modules.get("transformers")
    if transformers is not None:
        env["transformers"] = transformers.__version__
    return env


def plugins_block() -> dict[str, Any]:
    """Every discovered adapter (distribution, version, status): the ``plugins adapters`` listing."""
    from invarlock.cli.plugins import adapters_listing, plugins_listing

    return {"adapters": adapters_listing()["adapters"], "plugins": plugins_listing()["plugins"]}


def free_memory() -> None:
    """Give a dropped model's memory back before loading the next one."""
    import gc

    gc.collect()
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()
