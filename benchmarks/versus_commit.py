"""The training engine of this checkout against that of another commit, side by side: the same
workloads through the public keyword API (`jaxode.fit`, `jaxode.fit_cohort`), which both
versions accept, each side in a fresh subprocess per round, the sides' order alternating over
`--rounds`, on the same machine in one run.

Workloads (the study's ELM data in its protocol, `jaxode.preset("study-node")`, float32, Adam
at a constant rate, MSE, batch 20, no validation, evaluation counting off):

- `engine chunk=C`: the preset's neural ODE (width 15, MLP field hidden 50, Legendre basis,
  Dopri5 at rtol 1e-7 / atol 1e-9), `--steps` steps, an evaluation every C steps: one compiled
  chunk of C steps per evaluation.
- `engine eval_every=1`: the same with an evaluation after every step (a host round trip per
  step).
- `cohort resnet x K`, `cohort node x K`: K members (ResNet with a layer field, width 15,
  12 steps; the preset's neural ODE) as one `fit_cohort`, members differing in their
  initialisation and minibatch key.

Each figure is a steady rate: steps (per member) per second over steps 2C..N from the
history's wall times, which leave out compilation, the first chunk and the first evaluation.
A round's ratio is this checkout's rate over the other's; the table gives the median over
rounds with a bootstrap 95 % interval. Compile times are reported beside.

    python benchmarks/versus_commit.py [--base 81b1a03] [--rounds 6] [--steps 500]
        [--chunk 100] [--members 8] [--out benchmarks/results/versus_commit.json]
"""

import argparse
import json
import os
import pathlib
import subprocess
import sys
import tempfile

import numpy as np
from _results import run_context, write_json

ROOT = pathlib.Path(__file__).resolve().parent.parent

# The measuring child: only the public keyword API, so that it runs against either version.
CHILD = r"""
import dataclasses, json, sys, time
import jax, numpy as np, optax, jaxode

steps, chunk, members, node_steps = (int(a) for a in sys.argv[1:5])
cfg = jaxode.preset("study-node")
d = cfg.data
data = jaxode.load_dataset(d.dataset, seed=d.split_seed, protocol=d.protocol,
                           num_outputs=d.num_outputs)
x, y = (np.asarray(a, np.float32) for a in data.arrays("train"))

def model(config, seed):
    key = jax.random.PRNGKey(seed)
    return jaxode.build_model(config, data.in_size, data.out_size, key=key)

def steady(history, every, total):
    walls = {row["step"]: row["wall_time"] for row in history}
    start = 2 * every
    return (total - start) / (walls[total] - walls[start])

common = dict(batch_size=20, count_evaluations=False, divergence_factor=None,
              max_failed_batches=None)
out = {}
for every in (chunk, 1):
    length = steps if every == chunk else steps // 5
    result = jaxode.fit(model(cfg, 0), (x, y), optax.adam(1e-3), key=jax.random.PRNGKey(1),
                        steps=length, eval_every=every, **common)
    out[f"engine eval_every={every}"] = dict(
        rate=steady(result.history, every, length), compile=result.compile_time)
resnet = dataclasses.replace(cfg, model=dataclasses.replace(
    cfg.model, model="resnet", field="layer", width=15, steps=12))
for name, config, length in (("resnet", resnet, steps), ("node", cfg, node_steps)):
    every = length // 5
    results = jaxode.fit_cohort(
        [model(config, s) for s in range(members)], (x, y), optax.adam(1e-3),
        keys=[jax.random.PRNGKey(100 + s) for s in range(members)],
        steps=length, eval_every=every, **common)
    out[f"cohort {name} x {members}"] = dict(
        rate=steady(results[0].history, every, length), compile=results[0].compile_time)
print("RESULT" + json.dumps(out))
print("SOURCE" + jaxode.__file__)
"""


