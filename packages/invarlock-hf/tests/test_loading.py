"""Loading: dtype names, devices, pass-through of from_pretrained arguments, errors, offline rules."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import huggingface_hub.constants
import pytest
import torch
import transformers
from packaging.version import Version

from invarlock.adapters import get_adapter
from invarlock.errors import (
    CheckpointConfigError,
    CheckpointNotADirectoryError,
    ImplausibleConfigError,
    InvalidLoadOptionError,
    ModelLoadError,
    ModelNotFoundError,
    NetworkDisabledError,
    RemoteCodeRefusedError,
    TokenizerNotFoundError,
    UnsafeCheckpointError,
)
from invarlock.network import ALLOW_NETWORK_ENV
from invarlock_hf.loading import from_pretrained_kwargs, parse_dtype, pick_device
from invarlock_hf.testing import save_tiny_tokenizer, tiny_model


def parameter_dtypes(model: Any) -> set[torch.dtype]:
    return {p.dtype for p in model.parameters()}


def parameter_devices(model: Any) -> set[str]:
    return {p.device.type for p in model.parameters()}


def file_digests(directory: str | Path) -> dict[str, str]:
    return {
        path.name: hashlib.sha256(path.read_bytes()).hexdigest() for path in sorted(Path(directory).iterdir())
    }


# -- dtype -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "dtype"),
    [
        ("float16", torch.float16),
        ("fp16", torch.float16),
        ("half", torch.float16),
        ("bfloat16", torch.bfloat16),
        ("bf16", torch.bfloat16),
        ("float32", torch.float32),
        ("fp32", torch.float32),
        ("FP16", torch.float16),
        ("torch.bfloat16", torch.bfloat16),
        (torch.float16, torch.float16),
    ],
)
def test_dtype_names(name: Any, dtype: torch.dtype) -> None:
    assert parse_dtype(name) is dtype


def test_dtype_auto_and_none() -> None:
    assert parse_dtype("auto") == "auto"
    assert parse_dtype(None) is None


def test_unknown_dtype_name_is_refused() -> None:
    with pytest.raises(ModelLoadError, match="float16"):
        parse_dtype("float12")


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"dtype": "bf16"}, torch.bfloat16),
        ({"torch_dtype": "fp16"}, torch.float16),
        ({"dtype": "half"}, torch.float16),
    ],
)
def test_dtype_option_loads_in_that_dtype(
    options: dict[str, Any], expected: torch.dtype, checkpoints: Any
) -> None:
    model = get_adapter("hf_causal").load_model(checkpoints.path("llama"), device="cpu", **options)
    assert parameter_dtypes(model) == {expected}


def test_dtype_auto_keeps_the_checkpoint_dtype(tmp_path: Path) -> None:
    tiny_model("llama").to(torch.bfloat16).save_pretrained(tmp_path)
    model = get_adapter("hf_causal").load_model(tmp_path, device="cpu", dtype="auto")
    assert parameter_dtypes(model) == {torch.bfloat16}


def test_dtype_and_torch_dtype_that_disagree_are_refused(checkpoints: Any) -> None:
    with pytest.raises(ModelLoadError, match="disagree"):
        get_adapter("hf_causal").load_model(checkpoints.path("llama"), dtype="fp16", torch_dtype="bf16")


def test_from_pretrained_gets_dtype_under_its_current_name() -> None:
    kwargs = from_pretrained_kwargs({"torch_dtype": "bf16", "revision": "main"})
    assert kwargs == {"dtype": torch.bfloat16, "revision": "main", "trust_remote_code": False}


# -- devices ---------------------------------------------------------------------------------------


def test_auto_device_prefers_cuda_then_mps_then_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert pick_device("auto") == "cuda"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert pick_device("auto") == "mps"
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert pick_device("auto") == "cpu"
    assert pick_device("cuda:1") == "cuda:1"


def test_device_moves_the_model(checkpoints: Any) -> None:
    # "meta" is a device every machine has: the weights really move there.
    model = get_adapter("hf_causal").load_model(checkpoints.path("llama"), device="meta")
    assert parameter_devices(model) == {"meta"}


def test_with_a_device_map_the_model_is_never_moved(checkpoints: Any) -> None:
    model = get_adapter("hf_causal").load_model(checkpoints.path("llama"), device="meta", device_map="cpu")
    assert parameter_devices(model) == {"cpu"}


def test_a_device_that_does_not_exist_is_a_load_error(checkpoints: Any) -> None:
    with pytest.raises(ModelLoadError, match="could not be moved to nonsense"):
        get_adapter("hf_causal").load_model(checkpoints.path("llama"), device="nonsense")


# -- pass-through and trust_remote_code ------------------------------------------------------------


def test_other_from_pretrained_arguments_pass_through(checkpoints: Any) -> None:
    adapter = get_adapter("hf_causal")
    model = adapter.load_model(checkpoints.path("llama"), device="cpu", attn_implementation="eager")
    assert model.config._attn_implementation == "eager"


def test_a_keyword_that_would_change_the_model_is_refused_before_loading(checkpoints: Any) -> None:
    # from_pretrained would take num_hidden_layers as a config override and build another model.
    with pytest.raises(
        InvalidLoadOptionError, match="'num_hidden_layers' is not one adapter hf_causal accepts"
    ):
        get_adapter("hf_causal").load_model(checkpoints.path("llama"), device="cpu", num_hidden_layers=1)
    with pytest.raises(InvalidLoadOptionError, match=r"did you mean attn_implementation\?"):
        get_adapter("hf_causal").load_model(
            checkpoints.path("llama"), device="cpu", attn_implementaton="eager"
        )


def test_tp_plan_reaches_from_pretrained_where_transformers_takes_it() -> None:
    kwargs = from_pretrained_kwargs({"tp_plan": "auto"})
    if Version(transformers.__version__) >= Version("5"):  # 5.x deprecates the bare keyword
        assert "tp_plan" not in kwargs and kwargs["distributed_config"].tp_plan == "auto"
    else:
        assert kwargs["tp_plan"] == "auto" and "distributed_config" not in kwargs
    assert "distributed_config" not in from_pretrained_kwargs({"dtype": "float32"})


def test_remote_code_is_refused_unless_trusted(remote_code_checkpoint: str) -> None:
    adapter = get_adapter("hf_causal")
    with pytest.raises(ModelLoadError, match="trust_remote_code"):
        adapter.load_model(remote_code_checkpoint, device="cpu")
    model = adapter.load_model(remote_code_checkpoint, device="cpu", trust_remote_code=True)
    assert type(model).__name__ == "TinyForCausalLM"


# -- errors ----------------------------------------------------------------------------------------


def test_wrong_head_class_fails_with_transformers_message(checkpoints: Any) -> None:
    path = checkpoints.path("bert")
    before = file_digests(path)
    with pytest.raises(ModelLoadError) as caught:
        get_adapter("hf_seq2seq").load_model(path, device="cpu")
    message = str(caught.value)
    assert "AutoModelForSeq2SeqLM" in message
    # transformers' own words inside ours, on one line and cut to a few hundred characters
    assert " ".join(str(caught.value.__cause__).split())[:200] in message
    assert "\n" not in message and len(message.replace(str(path), "PATH")) < 500  # the path is the tmp dir's
    assert caught.value.code == "load_failed"
    assert file_digests(path) == before


def test_a_failing_argument_is_reported_not_dropped(checkpoints: Any) -> None:
    """flash_attention_2 is not installed here: the load fails; it is never retried without it."""
    with pytest.raises(ModelLoadError, match=r"[Ff]lash"):
        get_adapter("hf_causal").load_model(
            checkpoints.path("llama"), device="cpu", attn_implementation="flash_attention_2"
        )


def test_truncated_weights_fail_cleanly(checkpoints: Any, tmp_path: Path) -> None:
    import shutil

    shutil.copytree(checkpoints.path("gpt2"), tmp_path, dirs_exist_ok=True)
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(ModelLoadError, match=str(tmp_path)):
        get_adapter("hf_causal").load_model(tmp_path, device="cpu")


# -- offline rules ---------------------------------------------------------------------------------


def test_uncached_hub_id_offline_names_the_switch() -> None:
    with pytest.raises(NetworkDisabledError) as caught:
        get_adapter("hf_causal").load_model("invarlock-tests/not-cached-anywhere", device="cpu")
    assert f"{ALLOW_NETWORK_ENV}=1" in str(caught.value)
    assert caught.value.code == "network_disabled"


@pytest.mark.parametrize("missing", ["./no/such/checkpoint/dir", "/no/such/checkpoint", "~/no/such/dir"])
@pytest.mark.parametrize("call", ["load_model", "load_tokenizer"])
def test_missing_local_path_is_not_found_not_a_network_error(missing: str, call: str) -> None:
    with pytest.raises(ModelNotFoundError) as caught:
        getattr(get_adapter("hf_causal"), call)(missing)
    assert caught.value.code == "model_not_found"
    message = str(caught.value)
    assert message.startswith(f"model path {missing} does not exist (")
    assert f"({os.path.abspath(os.path.expanduser(missing))}: " in message
    assert message.endswith("; pass an existing checkpoint directory or a hub id")


def test_network_allowed_but_hub_offline_names_hf_hub_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ALLOW_NETWORK_ENV, "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(NetworkDisabledError, match="HF_HUB_OFFLINE"):
        get_adapter("hf_causal").load_model("invarlock-tests/not-cached-anywhere", device="cpu")


def test_cached_hub_id_loads_offline(checkpoints: Any, hub_cache: Any) -> None:
    cache_dir = hub_cache(checkpoints.path("gpt2"), "invarlock-tests/tiny-gpt2")
    adapter = get_adapter("hf_auto")
    model = adapter.load_model("invarlock-tests/tiny-gpt2", device="cpu", cache_dir=str(cache_dir))
    assert adapter.describe(model)["model_type"] == "gpt2"


# -- tokenizers ------------------------------------------------------------------------------------


@pytest.mark.parametrize("adapter_name", ["hf_causal", "hf_auto"])
def test_tokenizer_loads_from_the_checkpoint(adapter_name: str, gpt2_with_tokenizer: str) -> None:
    tokenizer = get_adapter(adapter_name).load_tokenizer(gpt2_with_tokenizer)
    ids = tokenizer("w1 w2 w3")["input_ids"]
    assert len(ids) == 3
    assert tokenizer.decode(ids) == "w1 w2 w3"


def test_tokenizer_of_uncached_hub_id_offline_names_the_switch() -> None:
    with pytest.raises(NetworkDisabledError, match=f"{ALLOW_NETWORK_ENV}=1"):
        get_adapter("hf_mlm").load_tokenizer("invarlock-tests/not-cached-anywhere")


# -- the tokenizer files decide: GPT-2, BERT and T5 layouts ----------------------------------------

LAYOUT_WORDS = [f"w{i}" for i in range(40)]
LAYOUT_ADAPTER = {"gpt2": "hf_causal", "bert": "hf_mlm", "t5": "hf_seq2seq"}


def save_layout_tokenizer(family: str, directory: Path) -> None:
    """The files each family's original tokenizer ships as, trained locally on a few words."""
    text = [" ".join(LAYOUT_WORDS[i:] + LAYOUT_WORDS[:i]) for i in range(len(LAYOUT_WORDS))]
    if family == "gpt2":  # byte-level BPE: vocab.json + merges.txt
        from tokenizers import Tokenizer, models, pre_tokenizers, trainers

        bpe = Tokenizer(models.BPE())
        bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        trainer = trainers.BpeTrainer(
            vocab_size=300,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            special_tokens=["<|endoftext|>"],
        )
        bpe.train_from_iterator(text, trainer)
        bpe.model.save(str(directory))
    elif family == "bert":  # WordPiece: vocab.txt
        specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
        (directory / "vocab.txt").write_text("\n".join([*specials, *LAYOUT_WORDS]) + "\n")
    else:  # SentencePiece: spiece.model
        import sentencepiece

        sentencepiece.SentencePieceTrainer.train(
            sentence_iterator=iter(text),
            model_prefix=str(directory / "spiece"),
            vocab_size=60,
            pad_id=0,
            eos_id=1,
            unk_id=2,
            bos_id=-1,
            hard_vocab_limit=False,
            minloglevel=2,
        )


