"""`jaxode runs` and `jaxode compare` on run directories made by real (tiny) training runs: a
single run, a cohort, a sweep with a diverged cell, an interrupted run, and copies of them
damaged by hand. Every value shown must be the one in the run's files."""

import fcntl
import json
import math
import os
import pathlib
import shutil

import pytest

import jaxode
import jaxode._training._run as run_module
from jaxode._cli import main
from jaxode._runs_table import (
    COLUMNS,
    RUNNING,
    compare_runs,
    find_runs,
    format_runs,
    read_run,
    run_row,
    runs_table,
    sort_rows,
)

# tests/test_cli.py's TINY (the same programs, compiled once through conftest.py's cache).
TINY = [
    "--data", "cdr", "--model", "resnet", "--field", "layer", "--width", "3", "--steps", "2",
    "--degree", "1", "--epochs", "3", "--batch-size", "100", "--precision", "float64",
    "--no-progress",
]  # fmt: skip
# The same configuration as a sweep, once as it is and once at a learning rate that diverges.
SPEC = """
name = "tiny"
[base.data]
dataset = "cdr"
[base.model]
model = "resnet"
field = "layer"
width = 3
steps = 2
degree = 1
[base.train]
epochs = 3
batch_size = 100
precision = "float64"
[grid]
train.learning_rate = [0.003, 1e12]
"""


