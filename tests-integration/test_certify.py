"""`invarlock certify`, `invarlock run --config` and `invarlock describe` end to end, through the
real invarlock-hf adapters on tiny checkpoints built here (no hub, no network).

The tiny causal model is trained for a few seconds on the embedded corpus, so it predicts text:
8-bit round-to-nearest barely moves its perplexity, 2-bit moves it far past the gate (a random
model is no good for that: quantizing noise gives other noise of about the same perplexity).
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

import hashlib
import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from invarlock import hookimpl
from invarlock.adapters import Adapter, get_adapter
from invarlock.certification.datasets import embedded_corpus
from invarlock.certification.edits.quant_rtn import apply_quant_rtn
from invarlock.certification.run import SnapshotPlan, _restore_and_prove, state_digests
from invarlock.cli import main
from invarlock.errors import RestoreVerificationError
from invarlock.manager import DISABLE_ENV, reset_plugin_manager
from invarlock.testing import differing_tensors, full_state
from invarlock.types import AdapterSpec, GuardSupport, Role, SnapshotSupport

ROOT = Path(__file__).resolve().parents[1]
SCHEMAS = ROOT / "docs" / "schemas"
FAST = ["--windows", "32", "--seq-len", "48", "--bootstrap", "300", "--device", "cpu"]
"""The gate's minimum (32 windows, 1024 scored tokens): 32 windows of 47 scored next tokens."""
ROLES_FAST = ["--windows", "150", "--seq-len", "48", "--stride", "8", "--batch-size", "32"]
"""Masked and seq2seq score fewer tokens per window (7 and 24 of 48), so they need more windows."""
SPECIALS = {
    "eos_token": "</s>",
    "pad_token": "<pad>",
    "mask_token": "<mask>",
    "cls_token": "<cls>",
    "sep_token": "<sep>",
    "unk_token": "<unk>",
}


# -- fixtures -----------------------------------------------------------------------------------


def train_tokenizer(directory: Path, vocab_size: int) -> Any:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIALS.values()),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(embedded_corpus("train").documents[:10], trainer)
    wrapped = PreTrainedTokenizerFast(tokenizer_object=tokenizer, **SPECIALS)
    wrapped.save_pretrained(directory)
    return wrapped


