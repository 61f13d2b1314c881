"""Experiment tracking in MLflow: a finished run directory (a single run, a cohort's member, a
sweep's cell) logged as one MLflow run, from its files, after training (nothing enters the
compiled training loop).

Logged: the configuration as parameters (`model.width`, ...), `metrics.json`'s numbers as
metrics, the history (`history.csv`) as metrics per step, and the run directory as artifacts.
The default store is local: `mlruns/mlflow.db` (SQLite) with the artifacts beside it under
`mlruns/`, in the current folder. Needs `pip install 'jaxode[track]'`.
"""

import csv
import dataclasses
import json
import math
import pathlib

from ._files import atomic_write_text, read_json

TRACKED = "tracked.json"
EXPERIMENT = "jaxode"


def _mlflow():
    """MLflow's client and its `Metric` and `Param` entities."""
    try:
        from mlflow.entities import Metric, Param
        from mlflow.tracking import MlflowClient
    except ImportError:
        raise ImportError("tracking in MLflow needs it: pip install 'jaxode[track]'.") from None
    return MlflowClient, Metric, Param


def default_uri() -> str:
    """`sqlite:///<current folder>/mlruns/mlflow.db`, the folder made when missing."""
    folder = pathlib.Path("mlruns").absolute()
    folder.mkdir(exist_ok=True)
    return f"sqlite:///{folder / 'mlflow.db'}"


def _numbers(row: dict) -> dict[str, float]:
    out = {}
    for key, value in row.items():
        try:
            number = float(value)
        except (TypeError, ValueError):
            continue
        if not isinstance(value, bool) and math.isfinite(number):
            out[key] = number
    return out


def track_run(
    run_dir, *, uri: str | None = None, experiment: str = EXPERIMENT, tags: dict | None = None
) -> str:
    """Logs the finished run directory `run_dir` to MLflow at `uri` (default `default_uri()`)
    in `experiment`, with `tags`, and returns the MLflow run id. A run directory already
    logged to that store (its `tracked.json` says so) is not logged again: its id is returned.

    **Raises:** `FileNotFoundError` for a folder without `config.toml` or `metrics.json`;
    `ImportError` without MLflow."""
    from ._training import RunDir

    run = RunDir(run_dir)
    for name in ("config.toml", "metrics.json"):
        if not (run.path / name).is_file():
            raise FileNotFoundError(
                f"{str(run.path)!r} has no {name}: only a finished run directory is tracked."
            )
    uri = uri or default_uri()
    marker = run.path / TRACKED
    if marker.is_file():
        stored = read_json(marker, "tracking record", "delete it to log the run again.")
        if stored.get("uri") == uri and stored.get("experiment") == experiment:
            return stored["run_id"]
    client_class, Metric, Param = _mlflow()
    client = client_class(uri)
    found = client.get_experiment_by_name(experiment)
    experiment_id = found.experiment_id if found else client.create_experiment(experiment)
    config = run.config()
    params = {
        f"{section}.{key}": str(value)
        for section in ("data", "model", "train")
        for key, value in dataclasses.asdict(getattr(config, section)).items()
    }
    active = client.create_run(experiment_id, run_name=run.path.name, tags=tags or {})
    run_id = active.info.run_id
    try:
        client.log_batch(
            run_id,
            params=[Param(k, v) for k, v in params.items()],
        )
        metrics = json.loads((run.path / "metrics.json").read_text())
        entries = [Metric(k, v, 0, 0) for k, v in _numbers(metrics).items()]
        history = run.path / "history.csv"
        if history.is_file():
            with open(history, newline="") as f:
                for row in csv.DictReader(f):
                    values = _numbers(row)
                    step = int(values.pop("step", 0))
                    entries += [Metric(f"history.{k}", v, 0, step) for k, v in values.items()]
        for start in range(0, len(entries), 1000):  # MLflow's batch limit
            client.log_batch(run_id, metrics=entries[start : start + 1000])
        client.log_artifacts(run_id, str(run.path), artifact_path="run")
        client.set_terminated(run_id, status="FINISHED")
    except BaseException:
        client.set_terminated(run_id, status="FAILED")
        raise
    record = {"uri": uri, "experiment": experiment, "run_id": run_id}
    atomic_write_text(marker, json.dumps(record, indent=2))
    return run_id


def add_tracking_options(parser) -> None:
    """`--track mlflow` and `--tracking-uri URI` of `jaxode train` and `jaxode sweep`."""
    parser.add_argument(
        "--track",
        choices=("mlflow",),
        help="log each finished run (configuration, metrics, history, the run directory) to "
        "MLflow (pip install 'jaxode[track]')",
    )
    parser.add_argument(
        "--tracking-uri",
        metavar="URI",
        help="MLflow tracking URI (default: sqlite:///mlruns/mlflow.db in the current folder)",
    )


def track_finished(args, runs: list) -> None:
    """Logs a command's finished runs, `(run_dir, tags)` pairs, when `--track` asks for it,
    and says where; a run without metrics (interrupted, pruned) is left out."""
    if getattr(args, "track", None) is None:
        return
    done = [
        (pathlib.Path(d), tags) for d, tags in runs if (pathlib.Path(d) / "metrics.json").is_file()
    ]
    uri = args.tracking_uri or default_uri()
    for run_dir, tags in done:
        track_run(run_dir, uri=uri, tags={**tags, "run_dir": str(run_dir)})
    print(f"{len(done)} run{'s' if len(done) != 1 else ''} logged to MLflow at {uri}")
