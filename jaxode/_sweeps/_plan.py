"""A sweep's plan: its cells grouped into cohorts (one compiled program each), checked against
their data, with an optional cost estimate from a short timing."""

import dataclasses
import pathlib
import sys
import tempfile
import time

from .._process import set_precision as use_precision
from .._training import (
    BASIS_FIELDS,
    COHORT_FIELDS,
    HORIZON_FIELDS,
    MAX_COHORT,
    CohortLayout,
    RunConfig,
    build_settings,
    build_trainer,
    cohort_layout,
    load_data,
    members_within_limit,
    padded_degree,
    train_cohort,
)
from ._pruning import AbstractPruning
from ._spec import FIELDS, Merged, SweepSpec

# Cohorts that share these fields cost about the same per step and member.
_KIND_FIELDS = (
    ("data", "dataset"),
    ("model", "model"),
    ("model", "field"),
    ("model", "width"),
    ("model", "hidden"),
    ("model", "solver"),
    ("model", "paradigm"),
    ("model", "steps"),
    ("train", "batch_size"),
    ("train", "precision"),
    ("train", "optimiser"),
)
_PROBED_KINDS = 8
_PROBE_INTERVAL = 100
# Plans of more combinations than this show a progress bar (when asked to).
PROGRESS_CELLS = 2000


@dataclasses.dataclass(frozen=True)
class Cohort:
    """Cells that differ only in `COHORT_FIELDS`, trained as one program; `steps` is the
    work planned for each member (optimisation steps, or outer iterations), `interval` the
    work between two evaluations."""

    key: str
    cells: tuple
    steps: int
    interval: int
    structure: str = ""  # the key of the cohort this one is a part of (its own if whole)
    # Its layout (padded degree, learning rates as data), fixed when planned: the parts of
    # one structure share it (and their program), and a resume with fewer cells keeps it.
    layout: CohortLayout = CohortLayout()
    pruning: AbstractPruning | None = None

    @property
    def program(self) -> tuple[str, int]:
        """What its compiled program depends on: the structure and the number of members."""
        return self.structure or self.key, len(self.cells)

    @property
    def config(self) -> RunConfig:
        return self.cells[0].config

    @property
    def padded(self) -> int | None:
        """The degree the members' bases are padded to, `None` when they share one basis."""
        return self.layout.pad_to


@dataclasses.dataclass(frozen=True)
class SweepPlan:
    """The cells of a spec and their cohorts, in spec order, and the combinations of its axes
    that earlier cells train (`merged`, each a `Merged`: its configuration differs from the
    cell's only in settings both ignore)."""

    spec: SweepSpec
    cells: tuple
    cohorts: tuple
    merged: tuple = ()

    def describe(self) -> str:
        """The plan as text: counts, a line per reason for which combinations were merged into
        other cells (`merged_lines`), then one line per cohort."""
        members = [len(c.cells) for c in self.cohorts]
        programs = len({c.program for c in self.cohorts})
        sizes = f"{min(members)}-{max(members)}" if len(set(members)) > 1 else f"{members[0]}"
        each = f"{sizes} member" + ("" if sizes == "1" else "s")
        lines = [
            f"sweep {self.spec.name!r}: {_count(len(self.cells), 'cell')} in "
            f"{_count(len(self.cohorts), 'cohort')} ({each} each), "
            f"{_count(programs, 'compilation')} (one per structure and cohort size)",
            *self.merged_lines(),
        ]
        varying = varying_fields(self.cells)
        for cohort in self.cohorts:
            shown = {n: v for n, v in cohort.cells[0].values.items() if n in varying}
            # The values its members differ in are listed with them, not in its label.
            shown = {n: v for n, v in shown.items() if n not in varying_fields(cohort.cells)}
            label = ", ".join(f"{n}={v!r}" for n, v in shown.items()) or "base"
            lines.append(
                f"  cohort {cohort.key}: {label}; {_count(len(cohort.cells), 'member')} "
                f"({_member_values(cohort)}), {cohort.steps} steps{_padding_note(cohort)}"
            )
        return "\n".join(lines)

    def merged_lines(self) -> list[str]:
        """One line for each reason (or set of reasons) for which combinations of the axes
        were merged into other cells: how many cells went into how many, which settings are
        ignored and why, and an example. Empty when nothing was merged.

        **Returns:** e.g. `["2 cells merged into 1: model.degree is ignored (model.basis
        'static' has one constant basis function); model.basis='static', model.degree=2 trains
        as model.basis='static', model.degree=1"]`."""
        groups: dict[tuple, list[Merged]] = {}
        for merge in self.merged:
            groups.setdefault(tuple(dict.fromkeys(merge.reasons.values())), []).append(merge)
        lines = []
        for reasons, merges in groups.items():
            into = len({merge.into.key for merge in merges})
            named = {n for merge in merges for n in merge.reasons}
            fields = {
                reason: [n for n in FIELDS if n in named and _reason(merges, n) == reason]
                for reason in reasons
            }
            why = "; ".join(
                f"{', '.join(names)} {'is' if len(names) == 1 else 'are'} ignored ({reason})"
                for reason, names in fields.items()
            )
            example, more = merges[0], len(merges) - 1
            lines.append(
                f"{len(merges) + into} cells merged into {into}: {why}; {example.label()} "
                f"trains as {example.into.label()}" + (f" (and {more} more)" if more else "")
            )
        return lines


