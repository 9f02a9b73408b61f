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
import os
import shlex
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any

from invarlock.certification import identity, preflight, sides, tokenizers
from invarlock.certification.certificate import CERTIFICATE_SCHEMA
from invarlock.certification.context import environment, plugins_block
from invarlock.certification.datasets import EMBEDDED, load_corpus
from invarlock.certification.evaluate import WindowSettings, judge_pair, plan_evaluation
from invarlock.certification.evaluation.gate import GatePolicy
from invarlock.certification.evaluation.windows import token_stream
from invarlock.certification.progress import Progress
from invarlock.certification.weights import WeightProof, weights_check
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
    baseline_id: str,
    subject_id: str,
    options: CertifyOptions,
    progress: Progress | None = None,
    command: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Compare ``subject_id`` with ``baseline_id``; returns the certificate (verdict inside).

    ``command`` is the command line that asked for it (recorded in ``invocation``)."""
    progress = progress or Progress(enabled=False)
    started = time.monotonic()
    options.windows.require_enough_windows(options.policy)
    preflight.check_device(options.device)
    subject_load_options = {**options.load_options, **options.subject_load_options}
    for model_id, side, side_options in (
        (baseline_id, "baseline", options.load_options),
        (subject_id, "subject", subject_load_options),
    ):
        preflight.check_model_location(
            model_id, side, side_options.get("revision"), side_options.get("cache_dir")
        )
    subject_requested = options.subject_adapter or options.adapter
    subject_flag = "--subject-adapter" if options.subject_adapter else "--adapter"
    base_adapter = sides.choose_adapter(
        baseline_id, options.adapter, flag="--adapter", load_options=options.load_options
    )
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
    evaluation.require_enough_evidence(options.policy)
    baseline = evaluation.score(base_adapter.adapter, model, base_description, progress, "scoring baseline")
    progress.step("hashing the baseline's files and proving its weights")
    base_content = read_side(baseline_id, model, options.load_options)
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
    progress.step("hashing the subject's files and proving its weights")
    subj_content = read_side(subject_id, model, subject_load_options)
    del model
    sides.free_memory()
    progress.finish()

    judgement = judge_pair(
        options.policy,
        baseline,
        subject,
        seed=options.windows.seed,
        extra_checks=[
            base_content.check("baseline", base_description),
            subj_content.check("subject", subj_description),
        ],
    )
    evidence = judgement.evidence()
    if base_content.manifest.digest == subj_content.manifest.digest:
        evidence["reasons"].append(
            "subject is byte-identical to the baseline: both checkpoints have the content digest "
            f"{base_content.manifest.digest[:16]}… ({len(base_content.manifest.files)} files)"
        )
    certificate: dict[str, Any] = {
        "schema": CERTIFICATE_SCHEMA,
        "certificate_id": "",
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "duration_s": round(time.monotonic() - started, 3),
        **evidence,
        "baseline": _side(baseline_id, base_adapter, base_description, base_content),
        "subject": _side(subject_id, subj_adapter, subj_description, subj_content),
        "load_options": {"device": options.device, **options.load_options},
        "invocation": invocation(baseline_id, subject_id, options, command),
        **({"subject_load_options": options.subject_load_options} if options.subject_load_options else {}),
        "tokenizer": tokenizers.block(base_fp, subject_note, appended),
        "dataset": {**corpus.info(), "windows": evaluation.windows.info()},
        "metric": evaluation.framing.describe(),
        "plugins": plugins_block(),
        "environment": environment(),
    }
    certificate["certificate_id"] = certificate_id(certificate)
    return certificate


def invocation(
    baseline_id: str, subject_id: str, options: CertifyOptions, command: Sequence[str] | None
) -> dict[str, Any]:
    """What produced the certificate: the command line, where it ran, and every option in full."""
    return {
        "command": shlex.join(command) if command is not None else None,
        "argv": list(command) if command is not None else None,
        "cwd": os.getcwd(),
        "baseline": baseline_id,
        "subject": subject_id,
        "options": json.loads(json.dumps(asdict(options), default=str)),
    }


@dataclass(frozen=True)
class SideContent:
    """What one side's files are, and whether the loaded model holds them."""

    manifest: identity.Manifest
    proof: WeightProof | None

    def check(self, side: str, description: Mapping[str, Any]) -> Any:
        safetensors = sum(f.path.endswith(identity.SAFETENSORS) for f in self.manifest.files)
        peft = description.get("peft")
        partial = f"an adapter over the base {peft.get('base')}" if isinstance(peft, Mapping) else None
        return weights_check(side, self.proof, safetensors, partial_by_design=partial)


def read_side(model_id: str, model: Any, load_options: Mapping[str, Any]) -> SideContent:
    """Hash the checkpoint's files and prove the loaded weights against them, in one read."""
    location = identity.locate(model_id, load_options.get("revision"), load_options.get("cache_dir"))
    proof = WeightProof.of(model)
    manifest = identity.read_checkpoint(location, proof.visit if proof is not None else None)
    return SideContent(manifest, proof)


def _side(
    model_id: str, chosen: sides.ChosenAdapter, description: Mapping[str, Any], content: SideContent
) -> dict[str, Any]:
    return {
        "model_id": model_id,
        "adapter": chosen.info(),
        "description": dict(description),
        "identity": content.manifest.info(),
        "weights": content.proof.info() if content.proof is not None else None,
    }


def certificate_id(certificate: Mapping[str, Any]) -> str:
    """A digest of what the certificate is about (content, never path spelling): both sides' content
    digests and adapters, the dataset's digest and windows, the metric, the gate policy, the load
    options and the versions. Timestamps, timings and paths are left out, so the same question asked
    of the same files gets the same id wherever the files lie."""

    def side(block: Mapping[str, Any]) -> dict[str, Any]:
        adapter = block["adapter"]
        return {
            "digest": block["identity"]["digest"],
            "adapter": {k: adapter[k] for k in ("name", "distribution", "version", "backend")},
        }

    dataset = dict(certificate["dataset"])
    if "format" in dataset:
        dataset["source"] = "file"  # a local file is identified by its sha256, not its path
    policy = {k: v for k, v in certificate["gate"].items() if k not in ("passed", "ratio_passed")}
    environment = certificate["environment"]
    question = {
        "baseline": side(certificate["baseline"]),
        "subject": side(certificate["subject"]),
        "dataset": dataset,
        "metric": certificate["metric"],
        "gate": policy,
        "load_options": certificate["load_options"],
        "versions": {k: environment.get(k) for k in ("python", "torch", "transformers", "invarlock_core")},
    }
    return hashlib.sha256(json.dumps(question, sort_keys=True, default=str).encode()).hexdigest()[:16]
