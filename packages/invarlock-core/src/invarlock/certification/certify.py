"""``invarlock certify``: is the subject as good as its baseline? The evidence, as a certificate.

Flow: resolve each side's adapter on its own → load the corpus → load and compare tokenizers →
hash the baseline's files and look it up in the baseline cache (:mod:`.cache`); on a miss, load the
baseline, describe it, build the windows, score them, prove its weights and store the result →
load the subject, describe it, score the same windows, comparing its distributions with the
baseline's as it goes → the shared evaluate-and-judge step
(:mod:`.evaluate`) → the certificate (a dict; see :mod:`invarlock.certification.certificate` for
writing it). Models are loaded one at a time.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import shlex
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from invarlock.certification import cache, identity, preflight, sides, tokenizers
from invarlock.certification.cache import BaselineCache
from invarlock.certification.certificate import CERTIFICATE_SCHEMA
from invarlock.certification.context import environment, plugins_block
from invarlock.certification.datasets import EMBEDDED, Corpus, load_corpus
from invarlock.certification.evaluate import (
    Evaluation,
    ScoredModel,
    WindowSettings,
    judge_pair,
    max_positions,
    plan_evaluation,
    plan_windows,
)
from invarlock.certification.evaluation.gate import GatePolicy, InvariantCheck
from invarlock.certification.evaluation.scoring import Framing
from invarlock.certification.evaluation.windows import token_stream
from invarlock.certification.progress import Progress
from invarlock.certification.ranks import SINGLE, Ranks
from invarlock.certification.structure_change import StructureChange
from invarlock.certification.weights import WeightProof, weights_check
from invarlock.description import _ranges as index_ranges
from invarlock.errors import InvarlockError, RoleMismatchError


@dataclass(frozen=True)
class CertifyOptions:
    baseline: sides.SideOptions = field(default_factory=sides.SideOptions)
    subject: sides.SideOptions = field(default_factory=sides.SideOptions)
    """Each side's adapter, device and load options, on its own (a bf16 baseline on GPUs against a
    4-bit subject; ``base``/``merge`` for a PEFT subject)."""
    dataset: str = EMBEDDED
    split: str | None = None
    text_field: str = "text"
    windows: WindowSettings = field(default_factory=WindowSettings)
    policy: GatePolicy = field(default_factory=GatePolicy)
    cache: bool = True
    """Look the baseline up in the baseline cache (:mod:`.cache`) and store it there on a miss."""
    structure_change: StructureChange | None = None
    """The structure change the subject is declared to make (``--declare-edit``): the structure
    invariant then holds it to exactly that."""

    @classmethod
    def for_both(
        cls,
        adapter: str = sides.AUTO,
        device: str = sides.AUTO,
        load_options: Mapping[str, Any] | None = None,
        **settings: Any,
    ) -> CertifyOptions:
        """Both sides loaded alike (one adapter, device and set of load options)."""
        side = sides.SideOptions(adapter, device, dict(load_options or {}))
        return cls(baseline=side, subject=side, **settings)


def certify(
    baseline_id: str,
    subject_id: str,
    options: CertifyOptions,
    progress: Progress | None = None,
    command: Sequence[str] | None = None,
    ranks: Ranks = SINGLE,
) -> dict[str, Any]:
    """Compare ``subject_id`` with ``baseline_id``; returns the certificate (verdict inside).

    ``command`` is the command line that asked for it (recorded in ``invocation``). Under
    ``torchrun`` every rank calls this with its ``ranks`` (see :mod:`.ranks`): the ranks meet
    before each load and each forward pass, and every rank returns the same certificate."""
    progress = progress or Progress(enabled=False)
    started = time.monotonic()
    options.windows.require_enough_windows(options.policy)
    base_side, subj_side = options.baseline, options.subject
    same_device = base_side.device == subj_side.device
    for model_id, side, side_options in (
        (baseline_id, "baseline", base_side),
        (subject_id, "subject", subj_side),
    ):
        preflight.check_device(side_options.device, "--device" if same_device else f"--{side}-option device")
        given = side_options.load_options
        preflight.check_model_location(model_id, side, given.get("revision"), given.get("cache_dir"))
    base_adapter = sides.choose_adapter(
        baseline_id, base_side.adapter, flag="--adapter", load_options=base_side.load_options, side="baseline"
    )
    subject_flag = "--subject-adapter" if subj_side.adapter != base_side.adapter else "--adapter"
    subj_adapter = sides.choose_adapter(
        subject_id, subj_side.adapter, flag=subject_flag, load_options=subj_side.load_options, side="subject"
    )
    corpus = load_corpus(options.dataset, split=options.split, text_field=options.text_field)

    backends = sides.backends_to_import(base_adapter, subj_adapter)
    if backends:  # the first seconds of a run are these imports, not reading tokenizer files
        progress.step(f"importing {', '.join(backends)}")
        sides.import_backends(backends)
    progress.step("loading tokenizers")
    tokenizer = sides.load_tokenizer(base_adapter, baseline_id, "baseline", base_side.load_options)
    base_fp = tokenizers.fingerprint(tokenizer)
    subject_note = None
    appended: list[str] = []
    try:
        subj_tokenizer = sides.load_tokenizer(subj_adapter, subject_id, "subject", subj_side.load_options)
    except InvarlockError as exc:
        subject_note = f"the subject has no loadable tokenizer ({exc}); it was scored with the baseline's"
    else:
        appended = tokenizers.appended_tokens(tokenizer, subj_tokenizer)
        tokenizers.compare(base_fp, tokenizers.fingerprint(subj_tokenizer), appended=bool(appended))
    stream = token_stream(tokenizer, corpus)

    found = _baseline(baseline_id, base_adapter, tokenizer, corpus, stream, options, progress, ranks)
    baseline, base_description, base_content, evaluation = (
        found.scored,
        found.scored.description,
        found.content,
        found.evaluation,
    )
    role = base_description["role"]
    declared = options.structure_change
    if declared:
        declared.check_applies_to(base_description)

    progress.step(f"loading subject with {subj_adapter.name}")
    ranks.checkpoint()
    model = sides.load_model(subj_adapter, subject_id, "subject", subj_side.device, subj_side.load_options)
    subj_description = subj_adapter.adapter.describe(model)
    if appended:
        tokenizers.check_declared(appended, subj_description, declared, base_description["vocab_size"])
    if subj_description["role"] != role:
        raise RoleMismatchError(
            f"the subject is a {subj_description['role']} model but the baseline is {role}; "
            "certify compares two models of one role"
        )
    subject = evaluation.score(
        ranks.before_each_forward(subj_adapter.adapter),
        model,
        subj_description,
        progress,
        "scoring subject",
        baseline=baseline,
    )
    subj_content = read_side(subject_id, model, subj_side.load_options, "subject", subj_description, progress)
    del model
    sides.free_memory()
    progress.finish()

    judgement = judge_pair(
        options.policy,
        baseline,
        subject,
        seed=options.windows.seed,
        extra_checks=[base_content.weights_check, subj_content.weights_check],
        declared=declared,
    )
    evidence = judgement.evidence()
    if base_content.manifest.digest == subj_content.manifest.digest:
        evidence["reasons"].append(
            "subject is byte-identical to the baseline: both checkpoints have the content digest "
            f"{base_content.manifest.digest[:16]}… ({len(base_content.manifest.files)} files)"
        )
    base_record, subj_record = _recorded(base_side), _recorded(subj_side)
    shared = {k: v for k, v in base_record.items() if k in subj_record and subj_record[k] == v}
    subject_own = {k: v for k, v in subj_record.items() if k not in shared}
    certificate: dict[str, Any] = {
        "schema": CERTIFICATE_SCHEMA,
        "certificate_id": "",
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "duration_s": round(time.monotonic() - started, 3),
        **evidence,
        "baseline": _side(baseline_id, base_adapter, base_description, base_content, base_record),
        "subject": _side(subject_id, subj_adapter, subj_description, subj_content, subj_record),
        "load_options": shared,
        "invocation": invocation(baseline_id, subject_id, options, command),
        **({"subject_load_options": subject_own} if subject_own else {}),
        **({"tensor_parallel": ranks.info()} if ranks.distributed else {}),
        "tokenizer": tokenizers.block(base_fp, subject_note, appended),
        "baseline_cache": found.cache_block,
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
    weights: dict[str, Any] | None
    """The proof of the loaded weights (:meth:`WeightProof.info`); None without PyTorch weights."""
    weights_check: InvariantCheck


def read_side(
    model_id: str,
    model: Any,
    load_options: Mapping[str, Any],
    side: str,
    description: Mapping[str, Any],
    progress: Progress | None = None,
) -> SideContent:
    """Hash the checkpoint's files and prove the loaded weights against them, in one read."""
    proof = WeightProof.of(model)
    manifest = _hash(_location(model_id, load_options), side, proof, progress)
    safetensors = sum(f.path.endswith(identity.SAFETENSORS) for f in manifest.files)
    peft = description.get("peft")
    partial = f"an adapter over the base {peft.get('base')}" if isinstance(peft, Mapping) else None
    check = weights_check(side, proof, safetensors, partial_by_design=partial)
    return SideContent(manifest, proof.info() if proof is not None else None, check)


