"""Gaussian predictive uncertainty: the variance model fitted on validation data, and the scores
of a predictive mean and standard deviation (negative log-likelihood, interval coverage).

A predictive distribution here is, per sample and output, a normal distribution N(mean, std^2).
An ensemble's spread misjudges its error in two ways: by a factor (its members disagree more
or less than they err), and by missing what all members get wrong alike (a floor). So the
predictive variance of output j is floor_j^2 + scale_j^2 spread^2, both fitted by maximum
likelihood on held-out data (`fit_calibration`).
"""

import io
import math
from statistics import NormalDist

import numpy as np
import scipy.optimize
from jaxtyping import Float

from ._files import atomic_write_bytes

# The nominal levels the scores report coverage at.
LEVELS = (0.5, 0.9, 0.95)


def _checked(mean, std, y, positive: bool = True):
    mean, std, y = (np.asarray(a, dtype=np.float64) for a in (mean, std, y))
    if mean.ndim != 2 or std.shape != mean.shape or y.shape != mean.shape:
        raise ValueError(
            f"`mean`, `std` and `y` must be arrays of one shape (samples, outputs), got "
            f"{mean.shape}, {std.shape} and {y.shape}."
        )
    if not (np.all(np.isfinite(mean)) and np.all(np.isfinite(std)) and np.all(np.isfinite(y))):
        raise ValueError("`mean`, `std` and `y` must be finite; drop the rows that are not.")
    if np.any(std <= 0) if positive else np.any(std < 0):
        raise ValueError(
            f"`std` must be {'positive' if positive else 'non-negative'}: a predictive spread of "
            "zero makes any error infinitely unlikely."
        )
    return mean, std, y


def fit_calibration(
    mean: Float[np.ndarray, "samples outputs"],
    spread: Float[np.ndarray, "samples outputs"],
    y: Float[np.ndarray, "samples outputs"],
) -> tuple[Float[np.ndarray, " outputs"], Float[np.ndarray, " outputs"]]:
    """`(floors, scales)`: per output j, the a_j >= 0 and s_j >= 0 that make
    N(mean, a_j^2 + s_j^2 spread^2) most likely for `y` (maximum likelihood, L-BFGS on their
    logarithms, started from the best scale alone). Fit them on validation data, never on
    test data. `floors` are in the units of `y`.

    **Raises:** `ValueError` for arrays of different shapes, non-finite values, a negative
    `spread`, or fewer than two samples."""
    mean, spread, y = _checked(mean, spread, y, positive=False)
    if len(y) < 2:
        raise ValueError(f"calibration needs at least two samples, got {len(y)}.")
    floors, scales = [], []
    for r, v in zip((y - mean).T, (spread**2).T):
        r2 = r**2
        tiny = 1e-12 * max(float(np.mean(r2)), np.finfo(float).tiny)

        def nll(p, r2=r2, v=v, tiny=tiny):
            a2, s2 = np.exp(p)
            var = a2 + s2 * v + tiny
            dvar = 0.5 / var - 0.5 * r2 / var**2
            value = np.mean(0.5 * np.log(var) + 0.5 * r2 / var)
            return value, np.array([np.mean(dvar) * a2, np.mean(dvar * v) * s2])

        positive = v > 0
        error = float(np.mean(r2)) + tiny
        typical = float(np.mean(v[positive])) if np.any(positive) else 1.0
        s2 = float(np.mean(r2[positive] / v[positive])) if np.any(positive) else 1.0
        # Bounds far outside any sensible fit keep the search finite when one term vanishes.
        bounds = np.log([[1e-12 * error, 1e4 * error], [1e-12, 1e8]])
        bounds[1] += np.log(error / typical)
        start = np.clip(np.log([0.01 * error, max(s2, tiny)]), bounds[:, 0], bounds[:, 1])
        found = scipy.optimize.minimize(nll, start, jac=True, method="L-BFGS-B", bounds=bounds)
        a2, s2 = np.exp(found.x)
        floors.append(math.sqrt(a2))
        scales.append(math.sqrt(s2))
    return np.asarray(floors), np.asarray(scales)


def predictive_std(spread, floors, scales) -> np.ndarray:
    """sqrt(floors^2 + scales^2 spread^2), output by output (the last axis)."""
    return np.sqrt(np.asarray(floors) ** 2 + (np.asarray(scales) * np.asarray(spread)) ** 2)


def gaussian_nll(
    mean: Float[np.ndarray, "samples outputs"],
    std: Float[np.ndarray, "samples outputs"],
    y: Float[np.ndarray, "samples outputs"],
) -> Float[np.ndarray, " outputs"]:
    """Per output, the mean over samples of -log N(y; mean, std^2): lower is better; it is in
    the units of `y` (rescaling `y` by c adds log c)."""
    mean, std, y = _checked(mean, std, y)
    z = (y - mean) / std
    return np.mean(0.5 * z**2 + np.log(std) + 0.5 * math.log(2 * math.pi), axis=0)


def half_width(level: float) -> float:
    """The half-width, in standard deviations, of the central interval of a normal
    distribution that holds `level` of its mass (1.645 for 0.9)."""
    if not 0 < level < 1:
        raise ValueError(f"an interval's `level` must lie in (0, 1), got {level!r}.")
    return NormalDist().inv_cdf(0.5 + level / 2)


def coverage(
    mean: Float[np.ndarray, "samples outputs"],
    std: Float[np.ndarray, "samples outputs"],
    y: Float[np.ndarray, "samples outputs"],
    level: float,
) -> Float[np.ndarray, " outputs"]:
    """Per output, the fraction of samples whose `y` lies in the central interval of nominal
    `level` (mean +- `half_width(level)` std); a calibrated distribution covers `level`."""
    mean, std, y = _checked(mean, std, y)
    return np.mean(np.abs(y - mean) <= half_width(level) * std, axis=0)


def scores(mean, std, y, prefix: str = "") -> dict:
    """`{prefix}nll` (mean over outputs of `gaussian_nll`), `{prefix}nll_per_output`, and
    `{prefix}coverage_<p>` (over every sample and output) at each level of `LEVELS`."""
    nll = gaussian_nll(mean, std, y)
    out: dict = {f"{prefix}nll": float(np.mean(nll)), f"{prefix}nll_per_output": nll.tolist()}
    for level in LEVELS:
        out[f"{prefix}coverage_{round(100 * level)}"] = float(
            np.mean(coverage(mean, std, y, level))
        )
    return out


def write_calibration_plot(curves: dict[str, tuple], path) -> bool:
    """Observed against nominal coverage, one line per entry `label: (mean, std, y)`, with the
    diagonal of perfect calibration, as a PNG at `path`; `False` without matplotlib."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        return False
    levels = np.linspace(0.05, 0.95, 19)
    fig = Figure(figsize=(4.5, 4.5))
    ax = fig.subplots()
    ax.plot([0, 1], [0, 1], color="0.6", linestyle="--", label="calibrated")
    for label, (mean, std, y) in curves.items():
        observed = [float(np.mean(coverage(mean, std, y, level))) for level in levels]
        ax.plot(levels, observed, marker="o", markersize=3, label=label)
    ax.set_xlabel("nominal coverage of the central interval")
    ax.set_ylabel("observed coverage")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper left", fontsize=8)
    fig.subplots_adjust(left=0.15, right=0.97, top=0.97, bottom=0.12)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    atomic_write_bytes(path, buffer.getvalue())
    return True
