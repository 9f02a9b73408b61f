"""The conformance kit: the contract every adapter package runs on itself.

Subclass :class:`AdapterConformance` in your package's tests, set ``adapter_name`` and provide the
``model_id`` and ``other_model_id`` fixtures (two local checkpoints of different shapes), plus
``tokenizer_model_id`` when your plugin implements ``invarlock_load_tokenizer``::

    from invarlock.testing import AdapterConformance

    class TestMyAdapter(AdapterConformance):
        adapter_name = "my_adapter"

        @pytest.fixture(scope="class")
        @classmethod
        def model_id(cls, tmp_path_factory): ...

        @pytest.fixture(scope="class")
        @classmethod
        def other_model_id(cls, tmp_path_factory): ...

Every hook in :mod:`invarlock.hookspecs` has a test here (``@covers`` names it; a test of core
fails when a hook has none), and each test checks what the hookspec promises. The kit is
capability-gated: an adapter that declares ``SnapshotSupport.NO`` is held to refusing every
snapshot operation, and the tokenizer test follows whether the adapter's plugin implements
``invarlock_load_tokenizer``. A behaviour this kit does not test is not part of the contract.

Bit-exactness is checked on :func:`full_state`, the one definition of "every tensor of a model"
that every test of InvarLock uses. Requires pytest (``pip install invarlock-core[testing]``) and,
to run, torch plus your backend; torch is imported only inside the functions that need it.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from invarlock.errors import DependencyMissingError

try:
    import pytest
except ImportError as exc:  # a shipped module: say what to install instead of a bare ImportError
    raise DependencyMissingError(
        "invarlock.testing is the pytest conformance kit and needs pytest; "
        "run: pip install 'invarlock-core[testing]'"
    ) from exc

from invarlock.adapters import Adapter, get_adapter, resolve_adapter
from invarlock.catalogue import FIRST_PARTY
from invarlock.description import validate_description
from invarlock.errors import (
    AdapterNotFoundError,
    InvalidLoadOptionError,
    ModelLoadError,
    SnapshotCorruptError,
    SnapshotMismatchError,
    UnsupportedOperationError,
)
from invarlock.manager import get_plugin_manager
from invarlock.quantizers import QuantizationMethod, QuantizerStatus
from invarlock.readiness import Status, check_backend
from invarlock.types import Role, SnapshotSupport

__all__ = [
    "NOT_AN_ADAPTER",
    "AdapterConformance",
    "assert_restored",
    "covered_hooks",
    "covers",
    "differing_tensors",
    "full_state",
    "mutate_weights",
    "tensors_bit_equal",
]

# -- what "bit-exact" means --------------------------------------------------------------------


def full_state(model: Any) -> dict[str, Any]:
    """CPU copies of every tensor a restore must bring back, by name.

    The state dict (which carries what layers keep outside parameters and buffers, such as a
    quantized layer's scales), plus every parameter and buffer under every name it is reachable by:
    non-persistent buffers (rotary caches) and tied aliases (``lm_head.weight`` beside the
    embedding) included. The one definition of a model's state used by every bit-exactness check.
    """
    state: dict[str, Any] = {
        name: tensor.detach().to("cpu", copy=True)
        for name, tensor in model.state_dict().items()
        if hasattr(tensor, "dtype")
    }
    named = [*model.named_parameters(remove_duplicate=False), *model.named_buffers(remove_duplicate=False)]
    for name, tensor in named:
        if name not in state:
            state[name] = tensor.detach().to("cpu", copy=True)
    return state


def tensors_bit_equal(a: Any, b: Any) -> bool:
    """True when two tensors have the same dtype, shape and bytes (NaN-safe, -0.0-safe)."""
    import torch

    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    if a.numel() == 0:
        return True
    a_bytes = a.detach().cpu().contiguous().reshape(-1).view(torch.uint8)
    b_bytes = b.detach().cpu().contiguous().reshape(-1).view(torch.uint8)
    return bool(torch.equal(a_bytes, b_bytes))


def differing_tensors(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[str]:
    """Names whose tensors differ between two :func:`full_state` results, or that only one holds
    (sorted; empty when the two states are bit-identical)."""
    names = sorted(set(before) | set(after))
    return [
        n for n in names if n not in before or n not in after or not tensors_bit_equal(before[n], after[n])
    ]


def assert_restored(before: Mapping[str, Any], model: Any) -> None:
    """Fail unless ``model`` holds, bit for bit, the :func:`full_state` taken as ``before``."""
    differing = differing_tensors(before, full_state(model))
    assert not differing, f"not bit-exact after restore: {differing[:5]}"


def mutate_weights(model: Any) -> None:
    """The default edit: change every parameter and buffer in place (floats +0.5, ints bit-flipped)."""
    import torch

    with torch.no_grad():
        seen: set[int] = set()
        tensors = [t for _, t in model.named_parameters()] + [t for _, t in model.named_buffers()]
        for tensor in tensors:
            if id(tensor) in seen or tensor.device.type == "meta" or tensor.numel() == 0:
                continue
            seen.add(id(tensor))
            if tensor.is_floating_point():
                tensor.add_(0.5)
            else:
                tensor.bitwise_not_()


# -- which hook each test holds to its spec --------------------------------------------------------

_Test = TypeVar("_Test", bound=Callable[..., Any])
_COVERS_ATTR = "__invarlock_hooks__"


def covers(*hooks: str) -> Callable[[_Test], _Test]:
    """Mark a kit test as testing the promises of ``hooks`` (checked against the hookspecs)."""

    def mark(test: _Test) -> _Test:
        setattr(test, _COVERS_ATTR, hooks)
        return test

    return mark


def covered_hooks(kit: type[Any] | None = None) -> dict[str, list[str]]:
    """Hook name → the kit tests that cover it (for :class:`AdapterConformance` by default)."""
    found: dict[str, list[str]] = {}
    for name in dir(kit or AdapterConformance):
        for hook in getattr(getattr(kit or AdapterConformance, name), _COVERS_ATTR, ()):
            found.setdefault(hook, []).append(name)
    return found


@contextmanager
def _files_capped_at(limit: int) -> Iterator[None]:
    """While inside, no file of this process can grow past ``limit`` bytes: a write past it fails
    with ``OSError(EFBIG)``, as on a full disk (CPython ignores SIGXFSZ, so no signal kills us)."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))


def _files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.rglob("*") if p.is_file())


