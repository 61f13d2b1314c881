"""Where a short `jaxode train` spends its time: compiling the training program, training, and
everything else (interpreter and imports, data, initialising the model, evaluating, writing),
from an empty compilation cache (a first run) and from a warm one (the same command again).

Each measurement is one `jaxode train --epochs E --no-progress` process on the default ELM
run. Its wall time is measured here; `compile_time`, `train_time` and `training_started` come
from the run's metrics.json, so that "to first step" is the time from the process's start to
its first training step. With `--source DIR` a second jaxode (e.g. a `git worktree add` of an
earlier commit) runs in turn with this checkout's, round by round, so the two sit side by side
under the same load.

    python benchmarks/startup.py [--epochs 2] [--rounds 2] [--source DIR]
        [--out benchmarks/results/startup.json]
"""

import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

from _results import run_context, write_json

ROOT = pathlib.Path(__file__).resolve().parent.parent


def _run(source: pathlib.Path, cache: str, epochs: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="jaxode-startup-") as folder:
        out = pathlib.Path(folder) / "run"
        env = dict(os.environ, PYTHONPATH=str(source), JAXODE_COMPILATION_CACHE=cache)
        argv = [sys.executable, "-m", "jaxode._cli", "train", "--epochs", str(epochs)]
        start = time.time()
        # Run from the empty folder: `python -m` puts the working directory first on the path,
        # which would import the jaxode of this checkout whatever PYTHONPATH says.
        subprocess.run(
            [*argv, "--no-progress", "--out", str(out)],
            env=env,
            cwd=folder,
            check=True,
            capture_output=True,
        )
        wall = time.time() - start
        metrics = json.loads((out / "metrics.json").read_text())
    return {
        "wall": wall,
        "compile": metrics["compile_time"],
        "train": metrics["train_time"],
        "outside_training": wall - metrics["train_time"],
        "to_first_step": metrics["training_started"] - start,
    }


def _check_source(source: pathlib.Path) -> None:
    """Exits unless a child run as `_run` runs them imports the jaxode of `source`."""
    with tempfile.TemporaryDirectory(prefix="jaxode-startup-") as folder:
        found = subprocess.run(
            [sys.executable, "-c", "import jaxode; print(jaxode.__file__)"],
            env=dict(os.environ, PYTHONPATH=str(source)),
            cwd=folder,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    if not pathlib.Path(found).resolve().is_relative_to(source.resolve()):
        raise SystemExit(f"a run of {source} would import jaxode from {found}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--source", type=pathlib.Path, help="a second jaxode checkout")
    parser.add_argument("--out", default="benchmarks/results/startup.json")
    args = parser.parse_args()
    load_before = os.getloadavg()
    sources = {"this": ROOT} | ({"source": args.source.resolve()} if args.source else {})
    for source in sources.values():
        _check_source(source)
    runs = {(name, kind): [] for name in sources for kind in ("cold", "warm")}
    for _ in range(args.rounds):
        for name, source in sources.items():
            with tempfile.TemporaryDirectory(prefix="jaxode-cache-") as cache:
                runs[name, "cold"].append(_run(source, cache, args.epochs))
                runs[name, "warm"].append(_run(source, cache, args.epochs))
    rows = []
    print(f"{'jaxode':<8} {'cache':<5} " + " ".join(f"{k:>16}" for k in runs[next(iter(runs))][0]))
    for (name, kind), measured in runs.items():
        medians = {k: statistics.median(m[k] for m in measured) for k in measured[0]}
        rows.append({"jaxode": name, "source": str(sources[name]), "cache": kind, **medians})
        print(f"{name:<8} {kind:<5} " + " ".join(f"{v:>15.2f}s" for v in medians.values()))
    result = run_context("startup", load_before)
    result.update(
        epochs=args.epochs,
        rounds=args.rounds,
        medians=rows,
        runs=[{"jaxode": n, "cache": k, "measured": m} for (n, k), m in runs.items()],
    )
    write_json(args.out, result)


if __name__ == "__main__":
    main()
