"""Change the time basis of a trained model without retraining.

A field's weights are $\\theta(t) = \\sum_k \\theta_k \\phi_k(t)$. Monomials $\\tau^k$ and
Legendre polynomials $P_k(2\\tau - 1)$ of degree up to $d$ span the same functions, so a trained
monomial model can be rewritten in the Legendre basis exactly: `jaxode.change_basis` projects
every time-varying layer onto the new basis, and the model computes the same function to
rounding. The two bases differ in conditioning, and in how an optimiser moves through them: this
example trains both from the same initial function and plots their loss curves.

Run: `python docs/examples/change_basis.py` (about a minute on 2 CPU cores; `--small` for the
test suite's size).
"""

# --8<-- [start:imports]
import argparse
import os
import pathlib
import time

import equinox as eqx
import jax
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import optax
from _transcript import Transcript

import jaxode

OUT = pathlib.Path(__file__).resolve().parent / "output" / "change_basis"
T1 = 1.0  # the basis window [0, T1] is the model's whole time horizon
# --8<-- [end:imports]


# --8<-- [start:model]
@eqx.filter_jit
def predict(model, x):
    return model.predict(x)


def build(basis, width: int, hidden: int, steps: int, *, key) -> jaxode.Surrogate:
    """An ELM surrogate: a ResNet (forward Euler in time) over an MLP field in `basis`."""
    field_key, model_key = jax.random.split(key)
    field = jaxode.MLPField(width, hidden, basis, key=field_key)
    return jaxode.Surrogate(15, 10, jaxode.ResNet(field, t1=T1, steps=steps), key=model_key)


# --8<-- [end:model]


def layer_coefficients(model) -> list:
    """The coefficient arrays of every time-varying layer (weights and biases)."""
    is_layer = lambda node: isinstance(node, jaxode.TimeVaryingLinear)  # noqa: E731
    layers = [n for n in jax.tree_util.tree_leaves(model, is_leaf=is_layer) if is_layer(n)]
    return [c for layer in layers for c in (layer.weight, layer.bias)]


# --8<-- [start:condition_table]
def condition_table(degrees, times) -> list[tuple[int, float, float, float]]:
    """Condition numbers of the basis matrices $A_{jk} = \\phi_k(t_j)$ on `times`."""
    return [
        (
            d,
            jaxode.condition_number(jaxode.MonomialBasis(d, t1=T1), times),
            jaxode.condition_number(jaxode.LegendreBasis(d, t1=T1), times),
            jaxode.condition_number(jaxode.ChebyshevBasis(d, t1=T1), times),
        )
        for d in degrees
    ]


# --8<-- [end:condition_table]


