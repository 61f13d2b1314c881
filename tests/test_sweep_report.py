"""`jaxode sweep report`: results.csv parsing, grouping, the pivot table and the plots, on a
synthetic sweep directory."""

import csv
import dataclasses
import hashlib
import io

import numpy as np
import pytest

from jaxode._sweeps._report import (
    aggregate,
    cumulative_evaluations,
    pivot_table,
    read_results,
    resolve_field,
    sweep_report,
)
from jaxode._training._config import DataConfig, ModelConfig, TrainConfig

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
LEADING = ["cell", "cohort", "status", "message", "run_dir"]
METRICS = [
    f"{split}_{units}{kind}"
    for split in ("train", "val", "test")
    for units in ("", "physical_")
    for kind in ("global", "per_sample")
] + [
    "steps",
    "best_step",
    "solver_failures",
    "forward_evaluations",
    "backward_evaluations",
    "parameters",
    "dynamics_parameters",
    "train_time",
    "compile_time",
]
FIELDS = [
    f"{section}.{field.name}"
    for section, klass in (("data", DataConfig), ("model", ModelConfig), ("train", TrainConfig))
    for field in dataclasses.fields(klass)
]
# Degree 10 first and legendre before fourier: the order must be numeric, then first-seen.
GRID = [
    (model, basis, degree, seed)
    for model in ("node", "resnet")
    for basis in ("legendre", "fourier")
    for degree in (10, 2)
    for seed in (0, 1, 2)
]
FAILED = ("node", "fourier", 2, 2)
SINGLE = ("node", "chebyshev", 4, 0)
HISTORY_STEPS = (10, 20, 30, 40)


