"""The persistent compilation cache of the `jaxode` command: two `jaxode train` processes in a
row sharing a fresh cache folder, against two with the cache turned off.

Every process runs `python -m jaxode train --epochs 1 --no-progress --out <tmp>/runN [extra]`
(default configuration: ELM, neural ODE), with `JAXODE_COMPILATION_CACHE=<fresh tmp dir>` or
`JAXODE_COMPILATION_CACHE=off` in its environment. Reported per process: its wall time (start
to exit, imports included) and, from its `metrics.json`, `compile_time` (compilation of the
training chunk, the time to the first step less the start-up) and `train_time`. The processes
alternate between the two settings (cache 1, off 1, cache 2, off 2, ...), so that a change of
machine load hits both alike. Prints a table and writes JSON.

    python benchmarks/compile_cache.py [--rounds 2] [--epochs 1] [--extra "--preset study-node"]
        [--out benchmarks/results/compile_cache.json]
"""

import argparse
import json
import os
import pathlib
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
import time

from _results import write_json


def folder_size(path: pathlib.Path) -> tuple[int, int]:
    files = [p for p in path.rglob("*") if p.is_file()]
    return len(files), sum(p.stat().st_size for p in files)


def run_once(setting: str, run_dir: pathlib.Path, epochs: int, extra: list[str]) -> dict:
    env = dict(os.environ, JAXODE_COMPILATION_CACHE=setting)
    command = [
        sys.executable,
        "-m",
        "jaxode",
        "train",
        "--epochs",
        str(epochs),
        "--no-progress",
        "--out",
        str(run_dir),
        *extra,
    ]
    launched, tic = time.time(), time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - tic
    if done.returncode != 0:
        raise RuntimeError(f"{shlex.join(command)} failed ({done.returncode}):\n{done.stderr}")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    return dict(
        process_wall_s=wall,
        compile_time_s=metrics.get("compile_time"),
        first_step_s=metrics["training_started"] - launched,
        train_time_s=metrics.get("train_time"),
        outside_training_s=wall - metrics.get("train_time"),
        steps=metrics.get("steps"),
        status=metrics.get("status"),
        command=shlex.join(command),
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2, help="processes per setting (>= 2)")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--extra", default="", help="further `jaxode train` options, one string")
    parser.add_argument("--out", default="benchmarks/results/compile_cache.json")
    args = parser.parse_args()
    if args.rounds < 2:
        raise SystemExit("--rounds must be at least 2 (the second process is the cached one)")
    extra = shlex.split(args.extra)
    load_before = os.getloadavg()
    work = pathlib.Path(tempfile.mkdtemp(prefix="jaxode-compile-cache-bench-"))
    cache = work / "cache"  # fresh: nothing compiled before the first process
    rows = []
    try:
        for index in range(args.rounds):
            for mode, setting in (("cache", str(cache)), ("off", "off")):
                row = run_once(setting, work / f"run-{mode}-{index + 1}", args.epochs, extra)
                row.update(mode=mode, process=index + 1)
                if mode == "cache":
                    row["cache_files"], row["cache_bytes"] = folder_size(cache)
                rows.append(row)
                print(
                    f"{mode:5s} process {index + 1}: wall {row['process_wall_s']:.2f} s, "
                    f"first step after {row['first_step_s']:.2f} s, "
                    f"compile {row['compile_time_s']:.2f} s, train {row['train_time_s']:.2f} s",
                    flush=True,
                )
    finally:
        shutil.rmtree(work, ignore_errors=True)

    def pick(mode, process):
        return next(r for r in rows if r["mode"] == mode and r["process"] == process)

    ratios = {}
    for mode in ("cache", "off"):
        first, later = pick(mode, 1), [pick(mode, k) for k in range(2, args.rounds + 1)]
        ratios[mode] = dict(
            compile_first_over_later=[first["compile_time_s"] / r["compile_time_s"] for r in later],
            wall_first_over_later=[first["process_wall_s"] / r["process_wall_s"] for r in later],
            first_step_first_over_later=[first["first_step_s"] / r["first_step_s"] for r in later],
            outside_training_first_over_later=[
                first["outside_training_s"] / r["outside_training_s"] for r in later
            ],
        )
    second = pick("cache", 2)
    goals = {
        "second cached process compiles >= 2x sooner (compile_time)": ratios["cache"][
            "compile_first_over_later"
        ][0]
        >= 2,
        "second cached process reaches its first step >= 2x sooner (launch to first step)": ratios[
            "cache"
        ]["first_step_first_over_later"][0]
        >= 2,
        "second cached process finishes >= 2x sooner (process wall time)": ratios["cache"][
            "wall_first_over_later"
        ][0]
        >= 2,
        "second cached process spends >= 2x less outside training (wall - train_time)": ratios[
            "cache"
        ]["outside_training_first_over_later"][0]
        >= 2,
    }
    print(
        f"\n{'setting':6s} {'process':>7s} {'wall s':>8s} {'compile s':>10s} {'train s':>8s} "
        f"{'wall-train s':>12s} {'cache files':>11s} {'cache MB':>9s}"
    )
    for r in rows:
        files = (
            f"{r['cache_files']:11d} {r['cache_bytes'] / 1e6:9.2f}" if "cache_files" in r else ""
        )
        print(
            f"{r['mode']:6s} {r['process']:7d} {r['process_wall_s']:8.2f} "
            f"{r['compile_time_s']:10.2f} {r['train_time_s']:8.2f} "
            f"{r['outside_training_s']:12.2f} {files}"
        )
    for mode, values in ratios.items():
        print(
            f"{mode}: first / later process, compile_time "
            + ", ".join(f"{v:.2f}x" for v in values["compile_first_over_later"])
            + "; first step "
            + ", ".join(f"{v:.2f}x" for v in values["first_step_first_over_later"])
            + "; wall "
            + ", ".join(f"{v:.2f}x" for v in values["wall_first_over_later"])
            + "; wall-train "
            + ", ".join(f"{v:.2f}x" for v in values["outside_training_first_over_later"])
        )
    print(
        f"second cached process: compile {second['compile_time_s']:.2f} s against "
        f"{pick('off', 2)['compile_time_s']:.2f} s without the cache"
    )
    for name, met in goals.items():
        print(f"goal {name}: {'met' if met else 'missed'}")

    import jax  # only for the version, after the timed processes

    result = {
        "benchmark": "compile_cache",
        "command": " ".join([sys.executable] + sys.argv),
        "train_command": rows[0]["command"],
        "jax_version": jax.__version__,
        "machine": platform.platform(),
        "cpus": os.cpu_count(),
        "load_average_before": load_before,
        "load_average": os.getloadavg(),
        "rows": rows,
        "ratios": ratios,
        "goals": goals,
        "note": "compile_time (metrics.json) times the compilation of the training chunk only "
        "(tracing and lowering included, which the cache does not spare); "
        "the process wall time also holds imports, data loading, the programs of the "
        "evaluations (counting, prediction, bookkeeping), one epoch of training and "
        "the final evaluation; wall - train_time is the process less fit's training "
        "wall time (start-up, compilation of the chunk, final evaluation, files).",
    }
    write_json(args.out, result)


if __name__ == "__main__":
    main()
