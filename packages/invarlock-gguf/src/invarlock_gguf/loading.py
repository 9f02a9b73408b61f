"""Loading a GGUF checkpoint into llama.cpp (through llama-cpp-python) for scoring.

Everything a user can get wrong (the path, an option, the device, a model that is not a causal
LM) is checked from the file's header before llama.cpp sees the file, so the error says what to
do instead of echoing a native log. The context keeps the logits of every position
(``logits_all=True``): scoring needs each window's per-token logits.
"""

from __future__ import annotations

import contextlib
import inspect
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from invarlock.errors import DependencyMissingError, InvarlockError, ModelLoadError, ModelNotFoundError
from invarlock_gguf.files import find_gguf_file
from invarlock_gguf.metadata import read_metadata
from invarlock_gguf.models import ADAPTER, ContextLimit, GGUFMetadata, GGUFModel

DEFAULT_MAX_CTX = 1024
"""The context (tokens per window) made when the file allows more and no ``n_ctx`` is given.

llama.cpp keeps ``n_ctx x n_vocab`` float32 logits with ``logits_all``; 1024 positions of a
128k vocabulary are already 0.5 GiB. Pass ``n_ctx=`` to score longer windows.
"""
# Set by this adapter: scoring needs logits for every position of a full model.
_FIXED = {"model_path", "logits_all", "vocab_only", "embedding"}
EXTRA_BUFFER_TYPES = "use_extra_bufts"
"""Our option for llama.cpp's ``llama_model_params.use_extra_bufts`` (``Llama`` has no parameter for it).

Extra buffer types are llama.cpp's CPU speed paths for quantized weights: repacked layouts and, on
CPUs that report AMX, the AMX kernels. Off by default: on a virtualized AMX CPU (the machines this
project is tested on) the AMX kernel crashes the process with a segmentation fault on the first
quantized matmul, and a crash cannot be caught. Pass ``use_extra_bufts=True`` where they work.
"""
_DEFAULT_PARAMS_LOCK = threading.Lock()
# Accepted for every adapter by the host (no GGUF file runs code of its own).
_IGNORED = {"trust_remote_code"}
_ENCODER_DECODER = {"t5", "t5encoder"}


def gguf_path(model_id: str) -> Path:
    """The GGUF file to load for ``model_id``, or a :class:`ModelLoadError` saying what is there instead."""
    found = find_gguf_file(model_id)
    if found is not None:
        return found
    path = Path(model_id).expanduser()
    if path.is_dir():
        raise ModelLoadError(
            f"{model_id} holds no .gguf file; convert the checkpoint with llama.cpp's convert_hf_to_gguf.py, "
            "or load it with a Hugging Face adapter (hf_causal)"
        )
    if path.exists():
        raise ModelLoadError(
            f"{model_id} is not a .gguf file; pass a GGUF checkpoint or a directory holding one"
        )
    raise ModelNotFoundError(
        f"{model_id} is not a local GGUF file or directory; the gguf adapter loads local files only "
        "(download the .gguf first and pass its path)"
    )


def load_gguf(model_id: str, device: str, options: dict[str, Any]) -> GGUFModel:
    """A :class:`GGUFModel` for ``model_id`` (a ``.gguf`` file or a directory holding one).

    Options are ``llama_cpp.Llama`` parameters (``n_ctx``, ``n_threads``, ``n_threads_batch``,
    ``n_batch``, ``n_gpu_layers``, ``flash_attn``...); an unknown one is refused rather than
    dropped, as ``Llama`` itself would silently drop it.
    """
    path = gguf_path(model_id)
    metadata = read_metadata(path)
    check_causal(metadata)
    Llama, supports_gpu = _import_backend()
    settings = llama_settings(metadata, device, options, supports_gpu)
    extra_buffer_types = bool(settings.pop(EXTRA_BUFFER_TYPES, False))
    try:
        with _model_params_default(EXTRA_BUFFER_TYPES, extra_buffer_types):
            llama = Llama(model_path=str(path), logits_all=True, verbose=False, **settings)
    except InvarlockError:
        raise
    except Exception as exc:
        raise ModelLoadError(
            f"llama.cpp could not load {path.name} ({type(exc).__name__}: {exc}); check that this "
            f"llama-cpp-python build supports the {metadata.architecture} architecture and every tensor "
            "type in the file (upgrade llama-cpp-python if the file is newer)"
        ) from exc
    n_ctx = int(llama.n_ctx())
    shown_device = "cpu" if settings.get("n_gpu_layers", 0) == 0 else _normal_device(device)
    return GGUFModel(path, llama, metadata, n_ctx, shown_device, ContextLimit(n_ctx))