def _member_values(cohort: Cohort) -> str:
    """The seeds of a cohort's members and the distinct values of every other cohort field
    in which they differ: `seeds 0, 1; train.learning_rate 0.001, 0.003` (more than
    `LISTED` numbers as their count and range: a search's trials)."""
    parts = []
    for section, field in COHORT_FIELDS + BASIS_FIELDS + HORIZON_FIELDS:
        values = [getattr(getattr(c.config, section), field) for c in cohort.cells]
        if field == "seed":
            parts.insert(0, f"seeds {_listed(values)}")
        elif len(set(values)) > 1:
            parts.append(f"{section}.{field} {_listed(values)}")
    return "; ".join(parts)


LISTED = 8


def _listed(values: list) -> str:
    distinct = list(dict.fromkeys(values))
    numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in distinct)
    if len(distinct) > LISTED and numbers:
        return f"{len(distinct)} values from {min(distinct):.4g} to {max(distinct):.4g}"
    return ", ".join(map(str, distinct))


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" + ("" if number == 1 else "s")


def _own_size(config: RunConfig) -> int:
    """Basis functions of `config`'s own basis, for a polynomial one."""
    return 1 if config.model.basis == "static" else config.model.degree + 1


def _padding_note(cohort: Cohort) -> str:
    """What padding costs a cohort of several bases and what it saves, or nothing."""
    degree = cohort.padded
    if degree is None:
        return ""
    own = sum(_own_size(c.config) for c in cohort.cells)
    padded = (degree + 1) * len(cohort.cells)
    structures = len({(c.config.model.basis, _own_size(c.config)) for c in cohort.cells})
    return (
        f"; bases padded to degree {degree}: {padded} basis functions against {own} of the "
        f"members' own, {100 * (padded - own) / own:.0f} % more arithmetic in the time-varying "
        f"layers per step, for 1 compilation instead of {structures}"
    )


def _reason(merges: list, name: str) -> str | None:
    """The reason the first of `merges` that names setting `name` gives for it."""
    return next((m.reasons[name] for m in merges if name in m.reasons), None)


def varying_fields(cells) -> set:
    """The axis fields that take more than one value over `cells`."""
    names = {n for c in cells for n in c.values}
    return {n for n in names if len({repr(c.values.get(n)) for c in cells}) > 1}


def _work(config: RunConfig, data) -> tuple[int, int]:
    """`(steps, interval)` of a run of `config` on `data`: the work its trainer plans and
    the work between two evaluations.

    **Raises:** `ValueError` for settings the trainer or the data cannot satisfy."""
    trainer = build_trainer(config, data)
    num_samples = data.sizes()["train"]
    evaluation = build_settings(config, data)["evaluation"]
    return trainer.planned(num_samples), trainer.interval(num_samples, evaluation)


