"""The trainer axis: what every trainer provides to the one host loop that drives it."""

import abc
import dataclasses
from collections.abc import Callable

import equinox as eqx
import numpy as np
from jaxtyping import PRNGKeyArray

from .._surrogate import Surrogate
from .._trajectories import TrajectoryModel
from ._members import MemberRecord
from ._placement import AbstractPlacement
from ._settings import Evaluation, Stopping
from ._status import Status


@dataclasses.dataclass(frozen=True)
class Problem:
    """What is trained, on what: the initial models of the members, their minibatch keys and
    the data (`(x, y)` NumPy arrays, normalised), checked by `fit`.

    `validation_model` maps a model to the one validation predicts with, when it differs (a
    `TrajectoryModel` validates over its whole validation region, a window of its own
    length); `stopping`, `evaluation` and `placement` are the settings of the call.
    """

    models: tuple[Surrogate | TrajectoryModel, ...]
    keys: tuple[PRNGKeyArray, ...] | None
    train: tuple[np.ndarray, np.ndarray]
    val: tuple[np.ndarray, np.ndarray] | None
    stopping: Stopping
    evaluation: Evaluation
    placement: AbstractPlacement
    validation_model: Callable | None = None

    @property
    def size(self) -> int:
        return len(self.models)


@dataclasses.dataclass(frozen=True)
class Outcome:
    """What one member of a training ended with (see `FitResult`)."""

    model: Surrogate | TrajectoryModel
    status: Status
    steps: int
    best_step: int
    solver_failures: int = 0
    failed_batches: int = 0
    num_traces: int = 0


@dataclasses.dataclass(frozen=True)
class Evaluated:
    """One member's evaluation: its history `row`, whether `history.csv` is written now,
    and the checkpoint written with it: a function giving the trainer's own header entries
    and the tree to store (called only by the process that writes files; `None`: no
    checkpoint)."""

    row: dict
    write: bool = True
    checkpoint: Callable[[], tuple[dict, object]] | None = None


class AbstractRun(abc.ABC):
    """The host side of one training by one trainer, driven by the host loop:
    `compile`, then `advance` while any member runs, and `outcome` of each member at the
    end. `members` are the records the loop keeps (the run sets their timing, status and
    message)."""

    members: list[MemberRecord]

    @abc.abstractmethod
    def compile(self) -> None:
        """Compiles what training needs before its first step and sets the members'
        `compile_time` and `training_started` (a trainer that compiles in its first
        `advance`, as GNvpro does per member, sets them there)."""

    @abc.abstractmethod
    def running(self) -> bool:
        """Whether any member still trains (a trainer of one member after another starts the
        next member here, once the loop has written the last one's files)."""

    @abc.abstractmethod
    def advance(self) -> dict[int, Evaluated]:
        """The work up to the next evaluation, and that evaluation of each member that
        reached it; a member that stopped gets its status and message here."""

    @abc.abstractmethod
    def progress(self) -> tuple[int, int, str]:
        """`(done, total, postfix)` of the progress bar."""

    @abc.abstractmethod
    def interrupt(self) -> None:
        """Marks the members still running as interrupted, with the message of each."""

    @abc.abstractmethod
    def outcome(self, k: int) -> Outcome:
        """What member `k` ended with."""


class AbstractTrainer(eqx.Module):
    """How the members of a training are optimised: a trainer is configuration (an
    optimiser, a budget) and `start` returns the `AbstractRun` that trains them.

    **Arguments of `start`:** the `Problem` and one `MemberRecord` record per member (with its
    checkpoint directory); `resume`: continue each member from its checkpoint when there is
    one.
    """

    @abc.abstractmethod
    def planned(self, num_samples: int) -> int:
        """The work planned per member (optimisation steps, or outer iterations) on a
        training set of `num_samples` samples."""

    @abc.abstractmethod
    def interval(self, num_samples: int, evaluation: Evaluation) -> int:
        """The work between two evaluations."""

    @abc.abstractmethod
    def start(self, problem: Problem, members: list[MemberRecord], resume: bool) -> AbstractRun:
        """Checks what it cannot honour (`ValueError` naming it), resumes or initialises
        every member, and returns the run."""
