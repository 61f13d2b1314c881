"""Weight asymptotics: how $\\|\\theta(t)\\|$ of a time-parameterized layer behaves for
$t \\gg T$."""

import dataclasses
import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from .._bases import AbstractTimeBasis
from .._layers import TimeVaryingLinear
from ._common import (
    CONSTANT_EXP,
    LINEAR,
    OSCILLATORY,
    POLY,
    UNRESOLVED,
    ProbeResult,
    check_count,
    verdict_name,
)


@eqx.filter_jit
def _norms_at(basis, coefficients, times):
    def norm_at(t):
        value = jnp.tensordot(basis(t).astype(coefficients.dtype), coefficients, axes=1)
        if value.ndim == 2:
            return jnp.linalg.norm(value, ord=2)
        return jnp.linalg.norm(value.reshape(-1))

    return jax.vmap(norm_at)(times)


def _analyse(times: np.ndarray, norms: np.ndarray):
    """Exponent, leading coefficient, limit and verdict from norms on a geometric time grid."""
    if np.all(norms == 0):
        return 0.0, 0.0, 0.0, CONSTANT_EXP
    if not np.all(np.isfinite(norms)) or np.any(norms == 0):
        # A norm that vanishes somewhere far out (an oscillating weight crossing zero) or overflows.
        bounded = np.all(np.isfinite(norms))
        return math.nan, math.nan, math.nan, OSCILLATORY if bounded else UNRESOLVED
    log_t, log_n = np.log(times), np.log(norms)
    quarter = len(times) // 4
    local = np.diff(log_n) / np.diff(log_t)
    exponent = float(np.median(local[-quarter:]))
    consistent = np.max(np.abs(local[-quarter:] - exponent)) <= 1e-2 * max(1.0, abs(exponent))
    if not consistent:
        # No settled power: bounded and oscillating if the overall log-log slope is flat.
        overall = float(np.polyfit(log_t, log_n, 1)[0])
        if abs(overall) < 0.05:
            return 0.0, math.nan, math.nan, OSCILLATORY
        return overall, math.nan, math.nan, UNRESOLVED
    if abs(exponent) < 1e-3:
        return 0.0, float(norms[-1]), float(norms[-1]), CONSTANT_EXP
    # Polynomial bases give integer exponents; round when the estimate is that close.
    nearest = round(exponent)
    power = float(nearest) if abs(exponent - nearest) < 1e-2 else exponent
    scaled = norms / times**power
    # Richardson step: scaled(t) = C + B/t + ..., so remove the 1/t term with the last two points.
    (t_a, t_b), (c_a, c_b) = times[-2:], scaled[-2:]
    leading = (c_b * t_b - c_a * t_a) / (t_b - t_a)
    return power, float(leading), math.inf, LINEAR if power == 1 else POLY


@dataclasses.dataclass(frozen=True)
class WeightAsymptoticsResult(ProbeResult):
    """Growth of $\\|\\theta(t)\\|$ past the window, one entry per parameter tensor.

    **Fields:**

    - `names`: tensor names (`"inner.weight"`, ...).
    - `basis_names`: the basis class of each tensor.
    - `exponent`: $p$ in $\\|\\theta(t)\\| \\sim C t^p$ ($0$ for bounded weights).
    - `leading_coefficient`: $C$ ($t$ measured in the units of the window, from $t = 0$).
    - `limit`: the constant norm a bounded weight settles to (`nan` if it keeps oscillating,
      `inf` if it grows).
    - `verdict_code`: `POLY(p)` (`LINEAR` for $p = 1$), `CONSTANT_EXP` (settles),
      `OSCILLATORY` (bounded, no limit), `UNRESOLVED`.
    - `times`, `norms`: the far-time grid and the norms on it (for plots).
    """

    names: tuple[str, ...]
    basis_names: tuple[str, ...]
    exponent: np.ndarray
    leading_coefficient: np.ndarray
    limit: np.ndarray
    verdict_code: np.ndarray
    times: np.ndarray
    norms: np.ndarray

    @property
    def verdicts(self) -> list[str]:
        return [verdict_name(c, p) for c, p in zip(self.verdict_code, self.exponent)]

    def _table(self):
        header = ["tensor", "basis", "verdict", "exponent", "leading coef", "limit"]
        rows = [
            [n, b, v, e, c, lim]
            for n, b, v, e, c, lim in zip(
                self.names,
                self.basis_names,
                self.verdicts,
                self.exponent,
                self.leading_coefficient,
                self.limit,
            )
        ]
        return header, rows


def _far_times(basis: AbstractTimeBasis, far: tuple[float, float], num_times: int) -> np.ndarray:
    width = basis.t1 - basis.t0
    return basis.t1 + width * np.geomspace(far[0], far[1], num_times)