def _hash(
    location: identity.CheckpointLocation,
    side: str,
    proof: WeightProof | None,
    progress: Progress | None,
) -> identity.Manifest:
    progress = progress or Progress(enabled=False)
    total = sum((location.root / name).stat().st_size for name in location.files())
    what = "hashing {side} files, proving weights" if proof is not None else "hashing {side} files"
    progress.start(what.format(side=side), total, unit="MB")
    return identity.read_checkpoint(
        location, proof.visit if proof is not None else None, on_bytes=progress.advance
    )


def _location(model_id: str, load_options: Mapping[str, Any]) -> identity.CheckpointLocation:
    return identity.locate(model_id, load_options.get("revision"), load_options.get("cache_dir"))


@dataclass(frozen=True)
class FoundBaseline:
    """The scored baseline, from the cache or from loading it, and the windows it was scored on."""

    scored: ScoredModel
    content: SideContent
    evaluation: Evaluation
    cache_block: dict[str, Any]
    """The certificate's ``baseline_cache`` block."""
    max_positions: int | None = None
    """The baseline's position limit, when it was loaded (:func:`max_positions`)."""


def _baseline(
    baseline_id: str,
    chosen: sides.ChosenAdapter,
    tokenizer: Any,
    corpus: Corpus,
    stream: list[int],
    options: CertifyOptions,
    progress: Progress,
    ranks: Ranks,
) -> FoundBaseline:
    """The scored baseline. With the cache on, the baseline's files are hashed first and the cache
    asked (:mod:`.cache`); only on a miss is the model loaded, described, scored and proven, and the
    result stored. A hit costs the hashing and planning the windows: no load, no forward pass."""
    side = options.baseline
    if not options.cache or ranks.distributed:
        why = "disabled (--no-cache)" if not options.cache else "not used under tensor parallelism"
        block = {"enabled": False, "hit": False, "key": None, "path": None, "detail": why}
        return _score_baseline(
            baseline_id, chosen, tokenizer, corpus, stream, options, progress, block, ranks
        )
    store = BaselineCache()
    manifest = _hash(_location(baseline_id, side.load_options), "baseline", None, progress)
    parts = cache.model_parts(manifest.digest, chosen.info(), side.device, side.load_options)
    plan = store.get(cache.plan_key(parts))
    detail = plan.detail
    if plan.entry is not None:
        try:
            known = cache.BaselinePlan.from_meta(plan.entry.meta)
            framing = Framing(**{**known.framing, "seed": options.windows.seed})
        except (KeyError, TypeError, ValueError) as exc:
            detail = f"corrupt (its plan record is malformed: {exc})"
        else:
            evaluation = plan_windows(corpus, stream, framing, known.max_positions, options.windows)
            evaluation.require_enough_evidence(options.policy)
            key = cache.scores_key(parts, corpus, evaluation)
            lookup = store.get(key)
            detail = lookup.detail
            if lookup.entry is not None:
                try:
                    cached = cache.CachedBaseline.from_entry(lookup.entry)
                except (KeyError, TypeError, ValueError) as exc:
                    detail = f"corrupt (its record is malformed: {exc})"
                else:
                    block = _cache_block(True, key, store.path(key), "found; the baseline was not loaded")
                    content = SideContent(manifest, cached.weights, cached.weights_check)
                    return FoundBaseline(cached.scored, content, evaluation, block)
    found = _score_baseline(baseline_id, chosen, tokenizer, corpus, stream, options, progress, {}, ranks)
    if found.content.manifest.digest != manifest.digest:
        changed = "not stored: the baseline's files changed while it was scored"
        block = _cache_block(False, None, None, changed)
        return dataclasses.replace(found, cache_block=block)
    description = found.scored.description
    store.put(
        cache.plan_key(parts),
        cache.BaselinePlan(
            description["role"],
            {k: v for k, v in dataclasses.asdict(found.evaluation.framing).items() if k != "seed"},
            found.max_positions,
        ).meta(),
    )
    key = cache.scores_key(parts, corpus, found.evaluation)
    record = cache.CachedBaseline(found.scored, found.content.weights, found.content.weights_check)
    path = store.put(
        key,
        record.meta(parts, found.content.manifest.info(), found.evaluation.windows.info()),
        record.arrays(),
    )
    stored = "stored" if path is not None else "not stored (the cache is not writable)"
    reason = "no entry" if detail == "absent" else f"the entry was {detail}"
    block = _cache_block(False, key, path, f"{reason}; the baseline was scored and {stored}")
    return dataclasses.replace(found, cache_block=block)


