"""GNvpro against Adam at equal work on ELM, with the study's ResNet (width 15, 12 steps,
Legendre degree 3) and the study's objective, in float64.

    python benchmarks/gnvpro_vs_adam.py [--budgets 100 250 500 1000 2000] [--subset 256]
        [--out benchmarks/results/gnvpro_vs_adam.json]

Work is counted in passes over the training set: a forward pass, a Jacobian-vector product
and a vector-Jacobian product of the whole set count one each (GNvpro's own count), and one
epoch of Adam (a forward and a backward pass of every sample in batches of 32) counts two.
Both minimise $\\frac{1}{2n}\\sum_i \\|W[z_T; 1] - c_i\\|^2 + \\frac{10^{-5}}{2}\\|\\theta\\|^2 +
\\frac{10^{-3}}{2}\\|W\\|^2$ from one initial model: GNvpro (`max_inner` 10) with the readout
projected out, Adam (`jaxode.fit`, constant learning rate, batches of 32, no clipping) on all
parameters, at learning rates 1e-3 (the study's) and 1e-2, and at 1e-3 with the readout
warm-started by the ridge solve. For every budget Adam runs afresh with `budget / 2` epochs
(the same minibatch order, so the budgets lie on one trajectory). Reported: the objective
$\\Phi$ with the optimiser's own readout, the reduced objective $\\phi$ (readout replaced by
the optimal ridge readout $W^*(\\theta)$; GNvpro's $\\Phi = \\phi$), the validation global
relative error, and seconds of training (compilation excluded). Runs on the full training
set (1740 samples) and on its first `--subset` samples. Prints a table and writes JSON.
"""

import argparse
import os
import platform

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
from _results import write_json  # noqa: E402

import jaxode  # noqa: E402

RIDGE, TIKHONOV, MAX_INNER, BATCH = 1e-3, 1e-5, 10, 32


class HalfSquaredError(jaxode.AbstractLoss):
    """The study's misfit: mean over samples of half the squared error summed over outputs."""

    def __call__(self, predictions, targets):
        return 0.5 * jnp.mean(jnp.sum((predictions - targets) ** 2, axis=-1))


def objectives(model, x, y):
    """$(\\Phi, \\phi)$: the objective with the model's readout, and with $W^*$."""
    theta, rest = jaxode.split_readout(model)
    xs, ys = jnp.asarray(x), jnp.asarray(y)
    predictions = model.predict(xs)
    readout = jnp.sum(model.readout.weight**2) + jnp.sum(model.readout.bias**2)
    inner = sum(jnp.sum(leaf**2) for leaf in jax.tree_util.tree_leaves(theta))
    full = HalfSquaredError()(predictions, ys) + 0.5 * TIKHONOV * inner + 0.5 * RIDGE * readout
    reduced = jaxode.VarProObjective(rest, RIDGE, TIKHONOV).objective(theta, xs, ys)
    return float(full), float(reduced)


def val_error(model, val):
    return jaxode.global_relative_error(np.asarray(model.predict(jnp.asarray(val[0]))), val[1])


def run(label, model, train, val, budgets):
    rows = []
    gn = jaxode.fit_gnvpro(
        model,
        train,
        val=val,
        ridge=RIDGE,
        tikhonov=TIKHONOV,
        max_iterations=100_000,
        max_inner=MAX_INNER,
        max_evaluations=max(budgets),
    )
    for budget in budgets:
        within = [r for r in gn.history if r["evaluations"] <= budget]
        if not within:  # below the cost of GNvpro's first iteration
            continue
        row = within[-1]
        rows.append(
            dict(
                data=label,
                optimiser="gnvpro",
                budget=budget,
                passes=row["evaluations"],
                iterations=row["iteration"],
                objective=row["objective"],
                reduced=row["objective"],
                val_global=row["val_global"],
                seconds=row["wall_time"],
            )
        )
    adams = [
        ("adam lr 1e-3", 1e-3, None),
        ("adam lr 1e-2", 1e-2, None),
        ("adam lr 1e-3 + ridge start", 1e-3, len(train[0]) * RIDGE),
    ]
    for name, rate, ridge in adams:
        for budget in budgets:
            result = jaxode.fit(
                model,
                train,
                optax.adam(rate),
                key=jax.random.PRNGKey(1),
                epochs=budget // 2,
                batch_size=BATCH,
                loss=HalfSquaredError(),
                regularisers=(jaxode.TikhonovRegulariser(weights=TIKHONOV, readout=RIDGE),),
                ridge=ridge,
                count_evaluations=False,
                divergence_factor=None,
            )
            full, reduced = objectives(result.model, *train)
            rows.append(
                dict(
                    data=label,
                    optimiser=name,
                    budget=budget,
                    passes=2 * (budget // 2),
                    iterations=result.steps,
                    objective=full,
                    reduced=reduced,
                    val_global=val_error(result.model, val),
                    seconds=result.history[-1]["wall_time"],
                )
            )
    return rows, dict(
        compile_time=gn.compile_time,
        num_traces=gn.num_traces,
        accepted=gn.accepted,
        iterations=gn.iterations,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budgets", type=int, nargs="+", default=[100, 250, 500, 1000, 2000])
    parser.add_argument("--subset", type=int, default=256)
    parser.add_argument("--out", default="benchmarks/results/gnvpro_vs_adam.json")
    args = parser.parse_args()
    data = jaxode.load_dataset("elm")
    train, val = data.arrays("train"), data.arrays("val")
    config = (
        jaxode.RunConfig()
        .replace(
            "model", model="resnet", field="layer", width=15, steps=12, basis="legendre", degree=3
        )
        .replace("train", precision="float64")
    )
    model = jaxode.build_model(config, data.in_size, data.out_size, key=jax.random.PRNGKey(0))
    load_before = os.getloadavg()
    rows, gn_info = [], {}
    subset = (train[0][: args.subset], train[1][: args.subset])
    for label, part in ((f"elm n={len(train[0])}", train), (f"elm n={args.subset}", subset)):
        part_rows, gn_info[label] = run(label, model, part, val, args.budgets)
        rows.extend(part_rows)
    print(
        f"{'data':10s} {'optimiser':27s} {'passes':>6s} {'Phi':>9s} {'phi':>9s} "
        f"{'val err':>8s} {'s':>6s}"
    )
    for r in rows:
        print(
            f"{r['data']:10s} {r['optimiser']:27s} {r['passes']:6d} {r['objective']:9.5f} "
            f"{r['reduced']:9.5f} {r['val_global']:8.4f} {r['seconds']:6.2f}"
        )
    result = {
        "benchmark": "gnvpro_vs_adam",
        "machine": platform.platform(),
        "cpus": os.cpu_count(),
        "load_average": [load_before, os.getloadavg()],
        "jax": jax.__version__,
        "model": "resnet layer width 15, 12 steps, legendre degree 3, float64",
        "gnvpro": dict(max_inner=MAX_INNER, ridge=RIDGE, tikhonov=TIKHONOV, runs=gn_info),
        "work_unit": "one pass over the training set: forward, JVP or VJP of every sample "
        "(GNvpro); Adam counts 2 per epoch",
        "rows": rows,
    }
    write_json(args.out, result)


if __name__ == "__main__":
    main()
