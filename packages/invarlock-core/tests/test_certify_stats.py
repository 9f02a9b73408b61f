"""Paired statistics, the gate and the invariants: pure Python, no torch."""

from __future__ import annotations

import math
import random

import pytest

from invarlock.certification.evaluation.distribution import DistributionMetrics
from invarlock.certification.evaluation.gate import MIN_TOKENS, MIN_WINDOWS, GatePolicy, InvariantCheck, judge
from invarlock.certification.evaluation.invariants import finite_scores_check, structure_check, tying_check
from invarlock.certification.evaluation.stats import WindowScore, paired_ratio, perplexity, ratio_intervals
from invarlock.errors import InsufficientEvidenceError


def scores(log_losses: list[float], tokens: int = 100) -> list[WindowScore]:
    return [WindowScore(i * tokens, loss * tokens, tokens) for i, loss in enumerate(log_losses)]


def noisy(n: int, seed: int, mean: float = 3.0, spread: float = 0.3) -> list[float]:
    rng = random.Random(seed)
    return [mean + rng.uniform(-spread, spread) for _ in range(n)]


def test_identical_models_have_ratio_one_and_a_degenerate_interval() -> None:
    base = scores(noisy(40, 1))
    result = paired_ratio(base, base, bootstrap=500)
    assert result.ratio == pytest.approx(1.0)
    assert result.ci_low == pytest.approx(1.0) and result.ci_high == pytest.approx(1.0)
    assert result.baseline_ppl == result.subject_ppl


def test_ratio_is_exp_of_the_token_weighted_mean_difference() -> None:
    base = scores(noisy(30, 2))
    subject = [WindowScore(s.window_id, s.nll + 0.05 * s.tokens, s.tokens) for s in base]
    result = paired_ratio(base, subject, bootstrap=300)
    assert result.ratio == pytest.approx(math.exp(0.05))
    assert result.subject_ppl / result.baseline_ppl == pytest.approx(result.ratio)
    assert result.mean_delta_log_loss == pytest.approx(0.05)


def test_interval_brackets_the_ratio_and_narrows_with_more_windows() -> None:
    def widths(n: int) -> tuple[float, float, float]:
        base = scores(noisy(n, 3))
        subject = [
            WindowScore(s.window_id, s.nll + random.Random(s.window_id).gauss(2.0, 4.0), s.tokens)
            for s in base
        ]
        r = paired_ratio(base, subject, bootstrap=1000, seed=7)
        return r.ci_low, r.ratio, r.ci_high

    low, ratio, high = widths(20)
    assert low < ratio < high
    low_many, _, high_many = widths(400)
    assert high_many - low_many < high - low


def test_bootstrap_is_reproducible_with_its_seed_and_varies_without() -> None:
    base = scores(noisy(25, 4))
    subject = scores(noisy(25, 5))
    first = paired_ratio(base, subject, bootstrap=400, seed=11)
    assert paired_ratio(base, subject, bootstrap=400, seed=11) == first
    assert paired_ratio(base, subject, bootstrap=400, seed=12).ci_high != first.ci_high


def test_pairs_must_be_the_same_windows() -> None:
    base = scores([3.0, 3.1])
    shifted = [WindowScore(s.window_id + 1, s.nll, s.tokens) for s in base]
    with pytest.raises(ValueError, match="same tokens"):
        paired_ratio(base, shifted)
    with pytest.raises(ValueError, match="2 baseline windows but 1"):
        paired_ratio(base, base[:1])


def test_perplexity_is_exp_of_mean_token_loss() -> None:
    assert perplexity([WindowScore(0, 20.0, 10), WindowScore(1, 10.0, 10)]) == pytest.approx(math.exp(1.5))