def _cache_block(hit: bool, key: str | None, path: Path | None, detail: str) -> dict[str, Any]:
    return {"enabled": True, "hit": hit, "key": key, "path": str(path) if path else None, "detail": detail}


def _score_baseline(
    baseline_id: str,
    chosen: sides.ChosenAdapter,
    tokenizer: Any,
    corpus: Corpus,
    stream: list[int],
    options: CertifyOptions,
    progress: Progress,
    block: dict[str, Any],
    ranks: Ranks,
) -> FoundBaseline:
    side = options.baseline
    progress.step(f"loading baseline with {chosen.name}")
    ranks.checkpoint()
    model = sides.load_model(chosen, baseline_id, "baseline", side.device, side.load_options)
    description = chosen.adapter.describe(model)
    evaluation = plan_evaluation(tokenizer, corpus, stream, description["role"], model, options.windows)
    evaluation.require_enough_evidence(options.policy)
    scored = evaluation.score(
        ranks.before_each_forward(chosen.adapter), model, description, progress, "scoring baseline"
    )
    content = read_side(baseline_id, model, side.load_options, "baseline", description, progress)
    limit = max_positions(model)
    del model
    sides.free_memory()
    return FoundBaseline(scored, content, evaluation, block, limit)


def _recorded(side: sides.SideOptions) -> dict[str, Any]:
    """A side's device and load options as JSON values (an object passed from Python, a
    ``quantization_config`` say, is recorded as its text)."""
    recorded: dict[str, Any] = json.loads(json.dumps(side.record(), default=str))
    return recorded


