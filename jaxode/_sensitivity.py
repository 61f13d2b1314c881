"""Global sensitivities of a surrogate's outputs to its inputs: Sobol' indices (first-order and
total, with bootstrap confidence intervals; SALib's Saltelli sampling and estimators) and
derivative-based measures (the mean absolute and mean squared partial derivatives, through
`jax.jacfwd`), over a box of inputs.

jaxode's part is evaluating the samples, N (D + 2) of them for D inputs, as compiled batched
calls, and the report; SALib (`pip install jaxode[sensitivity]`) supplies the sampling scheme
and the estimators.
"""

import dataclasses
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

NORM = "output norm"


@dataclasses.dataclass(frozen=True)
class Sensitivities:
    """Sobol' indices and derivative measures of each output (rows; the last row is the
    Euclidean norm of the output vector, `NORM`) with respect to each input (columns); NaN
    for an output that is constant over the box.

    **Fields:** `first`, `first_conf`, `total`, `total_conf` (the indices and the half-widths
    of their bootstrap confidence intervals at `level`), `mean_abs_gradient`,
    `mean_squared_gradient` (over the base samples, in output units per input unit; no row for
    the norm), `names` (the inputs'), `outputs` (the rows' labels), `box` (`(low, high)`),
    `samples` (function evaluations), `level`."""

    first: np.ndarray
    first_conf: np.ndarray
    total: np.ndarray
    total_conf: np.ndarray
    mean_abs_gradient: np.ndarray | None
    mean_squared_gradient: np.ndarray | None
    names: tuple[str, ...]
    outputs: tuple[str, ...]
    box: tuple[np.ndarray, np.ndarray]
    samples: int
    level: float

    def as_dict(self) -> dict:
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        out["box"] = [self.box[0].tolist(), self.box[1].tolist()]
        return {k: v.tolist() if isinstance(v, np.ndarray) else v for k, v in out.items()}