NOT_AN_ADAPTER = "invarlock_conformance_no_such_adapter"
"""An adapter name no plugin provides: hooks keyed by adapter name must return None for it."""


class AdapterConformance:
    """The adapter contract as pytest tests. See the module docstring for how to use it."""

    adapter_name: ClassVar[str]
    load_kwargs: ClassVar[dict[str, Any]] = {}
    device: ClassVar[str] = "cpu"
    batch_invariance_atol: ClassVar[float] = 1e-6
    """How far a window's loss (mean negative log-likelihood per scored token, in nats) may move
    between batch sizes 1, 3 and 8 when certify's ``score_windows`` scores it. 1e-6 is the guarantee
    for float32 models; a half-precision or quantized model sets what its kernels guarantee."""
    batch_invariance_windows: ClassVar[int] = 8
    """Windows scored at each batch size: one full batch of 8, and batches of 3 that end short."""
    logits_shape: ClassVar[tuple[int, int]] = (3, 8)
    """(batch, seq) of the token batch the logits tests score."""

    # -- fixtures and hooks a subclass may override ---------------------------------------------

    @pytest.fixture(scope="class")
    @classmethod
    def model_id(cls) -> str:
        raise NotImplementedError("provide a `model_id` fixture: a local checkpoint for this adapter")

    @pytest.fixture(scope="class")
    @classmethod
    def other_model_id(cls) -> str:
        raise NotImplementedError("provide an `other_model_id` fixture: a checkpoint of another shape")

    @pytest.fixture(scope="class")
    @classmethod
    def tokenizer_model_id(cls) -> str:
        raise NotImplementedError(
            "this adapter's plugin implements invarlock_load_tokenizer: provide a "
            "`tokenizer_model_id` fixture, a local checkpoint with its tokenizer"
        )

    @pytest.fixture(scope="class")
    @classmethod
    def expected_resolution(cls) -> str:
        """The adapter ``--adapter auto`` must pick for ``model_id`` loaded with ``load_kwargs``:
        this one, unless overridden."""
        return str(cls.adapter_name)

    @pytest.fixture
    def adapter(self) -> Adapter:
        return get_adapter(self.adapter_name)

    @pytest.fixture
    def model(self, adapter: Adapter, model_id: str) -> Any:
        return adapter.load_model(model_id, device=self.device, **self.load_kwargs)

    def mutate(self, model: Any) -> None:
        """The edit applied between snapshot and restore; override for exotic weight types."""
        mutate_weights(model)

    def include_prefix(self, model: Any) -> str:
        """The module a partial (``include=``) snapshot captures: by default the module of the
        middle parameter, so the snapshot holds some of the model and leaves some out."""
        names: list[str] = [name for name, _ in model.named_parameters()]
        return names[len(names) // 2].rsplit(".", 1)[0]

    # -- helpers ---------------------------------------------------------------------------------

    @property
    def snapshot_support(self) -> SnapshotSupport:
        return get_plugin_manager().adapter_spec(self.adapter_name).snapshot

    def _plugin_name(self) -> str:
        """The registered name of the plugin that provides this adapter."""
        name = get_plugin_manager().plugin_of_adapter(self.adapter_name)
        assert name is not None, f"no loaded plugin registers {self.adapter_name}"
        return name

    def _plugin_implements(self, hook_name: str) -> bool:
        return hook_name in get_plugin_manager().plugin_records[self._plugin_name()].hooks

    def _own_hookimpls(self, hook_name: str) -> list[Any]:
        """This adapter's plugin's implementations of ``hook_name`` that answer (wrappers excluded)."""
        hook = getattr(get_plugin_manager().hook, hook_name)
        plugin = self._plugin_name()
        return [
            impl
            for impl in hook.get_hookimpls()
            if impl.plugin_name == plugin and not (impl.wrapper or impl.hookwrapper)
        ]

    def _edit_then_refuse(self, model: Any, error: type[Exception], restore: Callable[[], Any]) -> str:
        """Edit the model, check ``restore`` raises ``error``, and that the refusal changed nothing."""
        self.mutate(model)
        edited = full_state(model)
        with pytest.raises(error) as caught:
            restore()
        changed = differing_tensors(edited, full_state(model))
        assert not changed, f"a refused restore changed the model: {changed[:5]}"
        return str(caught.value)

    def _assert_changed_then_restored(self, model: Any, before: dict[str, Any], restore: Any) -> None:
        self.mutate(model)
        assert differing_tensors(before, full_state(model)), "the edit did not change the model"
        restore()
        assert_restored(before, model)

    def _refuses_every_snapshot(self, adapter: Adapter, model: Any, tmp_path: Path) -> None:
        """An adapter declaring ``SnapshotSupport.NO``: every snapshot operation is refused, and
        nothing is written."""
        operations: list[Callable[[], Any]] = [
            lambda: adapter.snapshot(model),
            lambda: adapter.snapshot(model, include=[""], same_device=True),
            lambda: adapter.restore(model, object()),
            lambda: adapter.snapshot_chunked(model, tmp_path),
            lambda: adapter.restore_chunked(model, tmp_path),
        ]
        for operation in operations:
            with pytest.raises(UnsupportedOperationError):
                operation()
        assert _files(tmp_path) == [], "a refused snapshot wrote files"

    def _token_batch(self, description: Mapping[str, Any], rows: int, seq: int) -> dict[str, Any]:
        import torch

        generator = torch.Generator().manual_seed(0)
        vocab = description["vocab_size"]
        ids = torch.randint(min(4, vocab - 1), vocab, (rows, seq), generator=generator)
        inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
        if description["role"] == "seq2seq":
            inputs["decoder_input_ids"] = torch.randint(
                min(4, vocab - 1), vocab, (rows, seq), generator=generator
            )
        return inputs

    # -- registration ----------------------------------------------------------------------------

    @covers("invarlock_register_adapters")
    def test_registered_and_ready(self) -> None:
        spec = get_plugin_manager().adapter_spec(self.adapter_name)
        assert spec.name == self.adapter_name
        assert isinstance(get_adapter(self.adapter_name), spec.adapter_class)
        readiness = check_backend(spec)
        assert readiness.status is Status.READY, readiness.reason

    @covers("invarlock_quantization_methods")
    def test_quantization_methods_are_well_formed(self) -> None:
        """What this adapter's plugin adds to ``invarlock plugins quantizers``: typed rows, one per
        method, each with a one-line reason, an install command where a backend is missing, and
        only first-party or registered adapters named as owners."""

        manager = get_plugin_manager()
        for impl in self._own_hookimpls("invarlock_quantization_methods"):
            rows = list(impl.function())
            methods = [getattr(row, "method", None) for row in rows]
            assert len(methods) == len(set(methods)), f"{impl.plugin_name} lists a method twice"
            for row in rows:
                assert isinstance(row, QuantizationMethod) and isinstance(row.status, QuantizerStatus), row
                assert row.reason.strip() and "\n" not in row.reason, f"{row.method}: reason is not one line"
                # An install command is given when the backend names one; when it names none (quark
                # says only "install the latest Quark"), guessing a distribution would be wrong.
                if row.install is not None:
                    assert row.status is QuantizerStatus.NEEDS_EXTRA, f"{row.method}: install without need"
                    assert row.install.startswith("pip install "), f"{row.method}: {row.install!r}"
                if row.adapter is not None and row.adapter not in FIRST_PARTY:
                    # A first-party owner may be uninstalled (the row then says how to install
                    # it); any other owner must be registered here.
                    manager.adapter_spec(row.adapter)

    # -- resolution ------------------------------------------------------------------------------

    @covers("invarlock_resolve_adapter")
    def test_auto_resolves_the_checkpoint(self, model_id: str, expected_resolution: str) -> None:
        resolution = resolve_adapter(model_id, self.load_kwargs)
        assert resolution.adapter == expected_resolution, resolution.reason
        assert isinstance(resolution.reason, str) and resolution.reason.strip()
        assert "\n" not in resolution.reason, "a resolution's reason is one line"

    # -- loading ---------------------------------------------------------------------------------

    @covers("invarlock_load_model")
    def test_load_answers_for_its_names_only(self, model_id: str, model: Any) -> None:
        assert model is not None
        for impl in self._own_hookimpls("invarlock_load_model"):
            answer = impl.function(
                **{
                    "adapter": NOT_AN_ADAPTER,
                    "model_id": model_id,
                    "device": self.device,
                    "options": dict(self.load_kwargs),
                }
            )
            assert answer is None, f"{impl.plugin_name} answered invarlock_load_model for {NOT_AN_ADAPTER}"

    @covers("invarlock_load_model")
    def test_declared_load_options_are_the_ones_refused_otherwise(
        self, adapter: Adapter, model_id: str
    ) -> None:
        """An adapter declaring ``AdapterSpec.load_options`` declares the kit's own ``load_kwargs``,
        and a key it does not declare is refused before loading with the closest declared one. An
        adapter declaring none is held to refusing a misspelt common key (``dtypes``)."""
        spec = get_plugin_manager().adapter_spec(self.adapter_name)
        declared = spec.load_options
        if declared is not None:
            undeclared = sorted(set(self.load_kwargs) - declared)
            assert not undeclared, f"{self.adapter_name} loads with {undeclared} but does not declare them"
            near = "dtype" if "dtype" in declared else sorted(declared)[0]
        else:
            near = "dtype"
        with pytest.raises(InvalidLoadOptionError) as caught:
            adapter.load_model(model_id, device=self.device, **self.load_kwargs, **{f"{near}s": None})
        assert f"did you mean {near}?" in str(caught.value), caught.value

    @covers("invarlock_load_model")
    def test_not_a_checkpoint_is_a_load_error(self, adapter: Adapter, tmp_path: Path) -> None:
        empty = tmp_path / "not-a-checkpoint"
        empty.mkdir()
        with pytest.raises(ModelLoadError) as caught:
            adapter.load_model(empty, device=self.device, **self.load_kwargs)
        assert str(empty) in str(caught.value), f"the load error does not name the path: {caught.value}"

    @covers("invarlock_load_tokenizer")
    def test_load_tokenizer(self, adapter: Adapter, request: pytest.FixtureRequest) -> None:
        if not self._plugin_implements("invarlock_load_tokenizer"):
            with pytest.raises(AdapterNotFoundError):
                adapter.load_tokenizer(".")
            return
        tokenizer_model_id = request.getfixturevalue("tokenizer_model_id")
        assert adapter.load_tokenizer(tokenizer_model_id) is not None
        for impl in self._own_hookimpls("invarlock_load_tokenizer"):
            answer = impl.function(
                **{"adapter": NOT_AN_ADAPTER, "model_id": tokenizer_model_id, "options": {}}
            )
            assert answer is None, f"{impl.plugin_name} answered invarlock_load_tokenizer for another adapter"

    # -- describing ------------------------------------------------------------------------------

    @covers("invarlock_describe")
    def test_describe_passes_contract(self, adapter: Adapter, model: Any) -> None:
        description = adapter.describe(model)
        validate_description(description, adapter=self.adapter_name)
        assert description["n_layer"] > 0
        assert description["n_params"] > 0
        declared = get_plugin_manager().adapter_spec(self.adapter_name).role
        if declared is not Role.ANY:
            assert description["role"] == declared.value, (
                "describe reports another role than the adapter declares"
            )

    @covers("invarlock_describe_config")
    def test_config_only_description_agrees_with_the_loaded_model(
        self, adapter: Adapter, model_id: str, model: Any
    ) -> None:
        """Where this adapter's plugin describes checkpoints from their config alone, the answer for
        ``model_id`` passes the contract, has a ``memory`` block counting the described parameters,
        and states the structure the loaded model has (the config is what the weights are built from)."""
        from invarlock.network import hub_offline_unless_allowed

        loaded = adapter.describe(model)
        for impl in self._own_hookimpls("invarlock_describe_config"):
            with hub_offline_unless_allowed():
                answer = impl.function(model_id=model_id, options={"trust_remote_code": False})
            assert answer is not None, f"{impl.plugin_name} cannot describe its own checkpoint's config"
            validate_description(answer, adapter=f"{impl.plugin_name}'s invarlock_describe_config")
            memory = answer.get("memory")
            assert isinstance(memory, dict), "a config-only description has a memory block"
            assert memory.get("parameters") == answer["n_params"], "the memory block counts other parameters"
            for key in (
                "model_type",
                "n_layer",
                "heads_per_layer",
                "kv_heads_per_layer",
                "mlp_dims",
                "hidden_size",
                "vocab_size",
            ):
                assert answer[key] == loaded[key], (
                    f"{key}: {answer[key]!r} from the config, {loaded[key]!r} loaded"
                )

    @covers(
        "invarlock_describe",
        "invarlock_logits",
        "invarlock_snapshot",
        "invarlock_restore",
        "invarlock_snapshot_chunked",
        "invarlock_restore_chunked",
    )
    def test_model_hooks_leave_other_models_alone(self, tmp_path: Path) -> None:
        foreign = object()
        arguments: dict[str, Any] = {
            "model": foreign,
            "inputs": {},
            "include": None,
            "same_device": False,
            "snapshot": object(),
            "directory": tmp_path,
            "shard_bytes": None,
            "path": tmp_path,
        }
        for hook_name in (
            "invarlock_describe",
            "invarlock_logits",
            "invarlock_snapshot",
            "invarlock_restore",
            "invarlock_snapshot_chunked",
            "invarlock_restore_chunked",
        ):
            for impl in self._own_hookimpls(hook_name):
                answer = impl.function(**{name: arguments[name] for name in impl.argnames})
                assert answer is None, f"{impl.plugin_name}'s {hook_name} answered for a model not its own"
        assert _files(tmp_path) == []

    # -- scoring ---------------------------------------------------------------------------------

    @covers("invarlock_logits")
    def test_logits_shape_dtype_and_device(self, adapter: Adapter, model: Any) -> None:
        import torch

        description = adapter.describe(model)
        rows, seq = self.logits_shape
        logits = adapter.logits(model, self._token_batch(description, rows, seq))
        assert isinstance(logits, torch.Tensor), f"logits are a {type(logits).__name__}, not a torch.Tensor"
        assert logits.is_floating_point(), f"logits are {logits.dtype}, not a float dtype"
        assert logits.device.type == "cpu", f"logits are on {logits.device}, not the CPU"
        assert tuple(logits.shape) == (rows, seq, description["vocab_size"])
        assert not logits.requires_grad, "logits carry an autograd graph (run without gradients)"
        assert bool(torch.isfinite(logits).all()), "logits hold NaN or inf"

    @covers("invarlock_logits")
    def test_window_losses_do_not_depend_on_the_batch(self, adapter: Adapter, model: Any) -> None:
        """The guarantee certify rests on: a window's loss is the same whatever windows share its
        batch. Scored through certify's own path (``score_windows``) at batch sizes 1, 3 and 8."""
        from invarlock.certification.evaluation.scoring import Framing, score_windows
        from invarlock.certification.evaluation.windows import Window

        description = adapter.describe(model)
        _, seq = self.logits_shape
        ids = self._token_batch(description, self.batch_invariance_windows, seq)["input_ids"].tolist()
        windows = [Window(index * seq, tuple(row)) for index, row in enumerate(ids)]
        config = getattr(model, "config", None)
        framing = Framing(
            description["role"],
            seed=0,
            mask_token_id=ids[0][0] if description["role"] == "masked_lm" else None,
            decoder_start_token_id=getattr(config, "decoder_start_token_id", None) or 0,
        )
        by_size = {
            size: score_windows(adapter, model, windows, framing, batch_size=size) for size in (1, 3, 8)
        }
        alone = by_size[1]
        for size, scores in by_size.items():
            assert [s.window_id for s in scores] == [w.window_id for w in windows]
            for one, batched in zip(alone, scores, strict=True):
                loss_alone, loss_batched = one.nll / one.tokens, batched.nll / batched.tokens
                gap = abs(loss_alone - loss_batched)
                assert one.tokens == batched.tokens and gap <= self.batch_invariance_atol, (
                    f"window {one.window_id}'s loss is {loss_batched!r} per token in batches of {size} and "
                    f"{loss_alone!r} alone (a gap of {gap:.3g}, allowed {self.batch_invariance_atol:g})"
                )
        again = score_windows(adapter, model, windows, framing, batch_size=8)
        assert [s.nll for s in again] == [s.nll for s in by_size[8]], "the same windows scored twice differ"

    # -- snapshot and restore --------------------------------------------------------------------

    @covers("invarlock_snapshot", "invarlock_restore")
    def test_snapshot_restore_bit_exact(self, adapter: Adapter, model: Any, tmp_path: Path) -> None:
        if self.snapshot_support is SnapshotSupport.NO:
            self._refuses_every_snapshot(adapter, model, tmp_path)
            return
        before = full_state(model)
        snapshot = adapter.snapshot(model)
        self._assert_changed_then_restored(model, before, lambda: adapter.restore(model, snapshot))
        # Restoring twice from one snapshot works: a restore does not consume it.
        self.mutate(model)
        answered = get_plugin_manager().hook.invarlock_restore(model=model, snapshot=snapshot)
        assert answered is True, "invarlock_restore returns True once restored"
        assert_restored(before, model)

    @covers("invarlock_snapshot", "invarlock_restore")
    def test_same_device_snapshot_restores_bit_exact(
        self, adapter: Adapter, model: Any, tmp_path: Path
    ) -> None:
        if self.snapshot_support is SnapshotSupport.NO:
            self._refuses_every_snapshot(adapter, model, tmp_path)
            return
        before = full_state(model)
        snapshot = adapter.snapshot(model, same_device=True)
        self._assert_changed_then_restored(model, before, lambda: adapter.restore(model, snapshot))

    @covers(
        "invarlock_snapshot", "invarlock_restore", "invarlock_snapshot_chunked", "invarlock_restore_chunked"
    )
    @pytest.mark.parametrize("chunked", [False, True], ids=["memory", "chunked"])
    def test_partial_snapshot_restores_only_what_it_includes(
        self, adapter: Adapter, model: Any, tmp_path: Path, chunked: bool
    ) -> None:
        if self.snapshot_support is SnapshotSupport.NO:
            self._refuses_every_snapshot(adapter, model, tmp_path)
            return
        prefix = self.include_prefix(model)
        before = full_state(model)
        if chunked:
            path = adapter.snapshot_chunked(model, tmp_path, include=[prefix])
        else:
            snapshot = adapter.snapshot(model, include=[prefix])
        included = {name for name in before if name == prefix or name.startswith(prefix + ".")}
        assert included, f"include_prefix {prefix!r} names no tensor of the model"
        # A tensor tied to an included one is restored with it: it is the same storage.
        shared = {
            name
            for name, tensor in [
                *model.named_parameters(remove_duplicate=False),
                *model.named_buffers(remove_duplicate=False),
            ]
            if tensor.untyped_storage().data_ptr()
            in {
                t.untyped_storage().data_ptr()
                for n, t in [*model.named_parameters(), *model.named_buffers()]
                if n in included
            }
        }
        self.mutate(model)
        edited = full_state(model)
        if chunked:
            adapter.restore_chunked(model, path)
        else:
            adapter.restore(model, snapshot)
        after = full_state(model)
        not_restored = differing_tensors({n: before[n] for n in included}, {n: after[n] for n in included})
        assert not not_restored, f"include=[{prefix!r}] did not restore {not_restored[:5]}"
        outside = [n for n in after if not n.startswith(prefix) and n not in shared]
        assert outside, f"include=[{prefix!r}] covers the whole model; override include_prefix"
        touched = differing_tensors({n: edited[n] for n in outside}, {n: after[n] for n in outside})
        assert not touched, f"include=[{prefix!r}] also restored {touched[:5]}"

    @covers("invarlock_snapshot_chunked", "invarlock_restore_chunked")
    def test_chunked_round_trip(self, adapter: Adapter, model: Any, tmp_path: Path) -> None:
        if self.snapshot_support is SnapshotSupport.NO:
            self._refuses_every_snapshot(adapter, model, tmp_path)
            return
        before = full_state(model)
        path = adapter.snapshot_chunked(model, tmp_path)
        assert path.is_dir() and path.parent == tmp_path
        assert list(tmp_path.iterdir()) == [path], "the snapshot left other entries beside it"
        self._assert_changed_then_restored(model, before, lambda: adapter.restore_chunked(model, path))
        self.mutate(model)
        answered = get_plugin_manager().hook.invarlock_restore_chunked(model=model, path=path)
        assert answered is True, "invarlock_restore_chunked returns True once restored"
        assert_restored(before, model)

    @covers("invarlock_snapshot_chunked")
    def test_chunked_shards_are_bounded_and_default_to_the_temp_dir(
        self, adapter: Adapter, model: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        if self.snapshot_support is SnapshotSupport.NO:
            self._refuses_every_snapshot(adapter, model, tmp_path)
            return
        whole = adapter.snapshot_chunked(model, tmp_path / "default")
        small = adapter.snapshot_chunked(model, tmp_path / "small", shard_bytes=4096)
        assert len(_files(small)) > len(_files(whole)), "shard_bytes does not bound the shards"
        before = full_state(model)
        self._assert_changed_then_restored(model, before, lambda: adapter.restore_chunked(model, small))
        monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "temp"))
        (tmp_path / "temp").mkdir()
        default = adapter.snapshot_chunked(model)
        assert default.parent == tmp_path / "temp", "directory=None does not use the system temp dir"

    @covers("invarlock_snapshot_chunked")
    def test_failed_chunked_write_leaves_nothing_behind(
        self, adapter: Adapter, model: Any, tmp_path: Path
    ) -> None:
        if self.snapshot_support is SnapshotSupport.NO:
            self._refuses_every_snapshot(adapter, model, tmp_path)
            return
        if os.name != "posix":
            pytest.skip("needs POSIX file-size limits to make a real write fail")
        complete = adapter.snapshot_chunked(model, tmp_path / "complete")
        largest = max(path.stat().st_size for path in _files(complete))
        target = tmp_path / "failing"
        target.mkdir()
        # A write fails part-way, as on a full disk: the largest file cannot be written whole.
        with _files_capped_at(largest // 2), pytest.raises(Exception) as caught:
            adapter.snapshot_chunked(model, target)
        assert not isinstance(caught.value, AssertionError), caught.value
        left = [str(p.relative_to(target)) for p in target.rglob("*")]
        assert left == [], f"a failed write left {left[:5]} behind"

    @covers("invarlock_restore", "invarlock_restore_chunked")
    def test_foreign_snapshot_refused(
        self, adapter: Adapter, model: Any, other_model_id: str, tmp_path: Path
    ) -> None:
        if self.snapshot_support is SnapshotSupport.NO:
            self._refuses_every_snapshot(adapter, model, tmp_path)
            return
        other = adapter.load_model(other_model_id, device=self.device, **self.load_kwargs)
        foreign = adapter.snapshot(other)
        foreign_path = adapter.snapshot_chunked(other, tmp_path)
        del other
        self._edit_then_refuse(model, SnapshotMismatchError, lambda: adapter.restore(model, foreign))
        self._edit_then_refuse(model, SnapshotMismatchError, lambda: adapter.restore(model, object()))
        self._edit_then_refuse(
            model, SnapshotMismatchError, lambda: adapter.restore_chunked(model, foreign_path)
        )

    @covers("invarlock_restore_chunked")
    @pytest.mark.parametrize("damage", ["flipped byte", "truncated", "missing file", "not a snapshot"])
    def test_damaged_chunked_snapshot_refused_untouched(
        self, adapter: Adapter, model: Any, tmp_path: Path, damage: str
    ) -> None:
        if self.snapshot_support is SnapshotSupport.NO:
            self._refuses_every_snapshot(adapter, model, tmp_path)
            return
        path = adapter.snapshot_chunked(model, tmp_path / "snapshots")
        largest = max(_files(path), key=lambda file: (file.stat().st_size, file.name))
        raw = bytearray(largest.read_bytes())
        if damage == "flipped byte":  # in the data: the size and any header stay intact
            raw[-(len(raw) // 4)] ^= 0x01
            largest.write_bytes(bytes(raw))
        elif damage == "truncated":
            largest.write_bytes(bytes(raw[: len(raw) // 2]))
        elif damage == "missing file":
            largest.unlink()
        else:
            path = tmp_path / "empty"
            path.mkdir()
        message = self._edit_then_refuse(
            model, SnapshotCorruptError, lambda: adapter.restore_chunked(model, path)
        )
        assert str(path) in message or largest.name in message, f"the error names no file: {message}"