def check_causal(metadata: GGUFMetadata) -> None:
    arch = metadata.architecture
    if arch in _ENCODER_DECODER or metadata.arch_value("attention.causal") is False:
        raise ModelLoadError(
            f"{metadata.path.name} is a {arch} model without causal attention; the gguf adapter scores "
            "causal language models only (certify encoders with a Hugging Face adapter)"
        )


def llama_settings(
    metadata: GGUFMetadata, device: str, options: dict[str, Any], supports_gpu: bool
) -> dict[str, Any]:
    """``Llama`` keyword arguments from the load options, the device and the file's context length."""
    from llama_cpp import Llama

    settings = {k: v for k, v in options.items() if k not in _IGNORED}
    dtype = settings.pop("dtype", None)
    if dtype not in (None, "auto"):
        raise ModelLoadError(
            f"a GGUF file's tensor types are fixed when it is written, so dtype={dtype!r} cannot apply to "
            f"{metadata.path.name}; drop --dtype for the GGUF side (its types are in the description)"
        )
    accepted = {EXTRA_BUFFER_TYPES} | (
        set(inspect.signature(Llama.__init__).parameters) - {"self", "kwargs"} - _FIXED
    )
    unknown = sorted(set(settings) - accepted)
    if unknown:
        raise ModelLoadError(
            f"{ADAPTER} got load option(s) {', '.join(unknown)}, which llama_cpp.Llama does not take; "
            "pass llama_cpp.Llama parameters such as n_ctx, n_threads, n_batch or n_gpu_layers"
        )
    kind, _, index = device.partition(":")
    if device in ("auto", "cpu"):
        settings.setdefault("n_gpu_layers", 0)
    elif kind in ("cuda", "mps") and (index == "" or index.isdigit()):
        if not supports_gpu:
            raise ModelLoadError(
                f"this llama-cpp-python build has no GPU offload, so device {device!r} is not available; "
                'reinstall it built for the GPU (CMAKE_ARGS="-DGGML_CUDA=on" pip install --no-cache-dir '
                '--force-reinstall llama-cpp-python) or use device="cpu"'
            )
        settings.setdefault("n_gpu_layers", -1)
        settings.setdefault("main_gpu", int(index or 0))
    else:
        raise ModelLoadError(
            f"{ADAPTER} runs on llama.cpp's CPU or GPU backends and has no device {device!r}; pass "
            "device='cpu' or device='cuda'"
        )
    context = metadata.arch_value("context_length")
    limit = context if isinstance(context, int) and context > 0 else DEFAULT_MAX_CTX
    n_ctx = settings.setdefault("n_ctx", min(limit, DEFAULT_MAX_CTX))
    # One window is one batch: every position's logits come back from one decode call.
    settings.setdefault("n_batch", n_ctx)
    settings.setdefault("n_ubatch", settings["n_batch"])
    return settings


@contextlib.contextmanager
def _model_params_default(field: str, value: Any) -> Iterator[None]:
    """While one ``Llama`` is built, ``llama_model_default_params()`` returns ``field`` set to ``value``.

    ``Llama.__init__`` starts from that function's result and exposes no parameter for some fields
    (``use_extra_bufts`` in llama-cpp-python 0.3.36); this sets one for this construction only,
    under a lock, and checks that the field exists, so a release that renames it is refused
    instead of silently ignored.
    """
    import importlib

    # The ctypes module llama_cpp.llama calls as ``llama_cpp``; typed as Any (its stubs omit this).
    low_level: Any = importlib.import_module("llama_cpp.llama_cpp")
    original = low_level.llama_model_default_params
    if not hasattr(original(), field):
        raise ModelLoadError(
            f"this llama-cpp-python has no llama_model_params.{field}, so {field}= cannot be applied; "
            f"install llama-cpp-python 0.3.36 (tested) or drop {field}="
        )

    def defaults() -> Any:
        params = original()
        setattr(params, field, value)
        return params

    with _DEFAULT_PARAMS_LOCK:
        low_level.llama_model_default_params = defaults
        try:
            yield
        finally:
            low_level.llama_model_default_params = original


def _normal_device(device: str) -> str:
    kind, _, index = device.partition(":")
    return f"{kind}:{index or 0}"


def _import_backend() -> tuple[Any, bool]:
    """``llama_cpp.Llama`` and whether this build can offload layers to a GPU."""
    try:
        import llama_cpp
    except ImportError as exc:
        raise DependencyMissingError(
            f"{ADAPTER} scores through llama-cpp-python ({exc}); run: pip install llama-cpp-python "
            "(an sdist: pip compiles llama.cpp, which needs cmake and a C++ compiler and takes minutes)"
        ) from exc
    return llama_cpp.Llama, bool(llama_cpp.llama_supports_gpu_offload())
