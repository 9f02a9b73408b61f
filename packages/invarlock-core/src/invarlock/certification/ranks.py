"""One command on several ranks (``torchrun``): every rank does the same work, rank 0 writes.

Under ``torchrun --nproc-per-node N`` with a tensor-parallel plan (``tp_plan``) every rank loads
its shards of each model and scores the same windows; the forward passes are collectives, so a
rank that stops while the others are inside one would leave them waiting. The ranks therefore meet
at :meth:`Ranks.checkpoint` before every step that enters a collective (each load, each forward
pass) and at :meth:`Ranks.settle` at the end: each rank contributes its status (ok, or its error),
so a failure on any rank becomes an error on all of them at the next meeting, and the end result
(verdict, exit code, statistics) is checked to be the same everywhere. The meetings run over a
gloo group of their own, so they never interleave with the model's collectives.

Outside ``torchrun`` (``WORLD_SIZE`` unset or 1) :data:`SINGLE` does nothing and imports nothing.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

from invarlock.errors import InvarlockError, RankFailedError, TensorParallelError

MEETING_TIMEOUT = timedelta(hours=2)
"""How long a rank waits for the others at a meeting (transformers' own tensor-parallel timeout:
loading shards can take tens of minutes with high rank skew)."""
T = TypeVar("T")
TP_OPTION = "tp_plan"


@dataclass
class Ranks:
    """The ranks of this command: ``rank`` of ``world``; rank 0 (the lead) writes and prints."""

    rank: int = 0
    world: int = 1
    backend: str | None = None
    _group: Any = None

    @property
    def lead(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1

    def info(self) -> dict[str, Any]:
        """The certificate's ``tensor_parallel`` block."""
        return {"world_size": self.world, "backend": self.backend, "written_by_rank": 0}

    def checkpoint(self) -> None:
        """Meet the other ranks before a step that enters a collective; raises if any rank failed."""
        self._meet(("ok", None, None))

    def settle(self, error: InvarlockError | None, outcome: Mapping[str, Any] | None = None) -> None:
        """The last meeting: raises this rank's own error, another rank's (:class:`RankFailedError`),
        or :class:`TensorParallelError` when the ranks reached different outcomes."""
        if isinstance(error, RankFailedError) and error.settled:
            raise error  # raised by a meeting: every rank knows already
        if error is not None:
            self._meet(("failed", error.code, str(error)))
            raise error
        statuses = self._meet(("done", None, dict(outcome or {})))
        outcomes = [payload for _, _, payload in statuses]
        if any(other != outcomes[0] for other in outcomes):
            differing = next(rank for rank, other in enumerate(outcomes) if other != outcomes[0])
            raise TensorParallelError(
                f"rank {differing} of {self.world} reached another result than rank 0 "
                f"({_difference(outcomes[0], outcomes[differing])}); the ranks must score identically, "
                "so report this with both ranks' output"
            )

    def lead_writes(self, write: Callable[[], T]) -> T | None:
        """Rank 0 runs ``write`` (the one writer); every rank then meets (:meth:`settle`: a failed
        write stops them all) and the other ranks wait for rank 0 to end (:meth:`wait_for_lead`).
        ``write``'s result on rank 0, None on the others."""
        result, failure = None, None
        try:
            if self.lead:
                result = write()
        except InvarlockError as exc:
            failure = exc
        self.settle(failure)
        self.wait_for_lead()
        return result

    def wait_for_lead(self) -> None:
        """On ranks other than 0: return once rank 0's process has ended (its connection closes),
        so rank 0 finishes writing and exits with its own status before this rank exits: torchrun
        stops the other workers as soon as one exits with a non-zero status."""
        if self.lead or not self.distributed:
            return
        import contextlib

        import torch
        import torch.distributed as dist

        # rank 0 never sends: the receive ends (raising) when its process, and connection, is gone
        with contextlib.suppress(RuntimeError):
            dist.recv(torch.zeros(1), src=0, group=self._group)

    def before_each_forward(self, adapter: Any) -> Any:
        """``adapter``, or (on several ranks) a stand-in whose ``logits`` first meets the other ranks."""
        return _MeetingAdapter(adapter, self) if self.distributed else adapter

    def _meet(self, status: tuple[str, str | None, Any]) -> list[tuple[str, str | None, Any]]:
        if not self.distributed:
            return [status]
        import torch.distributed as dist

        statuses: list[Any] = [None] * self.world
        dist.all_gather_object(statuses, status, group=self._group)
        if status[0] == "failed":
            return statuses  # settle raises this rank's own error
        for rank, (state, code, message) in enumerate(statuses):
            if state == "failed":
                failure = RankFailedError(
                    f"rank {rank} of {self.world} stopped with [{code}] {message}; "
                    "every rank stops with it: fix what that rank reports"
                )
                failure.settled = True
                raise failure
        return statuses


