"""One training step (forward + gradient) of a surrogate: jaxode against the same model written
directly on Diffrax and Equinox, measured side by side in one process.

Both ways of solving a batch are measured: per-sample steps (vmapped solves) and shared steps
(the batch as one ODE, `Surrogate.predict`'s default).

Model: width 15, MLP field with hidden 50, Legendre degree 3 weights, batch 256, Dopri5,
rtol 1e-6 / atol 1e-8, both paradigms. Prints a table and writes JSON.

    python benchmarks/core_step.py [--repeats 20] [--out benchmarks/results/core_step.json]
"""

import argparse
import json
import os
import platform
import time

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

import jaxode

WIDTH, HIDDEN, DEGREE, BATCH, IN, OUT = 15, 50, 3, 256, 15, 10


class DirectField(eqx.Module):
    """The MLP field with Legendre weights, written out by hand."""

    w1: jax.Array
    b1: jax.Array
    w2: jax.Array
    b2: jax.Array

    def __call__(self, t, z, args):
        x = 2.0 * t - 1.0
        phi = jnp.stack([jnp.ones_like(x), x, 1.5 * x**2 - 0.5, 2.5 * x**3 - 1.5 * x])
        w1 = jnp.einsum("k,koi->oi", phi, self.w1)
        w2 = jnp.einsum("k,koi->oi", phi, self.w2)
        return w2 @ jnp.tanh(w1 @ z + phi @ self.b1) + phi @ self.b2


class DirectBatchField(eqx.Module):
    field: DirectField

    def __call__(self, t, z, args):
        return jax.vmap(self.field, in_axes=(None, 0, None))(t, z, args)


class DirectSurrogate(eqx.Module):
    opening: eqx.nn.Linear
    field: DirectField
    readout: eqx.nn.Linear
    adjoint: diffrax.AbstractAdjoint

    def _solve(self, field, z0):
        solution = diffrax.diffeqsolve(
            diffrax.ODETerm(field),
            diffrax.Dopri5(),
            0.0,
            1.0,
            None,
            z0,
            stepsize_controller=diffrax.PIDController(rtol=1e-6, atol=1e-8),
            adjoint=self.adjoint,
        )
        return solution.ys[-1]

    def __call__(self, x):
        return self.readout(self._solve(self.field, jnp.tanh(self.opening(x))))

    def predict(self, xs):
        z0 = jnp.tanh(jax.vmap(self.opening)(xs))
        return jax.vmap(self.readout)(self._solve(DirectBatchField(self.field), z0))


def make_models(paradigm, key):
    field = jaxode.MLPField(WIDTH, HIDDEN, jaxode.LegendreBasis(DEGREE), key=key)
    dynamics = jaxode.NeuralODE(
        field,
        1.0,
        stepsize_controller=diffrax.PIDController(rtol=1e-6, atol=1e-8),
        paradigm=paradigm,
    )
    model = jaxode.Surrogate(IN, OUT, dynamics, key=jax.random.fold_in(key, 1))
    # Non-zero higher coefficients, so the weights really vary in time in both models.
    params, static = eqx.partition(model, eqx.is_inexact_array)
    leaves, tree = jax.tree_util.tree_flatten(params)
    keys = jax.random.split(jax.random.fold_in(key, 2), len(leaves))
    leaves = [x + 0.1 * jax.random.normal(k, x.shape, x.dtype) for k, x in zip(keys, leaves)]
    model = eqx.combine(jax.tree_util.tree_unflatten(tree, leaves), static)
    direct = DirectSurrogate(
        model.opening,
        DirectField(
            model.dynamics.field.inner.weight,
            model.dynamics.field.inner.bias,
            model.dynamics.field.outer.weight,
            model.dynamics.field.outer.bias,
        ),
        model.readout,
        paradigm.adjoint(),
    )
    return model, direct


def per_sample_loss(model, xs, ys):
    return jnp.mean((jax.vmap(model)(xs) - ys) ** 2)


def shared_steps_loss(model, xs, ys):
    return jnp.mean((model.predict(xs) - ys) ** 2)


STEPS = {
    "per-sample steps": eqx.filter_jit(eqx.filter_value_and_grad(per_sample_loss)),
    "shared steps": eqx.filter_jit(eqx.filter_value_and_grad(shared_steps_loss)),
}


def time_call(step, model, xs, ys):
    start = time.perf_counter()
    value, grads = step(model, xs, ys)
    jax.block_until_ready(grads)
    return time.perf_counter() - start, float(value)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--out", default="benchmarks/results/core_step.json")
    args = parser.parse_args()
    key = jax.random.PRNGKey(0)
    xs = jax.random.uniform(jax.random.fold_in(key, 3), (BATCH, IN), minval=-1, maxval=1)
    ys = jax.random.normal(jax.random.fold_in(key, 4), (BATCH, OUT))
    rows = []
    for name, paradigm in [
        ("discretize-then-optimize", jaxode.DiscretizeThenOptimize()),
        ("optimize-then-discretize", jaxode.OptimizeThenDiscretize()),
    ]:
        ours, direct = make_models(paradigm, key)
        for mode, step in STEPS.items():
            compile_ours, loss_ours = time_call(step, ours, xs, ys)
            compile_direct, loss_direct = time_call(step, direct, xs, ys)
            if not np.isclose(loss_ours, loss_direct, rtol=1e-5):
                raise RuntimeError(f"models differ: loss {loss_ours} vs {loss_direct}")
            times = {"jaxode": [], "direct": []}
            for _ in range(args.repeats):  # interleaved, so load changes hit both alike
                times["jaxode"].append(time_call(step, ours, xs, ys)[0])
                times["direct"].append(time_call(step, direct, xs, ys)[0])
            med = {k: float(np.median(v)) for k, v in times.items()}
            rows.append(
                {
                    "paradigm": name,
                    "mode": mode,
                    "jaxode_ms": 1e3 * med["jaxode"],
                    "direct_ms": 1e3 * med["direct"],
                    "ratio": med["jaxode"] / med["direct"],
                    "jaxode_compile_s": compile_ours,
                    "direct_compile_s": compile_direct,
                    "repeats": args.repeats,
                }
            )
    print(
        f"{'paradigm':28s} {'mode':18s} {'jaxode ms':>10s} {'direct ms':>10s} {'ratio':>7s} "
        f"{'compile s (j/d)':>16s}"
    )
    for r in rows:
        print(
            f"{r['paradigm']:28s} {r['mode']:18s} {r['jaxode_ms']:10.2f} {r['direct_ms']:10.2f} "
            f"{r['ratio']:7.3f} "
            f"{r['jaxode_compile_s']:7.1f}/{r['direct_compile_s']:.1f}"
        )
    result = {
        "benchmark": "core_step",
        "backend": jax.default_backend(),
        "device": str(jax.devices()[0]),
        "machine": platform.platform(),
        "load_average": os.getloadavg(),
        "batch": BATCH,
        "rows": rows,
    }
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    tmp = args.out + ".tmp"
    with open(tmp, "w") as f:
        json.dump(result, f, indent=2)
    os.replace(tmp, args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
