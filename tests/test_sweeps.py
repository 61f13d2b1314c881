"""Sweeps: spec expansion and validation, cohorts, the results table, resume after `kill -9`,
failures as data, and the Ray executor on a real local cluster."""

import csv
import itertools
import json
import math
import os
import signal
import statistics
import subprocess
import sys
import time

import pytest

import jaxode
from jaxode._sweeps._spec import FIELDS, config_hash

TINY = """
name = "tiny"
[base.model]
model = "resnet"
field = "layer"
width = 4
steps = 3
basis = "legendre"
[base.train]
iterations = {iterations}
eval_every_iterations = 100
batch_size = 32
precision = "float64"
[grid]
"model.degree" = [1, 2]
train.seed = [0, 1]
"""
# Columns that differ between two runs of the same cells: timings.
TIMES = ("train_time", "compile_time")


def _spec(tmp_path, iterations=3000, name="tiny.toml"):
    path = tmp_path / name
    path.write_text(TINY.format(iterations=iterations))
    return path


def _table(directory) -> dict:
    with open(directory / "results.csv", newline="") as f:
        return {row["cell"]: row for row in csv.DictReader(f)}


def _equal(x: str, y: str) -> bool:
    """Equal text, or numbers equal to float64 rounding (a Ray worker's thread count can
    change the order of XLA's reductions in the last bit)."""
    if x == y:
        return True
    try:
        return math.isclose(float(x), float(y), rel_tol=1e-12, abs_tol=0.0)
    except ValueError:
        return False