@pytest.fixture(scope="module")
def layouts(checkpoints: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path]]:
    """family -> (checkpoint with its tokenizer files, the same checkpoint without them)."""
    import shutil

    found = {}
    for family in LAYOUT_ADAPTER:
        bare = tmp_path_factory.mktemp(f"{family}-bare")
        shutil.copytree(checkpoints.path(family), bare, dirs_exist_ok=True)
        full = tmp_path_factory.mktemp(f"{family}-tokenizer")
        shutil.copytree(bare, full, dirs_exist_ok=True)
        save_layout_tokenizer(family, full)
        found[family] = (full, bare)
    return found


@pytest.mark.parametrize("family", list(LAYOUT_ADAPTER))
def test_a_directory_without_tokenizer_files_is_refused_not_given_an_empty_tokenizer(
    family: str, layouts: dict[str, tuple[Path, Path]]
) -> None:
    _, bare = layouts[family]
    for name in (LAYOUT_ADAPTER[family], "hf_auto"):
        with pytest.raises(TokenizerNotFoundError) as caught:
            get_adapter(name).load_tokenizer(bare)
        assert caught.value.code == "tokenizer_not_found"
        assert str(caught.value).startswith(f"{bare} holds no tokenizer files (tokenizer.json, ")
        assert "\n" not in str(caught.value)


