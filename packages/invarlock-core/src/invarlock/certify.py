"""``invarlock certify``: is the subject as good as its baseline? The evidence, as a certificate.

Flow: resolve each side's adapter on its own → load the corpus → load and compare tokenizers →
load the baseline, describe it, build the windows, score them → load the subject, describe it,
score the same windows → paired statistics, invariants, gate → the certificate (a dict; see
:mod:`invarlock.certificate` for writing it). Models are loaded one at a time.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from invarlock import pipeline
from invarlock.certificate import CERTIFICATE_SCHEMA
from invarlock.datasets import EMBEDDED, load_corpus
from invarlock.errors import InvarlockError
from invarlock.evaluation.gate import GatePolicy, InvariantCheck, judge
from invarlock.evaluation.invariants import (
    finite_scores_check,
    finite_weights_check,
    nonfinite_weights,
    structure_check,
    tying_check,
)
from invarlock.evaluation.scoring import score_windows
from invarlock.evaluation.stats import paired_ratio
from invarlock.evaluation.windows import token_stream
from invarlock.progress import Progress

DEFAULT_SEQ_LEN = 128
DEFAULT_WINDOWS = 64
DEFAULT_BATCH_SIZE = 8


@dataclass(frozen=True)
class CertifyOptions:
    adapter: str = pipeline.AUTO
    """Adapter for the baseline, and for the subject unless ``subject_adapter`` is given."""
    subject_adapter: str | None = None
    dataset: str = EMBEDDED
    split: str | None = None
    text_field: str = "text"
    seq_len: int = DEFAULT_SEQ_LEN
    stride: int | None = None
    windows: int = DEFAULT_WINDOWS
    seed: int = 0
    batch_size: int = DEFAULT_BATCH_SIZE
    device: str = "auto"
    load_options: dict[str, Any] = field(default_factory=dict)
    policy: GatePolicy = field(default_factory=GatePolicy)


def certify(
    baseline_id: str, subject_id: str, options: CertifyOptions, progress: Progress | None = None
) -> dict[str, Any]:
    """Compare ``subject_id`` with ``baseline_id``; returns the certificate (verdict inside)."""
    progress = progress or Progress(enabled=False)
    started = time.monotonic()
    pipeline.check_model_path(baseline_id, "baseline")
    pipeline.check_model_path(subject_id, "subject")
    subject_requested = options.subject_adapter or options.adapter
    subject_flag = "--subject-adapter" if options.subject_adapter else "--adapter"
    base_adapter = pipeline.choose_adapter(
        baseline_id, options.adapter, flag="--adapter", load_options=options.load_options
    )
    subj_adapter = pipeline.choose_adapter(
        subject_id, subject_requested, flag=subject_flag, load_options=options.load_options
    )
    corpus = load_corpus(options.dataset, split=options.split, text_field=options.text_field)

    progress.step("loading tokenizers")
    tokenizer = pipeline.load_tokenizer(base_adapter, baseline_id, "baseline", options.load_options)
    base_fp = pipeline.tokenizer_fingerprint(tokenizer)
    subject_note = None
    try:
        subj_tokenizer = pipeline.load_tokenizer(subj_adapter, subject_id, "subject", options.load_options)
    except InvarlockError as exc:
        subject_note = f"the subject has no loadable tokenizer ({exc}); it was scored with the baseline's"
    else:
        pipeline.compare_tokenizers(base_fp, pipeline.tokenizer_fingerprint(subj_tokenizer))
    stream = token_stream(tokenizer, corpus)

    progress.step(f"loading baseline with {base_adapter.name}")
    model = pipeline.load_model(base_adapter, baseline_id, "baseline", options.device, options.load_options)
    base_description = base_adapter.adapter.describe(model)
    role = base_description["role"]
    windows, framing = pipeline.prepare_windows(
        tokenizer,
        corpus,
        stream,
        role,
        model,
        seq_len=options.seq_len,
        stride=options.stride,
        count=options.windows,
        seed=options.seed,
    )
    progress.start("scoring baseline", len(windows.windows))
    base_scores = score_windows(
        base_adapter.adapter,
        model,
        windows.windows,
        framing,
        batch_size=options.batch_size,
        on_batch=progress.advance,
    )
    base_bad = nonfinite_weights(model)
    del model
    pipeline.free_memory()

    progress.step(f"loading subject with {subj_adapter.name}")
    model = pipeline.load_model(subj_adapter, subject_id, "subject", options.device, options.load_options)
    subj_description = subj_adapter.adapter.describe(model)
    if subj_description["role"] != role:
        raise InvarlockError(
            f"the subject is a {subj_description['role']} model but the baseline is {role}; "
            "certify compares two models of one role"
        )
    progress.start("scoring subject", len(windows.windows))
    subj_scores = score_windows(
        subj_adapter.adapter,
        model,
        windows.windows,
        framing,
        batch_size=options.batch_size,
        on_batch=progress.advance,
    )
    subj_bad = nonfinite_weights(model)
    del model
    pipeline.free_memory()
    progress.finish()

    policy = options.policy
    paired = paired_ratio(
        base_scores, subj_scores, confidence=policy.confidence, bootstrap=policy.bootstrap, seed=options.seed
    )
    checks: list[InvariantCheck] = [
        structure_check(base_description, subj_description),
        tying_check(base_description, subj_description),
        finite_weights_check("baseline", base_bad),
        finite_weights_check("subject", subj_bad),
        finite_scores_check("baseline", base_scores),
        finite_scores_check("subject", subj_scores),
    ]
    result = judge(policy, paired, checks)
    certificate: dict[str, Any] = {
        "schema": CERTIFICATE_SCHEMA,
        "certificate_id": "",
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "duration_s": round(time.monotonic() - started, 3),
        "verdict": result.verdict,
        "exit_code": 0 if result.passed else 1,
        "reasons": result.reasons,
        "baseline": _side(baseline_id, base_adapter, base_description),
        "subject": _side(subject_id, subj_adapter, subj_description),
        "load_options": {"device": options.device, **options.load_options},
        "tokenizer": pipeline.tokenizer_block(base_fp, subject_note),
        "dataset": {**corpus.info(), "windows": windows.info()},
        "metric": framing.describe(),
        "stats": pipeline.stats_block(paired, base_scores, subj_scores),
        "gate": pipeline.gate_block(policy, result),
        "invariants": pipeline.invariants_block(checks),
        "plugins": pipeline.plugins_block(),
        "environment": pipeline.environment(),
    }
    certificate["certificate_id"] = certificate_id(certificate)
    return certificate


def _side(model_id: str, chosen: pipeline.ChosenAdapter, description: Mapping[str, Any]) -> dict[str, Any]:
    return {"model_id": model_id, "adapter": chosen.info(), "description": dict(description)}


def certificate_id(certificate: dict[str, Any]) -> str:
    """A short digest of the evidence (models, data, scores, verdict); timestamps left out."""
    evidence = {k: certificate[k] for k in ("baseline", "subject", "dataset", "stats", "gate", "verdict")}
    return hashlib.sha256(json.dumps(evidence, sort_keys=True, default=str).encode()).hexdigest()[:16]