def make_plan(
    spec: SweepSpec,
    *,
    progress: bool = False,
    max_members: int | None = None,
    max_padding: float | None = None,
) -> SweepPlan:
    """Expands `spec` (in one pass), loads each data set once and groups the cells into
    cohorts, building the trainer of each cohort once (its members share trainer and
    settings) to check the cohort's settings against its data and learn its work.
    Combinations that an earlier cell trains (they differ from it only in settings both
    ignore) are the plan's `merged`.

    **Arguments:**

    - `progress`: a progress bar on stderr over the cells, for a spec of more than 2000
      combinations (smaller ones plan in well under a second).
    - `max_members`: the most members of one cohort; a larger one is split into near-equal
      parts (sizes differing by at most one: at most two compilations), named
      `<key>-1`, `<key>-2`, ... Default: as many as `MAX_COHORT` and the memory limit allow
      (`members_within_limit`).
    - `max_padding`: the most a member's basis may be padded, as the ratio of the cohort's
      basis functions to its own (a static member in a cohort of degree 3: 4); cells of
      polynomial bases whose degrees lie further apart train in cohorts of their own, named
      `<key>-degree<D>`. Default: no limit (one cohort, one compilation).

    **Raises:** `ValueError` or `FileNotFoundError` naming the cell whose configuration is
    invalid, whose data set is missing or cannot satisfy its settings; `ValueError` for two
    cells with the same configuration or a spec without cells."""
    from tqdm.auto import tqdm

    bar = tqdm(
        total=spec.size(),
        unit="cell",
        desc="planning",
        disable=not progress or spec.size() <= PROGRESS_CELLS,
        file=sys.stderr,
        dynamic_ncols=True,
        mininterval=0.5,
    )
    cells, datasets, groups, works, merged = [], {}, {}, {}, []
    with bar:
        expanded = spec.expand(advance=bar.update, merged=merged.append)
        for index, (cell, cohort) in enumerate(expanded):
            cells.append(cell)
            groups.setdefault(cohort, []).append(cell)
            if cohort in works:
                continue
            d = cell.config.data
            source = (d.dataset, d.split_seed, d.protocol, d.num_outputs, d.window)
            try:
                if source not in datasets:
                    datasets[source] = load_data(cell.config)
                works[cohort] = _work(cell.config, datasets[source])
            except (ValueError, FileNotFoundError) as error:
                raise type(error)(f"sweep cell {index} ({cell.label()}): {error}") from None
    if max_members is not None and (isinstance(max_members, bool) or max_members < 1):
        raise ValueError(f"--max-members must be an integer >= 1, got {max_members!r}.")
    if max_padding is not None and not max_padding >= 1:
        raise ValueError(f"--max-padding must be a number >= 1, got {max_padding!r}.")
    cohorts = []
    for group, key, members in _buckets(groups, max_padding):
        config = members[0].config
        d = config.data
        data = datasets[(d.dataset, d.split_seed, d.protocol, d.num_outputs, d.window)]
        within = members_within_limit([c.config for c in members], data)
        limit = min(MAX_COHORT, max_members or MAX_COHORT, MAX_COHORT if within is None else within)
        parts = _parts(members, limit)
        steps, interval = works[group]
        pruning = spec.pruning
        if pruning is not None:
            _check_rungs(pruning, steps, interval, members[0])
        layout = cohort_layout([c.config for c in members])
        for number, part in enumerate(parts, start=1):
            name = key if len(parts) == 1 else f"{key}-{number}"
            cohorts.append(
                Cohort(name, tuple(part), steps, interval, key, layout=layout, pruning=pruning)
            )
    return SweepPlan(spec, tuple(cells), tuple(cohorts), tuple(merged))


def _buckets(groups: dict, max_padding: float | None) -> list[tuple[str, str, list]]:
    """`(group key, cohort key, cells)` of `groups`, each group of several polynomial
    degrees split where `max_padding` asks: from the smallest basis up, a bucket takes the
    members whose own basis is padded at most `max_padding` times (in basis functions) to
    the bucket's largest."""
    out = []
    for key, members in groups.items():
        sizes = sorted({_own_size(c.config) for c in members})
        if max_padding is None or padded_degree([c.config for c in members]) is None:
            out.append((key, key, members))
            continue
        ranges = []
        for size in sizes:
            if ranges and size <= max_padding * ranges[-1][0]:
                ranges[-1][1] = size
            else:
                ranges.append([size, size])
        if len(ranges) == 1:
            out.append((key, key, members))
            continue
        for low, high in ranges:
            chosen = [c for c in members if low <= _own_size(c.config) <= high]
            out.append((key, f"{key}-degree{high - 1}", chosen))
    return out


def _check_rungs(pruning: AbstractPruning, steps: int, interval: int, cell) -> None:
    """**Raises:** `ValueError` when a rung falls between two evaluations of `cell`'s
    cohort, or when there is no rung before its end."""
    rungs = pruning.rungs(steps)
    if not rungs:
        raise ValueError(
            f"pruning: no rung before the end of the cells' {steps} steps ({cell.label()}); "
            "lower pruning.first_rung."
        )
    off = [rung for rung in rungs if rung % interval]
    if off:
        raise ValueError(
            f"pruning: rung at step {off[0]} falls between two evaluations of {cell.label()} "
            f"(every {interval} steps); make pruning.first_rung a multiple of {interval}."
        )


