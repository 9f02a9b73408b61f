"""Distribution metrics on the demo model: the top-K estimate of KL(baseline‖subject) against the
exact full-vocabulary KL, top-1 agreement and Δp against a direct computation from both models'
full logits, and the scored losses unchanged by the metrics.

The subjects are the demo's two edits (8-bit and 2-bit round-to-nearest, groups of 32), made in
memory; the windows are 32 of the demo's (128 tokens, seed 0).
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy
import pytest
import torch
import torch.nn.functional as F

from invarlock.adapters import get_adapter
from invarlock.certification.datasets import embedded_corpus
from invarlock.certification.edits.quant_rtn import apply_quant_rtn
from invarlock.certification.evaluation.distribution import (
    DEFAULT_TOP_K,
    BaselineDistribution,
    BaselineRecorder,
    SubjectComparer,
    distribution_metrics,
)
from invarlock.certification.evaluation.scoring import IGNORE, Framing, score_windows
from invarlock.certification.evaluation.windows import Window, make_windows, token_stream

DEMO_MODEL = Path(__file__).resolve().parents[1] / "demo" / "model"
KL_SHORTFALL_BOUND = 0.35
"""At the default top-K the estimate's mean KL is at least 65% of the exact mean KL on the demo
(measured: see docs/certify.md, "Distribution metrics")."""


@pytest.fixture(scope="module")
def demo() -> dict[str, Any]:
    adapter = get_adapter("hf_causal")
    tokenizer = adapter.load_tokenizer(DEMO_MODEL)
    stream = token_stream(tokenizer, embedded_corpus("eval"))
    windows = make_windows(stream, length=128, count=32, seed=0).windows
    model = adapter.load_model(DEMO_MODEL, device="cpu")
    recorder = BaselineRecorder(DEFAULT_TOP_K)
    scores = score_windows(adapter, model, windows, Framing("causal"), observer=recorder)
    return {
        "adapter": adapter,
        "model": model,
        "windows": windows,
        "scores": scores,
        "baseline": recorder.result(),
        "logits": full_logits(adapter, model, windows),
        "snapshot": adapter.snapshot(model),
    }


def full_logits(adapter: Any, model: Any, windows: Sequence[Window]) -> torch.Tensor:
    """Next-token logits at every scored position, ``(tokens, vocab)``, window by window."""
    ids = torch.tensor([w.tokens for w in windows])
    logits = adapter.logits(model, {"input_ids": ids, "attention_mask": torch.ones_like(ids)})
    scored: torch.Tensor = logits[:, :-1].reshape(-1, logits.shape[-1])
    return scored


@pytest.fixture(params=[8, 2], ids=["rtn8", "rtn2"])
def subject(request: pytest.FixtureRequest, demo: dict[str, Any]) -> Any:
    adapter, model = demo["adapter"], demo["model"]
    apply_quant_rtn(model, bitwidth=request.param, group_size=32)
    yield model
    adapter.restore(model, demo["snapshot"])


def test_top_k_kl_never_exceeds_the_exact_kl_and_falls_short_of_it_by_less_than_the_bound(
    demo: dict[str, Any], subject: Any
) -> None:
    comparer = SubjectComparer(demo["baseline"])
    score_windows(demo["adapter"], subject, demo["windows"], Framing("causal"), observer=comparer)
    comparison = comparer.result()
    p_log = F.log_softmax(demo["logits"].double(), dim=-1)
    q_log = F.log_softmax(full_logits(demo["adapter"], subject, demo["windows"]).double(), dim=-1)
    exact = (p_log.exp() * (p_log - q_log)).sum(dim=-1).numpy()
    estimate = comparison.kl
    assert estimate.shape == exact.shape == (32 * 127,)
    assert (estimate <= exact + 1e-6).all(), "the coarsened KL is a lower bound (data processing inequality)"
    assert estimate.mean() >= (1 - KL_SHORTFALL_BOUND) * exact.mean() > 0

    observed = torch.tensor([t for w in demo["windows"] for t in w.tokens[1:]])
    rows = torch.arange(len(observed))
    delta_p = q_log[rows, observed].exp() - p_log[rows, observed].exp()
    numpy.testing.assert_allclose(comparison.delta_p, delta_p.numpy(), atol=1e-5)  # float32 against float64
    agrees = q_log[rows, p_log.argmax(dim=-1)] == q_log.max(dim=-1).values
    assert (comparison.top1_agrees == agrees.numpy()).mean() > 0.999, "float32 against float64 ties aside"

    metrics = distribution_metrics(comparison, confidence=0.95, bootstrap=200, seed=0)
    assert metrics.kl_ci[0] <= metrics.kl_mean <= metrics.kl_ci[1]
    assert metrics.top1_ci[0] <= metrics.top1_rate <= metrics.top1_ci[1]
    assert metrics.delta_p_max == pytest.approx(float(delta_p.abs().max()), abs=1e-5)
    assert metrics.kl_p99 == pytest.approx(float(numpy.quantile(estimate, 0.99)))


def test_the_baseline_against_itself_moves_nothing(demo: dict[str, Any]) -> None:
    comparer = SubjectComparer(demo["baseline"])
    score_windows(demo["adapter"], demo["model"], demo["windows"], Framing("causal"), observer=comparer)
    metrics = distribution_metrics(comparer.result(), confidence=0.95, bootstrap=200, seed=0)
    assert (metrics.kl_mean, metrics.kl_ci, metrics.kl_p99) == (0.0, (0.0, 0.0), 0.0)
    assert (metrics.top1_rate, metrics.top1_ci) == (1.0, (1.0, 1.0))
    assert (metrics.delta_p_rms, metrics.delta_p_max) == (0.0, 0.0)


def test_the_metrics_leave_every_loss_as_cross_entropy_gives_it(demo: dict[str, Any]) -> None:
    adapter, model, windows = demo["adapter"], demo["model"], demo["windows"]
    plain = score_windows(adapter, model, windows[:8], Framing("causal"))
    assert plain == demo["scores"][:8], "scored with and without the observer: the same numbers"
    ids = torch.tensor([w.tokens for w in windows[:8]])
    logits = adapter.logits(model, {"input_ids": ids, "attention_mask": torch.ones_like(ids)})
    labels = torch.full_like(ids, IGNORE)
    labels[:, :-1] = ids[:, 1:]
    losses = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), reduction="none")
    expected = losses.view(ids.shape).sum(dim=1, dtype=torch.float64).tolist()
    assert [s.nll for s in plain[:8]] == expected


def test_the_stored_baseline_is_small_and_round_trips_through_its_arrays(demo: dict[str, Any]) -> None:
    baseline: BaselineDistribution = demo["baseline"]
    vocab = demo["model"].config.vocab_size
    assert baseline.top_k == DEFAULT_TOP_K and baseline.tokens == 32 * 127
    assert baseline.nbytes <= 0.02 * baseline.tokens * vocab * 4, "at most 2% of the float32 logits"
    assert baseline.top_ids.dtype == numpy.uint16 and baseline.top_logprobs.dtype == numpy.float32
    probabilities = numpy.exp(baseline.top_logprobs.astype(numpy.float64)).sum(1) + numpy.exp(
        baseline.tail_logprob
    )
    numpy.testing.assert_allclose(probabilities, 1.0, atol=1e-5)

    arrays = baseline.arrays()
    again = BaselineDistribution.from_arrays({name: array.copy() for name, array in arrays.items()})
    assert all(numpy.array_equal(again.arrays()[name], array) for name, array in arrays.items())
    with pytest.raises(ValueError, match="lack tail_logprob"):
        BaselineDistribution.from_arrays({k: v for k, v in arrays.items() if k != "tail_logprob"})
    with pytest.raises(ValueError, match="array top_logprobs has shape"):
        BaselineDistribution.from_arrays({**arrays, "top_logprobs": arrays["top_logprobs"][:-1]})


def test_a_subject_scored_on_other_windows_is_refused(demo: dict[str, Any]) -> None:
    comparer = SubjectComparer(demo["baseline"])
    with pytest.raises(ValueError, match="not scored on the windows the baseline distribution holds"):
        score_windows(
            demo["adapter"], demo["model"], demo["windows"][1:], Framing("causal"), observer=comparer
        )
    short = SubjectComparer(demo["baseline"])
    score_windows(demo["adapter"], demo["model"], demo["windows"][:8], Framing("causal"), observer=short)
    with pytest.raises(ValueError, match="scored on 1016 tokens but the baseline distribution holds 4064"):
        short.result()