def _write_csv(path, columns, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows({k: "" if v is None else v for k, v in row.items()} for row in rows)


def _history(rng, counted):
    rows = []
    for i, step in enumerate(HISTORY_STEPS):
        row = {
            "step": step,
            "epoch": step / 10,
            "train_loss": float(rng.uniform(0.01, 1)),
            "val_loss": float(rng.uniform(0.01, 1)),
            "val_global": float(rng.uniform(0.1, 1)),
            "val_per_sample": float(rng.uniform(0.1, 1)),
            "solver_failures": 0,
            "wall_time": 0.1 * step,
        }
        if counted and i % 2 == 0:
            row.update(forward_evaluations=int(rng.integers(20, 40)), backward_evaluations=30)
        rows.append(row)
    return rows


def build_sweep(directory, t1s=(1.0,)):
    """Writes results.csv and the cells' histories; returns the rows as written (floats)."""
    rng = np.random.default_rng(1234)
    rows = []
    for index, (model, basis, degree, seed) in enumerate(GRID + [SINGLE]):
        cell = hashlib.sha256(f"{model}{basis}{degree}{seed}".encode()).hexdigest()[:16]
        if (model, basis, degree, seed) == FAILED:
            cell = "0123456789012345"  # only digits: must stay a string
        row = {c: None for c in LEADING + FIELDS + METRICS}
        defaults = {
            **{f"data.{k}": v for k, v in dataclasses.asdict(DataConfig()).items()},
            **{f"model.{k}": v for k, v in dataclasses.asdict(ModelConfig()).items()},
            **{f"train.{k}": v for k, v in dataclasses.asdict(TrainConfig()).items()},
        }
        row.update(defaults)
        row.update(
            {
                "cell": cell,
                "cohort": "c" + cell[:11],
                "status": "completed",
                "message": "",
                "run_dir": f"cells/{cell}",
                "model.model": model,
                "model.basis": basis,
                "model.degree": degree,
                "train.seed": seed,
                "model.t1": t1s[index % len(t1s)],
            }
        )
        if (model, basis, degree, seed) == FAILED:
            row.update(status="diverged", message="the validation error grew")
        else:
            row.update({m: float(rng.uniform(0.1, 0.9)) for m in METRICS[:12]})
            row.update(steps=40, best_step=30, parameters=1000, train_time=1.5)
        rows.append(row)
        history = _history(rng, counted=model == "node")
        _write_csv(
            directory / "cells" / cell / "history.csv",
            list(dict.fromkeys(k for r in history for k in r)),
            history,
        )
    _write_csv(directory / "results.csv", LEADING + FIELDS + METRICS, rows)
    return rows


@pytest.fixture
def sweep(tmp_path):
    return tmp_path, build_sweep(tmp_path)


def _subset(rows, model, basis, degree):
    return [
        r["test_global"]
        for r in rows
        if (r["model.model"], r["model.basis"], r["model.degree"]) == (model, basis, degree)
        and r["test_global"] is not None
    ]


def test_read_results_parses_numbers(sweep):
    directory, written = sweep
    results = read_results(directory)
    assert len(results) == len(written)
    first = results[0]
    assert first["model.degree"] == 10 and isinstance(first["model.degree"], int)
    assert isinstance(first["model.t1"], float) and first["model.basis"] == "legendre"
    assert first["test_global"] == written[0]["test_global"]
    assert first["train.iterations"] is None
    failed = next(r for r in results if r["status"] == "diverged")
    assert failed["cell"] == "0123456789012345" and failed["test_global"] is None


def test_missing_results_raises(tmp_path):
    with pytest.raises(FileNotFoundError, match="results.csv.*jaxode sweep SPEC --out DIR"):
        read_results(tmp_path)
    with pytest.raises(FileNotFoundError):
        sweep_report(tmp_path)


def test_aggregate_matches_numpy(sweep):
    directory, written = sweep
    groups = aggregate(
        read_results(directory), ["model.model", "model.basis", "model.degree"], "test_global"
    )
    assert len(groups) == 9
    for group in groups:
        values = _subset(written, group["model.model"], group["model.basis"], group["model.degree"])
        assert group["n"] == len(values)
        assert group["mean"] == pytest.approx(np.mean(values), rel=1e-12)
        if len(values) > 1:
            assert group["std"] == pytest.approx(np.std(values, ddof=1), rel=1e-12)
        else:
            assert group["std"] is None


def test_aggregate_counts_failures_and_orders_naturally(sweep):
    directory, _ = sweep
    groups = aggregate(
        read_results(directory), ["model.model", "model.basis", "model.degree"], "test_global"
    )
    keys = [(g["model.model"], g["model.basis"], g["model.degree"]) for g in groups]
    assert keys[:5] == [
        ("node", "legendre", 2),
        ("node", "legendre", 10),
        ("node", "fourier", 2),
        ("node", "fourier", 10),
        ("node", "chebyshev", 4),
    ]
    failed = groups[keys.index(FAILED[:3])]
    assert (failed["n"], failed["cells"], failed["failed"]) == (2, 3, 1)
    assert failed["statuses"] == {"completed": 2, "diverged": 1}
    single = groups[keys.index(SINGLE[:3])]
    assert single["n"] == 1 and single["std"] is None and single["failed"] == 0


def test_resolve_field_short_names_and_errors(sweep):
    directory, _ = sweep
    columns = list(read_results(directory)[0])
    expected = {
        "basis": "model.basis",
        "seed": "train.seed",
        "degree": "model.degree",
        "model": "model.model",
        "t1": "model.t1",
        "learning_rate": "train.learning_rate",
        "test_global": "test_global",
        "model.basis": "model.basis",
        "steps": "steps",
    }
    for name, column in expected.items():
        assert resolve_field(name, columns) == column
    with pytest.raises(ValueError, match=r"--rows.*'basiss'.*basis"):
        resolve_field("basiss", columns, argument="--rows")
    with pytest.raises(ValueError, match=r"--cols.*ambiguous.*model\.width.*data\.width"):
        resolve_field("width", ["model.width", "data.width"], argument="--cols")


def test_pivot_table_cells_and_csv(sweep):
    directory, written = sweep
    results = read_results(directory)
    markdown, csv_text = pivot_table(
        results, ["model.basis", "model.degree"], ["model.model"], "test_global"
    )
    values = _subset(written, "node", "legendre", 2)
    cell = f"{np.mean(values):.4f} ± {np.std(values, ddof=1):.4f} (n=3)"
    assert f"| legendre | 2 | {cell} |" in markdown
    failed = _subset(written, *FAILED[:3])
    assert f"{np.mean(failed):.4f} ± {np.std(failed, ddof=1):.4f} (n=2, 1 failed)" in markdown
    assert "| chebyshev | 4 | " in markdown and "(n=1) | — |" in markdown
    assert "train.seed" in markdown.splitlines()[0]
    parsed = list(csv.DictReader(io.StringIO(csv_text)))
    assert len(parsed) == 5
    for row in parsed:
        for model in ("node", "resnet"):
            values = _subset(written, model, row["model.basis"], int(row["model.degree"]))
            mean, n = row[f"model={model} mean"], row[f"model={model} n"]
            if values:
                assert float(mean) == pytest.approx(np.mean(values), rel=1e-12)
                assert n == str(len(values))
            else:
                assert mean == n == ""


def test_pivot_without_columns(sweep):
    directory, written = sweep
    markdown, csv_text = pivot_table(read_results(directory), ["model.basis"], [], "test_global")
    assert "| basis | test_global |" in markdown
    parsed = {r["model.basis"]: r for r in csv.DictReader(io.StringIO(csv_text))}
    legendre = [r["test_global"] for r in written if r["model.basis"] == "legendre"]
    assert float(parsed["legendre"]["test_global mean"]) == pytest.approx(np.mean(legendre))
    assert parsed["legendre"]["test_global n"] == "12"


def test_cumulative_evaluations_by_hand():
    history = [
        {"step": 5, "forward_evaluations": 4, "backward_evaluations": 6},
        {"step": 10, "forward_evaluations": None},
        {"step": 20, "forward_evaluations": 3, "backward_evaluations": None},
        {"step": 30},
    ]
    assert cumulative_evaluations(history) == [5 * 10, 5 * 10 + 5 * 10, 100 + 10 * 3, 130 + 10 * 3]
    late = [{"step": 10}, {"step": 20, "forward_evaluations": 7, "backward_evaluations": 0}]
    assert cumulative_evaluations(late) == [70, 140]
    assert cumulative_evaluations([{"step": 1}, {"step": 2}]) == [None, None]


def _assert_png(path):
    data = path.read_bytes()
    assert len(data) > len(PNG_SIGNATURE) and data.startswith(PNG_SIGNATURE)


def test_report_writes_table_and_plots(sweep):
    directory, _ = sweep
    result = sweep_report(directory)
    out = directory / "report"
    names = sorted(p.name for p in result["files"])
    assert names == [
        "error_vs_degree.png",
        "loss_vs_evaluations.png",
        "table.csv",
        "table.md",
        "validation_curves.png",
    ]
    assert sorted(p.name for p in out.iterdir()) == names  # no temporary files left
    for path in result["files"]:
        assert path.is_file() and path.stat().st_size > 0
        if path.suffix == ".png":
            _assert_png(path)
    table = (out / "table.md").read_text()
    assert table == result["table"]
    assert "cells: 25, completed 24, early_stopped 0, diverged 1, solver_failed 0, error 0" in table
    with pytest.raises(ValueError, match="--metric"):
        sweep_report(directory, metric="test_globl")


def test_report_plots_error_against_t1(tmp_path):
    build_sweep(tmp_path, t1s=(1.0, 2.0))
    out = tmp_path / "elsewhere"
    result = sweep_report(tmp_path, rows=("basis",), cols=(), metric="val_per_sample", out=out)
    assert out / "error_vs_t1.png" in result["files"]
    _assert_png(out / "error_vs_t1.png")
    assert "| basis | val_per_sample |" in result["table"]
