"""`jaxode sweep report DIR`: the pivot table and plots of a sweep's `results.csv` and of its
cells' `history.csv` files."""

import collections
import csv
import difflib
import io
import math
import pathlib
from typing import TypeGuard

import numpy as np

from .._files import atomic_write_bytes, atomic_write_text
from .._training import CHOICES, HISTORY
from ._compare import compare as compare_levels, comparison_table, parse_compare, parse_filter, same
from ._ensembles import ensemble_report
from ._pruning import PRUNED
from ._scales import scale_y
from ._search_report import search_report
from ._table import RESULTS, SUCCEEDED, read_csv

STATUSES = ("completed", "early_stopped", "diverged", "solver_failed", "error", "interrupted")
# Fields that change what is compared rather than how well: the plots keep their values apart.
STRUCTURAL = ("data.dataset", "data.protocol", "model.model", "model.field", "model.paradigm")
BASIS_COLOURS = {basis: f"C{i}" for i, basis in enumerate(CHOICES[("model", "basis")])}
METRIC_UNITS = {
    "steps": "optimisation steps",
    "best_step": "optimisation step",
    "train_time": "s",
    "compile_time": "s",
    "parameters": "count",
    "dynamics_parameters": "count",
    "solver_failures": "samples",
    "forward_evaluations": "evaluations per solve",
    "backward_evaluations": "evaluations per solve",
}


def read_results(sweep_dir) -> list[dict]:
    """The rows of `sweep_dir/results.csv`, one dict per cell.

    **Arguments:** `sweep_dir`: the sweep directory.

    **Returns:** a list of dicts keyed by column name: integers and floats where the text is
    numeric (identifier columns such as `cell` stay strings), `None` for empty values.

    **Raises:** `FileNotFoundError` naming the file when the sweep has not been run.
    """
    return _results(sweep_dir)[1]


def _results(sweep_dir) -> tuple[list[str], list[dict]]:
    path = pathlib.Path(sweep_dir) / RESULTS
    if not path.is_file():
        raise FileNotFoundError(
            f"{str(path)!r} does not exist; run `jaxode sweep SPEC --out DIR` first."
        )
    return read_csv(path)


def read_history(path) -> list[dict]:
    """The rows of a `history.csv` as `write_history` writes it, parsed as `read_results`
    parses; `[]` without the file (a cell that never reached an evaluation)."""
    return read_csv(path, "history")[1] if pathlib.Path(path).is_file() else []


def resolve_field(name: str, columns, *, argument: str | None = None) -> str:
    """The column `name` stands for: the column itself, or the one column whose last dotted
    parts are `name` (`basis` -> `model.basis`, `seed` -> `train.seed`).

    **Arguments:** `name`: what the user typed; `columns`: the columns of `results.csv`;
    `argument`: the command-line option it came from (`--rows`, `--cols`, `--metric`), named
    in errors.

    **Returns:** the full column name.

    **Raises:** `ValueError` naming `argument` when `name` matches no column (listing close
    valid names) or several (listing them).
    """
    columns = list(columns)
    if name in columns:
        return name
    matches = [c for c in columns if c.endswith("." + name)]
    if len(matches) == 1:
        return matches[0]
    where = f"{argument}: " if argument else ""
    if matches:
        raise ValueError(f"{where}{name!r} is ambiguous: {', '.join(matches)}; give one of them.")
    shorts = [c.rsplit(".", 1)[-1] for c in columns]
    names = columns + [s for s in shorts if shorts.count(s) == 1 and s not in columns]
    close = difflib.get_close_matches(name, names, n=6, cutoff=0.5)
    hint = f"close valid names: {', '.join(close)}" if close else "see the header of results.csv"
    raise ValueError(f"{where}unknown field {name!r}; {hint}.")


def _finite(value: object) -> TypeGuard[int | float]:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _natural_order(keys: list[tuple]) -> list[tuple]:
    """Numbers numerically, then strings in order of first appearance, then missing values."""
    first_seen: dict = {}
    for key in keys:
        for value in key:
            first_seen.setdefault((type(value), value), len(first_seen))

    def rank(value):
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value == value:
            return (0, value)
        return (2, 0) if value is None else (1, first_seen[(type(value), value)])

    return sorted(keys, key=lambda key: tuple(rank(v) for v in key))


def _distinct(rows: list[dict], field: str) -> list:
    values = {(row.get(field),): None for row in rows if row.get(field) is not None}
    return [key[0] for key in _natural_order(list(values))]