def _side(
    model_id: str,
    chosen: sides.ChosenAdapter,
    description: Mapping[str, Any],
    content: SideContent,
    load_options: dict[str, Any],
) -> dict[str, Any]:
    return {
        "model_id": model_id,
        "adapter": chosen.info(),
        "load_options": load_options,
        "placement": placement(description.get("device_map")),
        "description": dict(description),
        "identity": content.manifest.info(),
        "weights": content.weights,
    }


_NUMBERED = re.compile(r"^(?P<stem>.*\.)(?P<index>\d+)$")


def placement(device_map: Mapping[str, str] | None) -> dict[str, list[str]] | None:
    """Where each part of a model placed by a device map ran: device (``cpu``, ``disk``, ``cuda:0``)
    -> its modules, numbered ones as ranges (``model.layers.0-11, 14``).
    None when the model was placed whole, on its one device."""
    if not device_map:
        return None
    by_device: dict[str, list[str]] = {}
    for module, device in device_map.items():
        by_device.setdefault(device, []).append(module)
    return {device: _ranges(modules) for device, modules in by_device.items()}


def _ranges(modules: list[str]) -> list[str]:
    numbered: dict[str, list[int]] = {}
    named: list[str] = []
    for module in modules:
        match = _NUMBERED.match(module)
        if match is None:
            named.append(module)
        else:
            if match["stem"] not in numbered:
                named.append(match["stem"])
            numbered.setdefault(match["stem"], []).append(int(match["index"]))
    return [f"{name}{index_ranges(numbered[name])}" if name in numbered else name for name in named]


def certificate_id(certificate: Mapping[str, Any]) -> str:
    """A digest of what the certificate is about (content, never path spelling): both sides' content
    digests, adapters and load options, the dataset's digest and windows, the metric (and the
    distribution metrics' top_k), the gate policy and the versions. Timestamps, timings and paths are
    left out, so the same question asked of the same files gets the same id wherever the files lie."""

    def side(block: Mapping[str, Any]) -> dict[str, Any]:
        adapter = block["adapter"]
        return {
            "digest": block["identity"]["digest"],
            "adapter": {k: adapter[k] for k in ("name", "distribution", "version", "backend")},
            "load_options": block["load_options"],
        }

    dataset = dict(certificate["dataset"])
    if "format" in dataset:
        dataset["source"] = "file"  # a local file is identified by its sha256, not its path
    policy = {
        k: v
        for k, v in certificate["gate"].items()
        if k not in ("passed", "ratio_passed", "distribution_passed")
    }
    environment = certificate["environment"]
    question = {
        "baseline": side(certificate["baseline"]),
        "subject": side(certificate["subject"]),
        "dataset": dataset,
        "metric": certificate["metric"],
        "gate": policy,
        "versions": {k: environment.get(k) for k in ("python", "torch", "transformers", "invarlock_core")},
    }
    if "distribution" in certificate:
        question["top_k"] = certificate["distribution"]["top_k"]
    declared = (certificate.get("structure_delta") or {}).get("declared")
    if declared:  # a declaration changes the question asked
        question["structure_change"] = {k: v for k, v in declared.items() if k != "sources"}
    return hashlib.sha256(json.dumps(question, sort_keys=True, default=str).encode()).hexdigest()[:16]