@pytest.mark.parametrize("family", list(LAYOUT_ADAPTER))
def test_each_familys_own_tokenizer_files_load(family: str, layouts: dict[str, tuple[Path, Path]]) -> None:
    full, _ = layouts[family]
    tokenizer = get_adapter("hf_auto").load_tokenizer(full)
    ids = tokenizer("w1 w2 w3", add_special_tokens=False)["input_ids"]
    assert tokenizer.decode(ids).replace(" ", "") == "w1w2w3"
    assert tokenizer.unk_token_id not in ids
    assert len(tokenizer.get_vocab()) >= len(LAYOUT_WORDS)


# -- checkpoints refused before transformers sees them --------------------------------------------


def test_a_file_where_a_checkpoint_directory_is_expected(checkpoints: Any) -> None:
    weights = Path(checkpoints.path("gpt2")) / "model.safetensors"
    for call in ("load_model", "load_tokenizer"):
        with pytest.raises(CheckpointNotADirectoryError) as caught:
            getattr(get_adapter("hf_causal"), call)(weights)
        assert caught.value.code == "checkpoint_not_a_directory"
        assert str(caught.value) == (
            f"{weights} is a file, but a Hugging Face checkpoint is a directory (config.json, weights and "
            "tokenizer files); pass the directory that holds them"
        )