def main(small: bool = False, out: pathlib.Path = OUT) -> dict:
    out = pathlib.Path(out)
    out.mkdir(parents=True, exist_ok=True)
    began = time.perf_counter()
    transcript = Transcript()
    show = transcript.show

    transcript.part("projection")
    # --8<-- [start:projection]
    width, hidden, steps, epochs = (8, 16, 4, 1) if small else (32, 64, 12, 30)
    degree = 3
    data = jaxode.load_dataset("elm")
    train, val = data.arrays("train"), data.arrays("val")
    x_test, y_test = data.arrays("test")
    monomial, legendre = jaxode.MonomialBasis(degree, t1=T1), jaxode.LegendreBasis(degree, t1=T1)
    show(f"precision: {jax.numpy.zeros(()).dtype}")

    # 1. The change of basis is a fixed matrix on the coefficients: tau = (P_0 + P_1) / 2, ...
    show()
    show(
        f"projection matrix, monomial degree {degree} -> Legendre degree {degree} "
        "(column k: tau^k in Legendre coefficients)"
    )
    for row in jaxode.projection_matrix(monomial, legendre):
        show("  " + "  ".join(f"{v:7.4f}" for v in row))
    # --8<-- [end:projection]

    transcript.part("conditioning")
    # --8<-- [start:conditioning]
    # 2. Conditioning. The basis matrix on a time grid is what a least-squares fit of theta(t)
    # solves with; its condition number bounds how rounding and gradient noise are amplified.
    times = np.linspace(0.0, T1, 25)
    show("condition number of the basis matrix on 25 times in [0, T]")
    show("  degree   monomial    Legendre   Chebyshev")
    conditions = condition_table(range(1, 9), times)
    for d, mono, leg, cheb in conditions:
        show(f"  {d:6d}   {mono:9.3g}   {leg:9.3g}   {cheb:9.3g}")
    # --8<-- [end:conditioning]

    transcript.part("training")
    # --8<-- [start:training]
    # 3. Train monomial models, and the same initial models rewritten in Legendre polynomials:
    # both start from one function, but Adam's per-coordinate steps depend on the coordinates.
    # Several seeds, as one cohort per basis, so that a difference is not one draw's luck.
    seeds = (0,) if small else (0, 1, 2)
    initial = [build(monomial, width, hidden, steps, key=jax.random.PRNGKey(s)) for s in seeds]
    initial_legendre = [jaxode.change_basis(model, legendre) for model in initial]
    start_gap = max(
        float(np.max(np.abs(predict(a, x_test) - predict(b, x_test))))
        for a, b in zip(initial, initial_legendre)
    )
    optimiser = optax.adam(optax.cosine_decay_schedule(3e-3, epochs * (len(train[0]) // 32)))
    keys = [jax.random.PRNGKey(100 + s) for s in seeds]
    results = {
        name: jaxode.fit_cohort(
            models,
            train,
            optimiser,
            keys=keys,
            val=val,
            epochs=epochs,
            batch_size=32,
            clip_norm=1.0,
        )
        for name, models in (("monomial", initial), ("Legendre", initial_legendre))
    }
    show(
        f"trained {epochs} epochs from the same initial functions (predictions differ by at most "
        f"{start_gap:.1e} at the start), seeds {', '.join(map(str, seeds))}"
    )
    test_errors = {}
    for name, members in results.items():
        errors = [jaxode.global_relative_error(predict(r.model, x_test), y_test) for r in members]
        test_errors[name] = errors
        spread = f" ± {np.std(errors, ddof=1):.4f} (sample std)" if len(errors) > 1 else ""
        show(
            f"  {name:9s} test error {'  '.join(f'{e:.4f}' for e in errors)};  "
            f"mean {np.mean(errors):.4f}{spread}"
        )
    # --8<-- [end:training]

    transcript.part("change")
    # --8<-- [start:change]
    # 4. Change the trained monomial model's basis: the same function, to rounding.
    trained = results["monomial"][0].model
    converted = jaxode.change_basis(trained, legendre)
    back = jaxode.change_basis(converted, monomial)
    before, after = predict(trained, x_test), predict(converted, x_test)
    prediction_gap = float(np.max(np.abs(after - before)))
    round_trip = max(
        float(np.max(np.abs(a - b)))
        for a, b in zip(layer_coefficients(trained), layer_coefficients(back))
    )
    scale = float(np.max(np.abs(before)))
    show("the trained monomial model moved to Legendre polynomials, no retraining:")
    show(
        f"  largest prediction change on the test set: {prediction_gap:.2e} "
        f"(predictions are of size {scale:.2f})"
    )
    show(
        f"  test error before {jaxode.global_relative_error(before, y_test):.6f}, "
        f"after {jaxode.global_relative_error(after, y_test):.6f}"
    )
    show(f"  monomial -> Legendre -> monomial: coefficients back to within {round_trip:.2e}")
    # --8<-- [end:change]

    transcript.part("degree")
    # --8<-- [start:degree]
    # 5. Raising the degree is exact too; lowering it is an L2 projection, not the same model.
    higher = predict(jaxode.change_basis(trained, jaxode.LegendreBasis(6, t1=T1)), x_test)
    lower = predict(jaxode.change_basis(trained, jaxode.LegendreBasis(1, t1=T1)), x_test)
    elevation_gap = float(np.max(np.abs(higher - before)))
    show(f"  to Legendre degree 6: largest change {elevation_gap:.2e} (exact: the space grows)")
    show(
        f"  to Legendre degree 1: largest change {float(np.max(np.abs(lower - before))):.2e}, "
        f"test error {jaxode.global_relative_error(lower, y_test):.4f} (a projection)"
    )
    # --8<-- [end:degree]

    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    for k, (name, members) in enumerate(results.items()):
        steps_seen = [row["step"] for row in members[0].history]
        curves = np.array([[row["val_global"] for row in r.history] for r in members])
        for curve in curves:
            ax.plot(steps_seen, curve, color=f"C{k}", linewidth=0.8, alpha=0.4)
        ax.plot(
            steps_seen,
            curves.mean(axis=0),
            color=f"C{k}",
            linewidth=2,
            label=f"{name} (mean of {len(members)} seeds)",
        )
    ax.set_xlabel("optimisation step (Adam)")
    ax.set_ylabel("validation error (global relative)")
    ax.set_title(f"Same initial models, weights in two bases of degree {degree}", fontsize="medium")
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "monomial_vs_legendre.png", dpi=120)
    plt.close(fig)
    transcript.part("end")
    show("wrote monomial_vs_legendre.png")
    show(
        f"finished in {time.perf_counter() - began:.0f} s ({'small' if small else 'full'} size, "
        f"{jax.default_backend()}, {os.cpu_count()} cores)"
    )
    transcript.write(out / "output.txt")
    return dict(
        times=times,
        conditions=conditions,
        start_gap=start_gap,
        prediction_gap=prediction_gap,
        elevation_gap=elevation_gap,
        round_trip=round_trip,
        test_errors=test_errors,
        trained=trained,
        converted=converted,
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="the test suite's size (seconds)")
    parser.add_argument("--out", type=pathlib.Path, default=OUT, help="folder for the outputs")
    arguments = parser.parse_args()
    main(small=arguments.small, out=arguments.out)
