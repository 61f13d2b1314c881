"""Successive halving inside a cohort: at each rung the members are ranked on validation error,
the worse part is stopped (status `"pruned"`, with the rung it reached) and the rest train on
as a smaller cohort, so that a pruned member costs nothing after its rung."""

import abc
import csv
import dataclasses
import math

from .._training import HISTORY, CohortLayout, RunDir, train_cohort

PRUNED = "pruned"


class AbstractPruning(abc.ABC):
    """How a cohort stops its hopeless members early, ranking them on `metric` (a
    validation error)."""

    metric: str

    @abc.abstractmethod
    def rungs(self, steps: int) -> list[int]:
        """The steps at which a cohort of `steps` steps per member is ranked."""

    @abc.abstractmethod
    def survivors(self, candidates: int) -> int:
        """How many of `candidates` members ranked at a rung train on."""


@dataclasses.dataclass(frozen=True)
class Halving(AbstractPruning):
    """Successive halving: rungs at `first_rung`, `first_rung * reduction`, ... steps (below a
    member's total); at each rung the best `1 / reduction` of the members train on, rounded
    down to a power of two (at least one), so that the cohorts of every rung have a few
    shapes whose compiled programs the compilation cache keeps.

    **Arguments:**

    - `first_rung`: steps before the first ranking; a multiple of the evaluation interval
      (the ranking reads the validation error evaluated there).
    - `reduction`: the factor by which each rung shrinks the cohort (>= 2).
    - `metric`: the validation column ranked, lowest first (`val_global` or
      `val_per_sample`: never a test metric).
    """

    first_rung: int
    reduction: int = 2
    metric: str = "val_global"

    def __post_init__(self):
        for name in ("first_rung", "reduction"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"pruning.{name} must be an integer >= 1, got {value!r}.")
        if self.reduction < 2:
            raise ValueError(f"pruning.reduction must be at least 2, got {self.reduction}.")
        if self.metric not in ("val_global", "val_per_sample"):
            raise ValueError(
                f"pruning.metric must be 'val_global' or 'val_per_sample' (a validation "
                f"error: a test metric never selects), got {self.metric!r}."
            )

    def rungs(self, steps):
        out, rung = [], self.first_rung
        while rung < steps:
            out.append(rung)
            rung *= self.reduction
        return out

    def survivors(self, candidates):
        share = candidates // self.reduction
        return 1 if share < 1 else 2 ** int(math.log2(share))


PRUNINGS = {"halving": Halving}


def pruning_from_table(table: dict, source: str) -> AbstractPruning:
    """The pruning a spec's `[pruning]` table declares (`kind = "halving"` and its
    arguments).

    **Raises:** `ValueError` naming the unknown kind or key, or the invalid value."""
    values = dict(table)
    kind = values.pop("kind", None)
    if kind not in PRUNINGS:
        raise ValueError(f"{source}: pruning.kind must be one of {list(PRUNINGS)}, got {kind!r}.")
    known = {f.name for f in dataclasses.fields(PRUNINGS[kind])}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(
            f"{source}: unknown pruning key(s) {unknown}; {kind} takes {', '.join(sorted(known))}."
        )
    try:
        return PRUNINGS[kind](**values)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{source}: {error}") from None


def _history(run_dir: RunDir) -> list[dict]:
    """The rows of a cell's `history.csv`, numbers as floats (empty: `None`)."""
    path = run_dir / HISTORY
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        return [{k: _number(v) for k, v in row.items()} for row in csv.DictReader(f)]


def _number(text: str):
    try:
        return float(text) if text else None
    except ValueError:
        return text


def _reached(run_dir: RunDir) -> int:
    """Steps a cell's run directory has evaluated (0 before its first evaluation)."""
    return max((int(row["step"]) for row in _history(run_dir)), default=0)


def _score(run_dir: RunDir, rung: int, metric: str) -> float:
    """The best validation error a cell reached by step `rung` (`inf` without one)."""
    values = [row.get(metric) for row in _history(run_dir) if int(row["step"]) <= rung]
    finite = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    return min(finite, default=math.inf)


def resume_cohort(cells: list, layout: CohortLayout | None, stop_at: int | None = None):
    """`train_cohort` of `cells` (`(config, key, run_dir)`, started or resumed), in `layout`,
    quietly, up to `stop_at` where given."""
    return train_cohort(
        [config for config, _, _ in cells],
        [run_dir.path for _, _, run_dir in cells],
        resume=True,
        progress=False,
        layout=layout,
        stop_at=stop_at,
    )


def train_with_pruning(
    pending: list, finished: list, pruning: AbstractPruning, steps: int, layout: CohortLayout | None
) -> dict:
    """Trains the cells of `pending` (`(config, key, run_dir)`, one cohort) rung by rung, then
    the survivors to the end; returns the metrics of the cells of `pending` by key (an
    interrupt leaves the cells it stopped without metrics: status `"interrupted"`).

    The candidates of a rung are the cohort's cells that reached it, `finished` ones (`(key,
    run_dir)` of cells that had stopped before this call, a resumed sweep) included, ranked by
    the best validation error their history holds up to the rung: a resume ranks exactly as
    the first attempt did.
    """
    results: dict = {}
    everyone = [(key, run_dir) for _, key, run_dir in pending] + list(finished)
    alive = list(pending)
    for number, rung in enumerate(pruning.rungs(steps), start=1):
        behind = [cell for cell in alive if _reached(cell[2]) < rung]
        if behind:
            outcomes = resume_cohort(behind, layout, stop_at=rung)
            for (_, key, run_dir), (_, _, metrics) in zip(behind, outcomes):
                if metrics:  # stopped by itself: out of the race from here on
                    results[key] = metrics
                elif _reached(run_dir) < rung:  # interrupted before the rung
                    return results
        alive = [cell for cell in alive if cell[1] not in results]
        ranked = sorted(
            (_score(run_dir, rung, pruning.metric), key)
            for key, run_dir in everyone
            if _reached(run_dir) >= rung
        )
        keep = {key for _, key in ranked[: pruning.survivors(len(ranked))]}
        for position, (score, key) in enumerate(ranked, start=1):
            cell = next((c for c in alive if c[1] == key), None)
            if key in keep or cell is None:
                continue
            metrics = {
                "status": PRUNED,
                "message": (
                    f"pruned at rung {number} (step {rung}): {pruning.metric} {score:.4g}, "
                    f"ranked {position} of {len(ranked)}"
                ),
                "steps": rung,
                "rung": number,
                pruning.metric: score,
            }
            cell[2].write_metrics(metrics)
            results[key] = metrics
        alive = [cell for cell in alive if cell[1] not in results]
    if alive:
        outcomes = resume_cohort(alive, layout)
        for (_, key, _), (_, result, metrics) in zip(alive, outcomes):
            results[key] = metrics or {"status": str(result.status), "message": result.message}
    return results