def test_gate_passes_on_upper_bound_and_fails_above_it() -> None:
    base = scores(noisy(50, 6))
    small = paired_ratio(base, [WindowScore(s.window_id, s.nll + 0.01 * s.tokens, s.tokens) for s in base])
    large = paired_ratio(base, [WindowScore(s.window_id, s.nll + 0.2 * s.tokens, s.tokens) for s in base])
    policy = GatePolicy(max_ratio=1.10)
    assert judge(policy, small, []).passed
    failed = judge(policy, large, [])
    assert not failed.passed and failed.verdict == "FAIL"
    assert "exceeds 1.1" in failed.reasons[0]
    assert judge(GatePolicy(max_ratio=1.25), large, []).passed


def test_gate_fails_on_a_broken_invariant_even_when_the_ratio_passes() -> None:
    base = scores(noisy(40, 8))
    same = paired_ratio(base, base)
    result = judge(GatePolicy(), same, [InvariantCheck("tying", False, "lm_head untied")])
    assert not result.passed and result.ratio_passed
    assert any("tying failed: lm_head untied" in r for r in result.reasons)
    assert judge(GatePolicy(require_invariants=False), same, [InvariantCheck("tying", False, "x")]).passed


def test_one_window_gives_an_interval_of_zero_width_so_the_gate_refuses_it() -> None:
    base = scores([3.0])
    one = paired_ratio(base, [WindowScore(0, 3.01 * 100, 100)], bootstrap=300)
    assert one.ci_low == one.ci_high, "every resample of one window is that window"
    with pytest.raises(InsufficientEvidenceError, match=r"1 window.* too little evidence") as refused:
        judge(GatePolicy(), one, [])
    assert refused.value.code == "insufficient_evidence"
    assert f"at least {MIN_WINDOWS} windows and {MIN_TOKENS} scored tokens" in str(refused.value)


def test_too_few_windows_or_tokens_are_refused_unless_inconclusive_is_asked_for() -> None:
    few = paired_ratio(scores(noisy(MIN_WINDOWS - 1, 3)), scores(noisy(MIN_WINDOWS - 1, 3)))
    short = paired_ratio(scores(noisy(40, 4), tokens=10), scores(noisy(40, 4), tokens=10))  # 400 tokens
    enough = paired_ratio(scores(noisy(MIN_WINDOWS, 5), tokens=32), scores(noisy(MIN_WINDOWS, 5), tokens=32))
    for stats in (few, short):
        with pytest.raises(InsufficientEvidenceError, match="--allow-inconclusive"):
            judge(GatePolicy(), stats, [])
        result = judge(GatePolicy(allow_inconclusive=True), stats, [])
        assert result.verdict == "INCONCLUSIVE" and not result.passed, "identical sides, still no PASS"
        assert result.ratio_passed and result.reasons[1].startswith("INCONCLUSIVE: ")
    assert enough.tokens == MIN_TOKENS and judge(GatePolicy(), enough, []).verdict == "PASS"


def description(**overrides: object) -> dict[str, object]:
    base: dict[str, object] = {
        "model_type": "llama",
        "role": "causal",
        "n_layer": 2,
        "heads_per_layer": [4, 4],
        "kv_heads_per_layer": [2, 2],
        "mlp_dims": [64, 64],
        "hidden_size": 32,
        "vocab_size": 100,
        "encoder_decoder": None,
        "moe": None,
        "dtype": "float32",
        "tying": {"lm_head.weight": "model.embed_tokens.weight"},
    }
    return {**base, **overrides}


def test_structure_ignores_dtype_but_not_shapes() -> None:
    assert structure_check(
        description(), description(dtype="int8", quantization={"method": "bitsandbytes"})
    ).passed
    broken = structure_check(description(), description(mlp_dims=[64, 32]))
    assert not broken.passed and "mlp_dims" in broken.detail


def test_per_layer_types_only_one_side_describes_are_named_not_compared() -> None:
    typed = description(layer_types=["full_attention", "sliding_attention"])
    check = structure_check(typed, description())  # an adapter that cannot derive layer types
    assert check.passed
    assert "layer_types not compared (only the baseline describes it)" in check.detail
    other = structure_check(typed, description(layer_types=["full_attention", "full_attention"]))
    assert not other.passed and "layer_types" in other.detail