SINGLE = Ranks()


class _MeetingAdapter:
    """An adapter whose every forward pass (``logits``) is preceded by a meeting of the ranks, so
    a rank that failed is known before the others enter the model's collectives."""

    def __init__(self, adapter: Any, ranks: Ranks) -> None:
        self._adapter, self._ranks = adapter, ranks

    def __getattr__(self, name: str) -> Any:
        return getattr(self._adapter, name)

    def logits(self, model: Any, inputs: Any) -> Any:
        self._ranks.checkpoint()
        return self._adapter.logits(model, inputs)


def ranks_for(option_sets: Sequence[Mapping[str, Any]], *, flag: str = "--tp-plan") -> Ranks:
    """The ranks of this process: :data:`SINGLE` outside ``torchrun``; under it, joins the process
    group (and a gloo group for the meetings) after checking a tensor-parallel plan was asked for."""
    world = int(os.environ.get("WORLD_SIZE", "1") or "1")
    planned = any(options.get(TP_OPTION) for options in option_sets)
    if world <= 1:
        if planned:
            raise TensorParallelError(
                f"{flag} loads one shard of the model per process, but this is a single process; "
                "start it with torchrun --nproc-per-node N -m invarlock ... (N = devices)"
            )
        return SINGLE
    if not planned:
        raise TensorParallelError(
            f"this process is one of {world} ranks (torchrun), but no tensor-parallel plan was asked for, "
            f"so every rank would load and score the whole model; pass {flag} auto, or run without torchrun"
        )
    import torch
    import torch.distributed as dist

    if not dist.is_available():
        raise TensorParallelError(
            "this torch build has no torch.distributed, so tensor parallelism cannot run; "
            "install a torch build with distributed support"
        )
    if not dist.is_initialized():
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        if torch.cuda.is_available():  # one device per rank, as transformers binds it
            torch.cuda.set_device(local_rank)
        backend = "cpu:gloo,cuda:nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend=backend, timeout=MEETING_TIMEOUT)
    group = dist.new_group(backend="gloo", timeout=MEETING_TIMEOUT)
    return Ranks(dist.get_rank(), dist.get_world_size(), str(dist.get_backend()), group)


def end_rank_process(code: int) -> None:
    """Under torchrun, once this rank's process group exists: end the process with ``code`` now,
    after flushing its output, instead of through the interpreter's teardown.

    That teardown destroys the live process group's threads in no set order and now and then aborts
    the process (``terminate called without an active exception``, SIGABRT: seen in about 1 of 3
    two-rank runs that stopped on an error), so torchrun reports the abort instead of the rank's
    exit status. Nothing is left to do by then: outputs are written and the ranks have met for the
    last time. Elsewhere (one process, or no process group) this returns and changes nothing."""
    if int(os.environ.get("WORLD_SIZE", "1") or "1") <= 1:
        return
    dist = sys.modules.get("torch.distributed")
    if dist is None or not dist.is_available() or not dist.is_initialized():
        return
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def is_dtensor(tensor: Any) -> bool:
    """Whether ``tensor`` is a ``torch.distributed.tensor.DTensor`` (a tensor-parallel shard)."""
    if "torch.distributed.tensor" not in sys.modules:  # no DTensor exists before it is imported
        return False
    from torch.distributed.tensor import DTensor

    return isinstance(tensor, DTensor)


def local_part(whole: Any, shard: Any) -> Any:
    """The part of ``whole`` (a plain tensor of the full shape) that this rank's ``shard`` (a
    DTensor) holds: split by the shard's own placements locally, without communicating."""
    from torch.distributed.tensor import distribute_tensor

    return distribute_tensor(whole, shard.device_mesh, shard.placements, src_data_rank=None).to_local()


def _difference(lead: Any, other: Any) -> str:
    if isinstance(lead, Mapping) and isinstance(other, Mapping):
        keys = sorted(k for k in lead.keys() | other.keys() if lead.get(k) != other.get(k))
        if keys:
            return f"{keys[0]}: {lead.get(keys[0])!r} on rank 0, {other.get(keys[0])!r} there"
    return "their results differ"