def aggregate(rows: list[dict], by, metric: str) -> list[dict]:
    """Groups `rows` by the values of the columns `by` and summarises `metric` per group.

    **Arguments:** `rows`: as `read_results` returns them; `by`: full column names (what is
    left to vary inside a group, such as the seed, is averaged over); `metric`: a column.

    **Returns:** one dict per group, in natural order (numbers numerically, strings in order
    of first appearance): the `by` values, `mean`, `std` (sample, ddof = 1; `None` when
    `n` < 2), `n` (cells with a finite `metric`; `mean` is `None` when 0), `cells`, `failed`
    (cells whose status is neither completed nor early_stopped) and `statuses` (count per
    status).
    """
    by = list(by)
    groups: dict = {}
    for row in rows:
        groups.setdefault(tuple(row.get(field) for field in by), []).append(row)
    order = _natural_order(list(groups))
    return [_summary(dict(zip(by, key)), groups[key], metric) for key in order]


def _summary(values: dict, members: list[dict], metric: str) -> dict:
    data = np.array([r[metric] for r in members if _finite(r.get(metric))], dtype=float)
    return {
        **values,
        "mean": float(np.mean(data)) if data.size else None,
        "std": float(np.std(data, ddof=1)) if data.size > 1 else None,
        "n": int(data.size),
        "cells": len(members),
        "failed": sum(r.get("status") not in (*SUCCEEDED, PRUNED) for r in members),
        "pruned": sum(r.get("status") == PRUNED for r in members),
        "statuses": dict(collections.Counter(r.get("status") for r in members)),
    }


def _short(field: str) -> str:
    return field.rsplit(".", 1)[-1]


def _decimals(mean: float) -> int:
    """Decimals that give the mean 4 significant digits; the std gets the same."""
    return 4 if mean == 0 else min(max(3 - math.floor(math.log10(abs(mean))), 0), 12)


def format_cell(group: dict | None) -> str:
    """`0.1234 ± 0.0056 (n=3)`, `0.1234 (n=1)`, `... (n=2, 1 failed)`, or `—` without data."""
    if group is None:
        return "—"
    failed = f", {group['failed']} failed" if group["failed"] else ""
    if group["mean"] is None:
        return f"— (n=0{failed})"
    decimals = _decimals(group["mean"])
    text = f"{group['mean']:.{decimals}f}"
    if group["std"] is not None:
        text += f" ± {group['std']:.{decimals}f}"
    return f"{text} (n={group['n']}{failed})"


def _title(rows: list[dict], metric: str, grouped: list[str]) -> str:
    columns = rows[0] if rows else []
    varying = [c for c in columns if "." in c and c not in grouped and len(_distinct(rows, c)) > 1]
    over = f", which differ in {', '.join(varying)}" if varying else ""
    return (
        f"**{metric}**: mean ± sample std (ddof = 1) over the cells of each group{over}; "
        "n = cells with a finite value."
    )


def pivot_table(rows: list[dict], row_fields, col_fields, metric: str) -> tuple[str, str]:
    """A pivot of `aggregate(rows, row_fields + col_fields, metric)`.

    **Arguments:** `rows`: as `read_results` returns them; `row_fields`, `col_fields`: full
    column names, one table row per combination of `row_fields` values and one column per
    combination of `col_fields` values (none: one column, the metric); `metric`: a column.

    **Returns:** `(markdown, csv_text)`: a title line and a Markdown table of cells as
    `format_cell` writes them; CSV with the row fields, then `mean`, `std`, `n`, `failed`
    columns per pivot column (`LABEL mean`, ..., LABEL as in the Markdown header).
    """
    row_fields, col_fields = list(row_fields), list(col_fields)
    groups = aggregate(rows, row_fields + col_fields, metric)
    cells = {tuple(g[f] for f in row_fields + col_fields): g for g in groups}
    row_keys = [tuple(g[f] for f in row_fields) for g in aggregate(rows, row_fields, metric)]
    col_keys = [tuple(g[f] for f in col_fields) for g in aggregate(rows, col_fields, metric)]
    labels = [_label(dict(zip(col_fields, key))) or metric for key in col_keys]
    header = [_short(f) for f in row_fields] + labels
    lines = [
        _title(rows, metric, row_fields + col_fields),
        "",
        "| " + " | ".join(header) + " |",
        "|" + " --- |" * len(header),
    ]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(
        row_fields + [f"{label} {s}" for label in labels for s in ("mean", "std", "n", "failed")]
    )
    for row_key in row_keys:
        found = [cells.get(row_key + col_key) for col_key in col_keys]
        shown = [str(v).replace("|", "\\|") for v in row_key] + [format_cell(g) for g in found]
        lines.append("| " + " | ".join(shown) + " |")
        writer.writerow(
            ["" if v is None else v for v in row_key]
            + [
                "" if g is None or g[s] is None else g[s]
                for g in found
                for s in ("mean", "std", "n", "failed")
            ]
        )
    return "\n".join(lines) + "\n", buffer.getvalue()


