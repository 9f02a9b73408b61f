"""``invarlock run --config FILE.yaml``: edit a model and check the edit against the unedited model.

Flow: load → describe → score the unedited model → snapshot → edit → describe and score the
edited model → the shared evaluate-and-judge step (:mod:`.evaluate`) → if the gate fails, restore
from the snapshot and prove, tensor by tensor, that every weight is back to its baseline bytes →
evaluation.report.json.
An inference-only adapter (ONNX) with an edit that changes weights is refused before any work.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, cast

from invarlock import config as cfg
from invarlock.certification import preflight, sides
from invarlock.certification.certificate import REPORT_SCHEMA
from invarlock.certification.context import environment, plugins_block
from invarlock.certification.datasets import load_corpus
from invarlock.certification.edits import apply_edit, changes_weights
from invarlock.certification.evaluate import WindowSettings, judge_pair, plan_evaluation
from invarlock.certification.evaluation.gate import GatePolicy
from invarlock.certification.evaluation.scoring import METRIC_BY_ROLE
from invarlock.certification.evaluation.windows import token_stream
from invarlock.certification.progress import Progress
from invarlock.certification.ranks import SINGLE, Ranks, is_dtensor
from invarlock.certification.structure_change import StructureChange
from invarlock.certification.structure_change import parse as parse_structure_change
from invarlock.description import ModelDescription
from invarlock.errors import ConfigError, EditError, RestoreVerificationError
from invarlock.types import GuardSupport, SnapshotSupport

ALLOW_KEY = "set eval.gate.allow_inconclusive: true"
_DTYPE_BYTES = {"float64": 8, "float32": 4, "int32": 4, "float16": 2, "bfloat16": 2, "int8": 1, "uint8": 1}


@dataclass(frozen=True)
class SnapshotPlan:
    mode: str
    """``memory``, ``chunked`` or ``skipped``."""
    reason: str


def available_memory_bytes() -> int | None:
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def model_bytes(description: ModelDescription) -> int:
    return description["n_params"] * _DTYPE_BYTES.get(description["dtype"], 4)


def plan_snapshot(
    requested: str, description: ModelDescription, support: SnapshotSupport, edit: str
) -> SnapshotPlan:
    """Memory or chunked; ``auto`` picks chunked when the model would not fit twice in available RAM."""
    if support is SnapshotSupport.NO:
        return SnapshotPlan(
            "skipped", f"the adapter does not support snapshots and edit {edit} changes nothing"
        )
    if requested != "auto":
        return SnapshotPlan(requested, f"context.snapshot.mode is {requested}")
    size = model_bytes(description)
    free = available_memory_bytes()
    if free is None:
        return SnapshotPlan("memory", "auto: available RAM unknown, kept the snapshot in memory")
    sizes = f"model ~{size / 2**20:.1f} MiB, {free / 2**20:.0f} MiB RAM available"
    if 2 * size > free:
        return SnapshotPlan(
            "chunked", f"auto: {sizes}; the model would not fit twice, so the snapshot goes to disk"
        )
    return SnapshotPlan("memory", f"auto: {sizes}; the model fits twice, so the snapshot stays in memory")


def state_digests(model: Any) -> dict[str, str] | None:
    """sha256 of every tensor's bytes in the model's state dict, or None for non-PyTorch models
    (under tensor parallelism: of this rank's shard of each tensor)."""
    if not hasattr(model, "state_dict"):
        return None
    import torch

    digests: dict[str, str] = {}
    for name, tensor in model.state_dict().items():
        if not isinstance(tensor, torch.Tensor) or tensor.device.type == "meta":
            continue
        if is_dtensor(tensor):  # this rank's shard
            tensor = cast(Any, tensor).to_local()
        flat = tensor.detach().to("cpu").contiguous().reshape(-1)
        data = flat.view(torch.uint8) if flat.numel() else flat
        digests[name] = (
            f"{tensor.dtype}:{tuple(tensor.shape)}:" + hashlib.sha256(data.numpy().tobytes()).hexdigest()
        )
    return digests


def window_settings(config: Mapping[str, Any]) -> WindowSettings:
    dataset = config["dataset"]
    return WindowSettings(
        seq_len=dataset["seq_len"],
        stride=dataset["stride"],
        windows=cfg.window_count(config),
        seed=dataset["seed"],
        batch_size=config["eval"]["batch_size"],
        top_k=config["eval"]["top_k"],
    )


def gate_policy(config: Mapping[str, Any]) -> GatePolicy:
    gate = config["eval"]["gate"]
    return GatePolicy(
        gate["max_ratio"],
        gate["confidence"],
        gate["bootstrap"],
        allow_inconclusive=gate["allow_inconclusive"],
        max_kl=gate["max_kl"],
        min_top1_agreement=gate["min_top1_agreement"],
    )


def run(
    config: Mapping[str, Any],
    *,
    source: str = "config",
    progress: Progress | None = None,
    ranks: Ranks = SINGLE,
) -> dict[str, Any]:
    """Execute a checked configuration (see :func:`invarlock.config.load_config`); returns the report.

    Under ``torchrun`` (``model.tp_plan``) every rank runs this with its ``ranks``: each edits,
    snapshots, restores and proves its own shards, and the ranks meet before each collective."""
    progress = progress or Progress(enabled=False)
    started = time.monotonic()
    model_id = config["model"]["id"]
    edit_name = config["edit"]["name"]
    plan = cfg.edit_plan(config)
    load_options = cfg.load_options(config)
    dataset = config["dataset"]

    settings, policy = window_settings(config), gate_policy(config)
    settings.require_enough_windows(policy, flag="dataset.windows", allow=ALLOW_KEY)
    preflight.check_device(config["model"]["device"], flag="model.device")
    chosen = sides.choose_adapter(
        model_id, config["model"]["adapter"], flag="model.adapter", load_options=load_options
    )
    if changes_weights(edit_name) and (
        chosen.spec.guards is GuardSupport.EVAL_ONLY or chosen.spec.snapshot is SnapshotSupport.NO
    ):
        raise EditError(
            f"edit {edit_name} changes weights, but adapter {chosen.name} is inference-only (its models "
            "cannot be edited, snapshotted or restored); use edit noop, or a PyTorch adapter (hf_causal)"
        )
    preflight.check_model_location(
        model_id, "model", load_options.get("revision"), load_options.get("cache_dir")
    )
    spec, split = cfg.dataset_spec(config)
    corpus = load_corpus(spec, split=split, text_field=dataset["text_field"])

    backends = sides.backends_to_import(chosen)
    if backends:
        progress.step(f"importing {', '.join(backends)}")
        sides.import_backends(backends)
    progress.step(f"loading {model_id} with {chosen.name}")
    tokenizer = sides.load_tokenizer(chosen, model_id, "model", load_options)
    stream = token_stream(tokenizer, corpus)
    ranks.checkpoint()
    model = sides.load_model(chosen, model_id, "model", config["model"]["device"], load_options)
    adapter = ranks.before_each_forward(chosen.adapter)
    baseline_description = adapter.describe(model)
    role = baseline_description["role"]
    kind = config["eval"]["metric"]["kind"]
    if kind not in ("auto", METRIC_BY_ROLE[role]):
        raise ConfigError(
            f"{source}: 'eval.metric.kind' is {kind} but the model is {role}; "
            f"use {METRIC_BY_ROLE[role]} or auto"
        )
    evaluation = plan_evaluation(tokenizer, corpus, stream, role, model, settings)
    evaluation.require_enough_evidence(
        policy, "use more text, more windows (dataset.windows) or longer ones (dataset.seq_len)", ALLOW_KEY
    )
    declared = cfg.structure_change(config, source)
    if declared:
        declared.check_applies_to(baseline_description)
    baseline = evaluation.score(adapter, model, baseline_description, progress, "scoring unedited model")

    snapshot_plan = plan_snapshot(
        config["context"]["snapshot"]["mode"], baseline_description, chosen.spec.snapshot, edit_name
    )
    reference = state_digests(model) if snapshot_plan.mode != "skipped" else None
    snapshot: Any = None
    snapshot_root: Path | None = None
    try:
        progress.step(f"snapshot ({snapshot_plan.mode})")
        if snapshot_plan.mode == "memory":
            snapshot = adapter.snapshot(model)
        elif snapshot_plan.mode == "chunked":
            parent = config["context"]["snapshot"]["directory"]
            if parent:
                Path(parent).mkdir(parents=True, exist_ok=True)
            snapshot_root = Path(tempfile.mkdtemp(prefix="invarlock-snapshot-", dir=parent))
            snapshot = adapter.snapshot_chunked(model, snapshot_root)

        progress.step(f"applying edit {edit_name}")
        ranks.checkpoint()
        edit_summary = apply_edit(edit_name, model, plan)
        declared = declared.merged(edit_declaration(edit_name, edit_summary, baseline_description))
        edited_description = adapter.describe(model)
        edited = evaluation.score(
            adapter, model, edited_description, progress, "scoring edited model", baseline=baseline
        )
        progress.finish()

        judgement = judge_pair(policy, baseline, edited, seed=dataset["seed"], declared=declared)
        restore = {
            "performed": False,
            "verified": None,
            "tensors": None,
            "detail": "the gate passed; the edit is kept",
        }
        if not judgement.passed:
            progress.step("gate failed: restoring the unedited weights")
            restore = _restore_and_prove(adapter, model, snapshot_plan, snapshot, reference)
            progress.finish()
    finally:
        if snapshot_root is not None:
            shutil.rmtree(snapshot_root, ignore_errors=True)

    return {
        "schema": REPORT_SCHEMA,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "duration_s": round(time.monotonic() - started, 3),
        "config_path": source,
        "config": dict(config),
        **judgement.evidence(),
        "model": {"model_id": model_id, "adapter": chosen.info(), "description": dict(baseline_description)},
        "edit": {
            "name": edit_name,
            "plan": plan,
            "summary": edit_summary,
            "description": dict(edited_description),
        },
        "snapshot": {
            "requested": config["context"]["snapshot"]["mode"],
            "mode": snapshot_plan.mode,
            "reason": snapshot_plan.reason,
        },
        "restore": restore,
        "dataset": {**corpus.info(), "windows": evaluation.windows.info()},
        "metric": evaluation.framing.describe(),
        "context": {"plugins": plugins_block(), "environment": environment()},
        **({"tensor_parallel": ranks.info()} if ranks.distributed else {}),
    }


def edit_declaration(name: str, summary: Mapping[str, Any], baseline: Mapping[str, Any]) -> StructureChange:
    """The structure change an edit declares in its summary (``structure_change``, the format of
    :mod:`invarlock.certification.structure_change`), checked against the unedited model."""
    declared = parse_structure_change(summary.get("structure_change"), f"edit {name}")
    if declared:
        declared.check_applies_to(baseline)
    return declared


def _restore_and_prove(
    adapter: Any, model: Any, plan: SnapshotPlan, snapshot: Any, reference: dict[str, str] | None
) -> dict[str, Any]:
    if plan.mode == "skipped":
        return {"performed": False, "verified": None, "tensors": None, "detail": plan.reason}
    if plan.mode == "memory":
        adapter.restore(model, snapshot)
    else:
        adapter.restore_chunked(model, snapshot)
    after = state_digests(model)
    if reference is None or after is None:
        raise RestoreVerificationError(
            "the model was restored, but its weights cannot be read back to prove it; "
            "do not use this model object"
        )
    differing = sorted(
        name for name in reference.keys() | after.keys() if reference.get(name) != after.get(name)
    )
    if differing:
        raise RestoreVerificationError(
            f"after restoring, {len(differing)} tensor(s) differ from the baseline (e.g. {differing[0]}); "
            "the snapshot engine is faulty, so reload the model instead of reusing it"
        )
    return {
        "performed": True,
        "verified": True,
        "tensors": len(reference),
        "detail": f"restored from the {plan.mode} snapshot; "
        f"all {len(reference)} tensors match their pre-edit sha256",
    }
