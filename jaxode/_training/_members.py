"""What the host keeps of each member of a training, whatever trains it: its directory, history
and timing, and the one checkpoint layout every trainer writes and resumes from."""

import dataclasses
import math
import pathlib
from collections.abc import Callable
from typing import Any

import jax

from .._files import checkpoint_meta, load_checkpoint, save_checkpoint, write_history
from ._signals import interrupts_held
from ._status import Status

# The files a member with a directory writes there (a run directory holds more: `_rundir`).
CHECKPOINT, HISTORY = "checkpoint.eqx", "history.csv"
# A checkpoint holds a JSON header (`MemberRecord.meta` and the trainer's own entries) and a tree
# whose first part is the best parameters (see `read_best`).
LAYOUT = 3


def writes_files() -> bool:
    """Whether this process writes checkpoints and history (one process of several does)."""
    return jax.process_index() == 0


def check_layout(path, meta: dict) -> None:
    if meta.get("layout") != LAYOUT:
        raise ValueError(f"{path} was written by an older version of jaxode; start a new run.")


@dataclasses.dataclass
class MemberRecord:
    """What the host keeps of one member.

    **Fields:** `directory` (`None`: nothing is written); `history` (one dict per
    evaluation); `wall` (seconds of training so far, compilation excluded); `compile_time`;
    `checkpoint_step` (step of the last checkpoint written, `None`: none); `status` and
    `message` once the member stopped; `resumed` (it continued from a checkpoint);
    `training_started` (Unix time of this call's first step); `monitored` (the last
    monitored error, which the endings quote); `identity` (what the member is trained with,
    see `Checkpointing`).
    """

    directory: pathlib.Path | None
    history: list = dataclasses.field(default_factory=list)
    wall: float = 0.0
    compile_time: float = 0.0
    checkpoint_step: int | None = None
    status: Status = Status.RUNNING
    message: str = ""
    resumed: bool = False
    training_started: float | None = None
    monitored: float = math.nan
    identity: dict | None = None

    @property
    def checkpoint(self) -> pathlib.Path | None:
        return None if self.directory is None else self.directory / CHECKPOINT

    def can_resume(self) -> bool:
        return self.checkpoint is not None and self.checkpoint.is_file()

    def stop(self, status: Status, message: str) -> None:
        self.status, self.message = status, message

    def meta(self) -> dict:
        return dict(
            layout=LAYOUT,
            history=self.history,
            wall=self.wall,
            compile_time=self.compile_time,
            checkpoint_step=self.checkpoint_step,
            identity=self.identity,
        )

    def load(self, skeleton) -> tuple[dict, Any]:
        """`(meta, tree)` of this member's checkpoint, its history and timing taken over.

        **Raises:** `ValueError` for a checkpoint of another layout or model."""
        path = self.checkpoint
        # The header first: a changed structure (width, degree) is named as a changed
        # setting, not met as parameters that do not fit.
        meta = checkpoint_meta(path)
        check_layout(path, meta)
        _check_identity(path, meta.get("identity"), self.identity)
        meta, tree = load_checkpoint(path, skeleton)
        self.history = meta["history"]
        self.wall, self.compile_time = meta["wall"], meta["compile_time"]
        self.checkpoint_step, self.resumed = meta["checkpoint_step"], True
        return meta, tree

    def save(self, step: int, snapshot: Callable[[], tuple[dict, object]] | None = None) -> None:
        """Writes `history.csv` and, with a `snapshot` (a function giving the trainer's own
        header entries and the tree to store), `checkpoint.eqx` of `step`, atomically and
        history first, so that the rows on disk always reach the checkpoint a resume uses.
        Interrupts are held meanwhile, so that the record never names a checkpoint that is
        not on disk (the stop messages quote it)."""
        if self.directory is None:
            return
        with interrupts_held():
            if snapshot is not None:
                self.checkpoint_step = step
            if writes_files():
                write_history(self.directory / HISTORY, self.history)
                if snapshot is not None:
                    extra, tree = snapshot()
                    save_checkpoint(self.checkpoint, {**self.meta(), **extra}, tree)


def _check_identity(path, stored: dict | None, given: dict | None) -> None:
    if stored is None or given is None:
        return
    # Entries only one side has are settings a newer or older jaxode added or dropped: a
    # version change, not a changed run.
    changed = [
        f"{name}: {stored[name]!r} then, {given[name]!r} now"
        for name in sorted(set(stored) & set(given))
        if stored[name] != given[name]
    ]
    if not changed:
        return
    raise ValueError(
        f"{str(path)!r} was written by a training with other settings ("
        + "; ".join(changed)
        + "): a resume must continue what was started. Restore those settings (a run "
        "directory: its config.toml), or start a new run elsewhere."
    )


def read_best(path, params_skeleton) -> tuple[dict, object]:
    """`(meta, best parameters)` of a checkpoint of any trainer, without the rest of its
    state (the best parameters are the first tree of the file).

    **Raises:** `ValueError` for a checkpoint of another layout or model.
    """
    meta, best = load_checkpoint(path, params_skeleton)
    check_layout(path, meta)
    return meta, best


def restart_phrase(record: MemberRecord, unit: str, after: str = "") -> str:
    """What a resume of an interrupted member restarts from."""
    if record.directory is None:
        return "nothing to resume from (no checkpoint_dir)"
    if record.checkpoint_step is None:
        return f"no checkpoint was written yet, so a resume starts from {unit} 0"
    return f"a resume restarts from the checkpoint at {unit} {record.checkpoint_step}{after}"
