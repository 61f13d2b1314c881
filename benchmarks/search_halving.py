"""A random search on ELM trained to the end against the same search with successive halving.

256 random configurations of the example sweep's ResNet (width 15, 12 steps, 40 epochs,
validation every 2 epochs, AdamW): learning rate (log-uniform 1e-4 to 3e-2), weight decay
(`train.weight_decay`, AdamW's decoupled decay, log-uniform 1e-6 to 1e-1), basis (static,
monomial, Legendre, Chebyshev) x degree (1-4), horizon T (`model.t1`, 0.5, 1 or 2) and initial
scale (`model.field_init_std` of a normal initialisation, log-uniform
0.02 to 0.5). Side "full": `jaxode sweep` of the search spec, every trial to its end. Side
"halving": the same spec with `[pruning] kind = "halving"`, first rung at 216 steps (4 epochs),
reduction 3. Each side is one `jaxode sweep` process with an empty compilation cache of its
own; the sides run one after the other and the load average is recorded.

Each side's best trial is chosen by its validation error (the value its search recorded); its
test error is then read. Reports the wall times, the member-steps spent, the best trials and
the curve of the best validation error against member-steps (`search_halving.png`).

    python benchmarks/search_halving.py [--trials 256]
        [--out benchmarks/results/search_halving.json]
"""

import argparse
import csv
import io
import os
import pathlib
import subprocess
import sys
import tempfile
import time

from _results import run_context, write_json

SPEC = """
name = "search-{side}"
[base.data]
dataset = "elm"
[base.model]
model = "resnet"
field = "layer"
width = 15
steps = 12
field_init = "normal"
[base.train]
epochs = 40
eval_every = 2
batch_size = 32
optimiser = "adamw"
[search]
sampler = "random"
seed = 0
trials = {trials}
batch = {trials}
[search.space]
"train.learning_rate" = {{ log-uniform = [1e-4, 3e-2] }}
"train.weight_decay" = {{ log-uniform = [1e-6, 1e-1] }}
"model.basis" = {{ choice = ["static", "monomial", "legendre", "chebyshev"] }}
"model.degree" = {{ int = [1, 4] }}
"model.t1" = {{ choice = [0.5, 1.0, 2.0] }}
"model.field_init_std" = {{ log-uniform = [0.02, 0.5] }}
"""
HALVING = """
[pruning]
kind = "halving"
first_rung = 216
reduction = 3
"""


def _read(path: pathlib.Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _side(name: str, trials: int, folder: pathlib.Path) -> dict:
    spec = folder / f"{name}.toml"
    spec.write_text(SPEC.format(side=name, trials=trials) + (HALVING if name == "halving" else ""))
    out = folder / name
    env = dict(os.environ, JAXODE_COMPILATION_CACHE=str(folder / f"cache-{name}"))
    command = [sys.executable, "-m", "jaxode._cli", "sweep", str(spec), "--out", str(out)]
    tic = time.perf_counter()
    done = subprocess.run([*command, "--no-progress"], env=env, capture_output=True, text=True)
    wall = time.perf_counter() - tic
    if done.returncode not in (0, 1):
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stdout}\n{done.stderr}")
    records = sorted(_read(out / "search.csv"), key=lambda r: int(r["trial"]))
    results = {r["cell"]: r for r in _read(out / "results.csv")}
    spent, best, curve = 0, float("inf"), []
    for record in records:
        spent += int(float(record["steps"] or 0))
        if record["state"] == "complete" and record["value"]:
            best = min(best, float(record["value"]))
        curve.append((spent, best))
    complete = [r for r in records if r["state"] == "complete" and r["value"]]
    chosen = min(complete, key=lambda r: float(r["value"]))
    states: dict = {}
    for record in records:
        states[record["state"]] = states.get(record["state"], 0) + 1
    return dict(
        side=name,
        wall_s=wall,
        member_steps=spent,
        states=states,
        cells=len(results),
        best_trial=int(chosen["trial"]),
        best_validation=float(chosen["value"]),
        best_test=float(results[chosen["cell"]]["test_global"]),
        best_values={k: chosen[k] for k in chosen if "." in k},
        curve=curve,
        summary=done.stdout.strip().splitlines()[-1],
    )


def _plot(rows: list[dict], path: str) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    for row in rows:
        xs, ys = zip(*[(x, y) for x, y in row["curve"] if y != float("inf")])
        ax.step(xs, ys, where="post", label=f"{row['side']} ({row['wall_s']:.0f} s)")
    ax.set_xlabel("member-steps spent (trials in order)")
    ax.set_ylabel("best validation error so far")
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.subplots_adjust(left=0.14, right=0.97, top=0.96, bottom=0.13)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    pathlib.Path(path).write_bytes(buffer.getvalue())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=256)
    parser.add_argument("--out", default="benchmarks/results/search_halving.json")
    args = parser.parse_args()
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="jaxode-search-") as folder:
        rows = []
        for name in ("full", "halving"):
            print(f"{name}: {args.trials} trials ...", flush=True)
            rows.append(_side(name, args.trials, pathlib.Path(folder)))
            print(f"  {rows[-1]['summary']}", flush=True)
    full, halving = rows
    ratios = dict(
        member_steps=halving["member_steps"] / full["member_steps"],
        wall=halving["wall_s"] / full["wall_s"],
        best_test=halving["best_test"] / full["best_test"],
    )
    goals = dict(
        member_steps=ratios["member_steps"] <= 1 / 3,
        wall=ratios["wall"] <= 1 / 3,
        best_test=ratios["best_test"] <= 1.02,
    )
    print()
    print(f"{'side':<9}{'wall s':>8}{'member-steps':>14}{'best val':>10}{'its test':>10}  trial")
    for row in rows:
        print(
            f"{row['side']:<9}{row['wall_s']:>8.1f}{row['member_steps']:>14}"
            f"{row['best_validation']:>10.4f}{row['best_test']:>10.4f}  {row['best_trial']}"
        )
    for key, value in ratios.items():
        print(f"halving / full, {key}: {value:.3f} (goal {'met' if goals[key] else 'missed'})")
    plot = args.out.replace(".json", ".png")
    _plot(rows, plot)
    write_json(
        args.out,
        run_context("search_halving", load_before)
        | dict(trials=args.trials, rows=rows, ratios=ratios, goals=goals, plot=plot),
    )


if __name__ == "__main__":
    main()