def _parts(members: list, limit: int) -> list[list]:
    """`members` in consecutive parts of at most `limit`, their sizes differing by at most one."""
    count = -(-len(members) // max(limit, 1))  # a member that fits nowhere: refused later
    size, extra = divmod(len(members), count)
    parts, start = [], 0
    for number in range(count):
        end = start + size + (number < extra)
        parts.append(members[start:end])
        start = end
    return parts


def _kind(config: RunConfig) -> tuple:
    return tuple(getattr(getattr(config, s), f) for s, f in _KIND_FIELDS)


def _probe(cohort: Cohort, set_precision: bool) -> tuple[float, float] | str:
    """`(fixed seconds, seconds per step and member)` of `cohort`, from training it for three
    evaluation intervals (of at most 100 steps), or the reason it could not be timed: every
    member stopped early (diverged, solver failed), too few evaluations, or training raised."""
    interval = min(cohort.interval, _PROBE_INTERVAL)
    configs = [
        c.config.replace(
            "train", iterations=3 * interval, eval_every_iterations=interval, patience=None
        )
        for c in cohort.cells
    ]
    if set_precision:
        use_precision(cohort.config.train.precision)
    with tempfile.TemporaryDirectory(prefix="jaxode-estimate-") as folder:
        dirs = [pathlib.Path(folder) / str(i) for i in range(len(configs))]
        tic = time.perf_counter()
        try:
            outcomes = train_cohort(configs, dirs, progress=False)
        except Exception as error:  # an estimate reports it; the sweep would record it
            return f"its timing raised {type(error).__name__}: {error}"
        wall = time.perf_counter() - tic
    finished = [(r, m) for _, r, m in outcomes if r.status.succeeded]
    if not finished:
        result = outcomes[0][1]
        return f"its timing run {result.status} after {result.steps} steps: {result.message}"
    result, metrics = max(finished, key=lambda outcome: len(outcome[0].history))
    walls = [row["wall_time"] for row in result.history]
    if len(walls) < 3:
        return (
            f"its timing run stopped after {len(walls)} evaluations ({result.status}: "
            f"{result.message}); timing needs 3"
        )
    # The fastest interval: the last one also compiles the evaluation counter.
    fastest = min(b - a for a, b in zip(walls, walls[1:]))
    return wall - metrics.get("train_time", 0.0), fastest / interval / len(configs)


def estimate(plan: SweepPlan, *, set_precision: bool = False) -> dict:
    """Seconds the sweep would take here, from training one cohort of every kind (data,
    model, field, sizes, solver, paradigm, batch, precision; at most 8 kinds) for three
    evaluation intervals (of at most 100 steps): the fixed cost of a cohort (compilation,
    data, evaluation and files: the call's wall time less its training) plus the cost of an
    interval (steps and an evaluation: the faster of the last two intervals) times the
    intervals of each cohort, scaled linearly with the members (vmapped members cost about
    proportionally on a CPU, less on a GPU). Kinds not timed get the mean of those timed: the
    kinds beyond 8, and those whose timing run stopped early (every member diverged or its
    solves failed, fewer than 3 evaluations, or it raised).

    `set_precision`: switch JAX's 64-bit mode to each timed cohort's precision (the CLI
    does, as its executors do; a library caller leaves it off and enables x64 themselves).

    **Returns:** `{"seconds", "fixed_seconds", "kinds_timed", "kinds", "not_timed"}`:
    `not_timed` maps the key of each cohort whose timing failed to the reason; `seconds` and
    `fixed_seconds` are `None` when no kind could be timed."""
    per_kind = {}
    for cohort in plan.cohorts:
        per_kind.setdefault(_kind(cohort.config), cohort)
    timed, not_timed = {}, {}
    for kind, cohort in list(per_kind.items())[:_PROBED_KINDS]:
        outcome = _probe(cohort, set_precision)
        if isinstance(outcome, str):
            not_timed[cohort.key] = outcome
        else:
            timed[kind] = outcome
    summary = dict(kinds_timed=len(timed), kinds=len(per_kind), not_timed=not_timed)
    if not timed:
        return dict(summary, seconds=None, fixed_seconds=None)
    mean_fixed = sum(c for c, _ in timed.values()) / len(timed)
    mean_step = sum(s for _, s in timed.values()) / len(timed)
    total = fixed_total = 0.0
    for cohort in plan.cohorts:
        fixed, per_step = timed.get(_kind(cohort.config), (mean_fixed, mean_step))
        fixed_total += fixed
        total += fixed + per_step * cohort.steps * len(cohort.cells)
    return dict(summary, seconds=total, fixed_seconds=fixed_total)
