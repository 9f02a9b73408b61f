"""The errors InvarLock raises, each with a stable ``code``.

Every message is one sentence: what happened and what to do next. Callers (the CLI, CI scripts)
may branch on ``code``; the codes never change meaning.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def kind_of(value: Any) -> str:
    """How a message names a value of the wrong kind: ``nothing (null)``, ``a mapping``, ``'x' (str)``."""
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return f"{str(value).lower()} (a boolean)"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return f"{value!r} ({type(value).__name__})"


class InvarlockError(Exception):
    """Base class. ``code`` is stable across releases."""

    code = "invarlock_error"


class AdapterNotFoundError(InvarlockError, LookupError):
    """No installed plugin provides the adapter asked for, or none recognises a model."""

    code = "adapter_not_found"


class DependencyMissingError(InvarlockError, ImportError):
    """The adapter is known but its distribution or backend is not installed."""

    code = "dependency_missing"


class PluginConflictError(InvarlockError):
    """Two distributions register the same adapter name."""

    code = "plugin_conflict"


class PluginError(InvarlockError):
    """A plugin failed to import, raised in a hook, or implements a hook that does not exist."""

    code = "plugin_error"


# -- plugin isolation at call time (core) ----------------------------------------------------------


class PluginHookError(PluginError):
    """A plugin's hook raised an exception that is not an InvarLock error, for a request it owns
    (or that no other plugin answers); the plugin's exception is the cause."""

    code = "plugin_hook_failed"


class PluginNotFoundError(InvarlockError, LookupError):
    """No installed plugin has the name asked for (``invarlock plugins --traceback NAME``)."""

    code = "plugin_not_found"


class AdapterContractError(InvarlockError):
    """An adapter's hook returned something its hookspec rules out (logits of the wrong shape, a
    description with a role InvarLock cannot evaluate)."""

    code = "adapter_contract_broken"


class ModelLoadError(InvarlockError):
    """Loading a model failed; the backend's own message is kept as the cause."""

    code = "load_failed"


class NetworkDisabledError(ModelLoadError):
    """A model is not available locally and network access is off."""

    code = "network_disabled"


class UnsupportedOperationError(InvarlockError):
    """The adapter declares this operation unsupported for its models."""

    code = "operation_unsupported"


class SnapshotMismatchError(InvarlockError):
    """A snapshot does not match the model it is restored into; the model is untouched."""

    code = "snapshot_mismatch"


class SnapshotCorruptError(InvarlockError):
    """A chunked snapshot on disk is missing, truncated or fails its checksums; the model is untouched."""

    code = "snapshot_corrupt"


class DescriptionError(InvarlockError):
    """An adapter returned a description that breaks the describe contract."""

    code = "description_invalid"


class ModelNotFoundError(ModelLoadError):
    """A model path given on the command line or in a config does not exist."""

    code = "model_not_found"


# -- checkpoints refused before or while loading (core) ------------------------------------------


class CheckpointNotADirectoryError(ModelLoadError):
    """A file was given where a checkpoint directory is expected."""

    code = "checkpoint_not_a_directory"


class CheckpointConfigError(ModelLoadError):
    """A checkpoint's config.json is not valid JSON, or a key has the wrong type."""

    code = "checkpoint_config_invalid"


class ImplausibleConfigError(CheckpointConfigError):
    """A checkpoint's config.json states sizes its weight files cannot hold; refused before the model
    is built."""

    code = "checkpoint_config_implausible"


class UnsafeCheckpointError(ModelLoadError):
    """The weights are pickled and torch refused to unpickle them (they would run code)."""

    code = "checkpoint_unsafe"


class RemoteCodeRefusedError(ModelLoadError):
    """The checkpoint needs its own Python code to load, and trust_remote_code is off."""

    code = "remote_code_refused"


class TokenizerNotFoundError(ModelLoadError):
    """A checkpoint directory holds no tokenizer files."""

    code = "tokenizer_not_found"


class RoleMismatchError(InvarlockError):
    """The subject and the baseline are models of different roles (causal, masked LM, seq2seq)."""

    code = "role_mismatch"