def train(model: Any, tokenizer: Any, steps: int = 150) -> None:
    import random

    import torch

    stream: list[int] = []
    for ids in tokenizer(embedded_corpus("train").documents[:10], add_special_tokens=False)["input_ids"]:
        stream += ids
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    rng = random.Random(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matrices: one thread is faster, and unaffected by a busy machine
    try:
        for _ in range(steps):
            batch = torch.tensor([stream[s : s + 48] for s in rng.sample(range(len(stream) - 48), 16)])
            model(input_ids=batch, labels=batch).loss.backward()
            optimizer.step()
            optimizer.zero_grad()
    finally:
        torch.set_num_threads(threads)
    model.eval()


def save_model(kind: str, directory: Path, tokenizer: Any) -> Path:
    import torch
    from transformers import (
        BertConfig,
        BertForMaskedLM,
        LlamaConfig,
        LlamaForCausalLM,
        T5Config,
        T5ForConditionalGeneration,
    )

    torch.manual_seed(0)
    vocab = len(tokenizer)
    if kind == "causal":
        config = LlamaConfig(
            vocab_size=vocab,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=128,
            tie_word_embeddings=True,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
        model: Any = LlamaForCausalLM(config)
        train(model, tokenizer)
    elif kind == "masked_lm":
        config = BertConfig(
            vocab_size=vocab,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            max_position_embeddings=128,
            initializer_range=0.5,
            pad_token_id=tokenizer.pad_token_id,
        )
        model = BertForMaskedLM(config)
    else:
        config = T5Config(
            vocab_size=vocab,
            d_model=32,
            d_kv=8,
            d_ff=64,
            num_layers=2,
            num_decoder_layers=2,
            num_heads=4,
            initializer_factor=5.0,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
            decoder_start_token_id=tokenizer.pad_token_id,
        )
        model = T5ForConditionalGeneration(config)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("certify")


@pytest.fixture(scope="module")
def tokenizer(root: Path) -> Any:
    return train_tokenizer(root / "tokenizer", 400)


@pytest.fixture(scope="module")
def causal(root: Path, tokenizer: Any) -> Path:
    return save_model("causal", root / "causal", tokenizer)


def rtn_subject(baseline: Path, target: Path, bits: int) -> Path:
    model = get_adapter("hf_causal").load_model(baseline, device="cpu")
    apply_quant_rtn(model, bitwidth=bits, group_size=16)
    model.save_pretrained(target)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(baseline / name, target / name)
    return target


@pytest.fixture(scope="module")
def causal_rtn8(root: Path, causal: Path) -> Path:
    return rtn_subject(causal, root / "rtn8", 8)


@pytest.fixture(scope="module")
def causal_rtn2(root: Path, causal: Path) -> Path:
    return rtn_subject(causal, root / "rtn2", 2)


@pytest.fixture(scope="module")
def validate() -> Any:
    def check(document: dict[str, Any], schema: str) -> None:
        jsonschema.validate(document, json.loads((SCHEMAS / schema).read_text()))

    return check


@pytest.fixture
def fresh_plugins() -> Iterator[None]:
    """Tests that change the plugin set get the installed one back afterwards."""
    saved = os.environ.pop(DISABLE_ENV, None)
    yield
    os.environ.pop(DISABLE_ENV, None)
    if saved is not None:
        os.environ[DISABLE_ENV] = saved
    reset_plugin_manager()


def certify(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["certify", *args])
    out, err = capsys.readouterr()
    return code, out, err


def read_certificate(directory: Path) -> dict[str, Any]:
    return json.loads((directory / "certificate.json").read_text())


# -- certify ------------------------------------------------------------------------------------


def test_identical_models_pass_with_ratio_one(
    capsys: pytest.CaptureFixture[str], causal: Path, tmp_path: Path, validate: Any
) -> None:
    out_dir = tmp_path / "cert"
    code, out, _ = certify(
        capsys, "--baseline", str(causal), "--subject", str(causal), "--out", str(out_dir), *FAST
    )
    assert code == 0
    assert out.startswith("PASS: ppl ratio 1.0000")
    assert sorted(p.name for p in out_dir.iterdir()) == [
        "certificate.html",
        "certificate.json",
        "certificate.md",
    ]
    cert = read_certificate(out_dir)
    validate(cert, "certificate.v1.json")
    assert cert["verdict"] == "PASS" and cert["exit_code"] == 0
    assert cert["stats"]["ratio"] == 1.0 and cert["stats"]["ci"] == [1.0, 1.0]
    assert cert["stats"]["windows"] == 32 and len(cert["dataset"]["windows"]["window_ids"]) == 32
    assert cert["metric"] == {"kind": "ppl_causal", "role": "causal"}
    assert cert["invariants"]["passed"]
    distribution = cert["distribution"]
    assert distribution["top_k"] == 16 and distribution["tokens"] == cert["stats"]["tokens"]
    assert distribution["kl"] == {"mean": 0.0, "ci": [0.0, 0.0], "p99": 0.0, "unit": "nats/token"}
    assert distribution["top1_agreement"] == {"rate": 1.0, "ci": [1.0, 1.0]}
    assert distribution["delta_p"] == {"rms": 0.0, "rms_ci": [0.0, 0.0], "max": 0.0}
    assert "lower bound of the exact KL" in distribution["approximation"]
    assert "KL 0.00000 nats/token" in out and "top-1 agreement 1.0000" in out
    assert cert["baseline"]["identity"] == {
        **cert["subject"]["identity"],
        "hashing": cert["baseline"]["identity"]["hashing"],
    }
    digest = cert["baseline"]["identity"]["digest"]
    assert (
        f"subject is byte-identical to the baseline: both checkpoints have the content digest {digest[:16]}"
        in cert["reasons"][-1]
    )
    files = {f["path"]: f for f in cert["baseline"]["identity"]["files"]}
    weights = (causal / "model.safetensors").read_bytes()
    assert files["model.safetensors"]["sha256"] == hashlib.sha256(weights).hexdigest()
    assert (
        files["model.safetensors"]["size"] == len(weights) and files["model.safetensors"]["kind"] == "weights"
    )
    assert files["config.json"]["kind"] == "config" and files["tokenizer.json"]["kind"] == "tokenizer"
    proof = cert["subject"]["weights"]
    assert (
        proof["compared"] == proof["equal"] > 0 and not proof["differing"] and not proof["newly_initialised"]
    )
    checks = {c["name"]: c for c in cert["invariants"]["checks"]}
    assert checks["weights_match_checkpoint_subject"]["passed"]
    assert cert["invocation"]["argv"][:3] == ["invarlock", "certify", "--baseline"]
    assert cert["invocation"]["options"]["windows"]["windows"] == 32
    for side in ("baseline", "subject"):
        adapter = cert[side]["adapter"]
        assert adapter["name"] == "hf_causal" and adapter["distribution"] == "invarlock-hf"
        assert "LlamaForCausalLM" in adapter["reason"]
        assert set(adapter["backend"]) == {"transformers", "torch"}
    listed = {a["name"]: a for a in cert["plugins"]["adapters"]}
    assert listed["hf_causal"]["status"] == "ready" and listed["hf_causal"]["distribution"] == "invarlock-hf"
    assert {"hf_bnb", "hf_gptq", "hf_awq", "hf_causal_onnx"} <= set(listed), "every known adapter is listed"


# -- per-side load options and accelerate placement ---------------------------------------------

OFFLOAD_MEMORY = {"cpu": "100KB"}
"""Room on the CPU for the embeddings and little more: accelerate puts the rest on disk."""


def offload_flags(tmp_path: Path) -> list[str]:
    folder = str(tmp_path / "offload")
    return ["--device-map", "auto", "--max-memory", json.dumps(OFFLOAD_MEMORY), "--offload-folder", folder]


def test_offloaded_certify_scores_what_the_in_memory_one_scores(
    capsys: pytest.CaptureFixture[str], causal: Path, causal_rtn8: Path, tmp_path: Path, validate: Any
) -> None:
    pair = ["--baseline", str(causal), "--subject", str(causal_rtn8)]
    certify(capsys, *pair, "--out", str(tmp_path / "memory"), *FAST)
    code, out, _ = certify(
        capsys, *pair, "--out", str(tmp_path / "offloaded"), *FAST, *offload_flags(tmp_path)
    )
    memory, offloaded = read_certificate(tmp_path / "memory"), read_certificate(tmp_path / "offloaded")
    validate(offloaded, "certificate.v1.json")
    assert code == 0, out
    for key in ("baseline_ppl", "subject_ppl", "ratio", "mean_delta_log_loss"):
        assert offloaded["stats"][key] == pytest.approx(memory["stats"][key], rel=1e-6, abs=1e-9), key
    assert offloaded["stats"]["ci"] == pytest.approx(memory["stats"]["ci"], rel=1e-6)
    recorded = {
        "device": "cpu",
        "device_map": "auto",
        "max_memory": OFFLOAD_MEMORY,
        "offload_folder": str(tmp_path / "offload"),
    }
    for side in ("baseline", "subject"):
        block = offloaded[side]
        assert block["load_options"] == recorded
        assert set(block["placement"]) == {"cpu", "disk"}, block["placement"]
        assert "model.embed_tokens" in block["placement"]["cpu"]
        assert memory[side]["placement"] is None and memory[side]["load_options"] == {"device": "cpu"}
        assert block["weights"]["transformed"], "disk-offloaded weights are listed, not compared"
        assert not block["weights"]["differing"]
    assert offloaded["load_options"] == recorded and "subject_load_options" not in offloaded
    assert offloaded["certificate_id"] != memory["certificate_id"], "load options are part of the question"
    assert "baseline placement: cpu: model.embed_tokens" in out and "disk: " in out
    markdown = (tmp_path / "offloaded" / "certificate.md").read_text()
    assert (
        "| placement | cpu: model.embed_tokens" in markdown
        and "| loaded with | device cpu; device_map auto" in markdown
    )


def test_each_side_is_loaded_with_its_own_options(
    capsys: pytest.CaptureFixture[str], causal: Path, causal_rtn8: Path, tmp_path: Path, validate: Any
) -> None:
    baseline = [
        f"--baseline-option={option}"
        for option in ("device_map=auto", f"max_memory={json.dumps(OFFLOAD_MEMORY)}")
    ]
    code, out, _ = certify(
        capsys,
        "--baseline", str(causal), "--subject", str(causal_rtn8), "--out", str(tmp_path), *FAST,
        *baseline, "--baseline-option", f"offload_folder={tmp_path / 'offload'}",
        "--subject-option", "dtype=float32",
    )  # fmt: skip
    cert = read_certificate(tmp_path)
    validate(cert, "certificate.v1.json")
    assert code == 0, out
    assert set(cert["baseline"]["placement"]) == {"cpu", "disk"} and cert["subject"]["placement"] is None
    assert cert["subject"]["load_options"] == {"device": "cpu", "dtype": "float32"}
    assert cert["baseline"]["load_options"]["device_map"] == "auto"
    assert cert["load_options"] == {"device": "cpu"}, "top level: what both sides share"
    assert cert["subject_load_options"] == {"dtype": "float32"}
    assert "subject placement" not in out and "baseline placement: " in out


def test_a_load_option_the_adapter_does_not_accept_is_refused_before_loading(
    capsys: pytest.CaptureFixture[str], causal: Path, tmp_path: Path
) -> None:
    code, _, err = certify(
        capsys, "--baseline", str(causal), "--subject", str(causal), "--out", str(tmp_path / "out"), *FAST,
        "--subject-option", "device_mapp=auto",
    )  # fmt: skip
    assert code == 2 and not (tmp_path / "out").exists()
    assert "[load_option_invalid]" in err
    assert "load option 'device_mapp' of the subject is not one adapter hf_causal accepts" in err
    assert "did you mean device_map?" in err
    code, _, err = certify(
        capsys, "--baseline", str(causal), "--subject", str(causal), "--out", str(tmp_path / "out"), *FAST,
        "--baseline-option", "num_hidden_layers=1",
    )  # fmt: skip
    assert code == 2 and "'num_hidden_layers' of the baseline is not one adapter hf_causal accepts" in err


def test_windows_and_certificate_id_are_identical_across_runs_and_path_spellings(
    capsys: pytest.CaptureFixture[str], causal: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runs = []
    monkeypatch.chdir(causal.parent)
    for name, spelling in (("a", str(causal)), ("b", f"./{causal.name}/")):
        certify(capsys, "--baseline", spelling, "--subject", spelling, "--out", str(tmp_path / name), *FAST)
        runs.append(read_certificate(tmp_path / name))
    assert runs[1]["baseline"]["model_id"] == f"./{causal.name}/"
    assert runs[0]["dataset"]["windows"] == runs[1]["dataset"]["windows"]
    assert runs[0]["stats"]["per_window"] == runs[1]["stats"]["per_window"]
    assert runs[0]["certificate_id"] == runs[1]["certificate_id"]


def test_a_tensor_missing_from_the_checkpoint_fails_the_weights_invariant(
    capsys: pytest.CaptureFixture[str], causal: Path, tmp_path: Path, validate: Any
) -> None:
    """A loader that initialises a tensor anew (here: the file lacks it) is caught, and named."""
    from safetensors.torch import load_file, save_file

    shutil.copytree(causal, tmp_path / "holed")
    weights = tmp_path / "holed" / "model.safetensors"
    tensors = load_file(weights)
    del tensors["model.norm.weight"]
    save_file(tensors, weights, metadata={"format": "pt"})
    code, _, _ = certify(
        capsys,
        "--baseline",
        str(causal),
        "--subject",
        str(tmp_path / "holed"),
        "--out",
        str(tmp_path / "c"),
        *FAST,
    )
    cert = read_certificate(tmp_path / "c")
    validate(cert, "certificate.v1.json")
    assert code == 1 and cert["verdict"] == "FAIL"
    assert cert["subject"]["weights"]["newly_initialised"] == ["model.norm.weight"]
    checks = {c["name"]: c for c in cert["invariants"]["checks"]}
    assert not checks["weights_match_checkpoint_subject"]["passed"]
    assert "model.norm.weight" in checks["weights_match_checkpoint_subject"]["detail"]
    assert checks["weights_match_checkpoint_baseline"]["passed"]


def test_a_dtype_conversion_at_load_is_declared(
    capsys: pytest.CaptureFixture[str], causal: Path, tmp_path: Path
) -> None:
    code, _, _ = certify(
        capsys,
        "--baseline",
        str(causal),
        "--subject",
        str(causal),
        "--out",
        str(tmp_path),
        *FAST,
        "--dtype",
        "bfloat16",
    )
    cert = read_certificate(tmp_path)
    assert code == 0
    proof = cert["baseline"]["weights"]
    assert proof["equal"] == 0 and len(proof["converted"]) == proof["compared"] > 0
    assert set(proof["converted"].values()) == {"F32 -> torch.bfloat16"}
    checks = {c["name"]: c for c in cert["invariants"]["checks"]}
    assert (
        "after declared dtype conversion (F32 -> torch.bfloat16)"
        in checks["weights_match_checkpoint_baseline"]["detail"]
    )


def test_a_hub_id_from_the_cache_records_its_revision(causal: Path, tmp_path: Path) -> None:
    """A hub id is read from the local Hugging Face cache; its snapshot's commit is the revision."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "models--acme--tiny"
    shutil.copytree(causal, repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    env = {**os.environ, "HF_HUB_CACHE": str(tmp_path / "hub"), "HF_HUB_OFFLINE": "1"}
    env.pop("INVARLOCK_ALLOW_NETWORK", None)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "invarlock.cli",
            "certify",
            "--baseline",
            str(causal),
            "--subject",
            "acme/tiny",
            "--out",
            str(tmp_path / "c"),
            *FAST,
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    cert = read_certificate(tmp_path / "c")
    hub = cert["subject"]["identity"]
    assert hub["source"] == "hub-cache" and hub["repo_id"] == "acme/tiny" and hub["revision"] == commit
    assert hub["digest"] == cert["baseline"]["identity"]["digest"], "the same files, wherever they lie"
    assert cert["baseline"]["identity"]["revision"] is None
    verified = subprocess.run(
        [sys.executable, "-m", "invarlock.cli", "verify", str(tmp_path / "c")],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert verified.returncode == 0, verified.stdout + verified.stderr
    missing = subprocess.run(
        [
            sys.executable,
            "-m",
            "invarlock.cli",
            "certify",
            "--baseline",
            str(causal),
            "--subject",
            "acme/absent",
            "--out",
            str(tmp_path / "d"),
            *FAST,
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert (
        missing.returncode == 2
        and "[model_not_found]: subject acme/absent is not a directory here" in missing.stderr
    )


def test_8bit_rtn_subject_passes(
    capsys: pytest.CaptureFixture[str], causal: Path, causal_rtn8: Path, tmp_path: Path
) -> None:
    code, out, _ = certify(
        capsys, "--baseline", str(causal), "--subject", str(causal_rtn8), "--out", str(tmp_path), *FAST
    )
    cert = read_certificate(tmp_path)
    assert code == 0, out
    assert 0.97 < cert["stats"]["ratio"] < 1.03
    assert cert["stats"]["ratio"] != 1.0, "the 8-bit edit changed the weights"
    assert cert["tokenizer"]["shared"]
    kl, top1 = cert["distribution"]["kl"], cert["distribution"]["top1_agreement"]
    assert 0 < kl["ci"][0] <= kl["mean"] <= kl["ci"][1] < 0.01 and kl["p99"] > kl["mean"]
    assert 0.9 < top1["ci"][0] <= top1["rate"] <= top1["ci"][1] <= 1.0
    assert cert["gate"]["max_kl"] is None and cert["gate"]["distribution_passed"] is None


def test_2bit_rtn_subject_fails_with_exit_1(
    capsys: pytest.CaptureFixture[str], causal: Path, causal_rtn2: Path, tmp_path: Path, validate: Any
) -> None:
    code, out, _ = certify(
        capsys, "--baseline", str(causal), "--subject", str(causal_rtn2), "--out", str(tmp_path), *FAST
    )
    assert code == 1
    assert out.startswith("FAIL: ppl ratio")
    cert = read_certificate(tmp_path)
    validate(cert, "certificate.v1.json")
    assert cert["verdict"] == "FAIL" and cert["exit_code"] == 1
    assert cert["stats"]["ci"][1] > 1.10
    assert "exceeds 1.1" in cert["reasons"][0]
    assert cert["invariants"]["passed"], "quantization keeps structure, tying and finite weights"
    markdown = (tmp_path / "certificate.md").read_text()
    assert markdown.startswith("# InvarLock certificate: ❌ FAIL")
    assert cert["distribution"]["kl"]["mean"] > 0.1
    assert cert["distribution"]["top1_agreement"]["rate"] < 0.9
    assert "| KL(baseline‖subject), mean |" in markdown


def test_distribution_gates_fail_a_subject_the_ratio_passes(
    capsys: pytest.CaptureFixture[str], causal: Path, causal_rtn8: Path, tmp_path: Path, validate: Any
) -> None:
    gates = ["--max-kl", "0", "--min-top1-agreement", "1"]
    code, out, _ = certify(
        capsys,
        "--baseline",
        str(causal),
        "--subject",
        str(causal_rtn8),
        "--out",
        str(tmp_path),
        *FAST,
        *gates,
    )
    cert = read_certificate(tmp_path)
    validate(cert, "certificate.v1.json")
    assert code == 1 and cert["verdict"] == "FAIL"
    gate = cert["gate"]
    assert gate["ratio_passed"] and not gate["distribution_passed"]
    assert (gate["max_kl"], gate["min_top1_agreement"]) == (0.0, 1.0)
    assert "mean KL's 95% interval <= 0 nats/token" in gate["rule"]
    assert "upper bound exceeds 0" in cert["reasons"][1] and cert["reasons"][1].startswith("mean KL ")
    assert "lower bound below 1" in cert["reasons"][2]
    assert "upper bound exceeds 0" in out


def test_top_k_0_turns_the_distribution_metrics_off_and_a_distribution_gate_is_refused(
    capsys: pytest.CaptureFixture[str], causal: Path, tmp_path: Path, validate: Any
) -> None:
    code, _, _ = certify(
        capsys,
        "--baseline",
        str(causal),
        "--subject",
        str(causal),
        "--out",
        str(tmp_path),
        *FAST,
        "--top-k",
        "0",
    )
    cert = read_certificate(tmp_path)
    validate(cert, "certificate.v1.json")
    assert code == 0 and "distribution" not in cert
    code, _, err = certify(
        capsys,
        "--baseline",
        str(causal),
        "--subject",
        str(causal),
        "--out",
        str(tmp_path / "gated"),
        *FAST,
        "--top-k",
        "0",
        "--max-kl",
        "0.1",
    )
    assert_usage_error(
        code, err, tmp_path / "gated", "argument_invalid", "--max-kl gates a distribution metric"
    )


def test_gate_threshold_is_configurable(
    capsys: pytest.CaptureFixture[str], causal: Path, causal_rtn2: Path, tmp_path: Path
) -> None:
    code, _, _ = certify(
        capsys,
        "--baseline",
        str(causal),
        "--subject",
        str(causal_rtn2),
        "--out",
        str(tmp_path),
        *FAST,
        "--max-ratio",
        "1000",
    )
    assert code == 0
    assert read_certificate(tmp_path)["gate"]["max_ratio"] == 1000


def test_too_little_evidence_is_inconclusive_only_when_asked_and_never_passes(
    capsys: pytest.CaptureFixture[str], causal: Path, tmp_path: Path, validate: Any
) -> None:
    short = ["--windows", "40", "--seq-len", "16", "--bootstrap", "300", "--device", "cpu"]  # 40 x 15 tokens
    code, _, err = certify(
        capsys, "--baseline", str(causal), "--subject", str(causal), "--out", str(tmp_path / "r"), *short
    )
    assert_usage_error(code, err, tmp_path / "r", "[insufficient_evidence]", "600 scored token(s)")
    for windows in (["--windows", "1"], []):
        out_dir = tmp_path / f"i{len(windows)}"
        args = [*short, *windows, "--allow-inconclusive"]
        code, out, _ = certify(
            capsys, "--baseline", str(causal), "--subject", str(causal), "--out", str(out_dir), *args
        )
        cert = read_certificate(out_dir)
        validate(cert, "certificate.v1.json")
        assert code == 1 and out.startswith("INCONCLUSIVE: ppl ratio 1.0000")
        assert cert["verdict"] == "INCONCLUSIVE" and cert["exit_code"] == 1 and not cert["gate"]["passed"]
        assert cert["gate"]["min_windows"] == 32 and cert["gate"]["min_tokens"] == 1024
        assert cert["gate"]["allow_inconclusive"] and cert["reasons"][1].startswith("INCONCLUSIVE: ")
        assert (out_dir / "certificate.md").read_text().startswith("# InvarLock certificate: ⚠️ INCONCLUSIVE")
        assert (
            '<header class="verdict INCONCLUSIVE">\n<h1><span class="word">INCONCLUSIVE</span>'
            in (out_dir / "certificate.html").read_text()
        )


def test_html_certificate_is_standalone(
    capsys: pytest.CaptureFixture[str], causal: Path, causal_rtn2: Path, tmp_path: Path
) -> None:
    certify(capsys, "--baseline", str(causal), "--subject", str(causal_rtn2), "--out", str(tmp_path), *FAST)
    page = (tmp_path / "certificate.html").read_text()
    assert page.startswith("<!DOCTYPE html>")
    assert '<header class="verdict FAIL">\n<h1><span class="word">FAIL</span>' in page
    for fetch in ("<script", "<link", "src=", "@import", "url("):
        assert fetch not in page
    # three charts (interval, per-window, histogram), each drawn for wide and narrow screens
    assert page.count("<svg") == 6 and page.count("<title>window ") == 2 * 32
    assert "model_type" in page and "kv_heads_per_layer" in page and "invarlock_core" in page


def test_json_flag_prints_the_certificate(
    capsys: pytest.CaptureFixture[str], causal: Path, tmp_path: Path
) -> None:
    code, out, err = certify(
        capsys, "--baseline", str(causal), "--subject", str(causal), "--out", str(tmp_path), *FAST, "--json"
    )
    assert code == 0
    assert json.loads(out) == read_certificate(tmp_path)
    assert err == ""


def test_subject_without_tokenizer_is_scored_with_the_baseline_tokenizer(
    capsys: pytest.CaptureFixture[str], causal: Path, causal_rtn8: Path, tmp_path: Path
) -> None:
    bare = tmp_path / "bare"
    shutil.copytree(causal_rtn8, bare, ignore=shutil.ignore_patterns("tokenizer*"))
    code, _, _ = certify(
        capsys, "--baseline", str(causal), "--subject", str(bare), "--out", str(tmp_path / "c"), *FAST
    )
    assert code == 0
    tokenizer = read_certificate(tmp_path / "c")["tokenizer"]
    assert tokenizer["shared"] is False and "baseline's" in tokenizer["note"]


@pytest.mark.parametrize("kind", ["masked_lm", "seq2seq"])
def test_subject_without_tokenizer_files_of_any_role_falls_back_to_the_baseline_tokenizer(
    capsys: pytest.CaptureFixture[str], root: Path, tokenizer: Any, tmp_path: Path, kind: str
) -> None:
    # transformers 5 builds a near-empty tokenizer for such a directory; the files decide instead.
    baseline = save_model(kind, root / f"{kind}-fallback", tokenizer)
    bare = tmp_path / "bare"
    shutil.copytree(baseline, bare, ignore=shutil.ignore_patterns("tokenizer*"))
    code, _, err = certify(
        capsys,
        "--baseline",
        str(baseline),
        "--subject",
        str(bare),
        "--out",
        str(tmp_path / "c"),
        *FAST,
        *(ROLES_FAST if kind != "causal" else []),
    )
    assert code == 0, err
    block = read_certificate(tmp_path / "c")["tokenizer"]
    assert block["shared"] is False
    assert block["note"].startswith(f"the subject has no loadable tokenizer ({bare} holds no tokenizer files")
    assert block["note"].endswith("it was scored with the baseline's")


@pytest.mark.parametrize("kind", ["masked_lm", "seq2seq"])
def test_other_roles_use_their_own_metric(
    capsys: pytest.CaptureFixture[str], root: Path, tokenizer: Any, tmp_path: Path, kind: str, validate: Any
) -> None:
    baseline = save_model(kind, root / kind, tokenizer)
    subject = tmp_path / "subject"
    model = get_adapter("hf_auto").load_model(baseline, device="cpu")
    apply_quant_rtn(model, bitwidth=2, group_size=16)
    model.save_pretrained(subject)
    tokenizer.save_pretrained(subject)

    code, _, _ = certify(
        capsys,
        "--baseline",
        str(baseline),
        "--subject",
        str(baseline),
        "--out",
        str(tmp_path / "same"),
        *FAST,
        *ROLES_FAST,
    )
    same = read_certificate(tmp_path / "same")
    validate(same, "certificate.v1.json")
    assert code == 0 and same["stats"]["ratio"] == 1.0
    expected = {"masked_lm": "ppl_mlm", "seq2seq": "ppl_seq2seq"}[kind]
    assert same["metric"]["kind"] == expected and same["metric"]["role"] == kind
    assert same["baseline"]["adapter"]["name"] == {"masked_lm": "hf_mlm", "seq2seq": "hf_seq2seq"}[kind]
    if kind == "masked_lm":
        assert same["metric"]["mask_fraction"] == 0.15
        # 46 body tokens (48 less [CLS] and [SEP]): 7 masked per window.
        assert {w["tokens"] for w in same["stats"]["per_window"]} == {7}
    else:
        assert {w["tokens"] for w in same["stats"]["per_window"]} == {24}

    code, _, _ = certify(
        capsys,
        "--baseline",
        str(baseline),
        "--subject",
        str(subject),
        "--out",
        str(tmp_path / "edited"),
        *FAST,
        *ROLES_FAST,
    )
    edited = read_certificate(tmp_path / "edited")
    assert edited["stats"]["ratio"] != 1.0
    assert same["distribution"]["tokens"] == same["stats"]["tokens"], "the scored positions: labels kept"
    assert same["distribution"]["kl"]["mean"] == 0.0 and same["distribution"]["top1_agreement"]["rate"] == 1.0
    assert (
        edited["distribution"]["kl"]["mean"] > 0
        and edited["distribution"]["tokens"] == edited["stats"]["tokens"]
    )
    assert code == (0 if edited["gate"]["passed"] else 1)


# -- errors: one sentence, exit 2, nothing written ----------------------------------------------


def assert_usage_error(code: int, err: str, out_dir: Path, *fragments: str) -> None:
    assert code == 2
    assert err.startswith("invarlock: error [")
    assert err.count("\n") == 1, err
    for fragment in fragments:
        assert fragment in err
    assert not out_dir.exists() or not any(out_dir.iterdir()), "no partial certificate"


def test_missing_baseline_or_subject_path(
    capsys: pytest.CaptureFixture[str], causal: Path, tmp_path: Path
) -> None:
    out_dir = tmp_path / "out"
    code, _, err = certify(
        capsys, "--baseline", str(tmp_path / "nope"), "--subject", str(causal), "--out", str(out_dir)
    )
    assert_usage_error(code, err, out_dir, "[model_not_found]", "baseline path", "does not exist")
    code, _, err = certify(
        capsys, "--baseline", str(causal), "--subject", str(tmp_path / "gone"), "--out", str(out_dir)
    )
    assert_usage_error(code, err, out_dir, "subject path")


def test_a_device_torch_lacks_is_refused_before_loading(
    capsys: pytest.CaptureFixture[str], causal: Path, tmp_path: Path
) -> None:
    import torch

    out_dir = tmp_path / "out"
    absent = "cuda" if not torch.cuda.is_available() else f"cuda:{torch.cuda.device_count()}"
    for device, fragment in (
        (absent, "has no cuda device here" if absent == "cuda" else "sees"),
        ("banana", "not a device"),
    ):
        code, _, err = certify(
            capsys,
            "--baseline",
            str(causal),
            "--subject",
            str(causal),
            "--out",
            str(out_dir),
            "--device",
            device,
        )
        assert_usage_error(code, err, out_dir, "[device_unavailable]", f"--device {device}", fragment)


def test_tokenizers_differ(
    capsys: pytest.CaptureFixture[str], root: Path, causal: Path, tmp_path: Path
) -> None:
    other = tmp_path / "other"
    shutil.copytree(causal, other)
    train_tokenizer(other, 300)
    out_dir = tmp_path / "out"
    code, _, err = certify(
        capsys, "--baseline", str(causal), "--subject", str(other), "--out", str(out_dir), *FAST
    )
    assert_usage_error(code, err, out_dir, "[tokenizer_mismatch]", "vocabularies differ")


@pytest.mark.parametrize(
    ("content", "message"),
    [("", "is empty"), ("far too short", "too short for one window of 48")],
)
def test_dataset_empty_or_too_short(
    capsys: pytest.CaptureFixture[str], causal: Path, tmp_path: Path, content: str, message: str
) -> None:
    data = tmp_path / "data.txt"
    data.write_text(content)
    out_dir = tmp_path / "out"
    code, _, err = certify(
        capsys,
        "--baseline",
        str(causal),
        "--subject",
        str(causal),
        "--dataset",
        str(data),
        "--out",
        str(out_dir),
        *FAST,
    )
    assert_usage_error(code, err, out_dir, "[dataset_invalid]", message)


def test_local_text_and_jsonl_datasets(
    capsys: pytest.CaptureFixture[str], causal: Path, tmp_path: Path
) -> None:
    text = "\n\n".join(embedded_corpus("eval").documents[:3])
    (tmp_path / "d.txt").write_text(text)
    (tmp_path / "d.jsonl").write_text(json.dumps({"body": text}) + "\n")
    certify(
        capsys,
        "--baseline",
        str(causal),
        "--subject",
        str(causal),
        "--dataset",
        str(tmp_path / "d.txt"),
        "--out",
        str(tmp_path / "t"),
        *FAST,
    )
    certify(
        capsys,
        "--baseline",
        str(causal),
        "--subject",
        str(causal),
        "--dataset",
        str(tmp_path / "d.jsonl"),
        "--text-field",
        "body",
        "--out",
        str(tmp_path / "j"),
        *FAST,
    )
    from_text, from_jsonl = read_certificate(tmp_path / "t"), read_certificate(tmp_path / "j")
    assert from_text["dataset"]["source"].endswith("d.txt")
    assert from_text["dataset"]["sha256"] == from_jsonl["dataset"]["sha256"]
    assert from_text["stats"]["per_window"] == from_jsonl["stats"]["per_window"]


def test_adapter_unavailable(
    capsys: pytest.CaptureFixture[str],
    causal: Path,
    tmp_path: Path,
    fresh_plugins: None,
) -> None:
    out_dir = tmp_path / "out"
    code, _, err = certify(
        capsys,
        "--baseline",
        str(causal),
        "--subject",
        str(causal),
        "--subject-adapter",
        "hf_nope",
        "--out",
        str(out_dir),
    )
    assert_usage_error(code, err, out_dir, "no adapter named 'hf_nope'")
    os.environ[DISABLE_ENV] = "invarlock-hf"
    reset_plugin_manager()
    code, _, err = certify(capsys, "--baseline", str(causal), "--subject", str(causal), "--out", str(out_dir))
    # Disabled, not missing: the error says so and gives no install advice.
    assert_usage_error(code, err, out_dir, "hf is disabled by INVARLOCK_DISABLE_PLUGINS")
    assert "pip install" not in err


def test_describe(capsys: pytest.CaptureFixture[str], causal: Path) -> None:
    assert main(["describe", str(causal), "--device", "cpu", "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["adapter"]["name"] == "hf_causal"
    assert document["description"]["n_layer"] == 2 and document["description"]["kv_heads_per_layer"] == [2, 2]
    assert main(["describe", str(causal), "--device", "cpu"]) == 0
    text = capsys.readouterr().out
    assert "adapter hf_causal" in " ".join(text.split())  # the heading wraps at 80 columns with the path
    assert "layers 0-1 full 4/2 heads" in text, "layer ranges are grouped, with query/KV heads"


# -- run --config -------------------------------------------------------------------------------


def write_config(tmp_path: Path, model: Path, edit: str, mode: str = "auto", adapter: str = "auto") -> Path:
    path = tmp_path / "run.yaml"
    path.write_text(
        f"""
model:
  id: {model}
  adapter: {adapter}
  device: cpu
  dtype: float32
dataset:
  seq_len: 48
  windows: 32
  seed: 3
eval:
  gate:
    bootstrap: 300
{edit}
context:
  snapshot:
    mode: {mode}
output:
  dir: {tmp_path / "runs"}
"""
    )
    return path


def run(capsys: pytest.CaptureFixture[str], config: Path) -> tuple[int, str, str]:
    code = main(["run", "--config", str(config)])
    out, err = capsys.readouterr()
    return code, out, err


def read_report(tmp_path: Path) -> dict[str, Any]:
    return json.loads((tmp_path / "runs" / "evaluation.report.json").read_text())


def test_run_noop_passes_with_exactly_one(
    capsys: pytest.CaptureFixture[str], causal: Path, tmp_path: Path, validate: Any
) -> None:
    code, out, _ = run(capsys, write_config(tmp_path, causal, "edit:\n  name: noop"))
    assert code == 0, out
    report = read_report(tmp_path)
    validate(report, "report.v1.json")
    assert report["stats"]["ratio"] == 1.0
    assert report["snapshot"]["mode"] == "memory" and "fits twice" in report["snapshot"]["reason"]
    assert report["restore"]["performed"] is False
    assert {a["name"] for a in report["context"]["plugins"]["adapters"]} >= {"hf_causal", "hf_auto"}
    assert report["config"]["model"]["dtype"] == "float32"
    assert report["distribution"]["kl"]["mean"] == 0.0 and report["config"]["eval"]["top_k"] == 16


@pytest.mark.parametrize("mode", ["memory", "chunked"])
def test_run_failing_edit_is_restored_and_proved(
    capsys: pytest.CaptureFixture[str], causal: Path, tmp_path: Path, validate: Any, mode: str
) -> None:
    edit = "edit:\n  name: quant_rtn\n  plan:\n    bitwidth: 2\n    group_size: 16"
    code, out, _ = run(capsys, write_config(tmp_path, causal, edit, mode))
    assert code == 1
    assert "restored: restored from the" in out
    report = read_report(tmp_path)
    validate(report, "report.v1.json")
    assert report["verdict"] == "FAIL"
    assert report["snapshot"]["mode"] == mode
    restore = report["restore"]
    assert restore["performed"] and restore["verified"] is True
    assert restore["tensors"] > 0
    assert report["edit"]["summary"]["modules"] == 14 and report["edit"]["summary"]["bitwidth"] == 2
    assert report["distribution"]["kl"]["mean"] > 0.1, "the edited model was compared with the unedited one"
    assert not list(tmp_path.glob("invarlock-snapshot-*")), "chunked snapshots are removed"


def test_run_passing_edit_keeps_the_edit(
    capsys: pytest.CaptureFixture[str], causal: Path, tmp_path: Path
) -> None:
    edit = "edit:\n  name: quant_rtn\n  plan:\n    bits: 8\n    group_size: 16"
    code, _, _ = run(capsys, write_config(tmp_path, causal, edit))
    assert code == 0
    report = read_report(tmp_path)
    assert report["restore"]["performed"] is False
    assert 0.97 < report["stats"]["ratio"] < 1.03


def test_restore_proof_catches_a_restore_that_did_nothing(causal: Path) -> None:
    adapter = get_adapter("hf_causal")
    model = adapter.load_model(causal, device="cpu")
    reference = state_digests(model)
    snapshot = adapter.snapshot(model)
    before = full_state(model)
    apply_quant_rtn(model, bitwidth=2, group_size=16)

    class NoRestore(Adapter):
        name = "hf_causal"

        def restore(self, model: Any, snapshot: Any) -> None:
            return None

    with pytest.raises(RestoreVerificationError, match=r"tensor\(s\) differ from the baseline"):
        _restore_and_prove(NoRestore(), model, SnapshotPlan("memory", "test"), snapshot, reference)
    proof = _restore_and_prove(adapter, model, SnapshotPlan("memory", "test"), snapshot, reference)
    assert proof["verified"] is True
    assert not differing_tensors(before, full_state(model))


def test_run_config_errors_exit_2(capsys: pytest.CaptureFixture[str], causal: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(f"model:\n  id: {causal}\n  trust_remote_code: yes please\n")
    code, _, err = run(capsys, bad)
    assert_usage_error(
        code, err, tmp_path / "runs", "[config_invalid]", "'model.trust_remote_code' must be true or false"
    )
    bad.write_text(f"model:\n  id: {causal}\nguards:\n  order: [invariants]\n")
    code, _, err = run(capsys, bad)
    assert_usage_error(code, err, tmp_path / "runs", "unknown key 'guards'")


class InferenceOnlyPlugin:
    """A third-party plugin whose adapter, like ONNX, can only evaluate."""

    @staticmethod
    @hookimpl
    def invarlock_register_adapters() -> list[AdapterSpec]:
        return [
            AdapterSpec(
                "sample_onnx",
                Role.CAUSAL,
                Adapter,
                ("invarlock-core",),
                snapshot=SnapshotSupport.NO,
                guards=GuardSupport.EVAL_ONLY,
            )
        ]


def test_inference_only_adapter_with_an_edit_is_refused_before_any_work(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, fresh_plugins: None
) -> None:
    reset_plugin_manager([("sample-onnx", InferenceOnlyPlugin)])
    edit = "edit:\n  name: quant_rtn\n  plan:\n    bitwidth: 4"
    missing_model = tmp_path / "not-even-there"
    code, _, err = run(capsys, write_config(tmp_path, missing_model, edit, adapter="sample_onnx"))
    assert_usage_error(code, err, tmp_path / "runs", "[edit_refused]", "sample_onnx is inference-only")


# -- the baseline cache -------------------------------------------------------------------------
# Each test has its own cache directory (conftest.py); within a test, certify runs share it.


def cached_certify(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, name: str, baseline: Path, subject: Path, *extra: str
) -> tuple[dict[str, Any], str]:
    code, _, err = certify(
        capsys,
        "--baseline",
        str(baseline),
        "--subject",
        str(subject),
        "--out",
        str(tmp_path / name),
        *FAST,
        *extra,
    )
    assert code in (0, 1), err
    return read_certificate(tmp_path / name), err


def judged(cert: dict[str, Any]) -> dict[str, Any]:
    """What a certificate concludes, without when, how long, or where the baseline came from."""
    return {
        key: cert[key]
        for key in (
            "verdict",
            "reasons",
            "stats",
            "gate",
            "invariants",
            "dataset",
            "metric",
            "certificate_id",
        )
    } | {"baseline": {k: v for k, v in cert["baseline"].items() if k != "identity"}}


@pytest.fixture
def loads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The model ids certify loads (through the real loader), in order."""
    from invarlock.certification import sides

    loaded: list[str] = []
    real = sides.load_model

    def load_model(chosen: Any, model_id: str, *args: Any) -> Any:
        loaded.append(model_id)
        return real(chosen, model_id, *args)

    monkeypatch.setattr(sides, "load_model", load_model)
    return loaded


def test_a_second_certify_takes_the_baseline_from_the_cache_without_loading_it(
    capsys: pytest.CaptureFixture[str],
    causal: Path,
    causal_rtn8: Path,
    tmp_path: Path,
    baseline_cache_dir: Path,
    loads: list[str],
    validate: Any,
) -> None:
    cold, _ = cached_certify(capsys, tmp_path, "cold", causal, causal_rtn8)
    assert loads == [str(causal), str(causal_rtn8)]
    miss = cold["baseline_cache"]
    assert (
        miss["enabled"]
        and not miss["hit"]
        and miss["detail"] == "no entry; the baseline was scored and stored"
    )
    assert Path(miss["path"]).is_file() and Path(miss["path"]).is_relative_to(baseline_cache_dir)
    warm, _ = cached_certify(capsys, tmp_path, "warm", causal, causal_rtn8)
    assert loads[2:] == [str(causal_rtn8)]  # the baseline was not loaded
    hit = warm["baseline_cache"]
    assert hit["hit"] and hit["key"] == miss["key"] and hit["path"] == miss["path"]
    assert hit["detail"] == "found; the baseline was not loaded"
    assert judged(warm) == judged(cold)
    assert warm["baseline"]["identity"]["digest"] == cold["baseline"]["identity"]["digest"]
    validate(warm, "certificate.v1.json")
    markdown = (tmp_path / "warm" / "certificate.md").read_text()
    assert f"**Baseline cache:** hit (key {hit['key'][:16]}…)" in markdown
    page = (tmp_path / "warm" / "certificate.html").read_text()
    assert "yes: the baseline was not scored again" in page and "found; the baseline was not loaded" in page


def test_any_change_to_the_key_misses(
    capsys: pytest.CaptureFixture[str], causal: Path, tmp_path: Path, loads: list[str]
) -> None:
    keys = set()
    for name, extra in (
        ("first", ()),
        ("bf16", ("--dtype", "bfloat16")),
        ("more-windows", ("--windows", "33")),
        ("shorter", ("--seq-len", "40")),
    ):
        cert, _ = cached_certify(capsys, tmp_path, name, causal, causal, *extra)
        assert not cert["baseline_cache"]["hit"], name
        keys.add(cert["baseline_cache"]["key"])
    assert len(keys) == 4
    again, _ = cached_certify(capsys, tmp_path, "again", causal, causal, "--dtype", "bfloat16")
    assert again["baseline_cache"]["hit"]


def test_a_one_byte_change_in_a_baseline_shard_misses(
    capsys: pytest.CaptureFixture[str], causal: Path, tmp_path: Path
) -> None:
    baseline = tmp_path / "baseline"
    shutil.copytree(causal, baseline)
    first, _ = cached_certify(capsys, tmp_path, "first", baseline, causal)
    shard = baseline / "model.safetensors"
    data = bytearray(shard.read_bytes())
    data[-1] ^= 0x01  # the lowest mantissa bit of the file's last weight
    shard.write_bytes(bytes(data))
    changed, _ = cached_certify(capsys, tmp_path, "changed", baseline, causal)
    assert not changed["baseline_cache"]["hit"]
    assert changed["baseline_cache"]["key"] != first["baseline_cache"]["key"]
    assert changed["baseline"]["identity"]["digest"] != first["baseline"]["identity"]["digest"]


def test_no_cache_neither_reads_nor_writes(
    capsys: pytest.CaptureFixture[str],
    causal: Path,
    tmp_path: Path,
    baseline_cache_dir: Path,
    loads: list[str],
) -> None:
    cached_certify(capsys, tmp_path, "stored", causal, causal)
    stored = sorted(baseline_cache_dir.rglob("*"))
    cert, _ = cached_certify(capsys, tmp_path, "off", causal, causal, "--no-cache")
    assert cert["baseline_cache"] == {
        "enabled": False,
        "hit": False,
        "key": None,
        "path": None,
        "detail": "disabled (--no-cache)",
    }
    assert loads == [str(causal)] * 4
    assert sorted(baseline_cache_dir.rglob("*")) == stored


@pytest.mark.parametrize("damage", ["flipped byte", "truncated"])
def test_a_corrupt_entry_is_ignored_warned_and_rewritten(
    capsys: pytest.CaptureFixture[str], causal: Path, causal_rtn8: Path, tmp_path: Path, damage: str
) -> None:
    first, _ = cached_certify(capsys, tmp_path, "first", causal, causal_rtn8)
    entry = Path(first["baseline_cache"]["path"])
    data = bytearray(entry.read_bytes())
    if damage == "flipped byte":
        data[len(data) // 2] ^= 0x40
    else:
        del data[-100:]
    entry.write_bytes(bytes(data))
    second, err = cached_certify(capsys, tmp_path, "second", causal, causal_rtn8)
    warning = (
        f"invarlock: warning: baseline cache entry {entry} is corrupt (its checksum does not match its "
        "content: truncated or altered); it is ignored, the baseline is scored again and the entry rewritten"
    )
    assert err.count("invarlock: warning:") == 1 and warning in err, err
    block = second["baseline_cache"]
    assert not block["hit"] and block["key"] == first["baseline_cache"]["key"]
    assert block["detail"].startswith("the entry was corrupt (its checksum") and block["detail"].endswith(
        "; the baseline was scored and stored"
    )
    assert judged(second) == judged(first)
    third, err = cached_certify(capsys, tmp_path, "third", causal, causal_rtn8)
    assert third["baseline_cache"]["hit"] and "warning" not in err
    assert judged(third) == judged(first)