def _checked_box(box, dimension: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    low, high = (np.asarray(b, dtype=np.float64) for b in box)
    if low.ndim != 1 or low.shape != high.shape or (dimension and low.size != dimension):
        want = f"{dimension} inputs" if dimension else "one value per input"
        raise ValueError(
            f"`box` must be (low, high) of {want}, got shapes {low.shape}, {high.shape}."
        )
    if not (np.all(np.isfinite(low)) and np.all(np.isfinite(high)) and np.all(low < high)):
        raise ValueError("`box` must be finite with low < high in every input.")
    return low, high


def _salib():
    try:
        from SALib.analyze import sobol as analyze
        from SALib.sample import sobol as sample
    except ImportError:
        raise ImportError("Sobol' indices need SALib: pip install 'jaxode[sensitivity]'.") from None
    return sample, analyze


def sobol_indices(
    function: Callable[[np.ndarray], np.ndarray],
    box,
    *,
    samples: int = 4096,
    names: tuple[str, ...] | None = None,
    seed: int = 0,
    resamples: int = 200,
    level: float = 0.95,
    gradient: Callable | None = None,
) -> Sensitivities:
    """Sobol' indices of each output of `function` (physical inputs `(n, D)` -> outputs
    `(n, m)`, called on all N (D + 2) Saltelli samples at once) and of the output norm, over
    the `box` `(low, high)` with independent uniform inputs. `samples` = N, the base samples
    (a power of two). With `gradient` (a JAX function of one input `(D,)` -> `(m,)`), also the
    derivative measures over the N base samples.

    **Raises:** `ValueError` for a bad box or sample count; `ImportError` without SALib."""
    sample, analyze = _salib()
    low, high = _checked_box(box)
    dimension = low.size
    if samples < 2 or samples & (samples - 1):
        raise ValueError(f"`samples` must be a power of two >= 2, got {samples}.")
    names = tuple(names) if names is not None else tuple(f"x{i}" for i in range(dimension))
    if len(names) != dimension:
        raise ValueError(f"`names` has {len(names)} entries for {dimension} inputs.")
    problem = {"num_vars": dimension, "names": list(names), "bounds": np.c_[low, high].tolist()}
    xs = sample.sample(problem, samples, calc_second_order=False, seed=seed)
    ys = np.asarray(function(xs), dtype=np.float64)
    if ys.ndim == 1:
        ys = ys[:, None]
    if ys.shape[0] != len(xs) or not np.all(np.isfinite(ys)):
        raise ValueError("`function` must return finite outputs, one row per input row.")
    columns = [ys[:, j] for j in range(ys.shape[1])] + [np.linalg.norm(ys, axis=1)]
    # An output constant over the box has no variance to share out: its indices are NaN.
    undefined = {key: np.full(dimension, np.nan) for key in ("S1", "S1_conf", "ST", "ST_conf")}
    found = [
        analyze.analyze(
            problem,
            column,
            calc_second_order=False,
            num_resamples=resamples,
            conf_level=level,
            seed=seed,
        )
        if np.ptp(column) > 0
        else undefined
        for column in columns
    ]
    stack = lambda key: np.array([np.asarray(f[key], dtype=np.float64) for f in found])
    mean_abs = mean_squared = None
    if gradient is not None:
        # The base samples: every (D + 2)-th row of Saltelli's matrix is one of A.
        jacobians = jacobians_at(gradient, xs[:: dimension + 2])
        mean_abs = np.mean(np.abs(jacobians), axis=0)
        mean_squared = np.mean(jacobians**2, axis=0)
    outputs = tuple(f"y{j}" for j in range(ys.shape[1])) + (NORM,)
    return Sensitivities(
        first=stack("S1"),
        first_conf=stack("S1_conf"),
        total=stack("ST"),
        total_conf=stack("ST_conf"),
        mean_abs_gradient=mean_abs,
        mean_squared_gradient=mean_squared,
        names=names,
        outputs=outputs,
        box=(low, high),
        samples=len(xs),
        level=level,
    )


def jacobians_at(
    function: Callable[[Float[Array, " D"]], Float[Array, " m"]],
    xs: Float[np.ndarray, "n D"],
    chunk: int = 1024,
) -> Float[np.ndarray, "n m D"]:
    """The Jacobians of the JAX function `function` at the rows of `xs`, as float64 NumPy,
    in fixed-size chunks (one compilation for any number of rows)."""
    program = eqx.filter_jit(jax.vmap(jax.jacfwd(function)))
    xs = np.asarray(xs)
    dtype = jnp.zeros(()).dtype
    out = []
    for start in range(0, len(xs), chunk):
        part = xs[start : start + chunk]
        padded = np.concatenate([part, np.repeat(part[-1:], chunk - len(part), axis=0)])
        out.append(np.asarray(program(jnp.asarray(padded, dtype)), np.float64)[: len(part)])
    return np.concatenate(out)


def surrogate_function(trained) -> Callable[[Float[Array, " D"]], Float[Array, " m"]]:
    """The JAX function of one physical input `(in_size,)` to the physical outputs
    `(out_size,)` of a `TrainedSurrogate`, or the members' mean of an `Ensemble`: composable
    with `jax.jit`, `jax.vmap` and `jax.grad` (derivatives with respect to the inputs, as an
    inverse problem or a design optimisation needs), without runtime checks (a failed solve
    gives non-finite values)."""
    from ._models import NeuralODE, skip_value_checks

    members = getattr(trained, "members", (trained,))
    models = []
    for member in members:
        model, dynamics = member.model, member.model.dynamics
        if isinstance(dynamics, NeuralODE) and dynamics.throw:
            quiet = dataclasses.replace(dynamics, throw=False)
            model = eqx.tree_at(lambda m: m.dynamics, model, quiet)
        models.append((model, member.x_norm, member.y_norm))

    def function(x):
        with skip_value_checks():
            outputs = [
                model((x - x_norm.shift) / x_norm.scale) * y_norm.scale + y_norm.shift
                for model, x_norm, y_norm in models
            ]
        return jnp.mean(jnp.stack(outputs), axis=0)

    return function


def surrogate_sensitivities(
    trained,
    box=None,
    *,
    samples: int = 4096,
    seed: int = 0,
    resamples: int = 200,
    level: float = 0.95,
    names: tuple[str, ...] | None = None,
) -> Sensitivities:
    """`sobol_indices` of a `TrainedSurrogate` or `Ensemble` (its mean) over `box`, by default
    its training domain, with the derivative measures through `surrogate_function`.

    **Raises:** `ValueError` for a time series (no box of inputs) or a bad box."""
    if box is None:
        if trained.domain is None:
            raise ValueError(
                "this run stores no training domain (a time series, or a run trained before "
                "jaxode stored one): pass `box` = (low, high)."
            )
        box = (trained.domain.low, trained.domain.high)
    box = _checked_box(box, trained.model.in_size)
    return sobol_indices(
        trained.predict,
        box,
        samples=samples,
        names=names,
        seed=seed,
        resamples=resamples,
        level=level,
        gradient=surrogate_function(trained),
    )


def sensitivity_table(result: Sensitivities) -> str:
    """A Markdown table: per output row, S1 and ST of each input with their intervals."""
    pct = round(100 * result.level)
    lines = [
        f"Sobol' indices over the box, {result.samples} evaluations; first-order S1 and total "
        f"ST with {pct} % bootstrap intervals (+-); mean |dy/dx| over the base samples.",
        "",
        "| output | input | S1 | ST | mean abs gradient |",
        "|---|---|---|---|---|",
    ]
    for j, output in enumerate(result.outputs):
        for i, name in enumerate(result.names):
            gradient = (
                f"{result.mean_abs_gradient[j, i]:.4g}"
                if result.mean_abs_gradient is not None and j < len(result.mean_abs_gradient)
                else ""
            )
            lines.append(
                f"| {output} | {name} | {result.first[j, i]:.3f} ± {result.first_conf[j, i]:.3f}"
                f" | {result.total[j, i]:.3f} ± {result.total_conf[j, i]:.3f} | {gradient} |"
            )
    return "\n".join(lines) + "\n"


def write_sensitivity_plot(result: Sensitivities, path) -> bool:
    """Bars of S1 and ST of the output norm per input, with their intervals, as a PNG;
    `False` without matplotlib."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        return False
    import io

    from ._files import atomic_write_bytes

    positions = np.arange(len(result.names))
    fig = Figure(figsize=(max(4.0, 0.5 * len(positions) + 2), 3.5))
    ax = fig.subplots()
    for offset, label, value, conf in (
        (-0.2, "first order S1", result.first[-1], result.first_conf[-1]),
        (0.2, "total ST", result.total[-1], result.total_conf[-1]),
    ):
        ax.bar(positions + offset, value, width=0.4, yerr=conf, capsize=3, label=label)
    ax.set_xticks(positions, result.names, rotation=45 if len(positions) > 8 else 0)
    ax.set_ylabel(f"Sobol' index of the {NORM}")
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    atomic_write_bytes(path, buffer.getvalue())
    return True