def status_line(rows: list[dict]) -> str:
    """`cells: N, completed x, early_stopped y, ...` (every status, unknown ones too)."""
    counts = collections.Counter(row.get("status") for row in rows)
    names = list(STATUSES) + [s for s in counts if s not in STATUSES]
    return f"cells: {len(rows)}, " + ", ".join(f"{s} {counts.get(s, 0)}" for s in names)


def provenance_line(rows: list[dict]) -> str:
    """What the cells' recorded provenance says of the table: one clean commit, or a warning
    naming several commits, cells trained from a library with uncommitted changes, and cells
    that record none (trained before jaxode recorded it)."""
    trained = [row for row in rows if row.get("status") in SUCCEEDED]
    commits = collections.Counter(str(row.get("git_commit") or "") for row in trained)
    unknown = commits.pop("", 0)
    dirty = sum(str(row.get("git_clean")) in ("False", "false") for row in trained)
    versions = sorted({str(row["jaxode_version"]) for row in trained if row.get("jaxode_version")})
    warnings = []
    if len(commits) > 1:
        listed = ", ".join(f"{c[:10]} ({n} cells)" for c, n in commits.most_common())
        warnings.append(f"cells from {len(commits)} commits: {listed}")
    if dirty:
        warnings.append(f"{dirty} cells trained from a library with uncommitted changes")
    if unknown:
        warnings.append(f"{unknown} cells record no provenance (trained before jaxode kept it)")
    if not warnings:
        if not commits:
            return "provenance: no trained cells."
        (commit,) = commits
        version = ", ".join(versions)
        return f"provenance: every cell from commit {commit[:10]}, clean (jaxode {version})."
    return "warning, provenance: " + "; ".join(warnings) + "."


def cumulative_evaluations(history: list[dict]) -> list[float | None]:
    """Estimated vector-field evaluations up to each history row: the sum over rows j <= i of
    (step_j - step_{j-1}) x (forward + backward evaluations per solve of the latest row at
    or before j that has counts; before the first such row, its counts), step_{-1} = 0: one
    solve per optimisation step, "evaluations per solve x steps". All `None` without counts.
    """
    per_solve = [_per_solve(row) for row in history]
    known = [count for count in per_solve if count is not None]
    if not known:
        return [None] * len(history)
    current, previous_step, total, totals = known[0], 0, 0.0, []
    for row, count in zip(history, per_solve):
        current = current if count is None else count
        total += (row["step"] - previous_step) * current
        previous_step = row["step"]
        totals.append(total)
    return totals


def _per_solve(row: dict) -> float | None:
    forward, backward = row.get("forward_evaluations"), row.get("backward_evaluations")
    if not _finite(forward):
        return None
    return forward + (backward if _finite(backward) else 0)


def _metric_label(metric: str) -> str:
    if _is_error(metric):
        units = "physical" if "physical" in metric else "normalised"
        return f"{metric} (relative error, {units} units)"
    return f"{metric} ({METRIC_UNITS.get(metric, 'value')})"


def _is_error(metric: str) -> bool:
    return metric.endswith(("_global", "_per_sample"))


def _figure(panels: int = 1):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.5 * panels, 4.2), layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.subplots(1, panels, squeeze=False)[0]


def _save(fig, axes, path: pathlib.Path, written: list, log_y: bool) -> None:
    for ax in axes:
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize="small")
        scale_y(ax, log_y)
        ax.grid(True, which="both", alpha=0.3)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    atomic_write_bytes(path, buffer.getvalue())
    written.append(path)


def _matching(rows: list[dict], values: dict) -> list[dict]:
    return [row for row in rows if all(row.get(f) == v for f, v in values.items())]


def _label(values: dict) -> str:
    return ", ".join(f"{_short(f)}={v}" for f, v in values.items())


