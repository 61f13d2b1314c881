"""The report of a search (`search.csv` beside `results.csv`): its best trials, the validation
error against the member-steps spent, and each searched field's effect."""

import io
import math
import pathlib

from .._files import atomic_write_bytes, atomic_write_text
from ._scales import scale_y
from ._search_run import TRIAL_COLUMNS, TRIALS, read_trials

BEST = 10


def _float(value) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def search_report(sweep_dir: pathlib.Path, results: list[dict], out: pathlib.Path) -> list:
    """Writes `search.md`, `search_progress.png` and `search_axes.png` for the search in
    `sweep_dir`; returns the paths written (none without `search.csv`)."""
    trials = read_trials(sweep_dir / TRIALS)
    if not trials:
        return []
    fields = [c for c in trials[0] if c not in TRIAL_COLUMNS]
    by_cell = {row["cell"]: row for row in results}
    written = [out / "search.md"]
    atomic_write_text(out / "search.md", _table(trials, fields, by_cell))
    written += _plots(trials, fields, out)
    return written


def _table(trials: list[dict], fields: list[str], by_cell: dict) -> str:
    states: dict[str, int] = {}
    for trial in trials:
        states[trial["state"]] = states.get(trial["state"], 0) + 1
    spent = sum(int(_float(t["steps"]) or 0) for t in trials)
    complete = [t for t in trials if t["state"] == "complete" and _float(t["value"]) is not None]
    best = sorted(complete, key=lambda t: (_float(t["value"]), t["trial"]))[:BEST]
    lines = [
        f"# Search: {len(trials)} trials ("
        + ", ".join(f"{n} {s}" for s, n in sorted(states.items()))
        + f"), {spent} member-steps",
        "",
        f"The {len(best)} best complete trials, chosen by their validation error (the value "
        "told to the sampler); the test error is shown, never used to choose.",
        "",
        "| trial | validation | test | steps | " + " | ".join(fields) + " |",
        "|" + " --- |" * (4 + len(fields)),
    ]
    for t in best:
        test = _float(by_cell.get(t["cell"], {}).get("test_global"))
        values = " | ".join(_shown(t[f]) for f in fields)
        lines.append(
            f"| {t['trial']} | {_float(t['value']):.4f} | "
            f"{'-' if test is None else f'{test:.4f}'} | {t['steps']} | {values} |"
        )
    return "\n".join(lines) + "\n"


def _shown(value) -> str:
    number = _float(value)
    return str(value) if number is None else f"{number:.4g}"


def _plots(trials: list[dict], fields: list[str], out: pathlib.Path) -> list:
    try:
        from matplotlib.figure import Figure
    except ImportError:
        return []
    written = []
    ordered = sorted(trials, key=lambda t: int(t["trial"]))
    spent, best, xs, ys = 0, math.inf, [], []
    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    for state, marker in (("complete", "o"), ("pruned", "x")):
        points = []
        running = 0
        for t in ordered:
            running += int(_float(t["steps"]) or 0)
            value = _float(t["value"])
            if t["state"] == state and value is not None:
                points.append((running, value))
        if points:
            ax.scatter(*zip(*points), marker=marker, s=14, alpha=0.5, label=f"{state} trials")
    for t in ordered:
        spent += int(_float(t["steps"]) or 0)
        value = _float(t["value"])
        if t["state"] == "complete" and value is not None:
            best = min(best, value)
        if math.isfinite(best):
            xs.append(spent)
            ys.append(best)
    if xs:
        ax.step(xs, ys, where="post", color="k", label="best complete trial so far")
    ax.set_xlabel("member-steps spent (trials in order)")
    ax.set_ylabel("validation error")
    scale_y(ax, True)
    ax.legend(fontsize="small")
    ax.grid(True, which="both", alpha=0.3)
    fig.subplots_adjust(left=0.14, right=0.97, top=0.96, bottom=0.13)
    written.append(_save(fig, out / "search_progress.png"))
    fig = Figure(figsize=(3.2 * len(fields), 3.2))
    axes = fig.subplots(1, len(fields), squeeze=False)[0]
    for ax, field in zip(axes, fields):
        for state, marker in (("complete", "o"), ("pruned", "x")):
            chosen = [t for t in trials if t["state"] == state and _float(t["value"]) is not None]
            numbers = [_float(t[field]) for t in chosen]
            if all(n is not None for n in numbers):
                x = numbers
            else:
                categories = sorted({str(t[field]) for t in trials})
                x = [categories.index(str(t[field])) for t in chosen]
                ax.set_xticks(range(len(categories)), categories, rotation=30)
            y = [_float(t["value"]) for t in chosen]
            ax.scatter(x, y, marker=marker, s=14, alpha=0.6, label=state)
        positive = [n for t in trials if (n := _float(t[field])) is not None and n > 0]
        if positive and len(positive) == len(trials) and max(positive) > 10 * min(positive):
            ax.set_xscale("log")
        scale_y(ax, True)
        ax.set_xlabel(field)
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("validation error")
    axes[0].legend(fontsize="small")
    fig.subplots_adjust(left=0.08, right=0.98, top=0.95, bottom=0.25, wspace=0.3)
    written.append(_save(fig, out / "search_axes.png"))
    return written


def _save(fig, path: pathlib.Path) -> pathlib.Path:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    atomic_write_bytes(path, buffer.getvalue())
    return path
