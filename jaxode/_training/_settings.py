"""The settings of a training that are not the trainer itself: when a member stops early, when
it is evaluated, and where its checkpoints go."""

import os
import pathlib
from collections.abc import Sequence

import equinox as eqx


def check_count(name: str, value, allow_none: bool = True) -> None:
    """**Raises:** `ValueError` naming `name` unless `value` is an integer >= 1 (or `None`)."""
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"`{name}` must be an integer >= 1, got {value!r}.")


class Stopping(eqx.Module):
    """When a member stops before its planned work is done.

    **Arguments:**

    - `patience`: stop (status `"early_stopped"`) after this many evaluations without a
      better validation error (`None`: never).
    - `divergence_factor`: stop (status `"diverged"`) at an evaluation whose monitored error
      (validation global relative error, or the training loss without validation data)
      exceeds this multiple of the lowest seen, the initial model's included (`None`: never).
    - `max_failed_batches`: stop (status `"solver_failed"`) after this many consecutive
      batches whose ODE solve failed (`None`: never). A failed batch is skipped: the
      parameters stay as they were.
    """

    patience: int | None = None
    divergence_factor: float | None = 100.0
    max_failed_batches: int | None = 10

    def __check_init__(self):
        check_count("patience", self.patience)
        check_count("max_failed_batches", self.max_failed_batches)
        factor = self.divergence_factor
        if factor is not None and (isinstance(factor, bool) or not factor > 1):
            raise ValueError(f"`divergence_factor` must be > 1 or None, got {factor!r}.")


class Evaluation(eqx.Module):
    """When members are evaluated (and checkpointed), and what an evaluation measures.

    **Arguments:**

    - `every`: optimisation steps between evaluations (`None`: one epoch).
    - `count_evaluations`: record field evaluations per solve on one batch (forward and
      backward) at the first, every `count_every`-th and the last evaluation; other history
      rows leave them out. An adaptive solve's are measured through host callbacks in a
      program of its own, which no compilation cache keeps (a few seconds per run on a CPU);
      a fixed-step model's follow from its structure.
    - `count_every`: see `count_evaluations`.
    - `pause_at`: stop every member at the first evaluation at or after this step, as an
      interrupt does (status `"interrupted"`, checkpoints and histories kept), and queue no
      work past it: a rung of successive halving, from which a resume goes on.
    """

    every: int | None = None
    count_evaluations: bool = False
    count_every: int | None = 10
    pause_at: int | None = None

    def __check_init__(self):
        check_count("every", self.every)
        check_count("count_every", self.count_every, allow_none=not self.count_evaluations)
        check_count("pause_at", self.pause_at)


def _directories(directory) -> tuple[pathlib.Path | None, ...] | None:
    if directory is None:
        return None
    if isinstance(directory, (str, os.PathLike)):
        return (pathlib.Path(directory),)
    if isinstance(directory, Sequence):
        return tuple(None if d is None else pathlib.Path(d) for d in directory)
    raise TypeError(
        "`directory` must be a path, or a sequence of paths (one per member), got "
        f"{type(directory).__name__}."
    )


class Checkpointing(eqx.Module):
    """Where each member writes `checkpoint.eqx` and `history.csv` (atomically, at every
    evaluation), and whether training resumes from them.

    **Arguments:**

    - `directory`: one directory (a single model), a sequence of one directory per member
      (`None` entries: that member writes nothing), or `None`: nothing is written.
    - `resume`: continue each member from the checkpoint in its directory when there is one
      (a member without one starts afresh).
    - `identity`: what each member is trained with, as a flat dictionary of JSON values
      (`{"train.learning_rate": 0.003, ...}`; one dictionary for all members, or a sequence
      of one per member), stored in its checkpoints: a resume whose identity differs from the
      stored one is refused, naming the entries that changed.
    """

    directories: tuple[pathlib.Path | None, ...] | None
    resume: bool = False
    identity: dict | tuple | None = eqx.field(static=True, default=None)

    def __init__(self, directory=None, *, resume: bool = False, identity=None):
        self.directories = _directories(directory)
        self.resume = resume
        self.identity = tuple(identity) if isinstance(identity, (list, tuple)) else identity

    def __check_init__(self):
        if self.resume and (self.directories is None or None in self.directories):
            raise ValueError("`resume=True` needs `checkpoint_dir`.")
        if self.identity is not None and not isinstance(self.identity, (dict, tuple)):
            raise TypeError(
                "`identity` must be a dictionary or a sequence of dictionaries (one per "
                f"member), got {type(self.identity).__name__}."
            )

    def identities(self, size: int) -> tuple[dict | None, ...]:
        """One identity (or `None`) per member of a cohort of `size`.

        **Raises:** `ValueError` when the number of identities is not `size`."""
        if not isinstance(self.identity, tuple):
            return (self.identity,) * size
        if len(self.identity) != size:
            raise ValueError(f"`identity` has {len(self.identity)} entries for {size} members.")
        return self.identity

    def of(self, size: int) -> tuple[pathlib.Path | None, ...]:
        """One directory (or `None`) per member of a cohort of `size`.

        **Raises:** `ValueError` when the number of directories is not `size`."""
        if self.directories is None:
            return (None,) * size
        if len(self.directories) != size:
            raise ValueError(
                f"`checkpoint_dirs` has {len(self.directories)} entries for {size} members."
            )
        return self.directories