def _best_per_basis(rows, metric, fields) -> list[tuple[str, str, list[dict]]]:
    """Per basis `(basis, label, cells)`: its group over `fields` (the degree, and the others
    where they vary) with the lowest mean metric, so that each line compares like with like."""
    fields = [f for f in fields if f == "model.degree" or len(_distinct(rows, f)) > 1]
    chosen = []
    for basis in _distinct(rows, "model.basis"):
        of_basis = _matching(rows, {"model.basis": basis})
        best = min(
            aggregate(of_basis, fields, metric), key=lambda g: (g["mean"] is None, g["mean"] or 0.0)
        )
        values = {f: best[f] for f in fields}
        chosen.append((basis, f"{basis}, {_label(values)}", _matching(of_basis, values)))
    return chosen


def _plot_errorbars(panels, x_field, xlabel, metric, path, written) -> None:
    """`panels`: `(title, [(basis, label, cells)])`; per line the mean `metric` of the cells
    against `x_field`, std error bars."""
    fig, axes = _figure(len(panels))
    drawn = False
    for ax, (title, lines) in zip(axes, panels):
        for basis, label, cells in lines:
            points = [
                g
                for g in aggregate(cells, [x_field], metric)
                if g["mean"] is not None and _finite(g[x_field])
            ]
            if points:
                ax.errorbar(
                    [g[x_field] for g in points],
                    [g["mean"] for g in points],
                    yerr=[g["std"] or 0.0 for g in points],
                    marker="o",
                    capsize=3,
                    color=BASIS_COLOURS.get(basis, "k"),
                    label=label,
                )
                drawn = True
        ax.set(xlabel=xlabel, ylabel=_metric_label(metric), title=title)
        if x_field == "model.degree":
            from matplotlib.ticker import MaxNLocator

            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if drawn:
        _save(fig, axes, path, written, log_y=_is_error(metric))


def _points(history: list[dict], xs: list, column: str) -> dict:
    return {
        row["step"]: (x, row[column])
        for row, x in zip(history, xs)
        if _finite(x) and _finite(row.get(column))
    }


def _plot_curves(lines, path, written, xlabel, ylabel) -> None:
    """`lines`: `(basis, label, curves)`, a curve being `{step: (x, y)}`; a thin line per
    curve, a thick one for their mean at each step (curves without that step left out)."""
    fig, axes = _figure()
    drawn = False
    for basis, label, curves in lines:
        curves = [curve for curve in curves if curve]
        colour = BASIS_COLOURS.get(basis, "k")
        for curve in curves:
            axes[0].plot(
                *zip(*[curve[s] for s in sorted(curve)]), color=colour, alpha=0.25, linewidth=0.8
            )
        if curves:
            steps = sorted({step for curve in curves for step in curve})
            means = [np.mean([c[s] for c in curves if s in c], axis=0) for s in steps]
            axes[0].plot(*zip(*means), color=colour, label=f"{label} (mean of {len(curves)})")
            drawn = True
    axes[0].set(xlabel=xlabel, ylabel=ylabel)
    if drawn:
        _save(fig, axes, path, written, log_y=True)


def _cell_history(sweep_dir: pathlib.Path, row: dict) -> list[dict]:
    run_dir = row.get("run_dir") or f"cells/{row.get('cell')}"
    return read_history(sweep_dir / run_dir / HISTORY)


def _plots(sweep_dir: pathlib.Path, rows: list[dict], metric: str, out: pathlib.Path) -> list:
    written = []
    structure = [field for field in STRUCTURAL if len(_distinct(rows, field)) > 1]
    if len(_distinct(rows, "model.degree")) > 1:
        panels = [{f: g[f] for f in structure} for g in aggregate(rows, structure, metric)]
        panels = [
            (
                _label(panel) or metric,
                [
                    (b, b, _matching(rows, {**panel, "model.basis": b}))
                    for b in _distinct(rows, "model.basis")
                ],
            )
            for panel in panels
        ]
        _plot_errorbars(
            panels,
            "model.degree",
            "model.degree (degree, frequencies or pieces)",
            metric,
            out / "error_vs_degree.png",
            written,
        )
    histories = {row["cell"]: _cell_history(sweep_dir, row) for row in rows}

    def curves(candidates, xs_of, column):
        return [
            (
                basis,
                label,
                [_points(histories[r["cell"]], xs_of(histories[r["cell"]]), column) for r in cells],
            )
            for basis, label, cells in _best_per_basis(
                candidates, metric, structure + ["model.degree", "model.t1"]
            )
        ]

    _plot_curves(
        curves(rows, lambda h: [r.get("step") for r in h], "val_global"),
        out / "validation_curves.png",
        written,
        "optimisation step",
        "val_global (validation relative error, normalised units)",
    )
    counted = [r for r in rows if any(_per_solve(h) is not None for h in histories[r["cell"]])]
    _plot_curves(
        curves(counted, cumulative_evaluations, "train_loss"),
        out / "loss_vs_evaluations.png",
        written,
        "cumulative vector-field evaluations (evaluations per solve x steps)",
        "train_loss (training loss, normalised units)",
    )
    if len(_distinct(rows, "model.t1")) > 1:
        lines = _best_per_basis(rows, metric, structure + ["model.degree"])
        _plot_errorbars(
            [(metric, lines)],
            "model.t1",
            "model.t1 (end of the integration window, model time units)",
            metric,
            out / "error_vs_t1.png",
            written,
        )
    return written