def test_tying_must_be_preserved() -> None:
    assert tying_check(description(), description()).passed
    lost = tying_check(description(), description(tying={}))
    assert not lost.passed and "lm_head.weight" in lost.detail


def test_non_finite_window_losses_fail_the_output_check() -> None:
    good = scores([3.0, 3.0])
    assert finite_scores_check("subject", good).passed
    bad = [*good, WindowScore(500, float("nan"), 100)]
    check = finite_scores_check("subject", bad)
    assert not check.passed and "500" in check.detail


# -- distribution metrics: the shared bootstrap and the optional gates ------------------------------


def test_every_series_is_resampled_with_the_ratios_windows() -> None:
    base = scores(noisy(40, 13))
    subject = scores(noisy(40, 14))
    paired = paired_ratio(base, subject, bootstrap=500, seed=3)
    deltas = [s.nll - b.nll for b, s in zip(base, subject, strict=True)]
    tokens = [float(b.tokens) for b in base]
    counts = [float(i % 7) for i in range(40)]
    intervals = ratio_intervals([(counts, tokens), (deltas, tokens)], confidence=0.95, bootstrap=500, seed=3)
    low, high = intervals[1]
    assert (math.exp(low), math.exp(high)) == (paired.ci_low, paired.ci_high), (
        "a series beside another is resampled as the ratio is, window for window"
    )
    assert intervals[0][0] < sum(counts) / sum(tokens) < intervals[0][1]
    with pytest.raises(ValueError, match="one numerator and one denominator per window"):
        ratio_intervals([(counts, tokens[:-1])], confidence=0.95, bootstrap=10, seed=0)


def metrics(kl: tuple[float, float], top1: tuple[float, float]) -> DistributionMetrics:
    return DistributionMetrics(
        top_k=16,
        tokens=4000,
        kl_mean=sum(kl) / 2,
        kl_ci=kl,
        kl_p99=kl[1] * 10,
        top1_rate=sum(top1) / 2,
        top1_ci=top1,
        delta_p_rms=0.01,
        delta_p_rms_ci=(0.009, 0.011),
        delta_p_max=0.2,
    )


def test_distribution_gates_are_off_by_default_and_bound_the_intervals_when_set() -> None:
    base = scores(noisy(40, 15))
    same = paired_ratio(base, base)
    moved = metrics((0.02, 0.05), (0.90, 0.93))
    off = judge(GatePolicy(), same, [], moved)
    assert off.passed and off.distribution_passed is None and len(off.reasons) == 1

    kl_gate = GatePolicy(max_kl=0.04)
    failed = judge(kl_gate, same, [], moved)
    assert not failed.passed and failed.ratio_passed and failed.distribution_passed is False
    assert failed.reasons[1] == "mean KL 0.035 nats/token [0.02, 0.05]: upper bound exceeds 0.04"
    assert "upper bound of the mean KL's 95% interval <= 0.04 nats/token" in kl_gate.rule
    assert judge(GatePolicy(max_kl=0.05), same, [], moved).passed, "the bound itself is allowed"

    top1_gate = GatePolicy(min_top1_agreement=0.92)
    failed = judge(top1_gate, same, [], moved)
    assert not failed.passed
    assert failed.reasons[1] == "top-1 agreement 0.9150 [0.9000, 0.9300]: lower bound below 0.92"
    passed = judge(GatePolicy(max_kl=0.1, min_top1_agreement=0.9), same, [], moved)
    assert passed.passed and passed.distribution_passed is True and len(passed.reasons) == 3


def test_a_distribution_gate_without_distribution_metrics_never_passes() -> None:
    base = scores(noisy(40, 16))
    result = judge(GatePolicy(max_kl=1.0), paired_ratio(base, base), [], None)
    assert not result.passed and result.distribution_passed is False
    assert "they were not computed (top_k 0)" in result.reasons[1]
