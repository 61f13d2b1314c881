"""Cost of counting field evaluations (`jaxode.EvaluationCounter`) at a large batch, against one
plain training step, on the study's ELM surrogate in float32.

    python benchmarks/counting_cost.py [--batch 4096] [--repeats 9]
        [--out benchmarks/results/counting_cost.json]

Measures (i) the compilation and first call of a counter, (ii) one plain jitted training step
(value and gradient of the same loss, then an Adam update), compilation excluded, and (iii) a
counting call once compiled. (ii) and (iii) alternate over `--repeats` calls on the same model
and batch, so that every call takes the same solver steps, and are reported as medians. The
goal is a counting call costing less than two plain steps. Prints a table and writes JSON.
"""

import argparse
import os
import platform
import statistics
import time

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from _results import write_json

import jaxode


def _seconds(fn):
    tic = time.perf_counter()
    out = fn()
    return time.perf_counter() - tic, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=4096)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--out", default="benchmarks/results/counting_cost.json")
    args = parser.parse_args()
    # The figures are for the float32 users get by default.
    assert not jax.config.jax_enable_x64

    config = jaxode.preset("study-node")
    data = jaxode.load_dataset("elm")
    model = jaxode.build_model(config, data.in_size, data.out_size, key=jax.random.PRNGKey(0))
    x_train, y_train = data.arrays("train")
    # A batch larger than the training set: rows drawn with replacement.
    rows = np.random.default_rng(0).integers(0, len(x_train), args.batch)
    x = jnp.asarray(x_train[rows], dtype=jnp.float32)
    y = jnp.asarray(y_train[rows], dtype=jnp.float32)

    def loss(m, xb, yb):
        return jnp.mean((m.predict(xb) - yb) ** 2)

    load_before = os.getloadavg()
    counter = jaxode.EvaluationCounter(loss)
    counter_compile, counts = _seconds(lambda: counter(model, x, y))

    optimiser = optax.adam(config.train.learning_rate)
    state = optimiser.init(eqx.filter(model, eqx.is_inexact_array))

    @eqx.filter_jit
    def step(m, s, xb, yb):
        value, grads = eqx.filter_value_and_grad(loss)(m, xb, yb)
        updates, s = optimiser.update(grads, s, eqx.filter(m, eqx.is_inexact_array))
        return eqx.apply_updates(m, updates), s, value

    step_compile, _ = _seconds(lambda: jax.block_until_ready(step(model, state, x, y)))
    # Always from the same model, so every call takes the steps the counter counted; the two
    # alternate, so that a change of load on the machine affects both alike.
    plain, counting = [], []
    for _ in range(args.repeats):
        plain.append(_seconds(lambda: jax.block_until_ready(step(model, state, x, y)))[0])
        counting.append(_seconds(lambda: counter(model, x, y))[0])
    plain_step, counting_call = statistics.median(plain), statistics.median(counting)
    ratio = counting_call / plain_step

    print(f"ELM surrogate (study-node), batch {args.batch}, float32, JAX {jax.__version__}")
    print(
        f"counts per sample: {counts.forward_evaluations:g} forward + "
        f"{counts.backward_evaluations:g} backward evaluations, "
        f"{counts.accepted_steps:g} accepted + {counts.rejected_steps:g} rejected steps"
    )
    print(f"{'measure':44s} {'seconds':>9s}")
    print(f"{'(i) counter: compile + first call':44s} {counter_compile:9.2f}")
    print(f"{'    plain step: compile + first call':44s} {step_compile:9.2f}")
    print(f"{'(ii) plain training step (median)':44s} {plain_step:9.4f}")
    print(f"{'(iii) counting call, compiled (median)':44s} {counting_call:9.4f}")
    print(f"counting call / plain step = {ratio:.2f} (goal: < 2)")

    result = {
        "benchmark": "counting_cost",
        "machine": platform.platform(),
        "cpus": os.cpu_count(),
        "jax_version": jax.__version__,
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
        "preset": "study-node",
        "dataset": "elm",
        "precision": "float32",
        "batch": args.batch,
        "repeats": args.repeats,
        "counts_per_sample": {
            "forward_evaluations": counts.forward_evaluations,
            "backward_evaluations": counts.backward_evaluations,
            "accepted_steps": counts.accepted_steps,
            "rejected_steps": counts.rejected_steps,
            "solves": counts.solves,
        },
        "counter_compile_and_first_call_s": round(counter_compile, 3),
        "plain_step_compile_and_first_call_s": round(step_compile, 3),
        "plain_step_s": round(plain_step, 4),
        "plain_step_all_s": [round(t, 4) for t in plain],
        "counting_call_s": round(counting_call, 4),
        "counting_call_all_s": [round(t, 4) for t in counting],
        "counting_call_over_plain_step": round(ratio, 3),
        "goal": "a counting call at batch 4096 costs less than 2 plain steps",
    }
    write_json(args.out, result)


if __name__ == "__main__":
    main()
