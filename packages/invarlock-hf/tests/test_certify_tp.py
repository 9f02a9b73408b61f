"""Tensor-parallel certify and run: ``torchrun --nproc-per-node 2 -m invarlock ...`` with gloo on CPU.

The demo model (demo/model) is certified against a slightly perturbed copy on two ranks with
``--tp-plan auto`` and in one process; the scores agree within the documented tolerance, rank 0
alone writes and prints, a refusal on one rank stops both, and ``invarlock run`` with an edit
restores each rank's shards bit for bit. What each rank writes is observed with an audit hook
(a ``sitecustomize`` on the ranks' PYTHONPATH), not assumed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
import transformers

from invarlock.cli import main

DEMO = Path(__file__).resolve().parents[3] / "demo" / "model"
WORLD = 2
WINDOWS = ("--windows", "32", "--seq-len", "64")
NLL_TOLERANCE = 1e-5
"""Largest difference of a window's mean NLL (nats per token) between TP and one process (docs/certify.md)."""
RATIO_TOLERANCE = 1e-6
"""Largest relative difference of the perplexities and the ratio."""

pytestmark = [
    pytest.mark.skipif(
        int(transformers.__version__.split(".")[0]) < 5,
        reason="tensor parallelism on CPU (gloo) with tp_plan='auto' is tested on transformers 5",
    ),
    pytest.mark.skipif(not torch.distributed.is_available(), reason="this torch has no torch.distributed"),
]

