"""Hook specifications: the whole contract between InvarLock and its adapter plugins.

A plugin is a module with functions decorated ``@invarlock.hookimpl`` whose names and parameters
match the specs below; it registers through the ``invarlock`` entry-point group.

Operations that act on a model are keyed by the model: every plugin is asked in turn and the one
that recognises the model answers (``firstresult``). A plugin that only adds to another plugin's
answer (a quantization block on top of the Hugging Face description) implements the same hook as
a wrapper (``@hookimpl(wrapper=True)``) and edits the result it receives from ``yield``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from invarlock import hookspec
from invarlock.quantizers import QuantizationMethod
from invarlock.types import AdapterSpec, Resolution

# -------------------------------------------------------------------------
# Registration
# -------------------------------------------------------------------------


@hookspec
def invarlock_register_adapters() -> Sequence[AdapterSpec]:
    """Declare the adapters this plugin provides.

    Called once per plugin when the plugin manager starts; results of all plugins are collected.

    :returns: the plugin's :class:`~invarlock.types.AdapterSpec` descriptors. Names must be unique
        across installed distributions; a duplicate is an error that names both distributions.
    """


# -------------------------------------------------------------------------
# Resolution (adapter "auto")
# -------------------------------------------------------------------------


@hookspec(firstresult=True)
def invarlock_resolve_adapter(model_id: str, options: Mapping[str, Any]) -> Resolution | None:
    """Choose the adapter for a model id or local path, and say why.

    Stops at the first non-None result. This is the one decider for adapter ``auto`` and for
    adapters that resolve (``hf_auto``): core names no backend and reads no load option itself.

    :param model_id: a local directory or a hub id.
    :param options: the load options the model will be loaded with, as given by the user
        (``quantization_config``, ``dtype``, a backend's own flags...); what they mean is the
        plugins' to decide.
    :returns: the adapter name and a one-line reason, or None if this plugin cannot decide.
    """


# -------------------------------------------------------------------------
# Loading
# -------------------------------------------------------------------------


@hookspec(firstresult=True)
def invarlock_load_model(adapter: str, model_id: str, device: str, options: dict[str, Any]) -> Any | None:
    """Load a model with the named adapter.

    Stops at the first non-None result. Runs with the Hugging Face hub in offline mode unless
    ``INVARLOCK_ALLOW_NETWORK=1``.

    :param adapter: the adapter name the user chose; return None for names you do not provide.
    :param model_id: a local directory or a hub id.
    :param device: ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``...
    :param options: loading options passed through from the caller (``dtype``, ``device_map``,
        ``trust_remote_code``, ``revision``, ...). ``trust_remote_code`` is absent or False
        unless the user asked for it.
    :returns: the loaded model, or None.
    :raises invarlock.errors.ModelLoadError: loading failed; the backend's error is the cause.
    """


@hookspec(firstresult=True)
def invarlock_load_tokenizer(adapter: str, model_id: str, options: dict[str, Any]) -> Any | None:
    """Load the tokenizer that goes with a model loaded by the named adapter.

    Stops at the first non-None result.

    :param adapter: the adapter name; return None for names you do not provide.
    :param model_id: a local directory or a hub id.
    :param options: ``revision``, ``cache_dir``, ``trust_remote_code`` and similar.
    :returns: the tokenizer, or None.
    """


# -------------------------------------------------------------------------
# Describing
# -------------------------------------------------------------------------


@hookspec(firstresult=True)
def invarlock_describe(model: Any) -> dict[str, Any] | None:
    """Describe a model's structure (see :mod:`invarlock.description` for the contract).

    Stops at the first non-None result. Wrappers may add keys (a ``quantization`` block) to the
    result they receive.

    :param model: a model loaded by any adapter.
    :returns: the description, or None if this plugin does not recognise the model.
    """


@hookspec(firstresult=True)
def invarlock_describe_config(model_id: str, options: dict[str, Any]) -> dict[str, Any] | None:
    """Describe the model a checkpoint's config states, without loading its weights
    (``invarlock describe MODEL --config-only``).

    Stops at the first non-None result. Runs inside ``hub_offline_unless_allowed()``.

    :param model_id: a local directory or a hub id (its cached config when the network is off).
    :param options: ``revision``, ``cache_dir``, ``trust_remote_code`` (False unless the user passed True).
    :returns: a description passing the describe contract plus a ``memory`` block, or None when
        this plugin cannot read the checkpoint's config.
    """


# -------------------------------------------------------------------------
# Scoring
# -------------------------------------------------------------------------


@hookspec(firstresult=True)
def invarlock_logits(model: Any, inputs: Mapping[str, Any]) -> Any | None:
    """Run one forward pass without gradients and return the logits.

    Stops at the first non-None result. This is the one scoring path: evaluation of every adapter
    (PyTorch, ONNX, quantized) goes through it.

    :param model: a model loaded by any adapter.
    :param inputs: ``input_ids`` and ``attention_mask`` as ``torch.LongTensor`` of shape
        ``(batch, seq)``; seq2seq models also get ``decoder_input_ids``.
    :returns: a float ``torch.Tensor`` of shape ``(batch, seq, vocab)`` on the CPU, or None.

    Guaranteed batch-invariant: a row's logits do not depend on the other rows, so a window's loss
    is the same at any batch size (the conformance kit checks per-window losses at batch sizes 1, 3
    and 8 through certify's scoring path, within 1e-6 in float32).
    """


# -------------------------------------------------------------------------
# Snapshot and restore
# -------------------------------------------------------------------------


@hookspec(firstresult=True)
def invarlock_snapshot(model: Any, include: Sequence[str] | None, same_device: bool) -> Any | None:
    """Take an in-memory snapshot of a model's weights and buffers.

    Stops at the first non-None result.

    :param model: a model loaded by any adapter.
    :param include: names of modules or tensors to capture (prefix match); None captures all.
    :param same_device: keep copies on each tensor's own device instead of the CPU.
    :returns: a snapshot object accepted by :func:`invarlock_restore`, or None.
    :raises invarlock.errors.UnsupportedOperationError: the model is this plugin's and its adapter
        declares ``SnapshotSupport.NO`` (core does not refuse by adapter name: the plugin that
        recognises the model raises, from this hook and the other three snapshot/restore hooks).
    """


@hookspec(firstresult=True)
def invarlock_restore(model: Any, snapshot: Any) -> bool | None:
    """Restore a model in place from an in-memory snapshot, bit for bit.

    Stops at the first non-None result. Every name, shape and dtype is checked before the first
    byte is written.

    :param model: the model to restore.
    :param snapshot: an object returned by :func:`invarlock_snapshot`.
    :returns: True once restored, or None if this plugin does not recognise the model.
    :raises invarlock.errors.SnapshotMismatchError: the snapshot is not of this model; the model is
        untouched.
    :raises invarlock.errors.SnapshotPartiallyRestoredError: a write failed after the first byte
        reached the model; the model is partly restored.
    :raises invarlock.errors.UnsupportedOperationError: the model is this plugin's and its adapter
        declares ``SnapshotSupport.NO``.
    """


@hookspec(firstresult=True)
def invarlock_snapshot_chunked(
    model: Any, directory: Path | None, include: Sequence[str] | None, shard_bytes: int | None
) -> Path | None:
    """Write a snapshot to disk as bounded shards plus a manifest.

    Stops at the first non-None result. The snapshot appears under its final name only when
    complete; a failed write leaves nothing behind.

    :param model: a model loaded by any adapter.
    :param directory: where to create the snapshot directory; None uses the system temp dir.
    :param include: as for :func:`invarlock_snapshot`.
    :param shard_bytes: the largest shard size in bytes; None uses the adapter's default.
    :returns: the path of the finished snapshot directory, or None.
    :raises invarlock.errors.SnapshotWriteError: the directory is not a directory, read-only or
        too small; nothing is left behind.
    :raises invarlock.errors.UnsupportedOperationError: the model is this plugin's and its adapter
        declares ``SnapshotSupport.NO``.
    """


@hookspec(firstresult=True)
def invarlock_restore_chunked(model: Any, path: Path) -> bool | None:
    """Restore a model in place from a chunked snapshot directory.

    Stops at the first non-None result. Checksums are verified before a shard is written into the
    model.

    :param model: the model to restore.
    :param path: a directory returned by :func:`invarlock_snapshot_chunked`.
    :returns: True once restored, or None if this plugin does not recognise the model.
    :raises invarlock.errors.SnapshotCorruptError: a file is missing, truncated or corrupt.
    :raises invarlock.errors.SnapshotMismatchError: the snapshot is of another model.
    :raises invarlock.errors.SnapshotPartiallyRestoredError: a shard changed or could not be read
        after the first byte reached the model; the model is partly restored.
    :raises invarlock.errors.UnsupportedOperationError: the model is this plugin's and its adapter
        declares ``SnapshotSupport.NO``.
    """


# -------------------------------------------------------------------------
# Quantization methods (``invarlock plugins quantizers``)
# -------------------------------------------------------------------------


@hookspec
def invarlock_quantization_methods() -> Sequence[QuantizationMethod]:
    """List the quantization methods a library this plugin knows registers, and their status here.

    Results of all plugins are collected; for a method listed by several, the first plugin asked
    answers. Must not load a model; the results are cached per installed environment.

    :returns: one :class:`~invarlock.quantizers.QuantizationMethod` per method.
    """
