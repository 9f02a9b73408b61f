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
            '<div class="verdict INCONCLUSIVE"><h1>INCONCLUSIVE</h1>'
            in (out_dir / "certificate.html").read_text()
        )


def test_html_certificate_is_standalone(
    capsys: pytest.CaptureFixture[str], causal: Path, causal_rtn2: Path, tmp_path: Path
) -> None:
    certify(capsys, "--baseline", str(causal), "--subject", str(causal_rtn2), "--out", str(tmp_path), *FAST)
    page = (tmp_path / "certificate.html").read_text()
    assert page.startswith("<!DOCTYPE html>")
    assert '<div class="verdict FAIL"><h1>FAIL</h1>' in page
    for fetch in ("<script", "<link", "src=", "@import", "url("):
        assert fetch not in page
    assert page.count("<svg") == 2 and page.count("<title>window ") == 32
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
    assert "adapter hf_causal" in text
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
