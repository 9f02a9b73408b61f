"""``invarlock certify``: is the subject as good as its baseline? The evidence, as a certificate.

Flow: resolve each side's adapter on its own → load the corpus → load and compare tokenizers →
load the baseline, describe it, build the windows, score them → load the subject, describe it,
score the same windows → the shared evaluate-and-judge step (:mod:`.evaluate`) → the certificate
(a dict; see :mod:`invarlock.certification.certificate` for writing it). Models are loaded one at
a time.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from invarlock.certification import sides, tokenizers
from invarlock.certification.certificate import CERTIFICATE_SCHEMA
from invarlock.certification.context import environment, plugins_block
from invarlock.certification.datasets import EMBEDDED, load_corpus
from invarlock.certification.evaluate import WindowSettings, judge_pair, plan_evaluation
from invarlock.certification.evaluation.gate import GatePolicy
from invarlock.certification.evaluation.windows import token_stream
from invarlock.certification.progress import Progress
from invarlock.errors import InvarlockError, RoleMismatchError


@dataclass(frozen=True)
class CertifyOptions:
    adapter: str = sides.AUTO
    """Adapter for the baseline, and for the subject unless ``subject_adapter`` is given."""
    subject_adapter: str | None = None
    dataset: str = EMBEDDED
    split: str | None = None
    text_field: str = "text"
    windows: WindowSettings = field(default_factory=WindowSettings)
    device: str = "auto"
    load_options: dict[str, Any] = field(default_factory=dict)
    subject_load_options: dict[str, Any] = field(default_factory=dict)
    """Load options for the subject only, over ``load_options`` (``base``, ``merge`` for a PEFT subject)."""
    policy: GatePolicy = field(default_factory=GatePolicy)


def certify(
    baseline_id: str, subject_id: str, options: CertifyOptions, progress: Progress | None = None
) -> dict[str, Any]:
    """Compare ``subject_id`` with ``baseline_id``; returns the certificate (verdict inside)."""
    progress = progress or Progress(enabled=False)
    started = time.monotonic()
    sides.check_model_path(baseline_id, "baseline")
    sides.check_model_path(subject_id, "subject")
    subject_requested = options.subject_adapter or options.adapter
    subject_flag = "--subject-adapter" if options.subject_adapter else "--adapter"
    base_adapter = sides.choose_adapter(
        baseline_id, options.adapter, flag="--adapter", load_options=options.load_options
    )
    subject_load_options = {**options.load_options, **options.subject_load_options}
    subj_adapter = sides.choose_adapter(
        subject_id, subject_requested, flag=subject_flag, load_options=subject_load_options
    )
    corpus = load_corpus(options.dataset, split=options.split, text_field=options.text_field)

    progress.step("loading tokenizers")
    tokenizer = sides.load_tokenizer(base_adapter, baseline_id, "baseline", options.load_options)
    base_fp = tokenizers.fingerprint(tokenizer)
    subject_note = None
    appended: list[str] = []
    try:
        subj_tokenizer = sides.load_tokenizer(subj_adapter, subject_id, "subject", subject_load_options)
    except InvarlockError as exc:
        subject_note = f"the subject has no loadable tokenizer ({exc}); it was scored with the baseline's"
    else:
        appended = tokenizers.appended_tokens(tokenizer, subj_tokenizer)
        tokenizers.compare(base_fp, tokenizers.fingerprint(subj_tokenizer), appended=bool(appended))
    stream = token_stream(tokenizer, corpus)

    progress.step(f"loading baseline with {base_adapter.name}")
    model = sides.load_model(base_adapter, baseline_id, "baseline", options.device, options.load_options)
    base_description = base_adapter.adapter.describe(model)
    role = base_description["role"]
    evaluation = plan_evaluation(tokenizer, corpus, stream, role, model, options.windows)
    baseline = evaluation.score(base_adapter.adapter, model, base_description, progress, "scoring baseline")
    del model
    sides.free_memory()

    progress.step(f"loading subject with {subj_adapter.name}")
    model = sides.load_model(subj_adapter, subject_id, "subject", options.device, subject_load_options)
    subj_description = subj_adapter.adapter.describe(model)
    if appended:
        tokenizers.check_declared(appended, subj_description)
    if subj_description["role"] != role:
        raise RoleMismatchError(
            f"the subject is a {subj_description['role']} model but the baseline is {role}; "
            "certify compares two models of one role"
        )
    subject = evaluation.score(subj_adapter.adapter, model, subj_description, progress, "scoring subject")
    del model
    sides.free_memory()
    progress.finish()

    judgement = judge_pair(options.policy, baseline, subject, seed=options.windows.seed)
    certificate: dict[str, Any] = {
        "schema": CERTIFICATE_SCHEMA,
        "certificate_id": "",
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "duration_s": round(time.monotonic() - started, 3),
        **judgement.evidence(),
        "baseline": _side(baseline_id, base_adapter, base_description),
        "subject": _side(subject_id, subj_adapter, subj_description),
        "load_options": {"device": options.device, **options.load_options},
        **({"subject_load_options": options.subject_load_options} if options.subject_load_options else {}),
        "tokenizer": tokenizers.block(base_fp, subject_note, appended),
        "dataset": {**corpus.info(), "windows": evaluation.windows.info()},
        "metric": evaluation.framing.describe(),
        "plugins": plugins_block(),
        "environment": environment(),
    }
    certificate["certificate_id"] = certificate_id(certificate)
    return certificate


def _side(model_id: str, chosen: sides.ChosenAdapter, description: Mapping[str, Any]) -> dict[str, Any]:
    return {"model_id": model_id, "adapter": chosen.info(), "description": dict(description)}


def certificate_id(certificate: dict[str, Any]) -> str:
    """A short digest of the evidence (models, data, scores, verdict); timestamps left out."""
    evidence = {k: certificate[k] for k in ("baseline", "subject", "dataset", "stats", "gate", "verdict")}
    return hashlib.sha256(json.dumps(evidence, sort_keys=True, default=str).encode()).hexdigest()[:16]
