"""Why the spiral's polynomial weights extrapolate as they do: for every trained cell of the
spiral sweep, the test (extrapolation) error and how far the weights theta(t) move past the
training window, ||theta(t) - theta(16)|| / ||theta(16)|| at t = 20 and 25, and the size of
the top-degree coefficient of theta(t) written in monomials of tau = t / t1 (which dominates
theta far out).

Run after the sweep: `python experiments/study/spiral_analysis.py [SWEEP_DIR]` (default
experiments/results/study/spiral); writes `spiral_analysis.json` into the sweep folder.
"""

import json
import pathlib
import sys

import jax
import numpy as np

jax.config.update("jax_enable_x64", True)  # a script: float64 for the analysis

import jaxode  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[2]


def layers(model):
    field = model.dynamics.field.field
    return [field.inner, field.outer]


def theta(model, t: float) -> np.ndarray:
    """Every weight and bias of the field at time `t`, as one vector."""
    parts = []
    for layer in layers(model):
        parts.append(np.asarray(layer.weight_at(t)).ravel())
        parts.append(np.asarray(layer.bias_at(t)).ravel())
    return np.concatenate(parts)


def leading_coefficient(model) -> float:
    """Norm of the coefficient of tau^d when theta(t) is written in monomials of tau."""
    basis = layers(model)[0].basis
    if not isinstance(basis, jaxode.AbstractPolynomialBasis) or basis.degree == 0:
        return 0.0
    # Monomial coefficients from values at d + 1 points: solve the Vandermonde system.
    taus = np.linspace(0.0, 1.0, basis.degree + 1)
    values = np.stack([theta(model, basis.t0 + tau * (basis.t1 - basis.t0)) for tau in taus])
    vandermonde = np.vander(taus, basis.degree + 1, increasing=True)
    coefficients = np.linalg.solve(vandermonde, values)
    return float(np.linalg.norm(coefficients[-1]))


def main(sweep: pathlib.Path) -> None:
    rows = []
    for cell in sorted((sweep / "cells").iterdir()):
        if ".attempt-" in cell.name:  # an earlier attempt of a retried cell
            continue
        if not (cell / "metrics.json").is_file() or not (cell / "model.eqx").is_file():
            continue
        metrics = json.loads((cell / "metrics.json").read_text())
        trained = jaxode.load(cell)
        model = trained.model
        m = trained.config.model
        edge = theta(model, 16.0)
        drift = {
            f"drift_{t:g}": float(np.linalg.norm(theta(model, t) - edge) / np.linalg.norm(edge))
            for t in (20.0, 25.0)
        }
        rows.append(
            dict(
                cell=cell.name,
                basis=m.basis,
                degree=m.degree,
                t1=m.t1,
                clamp=m.clamp,
                seed=trained.config.train.seed,
                train_global=metrics["train_global"],
                val_global=metrics["val_global"],
                # None: the solve over the test region failed (the model blew up).
                test_global=metrics["test_global"],
                dynamics_parameters=metrics["dynamics_parameters"],
                forward_evaluations=metrics["forward_evaluations"],
                leading_coefficient=leading_coefficient(model),
                **drift,
            )
        )
    out = sweep / "spiral_analysis.json"
    out.write_text(json.dumps(rows, indent=1))
    (sweep / "spiral.md").write_text(table(rows))
    print(f"{len(rows)} cells -> {out}, {sweep / 'spiral.md'}")


def _mean_std(values) -> str:
    """Mean +- sample std of the finite values, and how many solves failed."""
    values = np.asarray([np.inf if v is None else v for v in values], dtype=float)
    finite = values[np.isfinite(values)]
    failed = len(values) - len(finite)
    if len(finite) == 0:
        return f"all {failed} solves failed"
    std = f"{finite.std(ddof=1):.3f}" if len(finite) > 1 else "n/a"
    text = f"{finite.mean():.3f} +- {std}"
    return text + (f" ({failed} of {len(values)} solves failed)" if failed else "")


def table(rows: list[dict]) -> str:
    """One line per configuration: mean +- sample std over its seeds."""
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        key = (row["basis"], row["degree"], row["t1"], row["clamp"])
        groups.setdefault(key, []).append(row)
    lines = [
        "| basis | degree | basis window | clamped | seeds | parameters | train | validation "
        "| test (extrapolation) | drift at t = 20 | drift at t = 25 | leading coefficient "
        "| evaluations per solve |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    order = {"static": 0, "monomial": 1, "legendre": 2}
    for key in sorted(groups, key=lambda k: (k[2], k[3], order.get(k[0], 3), k[1])):
        basis, degree, t1, clamp = key
        group = groups[key]
        lines.append(
            f"| {basis} | {degree} | [0, {t1:g}] | {'yes' if clamp else 'no'} | {len(group)} "
            f"| {group[0]['dynamics_parameters']} | "
            + " | ".join(
                _mean_std([r[name] for r in group])
                for name in (
                    "train_global",
                    "val_global",
                    "test_global",
                    "drift_20",
                    "drift_25",
                    "leading_coefficient",
                    "forward_evaluations",
                )
            )
            + " |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main(
        pathlib.Path(sys.argv[1])
        if len(sys.argv) > 1
        else ROOT / "experiments/results/study/spiral"
    )