class OutputWriteError(InvarlockError):
    """Results could not be written into the output directory; nothing was left half-written."""

    code = "output_unwritable"


class TokenizerMismatchError(InvarlockError):
    """The subject's tokenizer differs from the baseline's, so their scores cannot be compared."""

    code = "tokenizer_mismatch"


class DatasetError(InvarlockError):
    """An evaluation dataset is missing, empty, unreadable or too short for one window."""

    code = "dataset_invalid"


class ConfigError(InvarlockError):
    """A run configuration has an unknown key, a wrong type or a missing required value."""

    code = "config_invalid"


class EditError(InvarlockError):
    """An edit cannot be applied to this model (unknown edit, nothing to edit, inference-only adapter)."""

    code = "edit_refused"


class RestoreVerificationError(InvarlockError):
    """After a failed gate the model could not be proved back to its baseline weights bit for bit."""

    code = "restore_unverified"


# -- snapshot engine (invarlock-torch): failures after writing began, failed snapshot writes ------


class SnapshotPartiallyRestoredError(InvarlockError):
    """A restore failed after it had started writing into the model: the model is partly restored."""

    code = "snapshot_partially_restored"


class SnapshotWriteError(InvarlockError):
    """A chunked snapshot could not be written (disk full, read-only, not a directory); nothing is left."""

    code = "snapshot_write_failed"


# -- PEFT adapters (invarlock-peft) ----------------------------------------------------------------


class PeftBaseNotFoundError(ModelLoadError):
    """A PEFT adapter's base model cannot be found: not named, not a local path, or not available offline."""

    code = "peft_base_not_found"


class PeftBaseChangedError(SnapshotMismatchError):
    """An adapter-only snapshot is restored over base weights that differ from those it was taken over."""

    code = "peft_base_changed"


# -- GGUF checkpoints (invarlock-gguf) ------------------------------------------------------------


class AmbiguousCheckpointError(ModelLoadError):
    """A directory holds several model files of one format (GGUF), so which one to load is not clear."""

    code = "checkpoint_ambiguous"


# -- certify evidence and arguments (#14) ------------------------------------------------------


class InsufficientEvidenceError(InvarlockError):
    """Too few windows or scored tokens for a gate decision, and no INCONCLUSIVE verdict was asked for."""

    code = "insufficient_evidence"


class CertificateInvalidError(InvarlockError):
    """A file given to ``invarlock verify`` is not a readable certificate with content identity."""

    code = "certificate_invalid"


class DeviceUnavailableError(InvarlockError):
    """The device asked for is not one the installed torch has on this machine."""

    code = "device_unavailable"


class InvalidArgumentError(InvarlockError):
    """A command-line value is out of its range (a non-finite or too small --max-ratio, --confidence)."""

    code = "argument_invalid"


class InvalidLoadOptionError(InvarlockError):
    """A load option the chosen adapter does not declare, or a per-side option given in a form that
    cannot be read (``--subject-option`` without ``KEY=VALUE``)."""

    code = "load_option_invalid"


# -- disk offload (invarlock-torch snapshot engine) ----------------------------------------------


class OffloadStoreError(InvarlockError):
    """A weight accelerate offloaded to disk cannot be read (or written back) from its offload store."""

    code = "offload_store_unreadable"


# -- tensor parallelism under torchrun (core) ------------------------------------------------------


class TensorParallelError(InvarlockError):
    """A tensor-parallel command cannot run as asked: ``--tp-plan`` in a single process, torchrun
    without a plan, or ranks that reached different results."""

    code = "tensor_parallel_invalid"


class RankFailedError(InvarlockError):
    """Another rank of a tensor-parallel command failed; every rank stops with its error."""

    code = "rank_failed"
    settled = False
    """True when raised at a meeting of the ranks (every rank knows of the failure already)."""


# -- declared structure changes (#18) ------------------------------------------------------------


class StructureDeclarationError(InvarlockError):
    """A declared structure change (``--declare-edit``, ``edit.structure_change``, an edit's summary)
    is malformed, or declares a change of something the baseline does not have."""

    code = "structure_declaration_invalid"