def _make_runs(root: pathlib.Path) -> pathlib.Path:
    """Fills `root` with real runs: `single`, `cohort/seed-{0,1}`, `sweep/cells/<key>` (one
    completed, one diverged), `stopped` (interrupted after its first evaluation), a folder
    without runs, and a hidden folder holding a run (not searched)."""
    assert main(["train", *TINY, "--out", str(root / "single")]) == 0
    assert main(["train", *TINY, "--seeds", "0-1", "--out", str(root / "cohort")]) == 0
    (root / "spec.toml").write_text(SPEC)
    rows = jaxode.sweep(root / "spec.toml", root / "sweep", progress=False)
    assert sorted(r["status"] for r in rows) == ["completed", "diverged"]
    original = run_module.fit

    def interrupted(*args, **kwargs):
        def stop(row):
            raise KeyboardInterrupt

        return original(*args, **kwargs, callback=stop)

    run_module.fit = interrupted
    try:
        assert main(["train", *TINY, "--out", str(root / "stopped")]) == 130
    finally:
        run_module.fit = original
    (root / "notes").mkdir()
    (root / "notes" / "todo.txt").write_text("not a run")
    shutil.copytree(root / "single", root / ".hidden" / "run")
    return root


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """`_make_runs`' folder, made once per test session: pytest-xdist workers share it (the
    first one to get the lock makes it), and tests only read it or copy from it."""
    if "PYTEST_XDIST_WORKER" not in os.environ:
        return _make_runs(tmp_path_factory.mktemp("runs"))
    shared = tmp_path_factory.getbasetemp().parent  # this session's, common to the workers
    root = shared / "runs-table"
    with open(shared / "runs-table.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (root / "made").is_file():
            shutil.rmtree(root, ignore_errors=True)  # what a failed attempt left
            root.mkdir()
            _make_runs(root)
            (root / "made").touch()
    return root


def _files(run_dir):
    config = jaxode.RunConfig.from_toml((run_dir / "config.toml").read_text())
    metrics_path = run_dir / "metrics.json"
    metrics = json.loads(metrics_path.read_text()) if metrics_path.is_file() else None
    return config, metrics


def _path(row):
    return pathlib.Path(row["path"])


def _last_row(run_dir) -> dict:
    """The last row of history.csv, numbers as floats."""
    lines = (run_dir / "history.csv").read_text().splitlines()
    return {k: float(v) for k, v in zip(lines[0].split(","), lines[-1].split(",")) if v}


def _by_path(rows):
    return {row["path"]: row for row in rows}


def test_every_run_is_found_with_the_values_of_its_files(runs):
    rows, warnings = runs_table(runs)
    assert warnings == []
    cells = sorted((runs / "sweep" / "cells").iterdir())
    expected = [runs / "cohort" / "seed-0", runs / "cohort" / "seed-1", runs / "single"]
    expected += [runs / "stopped", *cells]
    assert sorted(row["path"] for row in rows) == sorted(str(p) for p in expected)
    for row in rows:
        config, metrics = _files(_path(row))
        assert row["data"] == config.data.dataset == "cdr"
        assert (row["model"], row["basis"], row["degree"]) == (
            config.model.model,
            config.model.basis,
            config.model.degree,
        )
        assert row["notes"] == []
        if metrics is None:
            continue
        assert row["recorded_status"] == metrics["status"]
        assert row["steps"] == metrics["steps"]
        for name in ("test_global", "test_per_sample"):
            assert row[name] == metrics.get(name)
        # the training time of metrics.json; of the last evaluation for a run stopped early
        assert row["time"] == metrics.get("train_time", _last_row(_path(row)).get("wall_time"))
    single = _by_path(rows)[str(runs / "single")]
    _, metrics = _files(runs / "single")
    assert single["status"] == "completed" and single["steps"] == 12
    assert single["test_global"] == metrics["test_global"] and single["time"] > 0
    statuses = sorted(_by_path(rows)[str(c)]["status"] for c in cells)
    assert statuses == ["completed", "diverged"]


def test_an_interrupted_run_shows_its_history(runs):
    row = run_row(read_run(runs / "stopped"))
    last = _last_row(runs / "stopped")
    assert row["status"] == RUNNING and row["recorded_status"] is None
    assert row["steps"] == last["step"] == 4 and isinstance(row["steps"], int)
    assert row["time"] == last["wall_time"]
    assert row["test_global"] is None and row["notes"] == []


def test_the_printed_table_shows_the_stored_values(runs, capsys):
    assert main(["runs", str(runs)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == list(COLUMNS)
    _, metrics = _files(runs / "single")
    [line] = [text for text in lines if text.endswith(str(runs / "single"))]
    assert line.split() == [
        "cdr",
        "resnet",
        "legendre",
        "1",
        "completed",
        f"{metrics['test_global']:.4g}",
        f"{metrics['test_per_sample']:.4g}",
        "12",
        f"{metrics['train_time']:.1f}s",
        str(runs / "single"),
    ]
    [stopped] = [text for text in lines if text.endswith(str(runs / "stopped"))]
    assert RUNNING in stopped and " - " in stopped
    assert "normalised units" in lines[-1]
    assert len(lines) == 1 + 6 + 1  # header, six runs, the legend


def test_sort_and_reverse(runs, capsys):
    rows, _ = runs_table(runs, sort="test_global")
    errors = [row["test_global"] for row in rows]
    present = [e for e in errors if e is not None]
    assert present == sorted(present) and len(present) == 4
    assert errors[4:] == [None, None]  # the diverged and the interrupted run, last
    backwards, _ = runs_table(runs, sort="test_global", reverse=True)
    assert [r["test_global"] for r in backwards] == present[::-1] + [None, None]
    by_status = [r["status"] for r in runs_table(runs, sort="status")[0]]
    assert by_status == sorted(by_status)
    assert main(["runs", str(runs), "--sort", "steps", "--json"]) == 0
    steps = [row["steps"] for row in json.loads(capsys.readouterr().out)]
    assert steps == sorted(steps)
    with pytest.raises(SystemExit) as exit:
        main(["runs", str(runs), "--sort", "accuracy"])
    err = capsys.readouterr().err
    assert exit.value.code == 2 and "invalid choice: 'accuracy'" in err
    assert all(repr(name) in err or name in err for name in COLUMNS)
    with pytest.raises(
        ValueError, match="unknown column 'accuracy' to sort by; choose one of data"
    ):
        sort_rows([], "accuracy")


def test_json_rows_are_the_rows(runs, capsys):
    assert main(["runs", str(runs), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    rows, _ = runs_table(runs)
    assert printed == rows  # all finite here: the JSON text holds the same values
    assert set(printed[0]) == set(COLUMNS) | {"recorded_status", "notes"}


def test_missing_and_empty_folders(tmp_path, capsys):
    assert main(["runs", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err
    assert "'" + str(tmp_path / "nowhere") + "' does not exist" in err
    assert len(err.strip().splitlines()) == 1
    (tmp_path / "empty").mkdir()
    assert main(["runs", str(tmp_path / "empty")]) == 0
    assert (
        capsys.readouterr().out.strip() == f"no run directories under {str(tmp_path / 'empty')!r}."
    )
    assert main(["runs", str(tmp_path / "empty"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == []
    (tmp_path / "file").write_text("x")
    assert main(["runs", str(tmp_path / "file")]) == 2
    assert "is a file" in capsys.readouterr().err


def test_damaged_runs_are_listed_with_what_is_known(runs, tmp_path, capsys):
    _, metrics = _files(runs / "single")
    names = ("no-config", "bad-config", "garbage-config", "bad-metrics", "no-model", "error")
    for name in names:
        shutil.copytree(runs / "single", tmp_path / name)
    (tmp_path / "no-config" / "config.toml").unlink()
    text = (tmp_path / "bad-config" / "config.toml").read_text()
    (tmp_path / "bad-config" / "config.toml").write_text(text.replace("degree = 1", "degree = -1"))
    (tmp_path / "garbage-config" / "config.toml").write_text("[model\nbasis = ")
    (tmp_path / "bad-metrics" / "metrics.json").write_text('{"status": "compl')
    (tmp_path / "no-model" / "model.eqx").unlink()
    # a sweep cell whose training raised: config and error.txt, nothing else
    for name in ("metrics.json", "model.eqx", "checkpoint.eqx", "history.csv", "loss.png"):
        (tmp_path / "error" / name).unlink()
    (tmp_path / "error" / "error.txt").write_text("Traceback ...\nRuntimeError: out of memory\n")
    rows = _by_path(runs_table(tmp_path)[0])
    row = rows[str(tmp_path / "no-config")]
    assert row["data"] is None and row["status"] == "completed"
    assert row["test_global"] == metrics["test_global"] and row["notes"] == ["config.toml missing"]
    row = rows[str(tmp_path / "bad-config")]
    assert row["degree"] == -1 and row["basis"] == "legendre"
    assert row["notes"] == ["config.toml invalid (model.degree must be an integer >= 0, got -1.)"]
    row = rows[str(tmp_path / "garbage-config")]
    assert row["model"] is None and row["notes"][0].startswith("config.toml unreadable")
    row = rows[str(tmp_path / "bad-metrics")]
    assert row["status"] == "unknown" and row["test_global"] is None
    assert row["notes"][0].startswith("metrics.json unreadable")
    last = _last_row(runs / "single")
    assert row["steps"] == last["step"] == 12 and row["time"] == last["wall_time"]
    assert rows[str(tmp_path / "no-model")]["notes"] == ["model.eqx missing"]
    row = rows[str(tmp_path / "error")]
    assert row["status"] == "failed" and row["steps"] is None
    assert row["notes"] == ["error.txt: RuntimeError: out of memory"]
    assert main(["runs", str(tmp_path)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split()[-1] == "note" and len(out) == 1 + len(names) + 1
    assert "config.toml missing" in next(line for line in out if "no-config" in line)


def test_non_finite_errors_read_back_as_inf_or_nan(runs, tmp_path):
    shutil.copytree(runs / "single", tmp_path / "blown")
    path = tmp_path / "blown" / "metrics.json"
    metrics = json.loads(path.read_text())
    metrics.update(test_global=None, test_per_sample=None, test_failed_solves=3, val_global=None)
    path.write_text(json.dumps(metrics))
    row = run_row(read_run(tmp_path / "blown"))
    assert row["test_global"] == math.inf and row["test_per_sample"] == math.inf
    assert "inf" in format_runs([row]).splitlines()[1].split()
    comparison = compare_runs([tmp_path / "blown", runs / "single"])
    values = dict(comparison.metrics)
    assert values["test_global"][0] == math.inf and math.isnan(values["val_global"][0])


def test_compare_a_cohort_shows_the_seed_and_every_metric(runs, capsys):
    members = [runs / "cohort" / "seed-0", runs / "cohort" / "seed-1"]
    comparison = compare_runs(members)
    assert comparison.labels == ["seed-0", "seed-1"]
    assert comparison.config == [("train.seed", [0, 1])]
    stored = [json.loads((m / "metrics.json").read_text()) for m in members]
    names = [name for name, _ in comparison.metrics]
    assert names[0] == "status"
    assert set(names[1:]) == set(stored[0]) - {"status", "message", "plot", "training_started"}
    for name, values in comparison.metrics[1:]:
        assert values == [m[name] for m in stored]
    assert main(["compare", *map(str, members)]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[:2] == [f"seed-0: {members[0]}", f"seed-1: {members[1]}"]
    assert ["train.seed", "0", "1"] in [line.split() for line in lines]
    row = next(line.split() for line in lines if line.startswith("test_global "))
    assert row == ["test_global"] + [f"{m['test_global']:.6g}" for m in stored]


def test_compare_shows_missing_metrics_as_dashes(runs, capsys):
    cells = {
        json.loads((c / "metrics.json").read_text())["status"]: c
        for c in (runs / "sweep" / "cells").iterdir()
    }
    argv = ["compare", str(cells["completed"]), str(cells["diverged"]), str(runs / "stopped")]
    assert main(argv) == 0
    lines = [line.split() for line in capsys.readouterr().out.splitlines()]
    assert ["train.learning_rate", "0.003", "1e+12", "0.003"] in lines
    completed = json.loads((cells["completed"] / "metrics.json").read_text())
    assert ["test_global", f"{completed['test_global']:.6g}", "-", "-"] in lines
    assert ["status", "completed", "diverged", RUNNING] in lines
    assert main(["compare", "--json", str(cells["completed"]), str(runs / "single")]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["config"] == {}  # the same configuration
    assert printed["metrics"]["test_global"][0] == completed["test_global"]
    assert [r["path"] for r in printed["runs"]] == [str(cells["completed"]), str(runs / "single")]


@pytest.mark.parametrize(
    "which, message",
    [
        ("missing", "does not exist"),
        ("notes", "is not a run directory (it holds none of config.toml"),
        ("cohort", "is a cohort folder, not a run; compare its members"),
        ("sweep", "its runs are under"),
    ],
)
def test_compare_names_what_is_not_a_run(runs, which, message, capsys):
    assert main(["compare", str(runs / "single"), str(runs / which)]) == 2
    err = capsys.readouterr().err
    assert message in err and str(runs / which) in err and len(err.strip().splitlines()) == 1


def test_compare_needs_two_runs(runs, capsys):
    assert main(["compare", str(runs / "single")]) == 2
    assert "two or more run directories, got 1" in capsys.readouterr().err


def test_find_runs_skips_hidden_folders_and_run_contents(runs):
    found, _ = find_runs(runs)
    assert not any(".hidden" in p.parts for p in found)
    assert find_runs(runs / "single")[0] == [runs / "single"]