def coefficient_asymptotics(
    basis: AbstractTimeBasis,
    coefficients: Float[ArrayLike, "num_basis ..."],
    *,
    name: str = "theta",
    far: tuple[float, float] = (10.0, 1e4),
    num_times: int = 64,
) -> WeightAsymptoticsResult:
    """Growth exponent, leading coefficient and limit of $\\|\\theta(t)\\|$ for
    $\\theta(t) = \\sum_k \\theta_k \\phi_k(t)$ (spectral norm for matrices, Euclidean otherwise).

    A degree-$d$ Legendre or monomial expansion grows like $t^d$ past the window (shifted
    Legendre $P_d(2\\tau - 1)$ has leading coefficient $\\binom{2d}{d}$ in $\\tau$); a clamped basis
    freezes at $\\theta(t_1)$; a Fourier basis stays bounded and oscillates.

    **Arguments:**

    - `basis`: the time basis.
    - `coefficients`: $\\theta_k$ stacked on the first axis (length `basis.num_basis`).
    - `name`: label in the result.
    - `far`: the far-time range, in window widths past $t_1$.
    - `num_times`: points of the geometric far-time grid (>= 8).

    **Returns:**

    A `WeightAsymptoticsResult` with one entry.

    **Raises:**

    `ValueError` if the coefficients do not match the basis or are not finite, or `far` is not
    an increasing pair of positive numbers.
    """
    if not isinstance(basis, AbstractTimeBasis):
        raise ValueError(f"`basis` must be an AbstractTimeBasis, got {type(basis).__name__}.")
    coefficients = jnp.asarray(coefficients)
    if coefficients.ndim == 0 or coefficients.shape[0] != basis.num_basis:
        raise ValueError(
            f"`coefficients` must have basis.num_basis = {basis.num_basis} rows on the first axis, "
            f"got shape {coefficients.shape}."
        )
    if not bool(jnp.all(jnp.isfinite(coefficients))):
        raise ValueError("`coefficients` contains NaN or infinite values.")
    if not (len(far) == 2 and 0 < far[0] < far[1] and math.isfinite(far[1])):
        raise ValueError(f"`far` must be a pair 0 < start < stop, got {far!r}.")
    num_times = check_count("num_times", num_times, 8)
    times = _far_times(basis, far, num_times)
    norms = tensor_norms(basis, coefficients, times)
    exponent, leading, limit, verdict = _analyse(times, norms)
    return WeightAsymptoticsResult(
        names=(name,),
        basis_names=(type(basis).__name__,),
        exponent=np.array([exponent]),
        leading_coefficient=np.array([leading]),
        limit=np.array([limit]),
        verdict_code=np.array([verdict]),
        times=times[None],
        norms=norms[None],
    )


def _path_name(path) -> str:
    return ".".join(str(getattr(k, "name", getattr(k, "idx", getattr(k, "key", k)))) for k in path)


def layer_tensors(model) -> list[tuple[str, AbstractTimeBasis, Array]]:
    """(name, basis, coefficients) of every weight and bias of the `TimeVaryingLinear` layers
    inside `model`, in tree order.

    **Raises:**

    `ValueError` if `model` holds no `TimeVaryingLinear` layer.
    """
    is_layer = lambda x: isinstance(x, TimeVaryingLinear)  # noqa: E731
    leaves = jax.tree_util.tree_flatten_with_path(model, is_leaf=is_layer)[0]
    layers = [(_path_name(path), leaf) for path, leaf in leaves if is_layer(leaf)]
    if not layers:
        raise ValueError(
            "`model` holds no TimeVaryingLinear layer; pass a field, NeuralODE or Surrogate with "
            "time-parameterized weights, or use coefficient_asymptotics(basis, coefficients)."
        )
    tensors = []
    for name, layer in layers:
        prefix = f"{name}." if name else ""
        tensors.append((prefix + "weight", layer.basis, layer.weight))
        if layer.bias is not None:
            tensors.append((prefix + "bias", layer.basis, layer.bias))
    return tensors


def tensor_norms(basis: AbstractTimeBasis, coefficients, times) -> np.ndarray:
    """$\\|\\theta(t)\\|$ at `times`: spectral norm for matrices, Euclidean otherwise."""
    coefficients = jnp.asarray(coefficients)
    return np.asarray(
        _norms_at(basis, coefficients, jnp.asarray(times, coefficients.dtype)), dtype=float
    )


def weight_asymptotics(
    model,
    *,
    far: tuple[float, float] = (10.0, 1e4),
    num_times: int = 64,
) -> WeightAsymptoticsResult:
    """Weight asymptotics of every `TimeVaryingLinear` inside `model` (a field, a dynamics
    model, a `Surrogate`, or a single layer): one entry per weight and bias.

    **Arguments:**

    - `model`: any PyTree holding `TimeVaryingLinear` layers.
    - `far`, `num_times`: as for `coefficient_asymptotics`.

    **Returns:**

    A `WeightAsymptoticsResult`.

    **Raises:**

    `ValueError` if `model` holds no `TimeVaryingLinear` layer.
    """
    parts = [
        coefficient_asymptotics(basis, coefficients, name=name, far=far, num_times=num_times)
        for name, basis, coefficients in layer_tensors(model)
    ]
    return WeightAsymptoticsResult(
        names=tuple(n for p in parts for n in p.names),
        basis_names=tuple(n for p in parts for n in p.basis_names),
        exponent=np.concatenate([p.exponent for p in parts]),
        leading_coefficient=np.concatenate([p.leading_coefficient for p in parts]),
        limit=np.concatenate([p.limit for p in parts]),
        verdict_code=np.concatenate([p.verdict_code for p in parts]),
        times=np.concatenate([p.times for p in parts]),
        norms=np.concatenate([p.norms for p in parts]),
    )
