"""The study's tables and plots from the committed sweep results.

Reads `experiments/results/study/<sweep>/results.csv` (and the cells' `history.csv`) of the
sweeps of `experiments/study/*.toml`, and `timings.json`, and writes
`experiments/results/study/tables.md`, the plots beside it, and each sweep's own
`jaxode sweep report` under `<sweep>/report/`. Every number in `tables.md` comes from those
files, except the study's published numbers, which are quoted from
`/work/shared/data/README.md` (constants below). A sweep that has not been run is reported as
missing, not as an error.

    python experiments/study/report.py [--results experiments/results/study]
"""

import argparse
import collections
import csv
import json
import math
import pathlib
import sys

import equinox as eqx
import jax
import jax.numpy as jnp
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402
import numpy as np  # noqa: E402

import jaxode  # noqa: E402

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
from published import PUBLISHED  # noqa: E402  (experiments/published.py)

ROOT = pathlib.Path(__file__).resolve().parents[2]
SPECS = ROOT / "experiments" / "study"
DATASETS = ("elm", "cdr", "dcr")
T1S = (1.0, 5.0, 10.0)
MODELS = (("resnet", "ResNet"), ("hamiltonian", "Hamiltonian"))
OPTIMISERS = (("adam", "Adam"), ("gnvpro", "GNvpro"))
TABLE2_BASES = (
    ("monomial", 3, "monomial d3"),
    ("legendre", 3, "Legendre d3"),
    ("legendre", 4, "Legendre d4"),
    ("legendre", 5, "Legendre d5"),
    ("legendre", 6, "Legendre d6"),
    ("piecewise", 12, "unconstrained (12 per-step sets)"),
)
TABLE3_BASES = TABLE2_BASES[1:]
SUCCEEDED = ("completed", "early_stopped")
# The units each data set's errors are reported in: ELM min-max normalised outputs and CDR
# physical outputs (the study's units); DCR outputs centred by the training mean (the
# "normalised" units of both protocols: a common scale factor cancels in a relative error).
UNITS = {"elm": "", "cdr": "physical_", "dcr": ""}
UNIT_NAMES = {"elm": "min-max normalised", "cdr": "physical", "dcr": "centred"}
NODE_SWEEPS = (("node", "study setup (preset study-node)"), ("node-best", "jaxode's best setup"))
NODE_BASES = ("static", "monomial", "legendre")
COLOURS = {"static": "C0", "monomial": "C1", "legendre": "C2", "piecewise": "C3"}


# ---------------------------------------------------------------------------------------
# Reading


def _parse(text: str):
    if text == "":
        return None
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return {"True": True, "False": False}.get(text, text)


def read_csv(path: pathlib.Path) -> list[dict]:
    """Rows of a CSV file with numbers parsed; `[]` without the file."""
    if not path.is_file():
        return []
    text_columns = ("cell", "cohort", "status", "message", "run_dir", "data.dataset")
    with open(path, newline="", encoding="utf-8") as f:
        return [
            {k: (v or None) if k in text_columns else _parse(v) for k, v in row.items()}
            for row in csv.DictReader(f)
        ]


def history(sweep_dir: pathlib.Path, row: dict) -> list[dict]:
    return read_csv(sweep_dir / (row.get("run_dir") or f"cells/{row['cell']}") / "history.csv")


def select(rows: list[dict], **values) -> list[dict]:
    """Rows whose fields (`data__dataset` for `data.dataset`) equal `values`."""
    wanted = {k.replace("__", "."): v for k, v in values.items()}
    return [r for r in rows if all(r.get(k) == v for k, v in wanted.items())]


def metric(row: dict, split: str, kind: str) -> float | None:
    """`split`'s relative error of `kind` (`global`, `per_sample`) in the data set's units."""
    value = row.get(f"{split}_{UNITS[row['data.dataset']]}{kind}")
    return value if isinstance(value, (int, float)) and math.isfinite(value) else None


# ---------------------------------------------------------------------------------------
# Formatting


