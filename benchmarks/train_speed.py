"""Training speed of the default ELM run: seconds per epoch in float32 and float64 (compilation
reported separately), and the cold start of a fresh process to its first training step.

    python benchmarks/train_speed.py [--epochs 5] [--out benchmarks/results/train_speed.json]

Each precision runs in its own process (x64 is process-wide). Prints a table and writes JSON.
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import time

from _results import write_json

CHILD = r"""
import json, sys, time
start = float(sys.argv[1]); precision = sys.argv[2]; epochs = int(sys.argv[3])
import jax
jax.config.update("jax_enable_x64", precision == "float64")
import optax
import jaxode
config = jaxode.RunConfig().replace("train", precision=precision)
data = jaxode.load_dataset("elm")
model = jaxode.build_model(config, data.in_size, data.out_size, key=jax.random.PRNGKey(0))
train = data.arrays("train")
t = config.train
key = jax.random.PRNGKey(1)
first = jaxode.fit(model, train, optax.adam(t.learning_rate), key=key, steps=1,
                   batch_size=t.batch_size, clip_norm=t.clip_norm, count_evaluations=False)
cold = time.time() - start
tic = time.perf_counter()
result = jaxode.fit(model, train, optax.adam(t.learning_rate), key=key, epochs=epochs,
                    batch_size=t.batch_size, clip_norm=t.clip_norm, count_evaluations=False)
total = time.perf_counter() - tic
per_epoch = (result.history[-1]["wall_time"]) / epochs
print(json.dumps({"precision": precision, "cold_start_to_first_step_s": round(cold, 2),
                  "compile_time_s": round(result.compile_time, 2),
                  "seconds_per_epoch": round(per_epoch, 3),
                  "steps_per_epoch": result.steps // epochs, "epochs": epochs,
                  "total_s": round(total, 2)}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--out", default="benchmarks/results/train_speed.json")
    args = parser.parse_args()
    rows = []
    for precision in ("float32", "float64"):
        out = subprocess.run(
            [sys.executable, "-c", CHILD, repr(time.time()), precision, str(args.epochs)],
            capture_output=True,
            text=True,
            check=True,
        )
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    print(f"{'precision':10s} {'s/epoch':>8s} {'compile s':>10s} {'cold start s':>13s}")
    for r in rows:
        print(
            f"{r['precision']:10s} {r['seconds_per_epoch']:8.3f} {r['compile_time_s']:10.2f} "
            f"{r['cold_start_to_first_step_s']:13.2f}"
        )
    result = {
        "benchmark": "train_speed",
        "machine": platform.platform(),
        "cpus": os.cpu_count(),
        "load_average": os.getloadavg(),
        "rows": rows,
    }
    write_json(args.out, result)


if __name__ == "__main__":
    main()
