"""Loading a directory exported by Optimum (or exporting a local checkpoint) as an ORTModelForCausalLM.

Everything a user can get wrong about the directory or the execution provider is checked before
ONNX Runtime is started, so the error says what to do instead of echoing a backend traceback.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from invarlock.errors import DependencyMissingError, ModelLoadError
from invarlock.network import network_allowed, not_available_offline

ADAPTER = "hf_causal_onnx"
CPU_PROVIDER = "CPUExecutionProvider"
CUDA_PROVIDER = "CUDAExecutionProvider"
CONFIG_FILE = "config.json"


def load_ort_causal_lm(model_id: str, device: str, options: dict[str, Any]) -> Any:
    """An ``ORTModelForCausalLM`` for ``model_id`` on the execution provider for ``device`` (or ``provider``).

    ``model_id`` is a directory, or one ``.onnx`` file in a directory (loaded as that directory with
    ``file_name``). Options of our own: ``export`` (export a local PyTorch checkpoint first) and
    ``provider`` (an ONNX Runtime execution provider name). Everything else goes to
    ``from_pretrained`` unchanged.
    """
    options = dict(options)
    path = Path(model_id)
    if path.is_file() and path.suffix == ".onnx":
        options.setdefault("file_name", path.name)
        model_id = str(path.parent)
    export = bool(options.pop("export", False))
    provider, provider_options = _provider_for(device, options.pop("provider", None))
    directory = Path(model_id) / options.get("subfolder", "")
    if directory.is_dir():
        check_model_directory(directory, export=export)

    ORTModelForCausalLM, available = _import_backend()
    if provider not in available:
        raise ModelLoadError(
            f"execution provider {provider} is not available in this onnxruntime build (available: "
            f"{', '.join(available)}); pass one of those as provider=, or install onnxruntime-gpu for CUDA"
        )
    if provider_options is not None:
        options.setdefault("provider_options", provider_options)
    options.setdefault("local_files_only", not network_allowed())
    try:
        model = ORTModelForCausalLM.from_pretrained(model_id, export=export, provider=provider, **options)
    except Exception as exc:
        if not directory.exists() and not network_allowed():
            raise not_available_offline(model_id) from exc
        raise ModelLoadError(
            f"{ADAPTER} could not load {model_id} ({type(exc).__name__}: {exc}); check that it is a "
            "directory written by `optimum-cli export onnx --task text-generation-with-past` and that "
            "every option is one ORTModelForCausalLM.from_pretrained accepts"
        ) from exc
    # ONNX Runtime falls back to the CPU, with only a log line, when a provider fails to start.
    if model.providers[0] != provider:
        raise ModelLoadError(
            f"execution provider {provider} failed to start (ONNX Runtime fell back to "
            f"{model.providers[0]}); check its runtime libraries (for CUDA: the CUDA and cuDNN versions "
            "onnxruntime-gpu needs), or load with provider='CPUExecutionProvider'"
        )
    return model


def check_model_directory(directory: Path, *, export: bool) -> None:
    """Raise with what to do when ``directory`` cannot be loaded (or, with ``export``, exported)."""
    has_config = (directory / CONFIG_FILE).is_file()
    if export:
        if not has_config:
            raise ModelLoadError(
                f"{directory} has no {CONFIG_FILE}, so there is no PyTorch checkpoint to export; pass a "
                "directory written by save_pretrained"
            )
        return
    onnx_files = sorted(directory.rglob("*.onnx"))
    if not onnx_files:
        raise ModelLoadError(
            f"{directory} holds no ONNX file; export the checkpoint first with `optimum-cli export onnx "
            f"--model {directory} <output dir>`, or load it with export=True to export it on the fly"
        )
    if not has_config:
        raise ModelLoadError(
            f"{directory} has {onnx_files[0].name} but no {CONFIG_FILE}; copy the {CONFIG_FILE} of the "
            "model it was exported from into that directory"
        )


def load_tokenizer(model_id: str, options: dict[str, Any]) -> Any:
    """The tokenizer Optimum saved next to the ONNX files (or that of the exported checkpoint)."""
    from transformers import AutoTokenizer

    options = {"local_files_only": not network_allowed(), **options}
    try:
        return AutoTokenizer.from_pretrained(model_id, **options)
    except Exception as exc:
        raise ModelLoadError(
            f"{ADAPTER} could not load a tokenizer from {model_id} ({type(exc).__name__}: {exc}); "
            "save the tokenizer into that directory with tokenizer.save_pretrained"
        ) from exc


def _provider_for(device: str, provider: str | None) -> tuple[str, dict[str, Any] | None]:
    """The execution provider (and its options) for ``device``, unless ``provider`` names one."""
    if provider is not None:
        return provider, None
    if device in ("auto", "cpu"):
        return CPU_PROVIDER, None
    kind, _, index = device.partition(":")
    if kind == "cuda" and (index == "" or index.isdigit()):
        return CUDA_PROVIDER, {"device_id": int(index or 0)}
    raise ModelLoadError(
        f"{ADAPTER} runs on ONNX Runtime execution providers and has no device {device!r}; pass "
        "device='cpu' or device='cuda', or name a provider with provider="
    )


def _import_backend() -> tuple[Any, list[str]]:
    """``ORTModelForCausalLM`` and the execution providers this onnxruntime build offers."""
    try:
        import onnxruntime
        from optimum.onnxruntime import ORTModelForCausalLM
    except ImportError as exc:
        raise DependencyMissingError(
            f"{ADAPTER} needs optimum-onnx and onnxruntime with transformers<4.58 ({exc}); run: "
            'pip install "optimum-onnx[onnxruntime]" "transformers<4.58"'
        ) from exc
    return ORTModelForCausalLM, list(onnxruntime.get_available_providers())