def number(value, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    return f"{value:.{digits}g}"


def mean_std(values) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "n/a"
    if len(values) == 1:
        return f"{values[0]:.4g} (n=1)"
    mean, std = float(np.mean(values)), float(np.std(values, ddof=1))
    decimals = max(0, 3 - int(math.floor(math.log10(abs(mean))))) if mean else 4
    return f"{mean:.{decimals}f} ± {std:.{decimals}f}"


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def entry(rows: list[dict], split: str, kind: str) -> str:
    """One cell of a results table: its value, marked when the run did not complete."""
    if not rows:
        return "—"
    row = rows[0]
    value = metric(row, split, kind)
    mark = "" if row["status"] in SUCCEEDED else f" ({row['status']})"
    return number(value) + mark


# ---------------------------------------------------------------------------------------
# Table 2 and Table 3


def table2(rows: list[dict]) -> str:
    parts = []
    for kind, title in (
        ("per_sample", "per-sample mean relative error"),
        ("global", "global relative error"),
    ):
        body = []
        for dataset in DATASETS:
            for t1 in T1S:
                for model, model_name in MODELS:
                    for optimiser, optimiser_name in OPTIMISERS:
                        mine = select(
                            rows,
                            data__dataset=dataset,
                            model__t1=t1,
                            model__model=model,
                            train__optimiser=optimiser,
                        )
                        cells = [
                            entry(select(mine, model__basis=b, model__degree=d), "test", kind)
                            for b, d, _ in TABLE2_BASES
                        ]
                        body.append(
                            [dataset.upper(), f"{t1:g}", model_name, optimiser_name, *cells]
                        )
        header = ["data", "T", "model", "optimiser", *(name for _, _, name in TABLE2_BASES)]
        parts.append(
            f"**Test {title}** "
            f"({', '.join(f'{d.upper()} {u}' for d, u in UNIT_NAMES.items())} outputs)\n\n"
            + markdown_table(header, body)
        )
    return "\n".join(parts)


def table2_summary(rows: list[dict]) -> str:
    """Counts over the (data, T, model) rows of each optimiser that have both bases."""
    lines = []
    for optimiser, optimiser_name in OPTIMISERS:
        mine = select(rows, train__optimiser=optimiser)
        for kind in ("per_sample", "global"):
            better = worse = 0
            beats_unconstrained = total_unconstrained = 0
            ratios = []
            for group in _groups(mine):
                mono = _value(group, "monomial", 3, kind)
                leg3 = _value(group, "legendre", 3, kind)
                if mono is not None and leg3 is not None:
                    better += leg3 < mono
                    worse += leg3 >= mono
                    ratios.append(leg3 / mono)
                legendre = [_value(group, "legendre", d, kind) for d in (3, 4, 5, 6)]
                legendre = [v for v in legendre if v is not None]
                free = _value(group, "piecewise", 12, kind)
                if legendre and free is not None:
                    total_unconstrained += 1
                    beats_unconstrained += min(legendre) <= free
            if ratios:
                lines.append(
                    f"- {optimiser_name}, {kind.replace('_', '-')} test error: Legendre d3 below "
                    f"monomial d3 in {better} of {better + worse} rows (median ratio "
                    f"Legendre/monomial {np.median(ratios):.3f}); the best Legendre degree at or "
                    f"below the unconstrained weights in {beats_unconstrained} of "
                    f"{total_unconstrained} rows."
                )
    pairs = []
    for row in select(rows, train__optimiser="gnvpro"):
        twin = select(
            rows,
            train__optimiser="adam",
            data__dataset=row["data.dataset"],
            model__t1=row["model.t1"],
            model__model=row["model.model"],
            model__basis=row["model.basis"],
            model__degree=row["model.degree"],
        )
        a = metric(twin[0], "test", "global") if twin else None
        g = metric(row, "test", "global")
        if a and g is not None and row["status"] in SUCCEEDED:
            pairs.append(g / a)
    if pairs:
        lines.append(
            f"- GNvpro against Adam at the same work, cell by cell ({len(pairs)} pairs): test "
            f"global error ratio GNvpro/Adam median {np.median(pairs):.3f}, GNvpro lower in "
            f"{sum(r < 1 for r in pairs)} of them."
        )
    statuses = collections.Counter(r["status"] for r in rows)
    lines.append("- cell statuses: " + ", ".join(f"{k} {v}" for k, v in sorted(statuses.items())))
    return "\n".join(lines) + "\n"


def rawtime_table(sweep_dir: pathlib.Path, t2: list[dict], raw: list[dict]) -> str:
    """Table 2's Adam monomial-degree-3 cells beside the same cells with raw-time monomials
    (`rawtime.toml`) and Legendre degree 3: test error, status, and the training loss over the
    first and the last interval (the curve, not the returned best parameters, shows whether
    training converged)."""
    body = []
    for dataset in DATASETS:
        for t1 in (5.0, 10.0):
            for model, model_name in MODELS:
                where = dict(
                    data__dataset=dataset, model__t1=t1, model__model=model, model__degree=3
                )
                adam = select(t2, train__optimiser="adam", **where)
                cells = [
                    ("table2", select(adam, model__basis="monomial")),
                    ("rawtime", select(raw, model__basis="monomial", **where)),
                    ("table2", select(adam, model__basis="legendre")),
                ]
                shown = []
                for name, found in cells:
                    if not found:
                        shown += ["—", "—"]
                        continue
                    curve = history(sweep_dir / name, found[0])
                    losses = [float(r["train_loss"]) for r in curve if r.get("train_loss")]
                    span = f"{losses[0]:.3g} → {losses[-1]:.3g}" if losses else "n/a"
                    shown += [entry(found, "test", "global"), span]
                body.append([dataset.upper(), f"{t1:g}", model_name, *shown])
    header = [
        "data",
        "T",
        "model",
        "monomial (t/T)^k: test",
        "train loss",
        "monomial t^k (raw): test",
        "train loss",
        "Legendre: test",
        "train loss",
    ]
    return markdown_table(header, body)


def _groups(rows: list[dict]):
    keys = {
        (r["data.dataset"], r["model.t1"], r["model.model"], r["train.optimiser"]) for r in rows
    }
    for dataset, t1, model, optimiser in sorted(keys):
        yield select(
            rows,
            data__dataset=dataset,
            model__t1=t1,
            model__model=model,
            train__optimiser=optimiser,
        )


def _value(group, basis, degree, kind, split="test"):
    found = [
        r
        for r in select(group, model__basis=basis, model__degree=degree)
        if r["status"] in SUCCEEDED
    ]
    return metric(found[0], split, kind) if found else None


def table3(rows: list[dict], check_rows: list[dict]) -> str:
    mine = select(
        rows,
        data__dataset="dcr",
        model__model="hamiltonian",
        train__optimiser="adam",
        model__t1=1.0,
    )
    body = []
    for basis, degree, name in TABLE3_BASES:
        found = select(mine, model__basis=basis, model__degree=degree)
        if not found:
            body.append([name, *["—"] * 6])
            continue
        row = found[0]
        formula = 2880 if basis == "piecewise" else 240 * (degree + 1)
        body.append(
            [
                name,
                entry(found, "train", "per_sample"),
                entry(found, "train", "global"),
                entry(found, "test", "per_sample"),
                entry(found, "test", "global"),
                str(row.get("dynamics_parameters")),
                str(formula),
            ]
        )
    header = [
        "basis",
        "train per-sample",
        "train global",
        "test per-sample",
        "test global",
        "dynamics parameters (counted)",
        "study's count, 240 (d + 1) or 2880",
    ]
    text = markdown_table(header, body)
    if check_rows:
        differences, same_keys = [], 0
        for row in check_rows:
            twin = select(mine, model__basis=row["model.basis"], model__degree=row["model.degree"])
            if not twin:
                continue
            same_keys += twin[0]["cell"] == row["cell"]
            for split in ("train", "test"):
                for kind in ("global", "per_sample"):
                    a, b = metric(row, split, kind), metric(twin[0], split, kind)
                    if a is not None and b is not None:
                        differences.append(abs(a - b) / abs(b))
        text += (
            f"\nThe standalone `table3` sweep ({len(check_rows)} cells, "
            f"{same_keys} with the configuration key of their Table 2 cell) gives train and "
            "test errors that differ from Table 2's by at most "
            f"{max(differences) if differences else float('nan'):.2g} (relative): the cells "
            "train identically alone and inside the larger sweep.\n"
        )
    return text


def unconstrained_check() -> str:
    """Verifies on built models that basis "piecewise" of degree 12 gives the 12-step nets one
    independent weight set per step, for every T and both discrete models."""
    lines = []
    for t1 in T1S:
        for model, field in (("resnet", "layer"), ("hamiltonian", "hamiltonian")):
            config = jaxode.RunConfig().replace(
                "model",
                model=model,
                field=field,
                basis="piecewise",
                degree=12,
                width=15,
                steps=12,
                t1=t1,
            )
            net = jaxode.build_model(config, 3, 2, key=jax.random.PRNGKey(0))
            x = jax.random.normal(jax.random.PRNGKey(1), (3,))

            def output(weight, net=net, x=x):
                changed = eqx.tree_at(lambda m: m.dynamics.field.layer.weight, net, weight)
                return changed(x).sum()

            weight = net.dynamics.field.layer.weight
            grads = jax.grad(output)(weight)
            used = [bool(np.any(np.asarray(grads[k]) != 0)) for k in range(weight.shape[0])]
            basis = net.dynamics.field.layer.basis
            # The step times as the models compute them: t0 + j h, j a float32 step index.
            times = net.dynamics.t0 + jnp.arange(12, dtype=jnp.float32) * net.dynamics.step_size
            values = np.stack([np.asarray(basis(t)) for t in times])
            identity = bool(np.array_equal(values, np.eye(12)))
            lines.append(
                f"T={t1:g} {model}: {weight.shape[0]} weight sets, "
                f"{sum(used)} with a non-zero gradient, basis at the step times = "
                f"identity: {identity}"
            )
    ok = all("12 with a non-zero gradient" in s and s.endswith("True") for s in lines)
    return (
        'Check of the unconstrained baseline (basis "piecewise", degree 12, on built '
        "12-step models): the basis evaluated at the 12 step times is the 12 x 12 identity, "
        "and the output depends on every one of the 12 weight sets, so step j uses "
        f"weight set j alone: **{'passed' if ok else 'FAILED'}**.\n\n"
        + "\n".join(f"- {s}" for s in lines)
        + "\n"
    )


# ---------------------------------------------------------------------------------------
# Neural ODEs


def node_table(rows: list[dict], timings: dict, name: str) -> str:
    body = []
    for dataset in DATASETS:
        for basis in NODE_BASES:
            mine = select(rows, data__dataset=dataset, model__basis=basis)
            if not mine:
                continue
            done = [r for r in mine if r["status"] in SUCCEEDED]
            degree = mine[0]["model.degree"]
            others = collections.Counter(r["status"] for r in mine if r not in done)
            count = f"{len(done)}/{len(mine)}" + "".join(f", {v} {k}" for k, v in others.items())
            forward = [r["forward_evaluations"] for r in done if r.get("forward_evaluations")]
            backward = [
                r["backward_evaluations"] for r in done if r.get("backward_evaluations") is not None
            ]
            steps = [r["steps"] for r in done]
            best = [r["best_step"] for r in done]
            cohort_time = max(
                (r.get("train_time") or 0) + (r.get("compile_time") or 0) for r in mine
            )
            body.append(
                [
                    f"{dataset.upper()} ({UNIT_NAMES[dataset]})",
                    f"{basis} ({degree})",
                    count,
                    mean_std([metric(r, "test", "global") for r in done]),
                    mean_std([metric(r, "test", "per_sample") for r in done]),
                    PUBLISHED.get((dataset, basis), "—"),
                    (f"{np.mean(forward):.0f} / {np.mean(backward):.0f}" if forward else "n/a"),
                    str(mine[0].get("dynamics_parameters")),
                    (f"{np.mean(steps):.0f} ({np.mean(best):.0f})" if steps else "n/a"),
                    f"{cohort_time:.0f}",
                ]
            )
    header = [
        "data (units)",
        "basis (degree)",
        "n done",
        "test global",
        "test per-sample",
        "study's revised code (global)",
        "forward / backward evaluations per solve",
        "dynamics parameters",
        "steps (best)",
        "wall s (5 seeds, one cohort)",
    ]
    text = markdown_table(header, body)
    timing = timings.get(name)
    if timing:
        text += (
            f"\nThe whole sweep: {timing['wall_s']:.0f} s wall "
            f"(`{timing['command']}`, {timing['started']}).\n"
        )
    return text


def cumulative_evaluations(rows: list[dict]) -> list[float]:
    """Vector-field evaluations (forward + backward per solve, the latest count at or before
    each row, the first count before it) times the steps, summed up to each history row."""
    counts = [
        (r.get("forward_evaluations") or 0) + (r.get("backward_evaluations") or 0)
        if r.get("forward_evaluations") is not None
        else None
        for r in rows
    ]
    known = [c for c in counts if c is not None]
    if not known:
        return []
    current, previous, total, out = known[0], 0, 0.0, []
    for row, count in zip(rows, counts):
        current = current if count is None else count
        total += (row["step"] - previous) * current
        previous = row["step"]
        out.append(total)
    return out


# ---------------------------------------------------------------------------------------
# Plots


def plot_curves(sweep_dir: pathlib.Path, rows: list[dict], out: pathlib.Path) -> list[str]:
    """Training and validation loss of monomial d3 against Legendre d3, Adam, a figure per
    model, a panel per data set and T."""
    written = []
    for model, model_name in MODELS:
        fig, axes = plt.subplots(len(DATASETS), len(T1S), figsize=(13, 10), squeeze=False)
        drawn = False
        for i, dataset in enumerate(DATASETS):
            for j, t1 in enumerate(T1S):
                ax = axes[i][j]
                for basis in ("monomial", "legendre"):
                    found = select(
                        rows,
                        data__dataset=dataset,
                        model__t1=t1,
                        model__model=model,
                        train__optimiser="adam",
                        model__basis=basis,
                        model__degree=3,
                    )
                    if not found:
                        continue
                    hist = history(sweep_dir, found[0])
                    if not hist:
                        continue
                    drawn = True
                    epochs = [r["epoch"] for r in hist]
                    ax.semilogy(
                        epochs,
                        [r["train_loss"] for r in hist],
                        "--",
                        color=COLOURS[basis],
                        label=f"{basis} d3, training",
                    )
                    ax.semilogy(
                        epochs,
                        [r["val_loss"] for r in hist],
                        "-",
                        color=COLOURS[basis],
                        label=f"{basis} d3, validation",
                    )
                ax.set_title(f"{dataset.upper()}, T = {t1:g}")
                ax.set_xlabel("epoch")
                ax.set_ylabel("MSE (the outputs the model fits)")
                ax.grid(True, which="both", alpha=0.3)
        if not drawn:
            plt.close(fig)
            continue
        axes[0][0].legend(fontsize=8)
        fig.suptitle(
            f"{model_name}, Adam: training (dashed, mean batch loss since the last "
            "check) and validation (solid) loss, monomial vs Legendre, degree 3"
        )
        fig.tight_layout()
        path = out / f"curves_{model}_monomial_vs_legendre.png"
        fig.savefig(path, dpi=90)
        plt.close(fig)
        written.append(path.name)
    return written


def plot_node_evaluations(results: pathlib.Path, out: pathlib.Path) -> list[str]:
    """Training loss against cumulative vector-field evaluations, a row per setup, a panel
    per data set, a line per seed coloured by basis."""
    fig, axes = plt.subplots(len(NODE_SWEEPS), len(DATASETS), figsize=(14, 8), squeeze=False)
    drawn = False
    for i, (name, title) in enumerate(NODE_SWEEPS):
        sweep_dir = results / name
        rows = read_csv(sweep_dir / "results.csv")
        for j, dataset in enumerate(DATASETS):
            ax = axes[i][j]
            for basis in NODE_BASES:
                for k, row in enumerate(select(rows, data__dataset=dataset, model__basis=basis)):
                    hist = history(sweep_dir, row)
                    xs = cumulative_evaluations(hist)
                    if not xs:
                        continue
                    drawn = True
                    ax.loglog(
                        xs,
                        [r["train_loss"] for r in hist],
                        color=COLOURS[basis],
                        alpha=0.7,
                        lw=1,
                        label=f"{basis} (d{row['model.degree']})" if k == 0 else None,
                    )
            ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
            ax.set_title(f"{title}: {dataset.upper()}", fontsize=9)
            ax.set_xlabel("cumulative vector-field evaluations (per solve x steps)")
            ax.set_ylabel(f"training loss ({rows[0]['train.loss'] if rows else ''})")
            ax.grid(True, which="both", alpha=0.3)
            if ax.get_legend_handles_labels()[0]:
                ax.legend(fontsize=8)
    if not drawn:
        plt.close(fig)
        return []
    fig.suptitle("Neural ODEs: training loss against function evaluations (one line per seed)")
    fig.tight_layout()
    path = out / "node_loss_vs_evaluations.png"
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return [path.name]


# ---------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--results", type=pathlib.Path, default=ROOT / "experiments" / "results" / "study"
    )
    parser.add_argument(
        "--no-sweep-reports", action="store_true", help="skip `jaxode sweep report` of each sweep"
    )
    args = parser.parse_args()
    results = args.results
    timings_path = results / "timings.json"
    timings = json.loads(timings_path.read_text()) if timings_path.is_file() else {}
    t2_dir = results / "table2"
    t2 = read_csv(t2_dir / "results.csv")
    t3 = read_csv(results / "table3" / "results.csv")

    parts = [
        "# The study's experiments at the CPU size\n",
        "Generated by `python experiments/study/report.py` from the committed sweep results in "
        "`experiments/results/study/` (specs in `experiments/study/`). Study: Rosso, Ruthotto, "
        "Sargsyan, arXiv 2507.22045.\n",
        "What differs from the study, for every table below:\n",
        "- **Size**: the CPU size of each spec (its header comment gives it and the full size): "
        "Table 2 Adam 300 epochs instead of 10 000, GNvpro the same work (600 passes over the "
        "training set, about 26 outer iterations); neural ODEs 300 (study setup) and 600 "
        "(jaxode's setup) iterations instead of 2000 and 4320 / 3600. One seed per Table 2 "
        "cell, as the study.\n"
        "- **DCR** is jaxode's generated 2-D analogue (`docs/dcr.md`), not the study's 3-D "
        "DC-resistivity data: its errors cannot be compared with the study's DCR numbers. Its "
        "per-sample errors relative to the centred outputs are dominated by samples close to "
        "the mean (their norms are small): read the global error.\n"
        "- **Monomials** are evaluated at the normalised time tau = t / T in jaxode; the study's "
        "discrete MATLAB code evaluated them at the raw time t (condition number ~6e6 at T = 10, "
        "degree 6). The monomial column is therefore the well-scaled monomial, not the study's.\n"
        "- **Returned parameters**: jaxode returns the parameters of the best validation check "
        "(every 10 epochs in Table 2), not the last iterate.\n"
        "- **Units**: ELM errors in min-max normalised outputs, CDR in physical outputs (the "
        "study's units), DCR relative to the outputs centred by the training mean.\n",
    ]

    parts.append("## Table 2: test errors of the discrete networks\n")
    if t2:
        runs = {k: v for k, v in timings.items() if k.split("@")[0] == "table2"}
        counts = collections.Counter(r["train.optimiser"] for r in t2)
        parts.append(
            f"{len(t2)} of 216 cells in `table2/results.csv` ("
            + ", ".join(f"{name} {counts.get(key, 0)} of 108" for key, name in OPTIMISERS)
            + "); runs: "
            + "; ".join(
                f"{v['wall_s']:.0f} s wall for {sum(v['statuses'].values()) - v['cells_before']} "
                f"cells (`{v['command']}`)"
                for v in runs.values()
            )
            + ". `—`: not run yet; a status in brackets: the run stopped early, the value is "
            "that of its best validation check. The study's own Table 2 values are not in "
            "our materials, so there is no published column.\n"
        )
        parts.append(table2(t2))
        parts.append("\nSummary:\n\n" + table2_summary(t2))
    else:
        parts.append("Not run: no `table2/results.csv`.\n")

    parts.append("\n## Table 3: DCR, Hamiltonian, Adam, T = 1: errors and parameters\n")
    parts.append(
        "Read from Table 2's results (the same cells; `experiments/study/table3.toml` "
        "declares them as a sweep of their own).\n\n"
    )
    parts.append(table3(t2, t3) if t2 else "Not run.\n")
    parts.append("\n" + unconstrained_check())

    raw = read_csv(results / "rawtime" / "results.csv")
    parts.append("\n## Raw-time monomials (claim 4): Adam, degree 3, global test error\n")
    parts.append(
        "Table 2's Adam cells with monomial degree 3 as jaxode evaluates it, $(t/T)^k$, the same "
        "cells with the study's raw-time monomials $t^k$ (`experiments/study/rawtime.toml`: "
        "`model.basis_window = 1`), and Legendre degree 3. Train loss: the mean minibatch "
        "loss (MSE) over the first and over the last 10 epochs.\n\n"
    )
    parts.append(rawtime_table(results, t2, raw) if raw and t2 else "Not run.\n")

    parts.append("\n## Neural-ODE surrogates: mean ± sample std (ddof = 1) over seeds\n")
    parts.append(
        "Test errors of the returned (best-on-validation) parameters; evaluations per solve "
        "counted at the end of training on one batch (forward and backward); steps done with "
        "the step of the returned parameters; wall time of the configuration's cohort "
        "(compilation and training of its 5 seeds together) from `results.csv`. The published "
        "column is the study's revised code at its full size (2000 iterations, torchdiffeq); "
        "its DCR is the real DCR.\n"
    )
    for name, title in NODE_SWEEPS:
        rows = read_csv(results / name / "results.csv")
        parts.append(f"\n### {title} (`{name}`)\n\n")
        parts.append(node_table(rows, timings, name) if rows else "Not run.\n")

    out = results
    plots = plot_curves(t2_dir, t2, out) if t2 else []
    plots += plot_node_evaluations(results, out)
    parts.append("\n## Plots\n\n" + "\n".join(f"![{p}]({p})" for p in plots) + "\n")
    if timings:
        parts.append("\n## Wall times of the sweep runs (`timings.json`)\n\n")
        parts.append(
            markdown_table(
                ["run", "command", "started", "wall s", "statuses"],
                [
                    [
                        k,
                        f"`{v['command']}`",
                        v["started"],
                        f"{v['wall_s']:.0f}",
                        ", ".join(f"{s} {n}" for s, n in v.get("statuses", {}).items()),
                    ]
                    for k, v in timings.items()
                ],
            )
        )
        parts.append(f"\nIn all: {sum(v['wall_s'] for v in timings.values()) / 60:.1f} min.\n")
    (out / "tables.md").write_text("\n".join(parts))
    print(f"wrote {out / 'tables.md'} and {', '.join(plots) or 'no plots'}")

    if not args.no_sweep_reports:
        layouts = {
            "table2": (("dataset", "t1", "model", "optimiser"), ("basis", "degree")),
            "table3": (("basis", "degree"), ("model",)),
            "rawtime": (("dataset", "t1"), ("model",)),
            "node": (("basis", "degree"), ("dataset",)),
            "node-best": (("basis", "degree"), ("dataset",)),
        }
        for name, (row_fields, col_fields) in layouts.items():
            if (results / name / "results.csv").is_file():
                jaxode.sweep_report(results / name, rows=row_fields, cols=col_fields)
                print(f"wrote {results / name / 'report'}")


if __name__ == "__main__":
    main()
