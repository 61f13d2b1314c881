"""Tracking in MLflow (issue 28): a finished run and a sweep's cells logged to a real local MLflow
store (SQLite), read back through MLflow's own client and compared with the run directories'
files."""

import csv
import json

import mlflow
import pytest

from jaxode._cli import main
from jaxode._tracking import track_run

TRAIN = [
    "train",
    "--data",
    "elm",
    "--model",
    "resnet",
    "--field",
    "layer",
    "--width",
    "3",
    "--steps",
    "2",
    "--iterations",
    "20",
    "--eval-every-iterations",
    "10",
    "--no-progress",
]
SPEC = """
name = "tracked"
[base.data]
dataset = "elm"
[base.model]
model = "resnet"
field = "layer"
width = 3
steps = 2
[base.train]
iterations = 10
eval_every_iterations = 10
[grid]
train.seed = [0, 1]
"""


def test_runs_and_sweep_cells_are_logged_to_a_local_store(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the store's artifacts go beside it, under ./mlruns
    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    run = tmp_path / "run"
    assert main([*TRAIN, "--out", str(run), "--track", "mlflow", "--tracking-uri", uri]) == 0
    client = mlflow.tracking.MlflowClient(uri)
    experiment = client.get_experiment_by_name("jaxode")
    [logged] = client.search_runs([experiment.experiment_id])
    assert logged.data.params["model.width"] == "3"
    assert logged.data.params["train.iterations"] == "20"
    metrics = json.loads((run / "metrics.json").read_text())
    assert logged.data.metrics["test_global"] == pytest.approx(metrics["test_global"], rel=1e-12)
    with open(run / "history.csv", newline="") as f:
        history = list(csv.DictReader(f))
    steps = client.get_metric_history(logged.info.run_id, "history.val_global")
    assert [m.step for m in steps] == [int(row["step"]) for row in history]
    assert [m.value for m in steps] == pytest.approx([float(r["val_global"]) for r in history])
    artifacts = {a.path for a in client.list_artifacts(logged.info.run_id, "run")}
    assert {"run/config.toml", "run/model.eqx", "run/metrics.json"} <= artifacts
    # Logged once: the run directory remembers its MLflow run.
    assert track_run(run, uri=uri) == logged.info.run_id
    assert len(client.search_runs([experiment.experiment_id])) == 1

    spec = tmp_path / "spec.toml"
    spec.write_text(SPEC)
    command = ["sweep", str(spec), "--out", str(tmp_path / "sweep"), "--no-progress"]
    assert main([*command, "--track", "mlflow", "--tracking-uri", uri]) == 0
    cells = client.search_runs([experiment.experiment_id], "tags.sweep = 'tracked'")
    assert len(cells) == 2
    with open(tmp_path / "sweep" / "results.csv", newline="") as f:
        rows = {row["cell"]: row for row in csv.DictReader(f)}
    for cell in cells:
        row = rows[cell.data.tags["cell"]]
        assert cell.data.metrics["test_global"] == pytest.approx(float(row["test_global"]))