def _same_results(a: dict, b: dict) -> None:
    assert set(a) == set(b)
    for key in a:
        differing = [c for c in a[key] if c not in TIMES and not _equal(a[key][c], b[key][c])]
        assert not differing, (key, {c: (a[key][c], b[key][c]) for c in differing})


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The tiny sweep run once, in this process, without interruption."""
    folder = tmp_path_factory.mktemp("reference")
    rows = jaxode.sweep(_spec(folder), folder / "out", progress=False)
    return folder / "out", rows


def test_cells_are_the_union_of_blocks_times_grid_and_zip_less_exclusions():
    spec = jaxode.SweepSpec.from_toml(
        """
        [base.model]
        model = "resnet"
        [grid]
        train.seed = [0, 1, 2]
        [[blocks]]
        model.basis = ["static"]
        model.degree = [0]
        [[blocks]]
        "model.basis" = ["monomial", "legendre", "chebyshev"]
        "model.degree" = [1, 2, 3, 4]
        [[zip]]
        model.t1 = [1.0, 5.0]
        model.steps = [12, 24]
        [[exclude]]
        model.basis = "chebyshev"
        model.degree = [3, 4]
        [[exclude]]
        model.t1 = 5.0
        train.seed = 2
        """
    )
    expected = set()
    blocks = [
        [("static", 0)],
        list(itertools.product(["monomial", "legendre", "chebyshev"], [1, 2, 3, 4])),
    ]
    for (basis, degree), seed, (t1, steps) in itertools.product(
        blocks[0] + blocks[1], [0, 1, 2], [(1.0, 12), (5.0, 24)]
    ):
        if (basis == "chebyshev" and degree in (3, 4)) or (t1 == 5.0 and seed == 2):
            continue
        expected.add((basis, degree, seed, t1, steps))
    cells = spec.cells()
    got = {
        (
            c.config.model.basis,
            c.config.model.degree,
            c.config.train.seed,
            c.config.model.t1,
            c.config.model.steps,
        )
        for c in cells
    }
    assert got == expected and len(cells) == len(expected)
    assert all(c.config.model.model == "resnet" for c in cells)
    assert len({c.key for c in cells}) == len(cells)
    assert all(c.key == config_hash(c.config) for c in cells)
    # Cohorts are the cells that differ only in the seed and their polynomial basis.
    plan = jaxode.make_plan(spec)
    assert len(plan.cohorts) == len({g[3:] for g in expected})
    member = lambda c: c.config.replace("train", seed=0).replace(
        "model", basis="legendre", degree=1
    )
    for cohort in plan.cohorts:
        first = member(cohort)
        assert all(member(c) == first for c in cohort.cells)
    assert sum(len(c.cells) for c in plan.cohorts) == len(cells)


def test_a_configuration_hash_is_its_content():
    a = jaxode.RunConfig().replace("model", degree=2)
    assert config_hash(a) == config_hash(jaxode.RunConfig.from_toml(a.to_toml()))
    assert config_hash(a) != config_hash(a.replace("train", seed=1))
    # Only settings away from their defaults count: a setting jaxode adds later, at a default
    # that keeps the old behaviour, leaves every existing cell's key as it was.
    assert config_hash(a) == config_hash(jaxode.RunConfig.from_dict({"model": {"degree": 2}}))
    assert config_hash(a) != config_hash(jaxode.RunConfig())


class _NoTraining(jaxode.AbstractExecutor):
    def map(self, cohorts, directory):
        if cohorts:
            raise AssertionError(f"{sum(len(c.cells) for c in cohorts)} cells trained again")
        yield from ()


def test_cells_stored_under_an_earlier_key_are_kept(tmp_path):
    """A sweep made when keys hashed every setting resumes without training its cells again:
    run directories and rows move to the present keys."""
    spec = jaxode.SweepSpec.from_file(_spec(tmp_path))
    out = tmp_path / "sweep"
    rows = []
    for k, cell in enumerate(spec.cells()):
        old = f"{k:016x}"
        (out / "cells" / old).mkdir(parents=True)
        (out / "cells" / old / "config.toml").write_text(cell.config.to_toml())
        metrics = {"status": "completed", "message": "", "test_global": 0.1 * (k + 1)}
        (out / "cells" / old / "metrics.json").write_text(json.dumps(metrics))
        rows.append(
            dict(
                cell=old,
                cohort="c",
                status="completed",
                message="",
                run_dir=f"cells/{old}",
                test_global=metrics["test_global"],
            )
        )
    (out / "cells" / "0000000000000000.attempt-1").mkdir()
    from jaxode._sweeps._table import ResultsTable

    ResultsTable(out).put(rows)
    result = jaxode.sweep(spec, out, executor=_NoTraining(), progress=False)
    for k, (cell, row) in enumerate(zip(spec.cells(), result)):
        assert row["cell"] == cell.key and row["run_dir"] == f"cells/{cell.key}"
        assert math.isclose(float(row["test_global"]), 0.1 * (k + 1))
        assert (out / "cells" / cell.key / "metrics.json").is_file()
    assert (out / "cells" / "0000000000000000.attempt-1").is_dir()
    assert set(_table(out)) == {c.key for c in spec.cells()}


@pytest.mark.parametrize(
    "text, message",
    [
        ("[grd]\n", "unknown key(s) ['grd']"),
        ("[grid]\nmodel.bassis = ['static']\n", "did you mean model.basis"),
        ("[grid]\nmodel.basis = 'static'\n", "must be a non-empty list"),
        ("[grid]\nmodel.degree = [1, -1]\n", "sweep cell 1 (model.degree=-1): model.degree must"),
        (
            "[grid]\nmodel.model = ['node', 'hamiltonian']\n",
            "sweep cell 1 (model.model='hamiltonian'): model.model 'hamiltonian' needs",
        ),
        ("[grid]\nmodel.basis = ['legendre', 'hermite']\n", "unknown model.basis 'hermite'"),
        ("[[zip]]\nmodel.t1 = [1, 2]\nmodel.steps = [3]\n", "must have one length"),
        ("[grid]\nmodel.degree = [2, 2.0]\n", "sweep cells 0 and 1"),
        ("[grid]\ntrain.seed = [0]\n[[exclude]]\ntrain.seed = 0\n", "no cells"),
        ("[base.model]\nwidht = 3\n", "unknown key(s) ['widht'] in [model]"),
        ("[grid]\nmodel.t1 = [1]\n[[zip]]\nmodel.t1 = [2]\n", "axis model.t1 is set twice"),
        ("[grid\n", "not valid TOML"),
    ],
)
def test_invalid_specs_name_the_cell_and_the_field(text, message):
    with pytest.raises(ValueError) as error:
        jaxode.SweepSpec.from_toml(text).cells()
    assert message in str(error.value)


def test_data_limits_are_checked_before_training(tmp_path):
    spec = jaxode.SweepSpec.from_toml("[grid]\ntrain.batch_size = [32, 100000]\n")
    with pytest.raises(ValueError, match=r"sweep cell 1 \(train.batch_size=100000\).*exceeds"):
        jaxode.make_plan(spec)
    with pytest.raises(FileNotFoundError, match="sweep cell 0"):
        jaxode.make_plan(
            jaxode.SweepSpec.from_toml(f"[grid]\ndata.dataset = ['{tmp_path / 'missing.npz'}']\n")
        )
    with pytest.raises(FileNotFoundError, match="does not exist"):
        jaxode.SweepSpec.from_file(tmp_path / "missing.toml")


def test_the_results_table_holds_every_cell_with_its_metrics_and_configuration(reference):
    out, rows = reference
    table = _table(out)
    assert [r["cell"] for r in rows] == list(table)
    assert {r["status"] for r in rows} == {"completed"}
    for row in table.values():
        assert row["cell"] == config_hash(
            jaxode.RunConfig.from_toml((out / row["run_dir"] / "config.toml").read_text())
        )
        trained = jaxode.load(out / row["run_dir"])  # a cell is an ordinary run directory
        assert int(row["model.degree"]) == trained.config.model.degree
        stored = json.loads((out / row["run_dir"] / "metrics.json").read_text())
        for name in ("test_global", "val_physical_per_sample", "steps", "parameters"):
            assert float(row[name]) == float(stored[name])
        assert set(FIELDS) <= set(row)
    # The seeds and degrees are one cohort (the bases padded to degree 2).
    assert len({r["cohort"] for r in rows}) == 1


def test_a_second_run_trains_nothing(reference, tmp_path):
    out, rows = reference
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("checkpoint.eqx")}
    again = jaxode.sweep(_spec(tmp_path), out, progress=False)
    assert again == rows
    assert stamps == {p: p.stat().st_mtime_ns for p in out.rglob("checkpoint.eqx")}


def _wait_for_a_cell_in_flight(out, process=None, timeout=240):
    """Polls until some cell has checkpointed a few evaluations but not finished."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for history in out.glob("cells/*/history.csv"):
            rows = history.read_text().count("\n") - 1
            if rows >= 3 and not (history.parent / "metrics.json").exists():
                return history.parent
        if process is not None and process.poll() is not None:
            raise AssertionError(f"the sweep ended before it was killed: {process.returncode}")
        time.sleep(0.02)
    raise AssertionError("no cell in flight")


def test_kill_9_mid_sweep_then_the_same_command_finishes_it_identically(reference, tmp_path):
    out = tmp_path / "out"
    command = [
        sys.executable,
        "-m",
        "jaxode",
        "sweep",
        str(_spec(tmp_path)),
        "--out",
        str(out),
        "--no-progress",
    ]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    in_flight = _wait_for_a_cell_in_flight(out, process)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (in_flight / "metrics.json").exists()
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "4 cells: 4 completed" in done.stdout
    _same_results(_table(out), _table(reference[0]))


def test_failed_cells_are_recorded_and_retried_on_request(tmp_path):
    text = TINY.format(iterations=200) + "[[blocks]]\ntrain.learning_rate = [0.01, 1e12]\n"
    text = text.replace("train.seed = [0, 1]", "train.seed = [0]")
    text = text.replace('"model.degree" = [1, 2]', '"model.degree" = [1]')
    (tmp_path / "spec.toml").write_text(text)
    rows = jaxode.sweep(tmp_path / "spec.toml", tmp_path / "out", progress=False)
    statuses = {r["train.learning_rate"]: r["status"] for r in rows}
    assert statuses == {0.01: "completed", 1e12: "diverged"}
    failed = [r for r in rows if r["status"] == "diverged"]
    assert all("validation error exploded" in r["message"] for r in failed)
    # Failures stay failures on a plain rerun; --retry-failed trains them again from scratch,
    # keeping the old directory.
    assert jaxode.sweep(tmp_path / "spec.toml", tmp_path / "out", progress=False) == rows
    again = jaxode.sweep(
        tmp_path / "spec.toml", tmp_path / "out", retry_failed=True, progress=False
    )
    assert [r["status"] for r in again] == [r["status"] for r in rows]
    for row in failed:
        assert (tmp_path / "out" / "cells" / f"{row['cell']}.attempt-1" / "config.toml").exists()


def test_a_cell_that_raises_is_an_error_row_and_the_sweep_goes_on(tmp_path, monkeypatch):
    import jaxode._sweeps._pruning as cells  # where a sweep's cohorts call train_cohort

    real = cells.train_cohort

    def fails_for_degree_two(configs, run_dirs, **kwargs):
        if configs[0].model.degree == 2:
            raise RuntimeError("boom")
        return real(configs, run_dirs, **kwargs)

    monkeypatch.setattr(cells, "train_cohort", fails_for_degree_two)
    # Each degree a cohort of its own (degree 1 padded to 2 would be 1.5 times its size).
    spec = jaxode.SweepSpec.from_file(_spec(tmp_path, iterations=100))
    plan = jaxode.make_plan(spec, max_padding=1.2)
    rows = jaxode.sweep(plan, tmp_path / "out", progress=False)
    assert [(r["model.degree"], r["status"]) for r in rows] == [
        (1, "completed"),
        (1, "completed"),
        (2, "error"),
        (2, "error"),
    ]
    assert all(r["message"] == "RuntimeError: boom" for r in rows if r["status"] == "error")
    errored = tmp_path / "out" / rows[2]["run_dir"] / "error.txt"
    assert "RuntimeError: boom" in errored.read_text()


def _processes_titled(title: str) -> list[int]:
    """Process ids whose command line (Ray sets it to `ray::<task>`) starts with `title`."""
    found = []
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                if f.read().startswith(title.encode()):
                    found.append(int(entry))
        except (OSError, ValueError):
            continue
    return found


def test_the_ray_executor_gives_the_local_table_even_when_a_worker_is_killed(reference, tmp_path):
    import threading

    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        out = tmp_path / "out"
        outcome = {}
        runner = threading.Thread(
            target=lambda: outcome.update(
                rows=jaxode.sweep(
                    _spec(tmp_path), out, executor=jaxode.RayExecutor(), progress=False
                )
            )
        )
        runner.start()
        _wait_for_a_cell_in_flight(out)
        workers = _processes_titled("ray::_train_in_worker")
        assert workers, "no Ray worker running a cohort"
        for pid in workers:
            os.kill(pid, signal.SIGKILL)
        runner.join(timeout=600)
        assert [r["status"] for r in outcome["rows"]] == ["completed"] * 4
    finally:
        ray.shutdown()
    _same_results(_table(out), _table(reference[0]))


def test_the_command_prints_the_plan_and_the_report(reference, tmp_path, capsys):
    from jaxode._cli import main

    assert main(["sweep", str(_spec(tmp_path)), "--dry-run", "--no-estimate"]) == 0
    plan = capsys.readouterr().out
    assert "4 cells in 1 cohort (4 members each), 1 compilation" in plan
    assert "4 members (seeds 0, 1; model.degree 1, 2), 3000 steps; bases padded to degree 2" in plan
    out, rows = reference
    assert main(["sweep", "report", str(out), "--rows", "degree", "--cols", ""]) == 0
    table = capsys.readouterr().out
    for degree in (1, 2):
        errors = [r["test_global"] for r in rows if r["model.degree"] == degree]
        mean, std = statistics.mean(errors), statistics.stdev(errors)
        assert f"| {degree} | {mean:.4f} ± {std:.4f} (n=2) |" in table
    assert (out / "report" / "error_vs_degree.png").stat().st_size > 0


def test_the_parquet_copy_holds_the_csv_table(reference):
    import pandas

    out, _ = reference
    csv_table = pandas.read_csv(out / "results.csv")
    parquet = pandas.read_parquet(out / "results.parquet")
    pandas.testing.assert_frame_equal(csv_table, parquet)