def copy_checkpoint(checkpoints: Any, family: str, target: Path, config_text: str | None = None) -> Path:
    import shutil

    shutil.copytree(checkpoints.path(family), target, dirs_exist_ok=True)
    if config_text is not None:
        (target / "config.json").write_text(config_text)
    return target


def edited_config(checkpoints: Any, family: str, **changes: Any) -> str:
    import json

    config = json.loads((Path(checkpoints.path(family)) / "config.json").read_text())
    config.update(changes)
    return json.dumps(config)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda text: text[:-5], "config.json is not valid JSON ("),
        (lambda text: "[1, 2]", "config.json must hold a JSON object of settings, not list"),
        (
            lambda text: text.replace('"architectures": [', '"architectures": "GPT2LMHeadModel", "x": ['),
            "config.json: 'architectures' must be a list of class names such as",
        ),
        (
            lambda text: text.replace("{", '{"quantization_config": "gptq", ', 1),
            "config.json: 'quantization_config' must be a mapping of quantization settings, got \"gptq\"",
        ),
        (
            lambda text: text.replace("{", '{"head_dim": "wide", ', 1),
            "config.json: 'head_dim' must be a whole number, got \"wide\"",
        ),
    ],
)
def test_a_malformed_config_json_is_one_error(
    checkpoints: Any, tmp_path: Path, edit: Any, message: str
) -> None:
    text = (Path(checkpoints.path("gpt2")) / "config.json").read_text()
    path = copy_checkpoint(checkpoints, "gpt2", tmp_path, edit(text))
    for call in (
        lambda: get_adapter("hf_causal").load_model(path),
        lambda: get_adapter("hf_auto").load_model(path),
    ):
        with pytest.raises(CheckpointConfigError) as caught:
            call()
        assert caught.value.code == "checkpoint_config_invalid"
        assert str(caught.value).startswith(f"{path / 'config.json'}"[: -len("config.json")])
        assert message in str(caught.value)
        assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    ("family", "changes", "words"),
    [
        (
            "gpt2",
            {"n_layer": 1_000_000_000},
            "says n_layer is 1000000000, but the weight files number at most 2",
        ),
        (
            "llama",
            {"num_hidden_layers": 10_000},
            "says num_hidden_layers is 10000, but the weight files number",
        ),
        ("gpt2", {"n_embd": 1 << 40}, f"says n_embd is {1 << 40}, but no tensor in the weight files"),
        ("bert", {"vocab_size": 10**12}, "says vocab_size is 1000000000000"),
        ("gpt2", {"n_positions": 10**9}, "says n_positions is 1000000000, but the position embeddings"),
        ("t5", {"num_decoder_layers": 4096}, "says num_decoder_layers is 4096"),
    ],
)
def test_an_absurd_config_is_refused_before_the_model_is_built(
    checkpoints: Any, tmp_path: Path, family: str, changes: dict[str, Any], words: str
) -> None:
    path = copy_checkpoint(checkpoints, family, tmp_path, edited_config(checkpoints, family, **changes))
    with pytest.raises(ImplausibleConfigError) as caught:
        get_adapter("hf_auto").load_model(path, device="cpu")
    assert caught.value.code == "checkpoint_config_implausible"
    assert words in str(caught.value)
    assert "\n" not in str(caught.value)


