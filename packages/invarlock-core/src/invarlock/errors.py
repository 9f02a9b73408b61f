"""The errors InvarLock raises, each with a stable ``code``.

Every message is one sentence: what happened and what to do next. Callers (the CLI, CI scripts)
may branch on ``code``; the codes never change meaning.
"""

from __future__ import annotations


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


# -- certify evidence and arguments (#14) ------------------------------------------------------


class InsufficientEvidenceError(InvarlockError):
    """Too few windows or scored tokens for a gate decision, and no INCONCLUSIVE verdict was asked for."""

    code = "insufficient_evidence"


class CertificateInvalidError(InvarlockError):
    """A file given to ``invarlock verify`` is not a readable certificate with content identity."""

    code = "certificate_invalid"


class OutputNotWritableError(InvarlockError):
    """The directory for certificates or reports is an existing file, or cannot be written or created."""

    code = "output_unwritable"


class DeviceUnavailableError(InvarlockError):
    """The device asked for is not one the installed torch has on this machine."""

    code = "device_unavailable"


class InvalidArgumentError(InvarlockError):
    """A command-line value is out of its range (a non-finite or too small --max-ratio, --confidence)."""

    code = "argument_invalid"