def measure(tree: pathlib.Path, args) -> dict:
    env = {**os.environ, "PYTHONPATH": str(tree), "JAXODE_COMPILATION_CACHE": "off"}
    argv = [str(args.steps), str(args.chunk), str(args.members), str(args.node_steps)]
    # In `tree`: `python -c` puts the working directory first on the path, which from this
    # checkout would import its jaxode on both sides whatever PYTHONPATH says.
    done = subprocess.run(
        [sys.executable, "-c", CHILD, *argv],
        env=env,
        cwd=tree,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode:
        raise SystemExit(f"the run against {tree} failed:\n{done.stderr[-3000:]}")
    lines = done.stdout.splitlines()
    [source] = [line[len("SOURCE") :] for line in lines if line.startswith("SOURCE")]
    if not pathlib.Path(source).resolve().is_relative_to(tree.resolve()):
        raise SystemExit(f"the run against {tree} imported jaxode from {source}")
    [line] = [line for line in lines if line.startswith("RESULT")]
    return json.loads(line[len("RESULT") :])


def interval(ratios: np.ndarray) -> list[float]:
    medians = np.median(np.random.default_rng(0).choice(ratios, (2000, len(ratios))), axis=1)
    return [float(v) for v in np.quantile(medians, [0.025, 0.975])]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default="81b1a03", help="the commit to compare against")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--chunk", type=int, default=100)
    parser.add_argument("--members", type=int, default=8)
    parser.add_argument("--node-steps", type=int, default=100, help="steps of the node cohort")
    parser.add_argument("--out", default="benchmarks/results/versus_commit.json")
    args = parser.parse_args()
    load_before = os.getloadavg()
    base = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", args.base],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    head = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()
    with tempfile.TemporaryDirectory(prefix="jaxode-base-") as folder:
        other = pathlib.Path(folder) / "tree"
        subprocess.run(
            ["git", "-C", str(ROOT), "worktree", "add", "--detach", str(other), base],
            check=True,
            capture_output=True,
        )
        try:
            rounds = []
            for r in range(args.rounds):
                sides = ("base", "this") if r % 2 == 0 else ("this", "base")
                found = {side: measure(ROOT if side == "this" else other, args) for side in sides}
                rounds.append(found)
                print(
                    f"round {r + 1}/{args.rounds}: "
                    + ", ".join(
                        f"{name} {found['this'][name]['rate'] / found['base'][name]['rate']:.3f}"
                        for name in found["this"]
                    ),
                    flush=True,
                )
        finally:
            subprocess.run(
                ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(other)],
                check=False,
                capture_output=True,
            )
    names = list(rounds[0]["this"])
    table = {}
    print(f"\nthis checkout ({head[:7]}) against {base[:7]}, {args.rounds} rounds")
    print(f"{'workload':28s} {'base steps/s':>13s} {'this steps/s':>13s} {'ratio':>7s}  95 % CI")
    for name in names:
        this = np.array([r["this"][name]["rate"] for r in rounds])
        other_rates = np.array([r["base"][name]["rate"] for r in rounds])
        ratios = this / other_rates
        low, high = interval(ratios)
        table[name] = dict(
            base_rate_median=float(np.median(other_rates)),
            this_rate_median=float(np.median(this)),
            ratio_median=float(np.median(ratios)),
            ratio_ci95=[low, high],
            ratios=ratios.tolist(),
            base_compile_s_median=float(np.median([r["base"][name]["compile"] for r in rounds])),
            this_compile_s_median=float(np.median([r["this"][name]["compile"] for r in rounds])),
        )
        print(
            f"{name:28s} {table[name]['base_rate_median']:13.1f} "
            f"{table[name]['this_rate_median']:13.1f} {table[name]['ratio_median']:7.3f}  "
            f"[{low:.3f}, {high:.3f}]"
        )
    result = dict(
        run_context("versus_commit", load_before),
        base=base,
        this=head,
        rounds=args.rounds,
        steps=args.steps,
        chunk=args.chunk,
        members=args.members,
        node_steps=args.node_steps,
        workloads=table,
        note="ratio: this checkout's steady steps/s over the base commit's, per round (sides "
        "in fresh subprocesses, order alternating); median over rounds, bootstrap 95 % interval.",
    )
    write_json(args.out, result)


if __name__ == "__main__":
    main()