WRITES_HOOK = """
import os, sys
_log = os.environ["TP_WRITES_LOG"] + "-rank" + os.environ.get("RANK", "x")
_watched = os.environ["TP_WRITES_WATCHED"]
_flags = os.O_WRONLY | os.O_RDWR | os.O_CREAT
def _hook(event, args):
    if event == "open" and args and isinstance(args[0], (str, bytes, os.PathLike)):
        path = os.fsdecode(args[0])
        mode, flags = args[1] or "", args[2] or 0
        if path != _log and path.startswith(_watched) and (any(m in mode for m in "wax+") or flags & _flags):
            with open(_log, "a", encoding="utf-8") as log:
                log.write(path + "\\n")
sys.addaudithook(_hook)
"""


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A subject (the demo model, its MLP weights perturbed slightly) and the writes hook."""
    root = tmp_path_factory.mktemp("tp-certify")
    model = transformers.AutoModelForCausalLM.from_pretrained(DEMO).eval()
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if ".mlp." in name:
                parameter.add_(torch.randn(parameter.shape, generator=generator) * 1e-3)
    model.save_pretrained(root / "subject")
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (root / "subject" / name).write_bytes((DEMO / name).read_bytes())
    (root / "hook").mkdir()
    (root / "hook" / "sitecustomize.py").write_text(WRITES_HOOK)
    return root


def torchrun(work: Path, *command: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "TRANSFORMERS_VERBOSITY": "error",
        "PYTHONPATH": os.pathsep.join([str(work / "hook"), os.environ.get("PYTHONPATH", "")]),
        "TP_WRITES_LOG": str(work / "writes"),
        "TP_WRITES_WATCHED": str(work),
    }
    for rank in range(WORLD):
        Path(f"{work / 'writes'}-rank{rank}").unlink(missing_ok=True)
    return subprocess.run(
        [
            *(sys.executable, "-m", "torch.distributed.run", "--standalone"),
            *("--nproc-per-node", str(WORLD), "-m", "invarlock", *command),
        ],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,  # a guard against a hang, not a timing: a run takes seconds
        check=False,
    )


def writes(work: Path, rank: int) -> list[str]:
    log = Path(f"{work / 'writes'}-rank{rank}")
    return log.read_text().splitlines() if log.exists() else []


def certify_args(work: Path, out: Path) -> list[str]:
    subject = str(work / "subject")
    return ["certify", "--baseline", str(DEMO), "--subject", subject, *WINDOWS, "--out", str(out)]


@pytest.fixture(scope="module")
def single(work: Path) -> dict[str, Any]:
    out = work / "single"
    assert main(certify_args(work, out)) == 0
    document: dict[str, Any] = json.loads((out / "certificate.json").read_text())
    return document


@pytest.fixture(scope="module")
def tensor_parallel(work: Path) -> tuple[subprocess.CompletedProcess[str], Path]:
    out = work / "tp"
    return torchrun(work, *certify_args(work, out), "--tp-plan", "auto", "--json"), out


def test_tp_certify_passes_on_every_rank_and_scores_like_one_process(
    tensor_parallel: tuple[subprocess.CompletedProcess[str], Path], single: dict[str, Any]
) -> None:
    done, out = tensor_parallel
    assert done.returncode == 0, done.stderr[-4000:]  # torchrun: 0 only when every rank exited 0
    printed = json.loads(done.stdout)  # one document: rank 0 alone printed
    written = json.loads((out / "certificate.json").read_text())
    assert printed == written
    assert written["verdict"] == single["verdict"] == "PASS"
    tp, one = written["stats"], single["stats"]
    assert tp["windows"] == one["windows"] and tp["tokens"] == one["tokens"]
    for key in ("ratio", "baseline_ppl", "subject_ppl"):
        assert tp[key] == pytest.approx(one[key], rel=RATIO_TOLERANCE), key
    assert one["ratio"] != 1.0  # the subject differs: the comparison is not of two equal scores
    pairs = list(zip(tp["per_window"], one["per_window"], strict=True))
    assert all(a["id"] == b["id"] for a, b in pairs)
    worst = max(abs(a[side] - b[side]) for a, b in pairs for side in ("baseline", "subject"))
    assert worst <= NLL_TOLERANCE, worst


def test_tp_certificate_records_the_degree_the_mesh_and_proves_every_shard(
    tensor_parallel: tuple[subprocess.CompletedProcess[str], Path],
) -> None:
    written = json.loads((tensor_parallel[1] / "certificate.json").read_text())
    assert written["tensor_parallel"] == {"world_size": WORLD, "backend": "gloo", "written_by_rank": 0}
    assert written["load_options"]["tp_plan"] == "auto"
    for side in ("baseline", "subject"):
        assert written[side]["description"]["tensor_parallel"] == {"degree": WORLD, "mesh_shapes": [[WORLD]]}
        weights = written[side]["weights"]
        assert weights["differing"] == [] and weights["equal"] == weights["compared"] > 0, weights
    assert all(check["passed"] for check in written["invariants"]["checks"])


def test_only_rank_0_writes(tensor_parallel: tuple[subprocess.CompletedProcess[str], Path]) -> None:
    out = tensor_parallel[1]
    lead = writes(out.parent, 0)  # staged files, renamed into place
    assert lead and all(path.startswith(str(out)) for path in lead), lead
    assert writes(out.parent, 1) == []
    assert sorted(p.name for p in out.iterdir()) == ["certificate.html", "certificate.json", "certificate.md"]


def test_a_refusal_on_one_rank_stops_every_rank(work: Path) -> None:
    blocker = work / "a-file"
    blocker.write_text("not a directory")
    done = torchrun(work, *certify_args(work, blocker / "out"), "--tp-plan", "auto")
    assert done.returncode != 0
    assert "invarlock: error [output_unwritable]" in done.stderr, done.stderr[-4000:]  # rank 0's own
    assert "[rank_failed]: rank 0 of 2 stopped with [output_unwritable]" in done.stderr  # rank 1's
    assert "exitcode  : 2" in done.stderr
    assert "SIGABRT" not in done.stderr, "a rank aborted at exit instead of exiting with its status"
    assert writes(work, 0) == writes(work, 1) == []


def test_tp_plan_without_torchrun_is_refused(work: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*certify_args(work, work / "never"), "--tp-plan", "auto"]) == 2
    assert "[tensor_parallel_invalid]" in capsys.readouterr().err
    assert not (work / "never").exists()


def test_run_with_an_edit_restores_every_ranks_shards_bit_exactly(work: Path) -> None:
    config = work / "run.yaml"
    config.write_text(
        f"model: {{id: {DEMO}, device: cpu, tp_plan: auto}}\n"
        "dataset: {provider: pydoc, split: eval, seq_len: 64, windows: 32}\n"
        "edit: {name: quant_rtn, plan: {bitwidth: 2, group_size: 32}}\n"
        "context: {snapshot: {mode: chunked}}\n"
        f"output: {{dir: {work / 'run'}}}\n"
    )
    done = torchrun(work, "run", "--config", str(config), "--json")
    report = json.loads(done.stdout)  # rank 0 alone printed
    assert report["verdict"] == "FAIL" and "exitcode  : 1" in done.stderr, done.stderr[-4000:]
    assert report["tensor_parallel"]["world_size"] == WORLD
    assert report["edit"]["summary"]["modules"] > 0
    # Each rank proved its own shards against their pre-edit sha256 (a rank whose proof failed, or
    # differed from rank 0's, would have stopped every rank with an error instead of this report).
    restore = report["restore"]
    assert restore["performed"] and restore["verified"] and restore["tensors"] > 0, restore
    assert writes(work, 1) == []
