"""Relative errors (computed in float64 NumPy) and the closed-form ridge readout."""

import dataclasses

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from .._models import NeuralODE, skip_value_checks
from .._surrogate import Surrogate
from .._trajectories import TrajectoryModel


def global_relative_error(
    predictions: Float[np.ndarray, "n out"], targets: Float[np.ndarray, "n out"]
) -> float:
    """$\\|P - Y\\|_F / \\|Y\\|_F$ over all samples."""
    p, y = np.asarray(predictions, np.float64), np.asarray(targets, np.float64)
    return float(np.linalg.norm(p - y) / np.linalg.norm(y))


def mean_relative_error(
    predictions: Float[np.ndarray, "n out"], targets: Float[np.ndarray, "n out"]
) -> float:
    """$\\frac{1}{n}\\sum_i \\|p_i - y_i\\| / \\|y_i\\|$ (samples with $y_i = 0$ use 1)."""
    p, y = np.asarray(predictions, np.float64), np.asarray(targets, np.float64)
    norms = np.linalg.norm(y, axis=1)
    return float(np.mean(np.linalg.norm(p - y, axis=1) / np.where(norms > 0, norms, 1.0)))


def error_metrics(predictions, targets, prefix: str = "") -> dict:
    """`{prefix}global` and `{prefix}per_sample` relative errors."""
    return {
        f"{prefix}global": global_relative_error(predictions, targets),
        f"{prefix}per_sample": mean_relative_error(predictions, targets),
    }


def forward(model, xs: Float[Array, "batch in"]):
    """Predictions of a batch by a `Surrogate` or `TrajectoryModel` (through the dynamics'
    `solve_batch`), whether each sample's solve succeeded (with shared steps, a failure fails
    the whole batch) and the solve's `diffrax.RESULTS` (one per sample, or one for a shared
    solve)."""
    predictions, trajectory = model.forward(xs)
    succeeded = jnp.broadcast_to(trajectory.succeeded, (xs.shape[0],))
    return predictions, succeeded, trajectory.result


# The callers check their inputs on the host, so these programs leave out the runtime value
# checks: without host callbacks JAX's persistent compilation cache can keep them.
@eqx.filter_jit
def _features_at_t1(model: Surrogate, xs):
    with skip_value_checks():
        return model.dynamics.solve_batch(jax.vmap(model.features)(xs)).final


def predict_in_chunks(
    model: Surrogate | TrajectoryModel, xs: np.ndarray, chunk: int = 256
) -> np.ndarray:
    """`model.predict` in fixed-size chunks (one compilation for any number of samples),
    as float64 NumPy.

    **Raises:** `RuntimeError` when a solve of a `NeuralODE` with `throw=True` failed (checked
    here, on the host, so that the compiled program holds no host callback).
    """
    dynamics = model.dynamics
    throw = isinstance(dynamics, NeuralODE) and dynamics.throw
    predictions, succeeded = predictions_and_status(model, xs, chunk)
    if throw and not np.all(succeeded):
        raise RuntimeError(
            f"NeuralODE solve failed for {int(np.sum(~succeeded))} of {len(succeeded)} inputs "
            "(max_steps reached or step size too small): increase `max_steps` or loosen the "
            "`stepsize_controller` tolerances."
        )
    return predictions


def predictions_and_status(model, xs: np.ndarray, chunk: int = 256):
    """`(predictions, succeeded)`: as `predict_in_chunks`, without raising; a failed solve's
    rows are not finite and `succeeded` (one flag per row) says which."""
    dynamics = model.dynamics
    if isinstance(dynamics, NeuralODE) and dynamics.throw:
        model = eqx.tree_at(lambda m: m.dynamics, model, dataclasses.replace(dynamics, throw=False))
    return _chunked(evaluation_predictions, model, xs, chunk)


@eqx.filter_jit
def evaluation_predictions(model, xs):
    """`(predictions, succeeded)` of a batch, compiled; a training's validation of one model
    calls it too, so that the run's final evaluation reuses that compilation."""
    with skip_value_checks():
        return forward(model, xs)[:2]


def dtype_of_model(model):
    """The floating-point dtype of `model`'s parameters."""
    return jax.tree_util.tree_leaves(eqx.filter(model, eqx.is_inexact_array))[0].dtype


def _chunked(function, model, xs, chunk):
    """`function(model, part)` over padded chunks of `xs`; outputs (or tuples of them)
    concatenated, floating ones as float64."""
    xs = np.asarray(xs)
    dtype = dtype_of_model(model)
    out = []
    for start in range(0, len(xs), chunk):
        part = xs[start : start + chunk]
        pad = chunk - len(part)
        padded = np.concatenate([part, np.repeat(part[-1:], pad, axis=0)]) if pad else part
        values = jax.device_get(function(model, jnp.asarray(padded, dtype)))
        rows = len(part)
        out.append(jax.tree_util.tree_map(lambda a, rows=rows: np.asarray(a)[:rows], values))
    joined = jax.tree_util.tree_map(lambda *parts: np.concatenate(parts), *out)
    widen = lambda a: a.astype(np.float64) if a.dtype.kind == "f" else a
    return jax.tree_util.tree_map(widen, joined)


def ridge_readout(
    features: Float[np.ndarray, "n width"], targets: Float[np.ndarray, "n out"], ridge: float
) -> tuple[np.ndarray, np.ndarray]:
    """The affine readout minimising $\\|Z W^T + 1 w^T - Y\\|_F^2 + \\lambda \\|W\\|_F^2$ (the
    bias $w$ unpenalised), in float64 by centring and a Cholesky-free `solve`.

    **Returns:** `(W, w)` with shapes `(out, width)` and `(out,)`.
    """
    z = np.asarray(features, np.float64)
    y = np.asarray(targets, np.float64)
    z_mean, y_mean = z.mean(axis=0), y.mean(axis=0)
    zc, yc = z - z_mean, y - y_mean
    gram = zc.T @ zc + ridge * np.eye(z.shape[1])
    weight = np.linalg.solve(gram, zc.T @ yc).T
    bias = y_mean - weight @ z_mean
    return weight, bias


def ridge_warm_start(model: Surrogate, xs, ys, ridge: float) -> Surrogate:
    """`model` with its readout replaced by `ridge_readout` of its features at $t_1$ on
    `(xs, ys)` (the variable-projection warm start of the study's discrete nets)."""
    if not ridge > 0:
        raise ValueError(f"`ridge` must be > 0, got {ridge!r}.")
    features = _chunked(_features_at_t1, model, xs, 256)
    if not np.all(np.isfinite(features)):
        raise ValueError("ridge warm start: the initial model's features are not finite.")
    weight, bias = ridge_readout(features, ys, ridge)
    dtype = model.readout.weight.dtype
    return eqx.tree_at(
        lambda m: (m.readout.weight, m.readout.bias),
        model,
        (jnp.asarray(weight, dtype), jnp.asarray(bias, dtype)),
    )