class _RunsCode:
    """A pickle payload that would run a shell command when unpickled."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        import os

        return (os.system, (f"touch {self.marker}",))


def test_a_pickled_payload_is_refused_with_our_advice(checkpoints: Any, tmp_path: Path) -> None:
    import pickle

    path = copy_checkpoint(checkpoints, "gpt2", tmp_path / "ckpt")
    (path / "model.safetensors").unlink()
    marker = tmp_path / "pwned"
    (path / "pytorch_model.bin").write_bytes(pickle.dumps({"transformer.wte.weight": _RunsCode(marker)}))
    with pytest.raises(UnsafeCheckpointError) as caught:
        get_adapter("hf_causal").load_model(path, device="cpu")
    message = str(caught.value)
    assert caught.value.code == "checkpoint_unsafe"
    assert message.startswith(f"{path} holds pickled weights that torch refused to unpickle")
    assert "convert the checkpoint to safetensors" in message
    assert "weights_only=False)" in message and "re-run" not in message.lower()
    assert "\n" not in message
    assert not marker.exists(), "the payload ran"


def test_remote_code_is_refused_with_our_advice(checkpoints: Any, tmp_path: Path) -> None:
    config = edited_config(
        checkpoints,
        "gpt2",
        model_type="acme_custom",
        architectures=["AcmeForCausalLM"],
        auto_map={
            "AutoConfig": "modeling_acme.AcmeConfig",
            "AutoModelForCausalLM": "modeling_acme.AcmeForCausalLM",
        },
    )
    path = copy_checkpoint(checkpoints, "gpt2", tmp_path / "ckpt", config)
    marker = tmp_path / "ran"
    (path / "modeling_acme.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    with pytest.raises(RemoteCodeRefusedError) as caught:
        get_adapter("hf_causal").load_model(path, device="cpu")
    message = str(caught.value)
    assert caught.value.code == "remote_code_refused"
    assert message == (
        f"{path} needs its own Python code to load (auto_map in config.json) and remote code is off; "
        "pass --trust-remote-code (trust_remote_code=True) only if you trust that code"
    )
    assert not marker.exists(), "the checkpoint's code ran"


# -- the same refusals as the command line shows them ----------------------------------------------


@pytest.mark.parametrize(
    ("make", "code"),
    [
        (lambda text, path: (path / "config.json").write_text(text[:-5]), "checkpoint_config_invalid"),
        (
            lambda text, path: (path / "config.json").write_text(
                text.replace('"architectures": [', '"architectures": "GPT2LMHeadModel", "x": [')
            ),
            "checkpoint_config_invalid",
        ),
        (
            lambda text, path: (path / "config.json").write_text(
                text.replace("{", '{"quantization_config": "gptq", ', 1)
            ),
            "checkpoint_config_invalid",
        ),
        (
            lambda text, path: (path / "config.json").write_text(
                text.replace("{", '{"n_layer": 1000000000, ', 1).replace(
                    '"n_layer": 2', '"n_layer": 1000000000'
                )
            ),
            "checkpoint_config_implausible",
        ),
    ],
)
@pytest.mark.parametrize("command", ["describe", "certify"])
def test_the_cli_answers_a_broken_checkpoint_with_one_line(
    checkpoints: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str], make: Any, code: str, command: str
) -> None:
    from invarlock.cli import main

    text = (Path(checkpoints.path("gpt2")) / "config.json").read_text()
    path = copy_checkpoint(checkpoints, "gpt2", tmp_path / "ckpt")
    save_tiny_tokenizer(path)
    make(text, path)
    args = (
        [command, str(path)]
        if command == "describe"
        else [command, "--baseline", str(path), "--subject", str(path)]
    )
    assert main([*args, "--out", str(tmp_path / "out")] if command == "certify" else args) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith(f"invarlock: error [{code}]: {path / 'config.json'}")
    assert captured.err.count("\n") == 1
    assert not (tmp_path / "out").exists()


def test_the_cli_answers_a_weights_file_given_as_the_model(
    checkpoints: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    from invarlock.cli import main

    weights = Path(checkpoints.path("gpt2")) / "model.safetensors"
    assert main(["describe", str(weights)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"invarlock: error [checkpoint_not_a_directory]: {weights} is a file")
    assert err.count("\n") == 1


def test_bitsandbytes_flags_set_to_false_ask_for_nothing(checkpoints: Any) -> None:
    # A run config written for transformers 4 (load_in_8bit: false) still loads a full-precision model.
    assert from_pretrained_kwargs({"load_in_8bit": False, "load_in_4bit": False}) == {
        "trust_remote_code": False
    }
    model = get_adapter("hf_auto").load_model(checkpoints.path("gpt2"), device="cpu", load_in_8bit=False)
    assert type(model).__name__ == "GPT2LMHeadModel"
