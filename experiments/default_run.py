"""The quick start's run: `jaxode train` with the defaults on ELM, then `jaxode probe` in float64,
as one script whose output the README and docs quote.

    python experiments/default_run.py --out experiments/results

Writes `default_run.json`: the run's metrics (test errors in both units, steps, times from an
empty compilation cache) and the probe report's verdict counts.
"""

import argparse
import json
import os
import pathlib
import subprocess
import sys
import tempfile


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path("experiments/results"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="jaxode-default-") as tmp:
        run = pathlib.Path(tmp) / "run"
        # The installed command, as a user runs it (each in its own process: x64 is per process),
        # on a fresh machine: an empty compilation cache.
        env = dict(os.environ, JAXODE_COMPILATION_CACHE=str(pathlib.Path(tmp) / "cache"))
        for argv in (["train", "--out", str(run), "--no-progress"], ["probe", str(run)]):
            subprocess.run([sys.executable, "-m", "jaxode._cli", *argv], check=True, env=env)
        metrics = json.loads((run / "metrics.json").read_text())
        report = json.loads((run / "probes" / "report.json").read_text())
    result = {
        "command": "jaxode train; jaxode probe RUN",
        "metrics": metrics,
        "ray_limit_summary": report["ray_limit_summary"],
        "ray_limit_precision": report["ray_limit"]["precision"],
        "plots": report["plots"],
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "default_run.json").write_text(json.dumps(result, indent=2))
    print(json.dumps({k: result[k] for k in ("ray_limit_summary", "plots")}))
    print(
        f"test global {metrics['test_global']:.4f} (normalised), "
        f"train_time {metrics['train_time']:.0f} s"
    )


if __name__ == "__main__":
    main()