def sweep_report(
    sweep_dir,
    *,
    rows=("basis", "degree"),
    cols=("model",),
    metric="test_global",
    out=None,
    compare: str | None = None,
    ensembles: bool = False,
    where: tuple[str, ...] = (),
) -> dict:
    """Writes the sweep's pivot table and plots, each file atomically.

    `table.md` (a title, the pivot of `pivot_table` and a status line), `table.csv`, and, when
    the data allow: `error_vs_degree.png` (`metric` against the degree, a line per basis with
    std error bars, a panel per combination of the varying structural fields),
    `validation_curves.png` and `loss_vs_evaluations.png` (per basis the group of cells with
    its lowest mean `metric`: per cell a thin line, their mean per step a thick one; the
    second only for cells whose history has evaluation counts) and `error_vs_t1.png` (when
    `model.t1` varies: `metric` against t1, a line per basis at its best degree); for a
    search (`search.csv`), `search.md` (its best trials by validation error),
    `search_progress.png` (the best validation error against the member-steps spent) and
    `search_axes.png` (validation error against each searched field, a point per trial).

    **Arguments:** `sweep_dir`: the sweep directory; `rows`, `cols`: fields of the table's
    rows and columns (names as `resolve_field` takes them); `metric`: the column summarised;
    `out`: output folder (default `sweep_dir/report`); `compare`: `"FIELD=LEVEL,LEVEL,..."`,
    paired comparisons of each level against the first (`compare.md`, see `_compare`);
    `ensembles`: each configuration's seeds as a calibrated ensemble (`ensembles.md`,
    `ensembles.csv`, see `ensemble_report`); `where`: `"FIELD=VALUE[,VALUE...]"` filters,
    every one of which a cell must pass to enter the report.

    **Returns:** `{"table": the text of table.md, "files": [paths written]}`.

    **Raises:** `FileNotFoundError` without `results.csv`; `ValueError` naming `--rows`,
    `--cols` or `--metric` for an unknown or ambiguous field.
    """
    sweep_dir = pathlib.Path(sweep_dir)
    columns, results = _results(sweep_dir)
    for condition in where:
        field, levels = parse_filter(condition)
        field = resolve_field(field, columns, argument="--where")
        results = [row for row in results if any(same(row.get(field), v) for v in levels)]
        if not results:
            raise ValueError(f"--where {condition!r} leaves no cell; see results.csv's values.")
    row_fields = [resolve_field(f, columns, argument="--rows") for f in rows]
    col_fields = [resolve_field(f, columns, argument="--cols") for f in cols]
    metric = resolve_field(metric, columns, argument="--metric")
    out = sweep_dir / "report" if out is None else pathlib.Path(out)
    markdown, csv_text = pivot_table(results, row_fields, col_fields, metric)
    markdown += "\n" + status_line(results) + "\n\n" + provenance_line(results) + "\n"
    atomic_write_text(out / "table.md", markdown)
    atomic_write_text(out / "table.csv", csv_text)
    plots = _plots(sweep_dir, results, metric, out) if "model.basis" in columns else []
    searched = search_report(sweep_dir, results, out)
    compared = []
    if compare is not None:
        field, levels = parse_compare(compare)
        field = resolve_field(field, columns, argument="--compare")
        comparison = comparison_table(compare_levels(results, field, levels, metric))
        atomic_write_text(out / "compare.md", comparison)
        markdown += "\n" + comparison
        compared = [out / "compare.md"]
    if ensembles:
        compared += ensemble_report(sweep_dir, results, out)
        if compared and compared[-1].name == "ensembles.md":
            markdown += "\n" + compared[-1].read_text()
    files = [out / "table.md", out / "table.csv"] + plots + searched + compared
    return {"table": markdown, "files": files}
