"""Tail spectrum by the matrix-pencil method: $g(r_0 + kh) \\approx \\sum_j c_j e^{\\lambda_j k h}$.

**References:** Y. Hua and T. K. Sarkar, "Matrix pencil method for estimating parameters of
exponentially damped/undamped sinusoids in noise", IEEE Trans. ASSP 38(5), 1990.
"""

import dataclasses
from collections.abc import Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import ArrayLike, Float

from ._common import (
    CONSTANT_EXP,
    EXP_GROWTH,
    LINEAR,
    OSCILLATORY,
    POLY,
    UNRESOLVED,
    ProbeResult,
    as_float_array,
    check_count,
    check_positive,
    verdict_names,
)


def _pencil_one(samples, step, pencil, rank_rtol, zero_atol, amplitude_rtol):
    num = samples.shape[0]
    rows = num - pencil
    hankel = samples[jnp.arange(rows)[:, None] + jnp.arange(pencil + 1)[None, :]]
    _, singular, vh = jnp.linalg.svd(hankel, full_matrices=False)
    rank = jnp.sum(singular > rank_rtol * singular[0])
    # Signal subspace: the first `rank` right singular vectors; the rest is masked to zero so
    # that every array keeps its fixed size under jit.
    keep = jnp.arange(pencil + 1) < rank
    basis = vh.T * keep[None, :]
    first, second = basis[:-1], basis[1:]
    operator = jnp.linalg.pinv(first) @ second
    roots = jnp.linalg.eigvals(operator)
    # The masked block contributes zero eigenvalues: keep the `rank` largest in modulus.
    order = jnp.argsort(-jnp.abs(roots))
    roots = roots[order]
    valid = keep
    safe_roots = jnp.where(valid, roots, 1.0)
    exponents = jnp.where(valid, jnp.log(safe_roots) / step, jnp.nan)
    # Amplitudes: least squares on the Vandermonde matrix z_j^k.
    powers = jnp.arange(num, dtype=samples.dtype)
    vandermonde = jnp.where(valid[None, :], safe_roots[None, :] ** powers[:, None], 0.0)
    amplitudes = jnp.linalg.pinv(vandermonde) @ samples.astype(vandermonde.dtype)
    amplitudes = jnp.where(valid, amplitudes, jnp.nan)

    size = jnp.where(valid, jnp.abs(amplitudes), 0.0)
    significant = valid & (size > amplitude_rtol * jnp.max(size))
    near_zero = significant & (jnp.abs(exponents) < zero_atol)
    num_zero = jnp.sum(near_zero)
    growing = jnp.any(significant & (exponents.real > zero_atol))
    oscillating = jnp.any(significant & (jnp.abs(exponents.imag) > zero_atol))
    verdict = jnp.where(
        rank == 0,
        UNRESOLVED,
        jnp.where(
            growing,
            EXP_GROWTH,
            jnp.where(
                num_zero >= 3,
                POLY,
                jnp.where(num_zero == 2, LINEAR, jnp.where(oscillating, OSCILLATORY, CONSTANT_EXP)),
            ),
        ),
    )
    power = jnp.where(verdict == POLY, num_zero - 1.0, jnp.where(verdict == LINEAR, 1.0, jnp.nan))
    return dict(
        exponents=exponents,
        amplitudes=amplitudes,
        valid=valid,
        rank=rank.astype(jnp.int32),
        verdict_code=verdict.astype(jnp.int32),
        power=power,
        singular_values=singular,
    )


@eqx.filter_jit
def _spectrum_core(samples, step, pencil, rank_rtol, zero_atol, amplitude_rtol):
    return jax.vmap(_pencil_one, in_axes=(0, None, None, None, None, None))(
        samples, step, pencil, rank_rtol, zero_atol, amplitude_rtol
    )


