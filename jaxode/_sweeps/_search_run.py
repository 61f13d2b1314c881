"""Running a search: batches of trials asked from the sampler, planned and trained as a sweep's
cells (cohorts per structure, with the spec's pruning), told their validation errors, and
recorded in the sweep folder's `search.csv`."""

import csv
import dataclasses
import io
import pathlib

from .._files import atomic_write_text
from ._plan import make_plan
from ._pruning import PRUNED
from ._search import RandomSampler
from ._spec import SweepSpec
from ._sweep import sweep
from ._table import SUCCEEDED

TRIALS = "search.csv"
TRIAL_COLUMNS = ("trial", "cell", "state", "value", "steps")


def run_search(
    spec: SweepSpec,
    out,
    *,
    executor=None,
    progress: bool = True,
    retry_failed: bool = False,
    max_members: int | None = None,
    max_padding: float | None = None,
) -> list[dict]:
    """Trains the trials of `spec.search` in `out` and returns one record per trial:
    `trial`, `cell` (its row in `results.csv`), `state` (`complete`, `pruned`, `failed`),
    `value` (the validation error told to the sampler), `steps` and the sampled values.

    Trials are asked for in batches of `search.batch`; each batch is planned as the cells of
    a sweep (`make_plan`: one cohort per structure, split as `max_members` and `max_padding`
    say, with the spec's pruning) and trained by `sweep` into `out`, then told. A resumed
    search (the same command again, after any interruption) asks the sampler for the same
    trials (random) or goes on with the stored study (TPE), and skips the cells trained.
    """
    search = spec.search
    if search is None:
        raise ValueError("`spec` declares no [search]; run it with `sweep`.")
    out = pathlib.Path(out)
    study = search.sampler.open(out, spec.name, search.space)
    records = {r["trial"]: r for r in read_trials(out / TRIALS)}
    fields = sorted(search.space)
    while study.told() < search.trials:
        trials = study.ask(min(search.batch, search.trials - study.told()))
        batch = _batch_spec(spec, [values for _, values in trials])
        plan = make_plan(batch, max_members=max_members, max_padding=max_padding)
        cell_of = {tuple(c.values[f] for f in fields): c.key for c in plan.cells}
        cell_of.update({tuple(m.values[f] for f in fields): m.into.key for m in plan.merged})
        rows = {
            r["cell"]: r
            for r in sweep(
                plan, out, executor=executor, progress=progress, retry_failed=retry_failed
            )
        }
        for number, values in trials:
            key = cell_of[tuple(values[f] for f in fields)]
            row = rows[key]
            state, value = _outcome(row, search.metric)
            study.tell(number, value, state)
            records[number] = dict(
                trial=number, cell=key, state=state, value=value, steps=row.get("steps"), **values
            )
        _write(out / TRIALS, records, fields)
    return [records[n] for n in sorted(records)][: search.trials]


def _batch_spec(spec: SweepSpec, trials: list[dict]) -> SweepSpec:
    """`spec` with the distinct value sets of `trials` as its one zipped axis."""
    assert spec.search is not None
    fields = sorted(spec.search.space)
    combos = list(dict.fromkeys(tuple(values[f] for f in fields) for values in trials))
    axis = {f: [combo[i] for combo in combos] for i, f in enumerate(fields)}
    return dataclasses.replace(spec, grid={}, blocks=(), zip=(axis,), search=None)


def first_batch(spec: SweepSpec) -> SweepSpec:
    """The first batch of `spec`'s search as the random sampler of its seed draws it (what
    `--dry-run` plans; TPE's first trials are random draws too)."""
    search = spec.search
    assert search is not None
    study = RandomSampler(search.sampler.seed).open(None, spec.name, search.space)
    return _batch_spec(spec, [values for _, values in study.ask(min(search.batch, search.trials))])


def _outcome(row: dict, metric: str) -> tuple[str, float | None]:
    status = row.get("status")
    if status in SUCCEEDED:
        return "complete", row.get(metric)
    if status == PRUNED:
        return "pruned", row.get(metric)
    return "failed", None


def read_trials(path: pathlib.Path) -> list[dict]:
    """The rows of a search's `search.csv` (text values; `trial` an integer)."""
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    for row in rows:
        row["trial"] = int(row["trial"])
    return rows


def _write(path: pathlib.Path, records: dict, fields: list[str]) -> None:
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=[*TRIAL_COLUMNS, *fields], extrasaction="ignore")
    writer.writeheader()
    for number in sorted(records):
        writer.writerow(records[number])
    atomic_write_text(path, text.getvalue())