@dataclasses.dataclass(frozen=True)
class TailSpectrumResult(ProbeResult):
    """Exponents of a sampled tail; first axis: one row per tail.

    **Fields:**

    - `exponents`: continuous-time exponents $\\lambda_j$ (complex), sorted by decreasing real
      part; `nan` beyond the rank.
    - `amplitudes`: $c_j$ in $g(r_0 + s) \\approx \\sum_j c_j e^{\\lambda_j s}$.
    - `valid`: which of the fixed-size slots hold an exponent; `rank`: their number.
    - `verdict_code`: growth if some $\\mathrm{Re}\\,\\lambda > 0$; `POLY(m-1)` / `LINEAR` for an
      $m$-fold root at 0; oscillatory if some $\\mathrm{Im}\\,\\lambda \\neq 0$; else saturating
      (`CONSTANT_EXP`). Only exponents with a non-negligible amplitude count.
    - `power`, `singular_values` (of the Hankel matrix, to judge the rank).
    """

    exponents: np.ndarray
    amplitudes: np.ndarray
    valid: np.ndarray
    rank: np.ndarray
    verdict_code: np.ndarray
    power: np.ndarray
    singular_values: np.ndarray

    @property
    def verdicts(self) -> np.ndarray:
        return verdict_names(self.verdict_code, self.power)

    def _table(self):
        header = ["tail", "rank", "verdict", "exponents (leading 4)"]
        rows = []
        for i in range(self.rank.shape[0]):
            shown = self.exponents[i][self.valid[i]][:4]
            text = ", ".join(f"{z.real:.4g}{z.imag:+.4g}i" for z in shown)
            rows.append([i, self.rank[i], self.verdicts[i], text])
        return header, rows


def tail_spectrum(
    samples: Float[ArrayLike, "num_tails num_samples"]
    | Float[ArrayLike, " num_samples"]
    | Sequence[Sequence[float]]
    | Sequence[float],
    step: float,
    *,
    pencil: int | None = None,
    rank_rtol: float = 1e-9,
    zero_atol: float = 1e-2,
    amplitude_rtol: float = 1e-6,
) -> TailSpectrumResult:
    """Exponents, amplitudes, rank and verdict of tails sampled at equal steps, by the
    matrix-pencil method on a Hankel matrix with the rank chosen by SVD.

    Physical laws have spectra that keep going ($\\lambda > 0$ growth, $\\pm i\\omega$
    oscillation, multiple roots at 0 for polynomials); a saturating network's tail has only
    $\\lambda = 0$ (its limit) and negative real exponents.

    **Arguments:**

    - `samples`: $g(r_0 + k h)$, $k = 0, \\dots, N-1$ ($N \\ge 8$), one tail per row.
    - `step`: the sampling step $h > 0$.
    - `pencil`: pencil parameter $L$ (at most $(N-1)/2$); default $\\lfloor N/3 \\rfloor$.
    - `rank_rtol`: singular values above `rank_rtol` times the largest count toward the rank.
    - `zero_atol`: $|\\lambda|$ (or $|\\mathrm{Re}|$, $|\\mathrm{Im}|$) below this counts as 0.
    - `amplitude_rtol`: exponents with relatively smaller amplitudes are ignored by the verdict.

    **Returns:**

    A `TailSpectrumResult` (exponents in units of $1/r$).

    **Raises:**

    `ValueError` for non-finite samples, fewer than 8 samples, $h \\le 0$, or a bad `pencil`.
    """
    samples = as_float_array("samples", samples, (1, 2))
    if samples.ndim == 1:
        samples = samples[None]
    num = samples.shape[1]
    if num < 8:
        raise ValueError(f"`samples` needs at least 8 values per tail, got {num}.")
    step = check_positive("step", step)
    pencil = num // 3 if pencil is None else check_count("pencil", pencil)
    if pencil > (num - 1) // 2:
        raise ValueError(
            f"`pencil` must be at most (num_samples - 1) // 2 = {(num - 1) // 2}, got {pencil}."
        )
    for name, value in (
        ("rank_rtol", rank_rtol),
        ("zero_atol", zero_atol),
        ("amplitude_rtol", amplitude_rtol),
    ):
        check_positive(name, value)
    dtype = jnp.zeros(()).dtype
    out = _spectrum_core(
        jnp.asarray(samples, dtype), step, pencil, rank_rtol, zero_atol, amplitude_rtol
    )
    return TailSpectrumResult(**{k: np.asarray(v) for k, v in out.items()})
