"""GNvpro: the affine readout eliminated by variable projection (a ridge solve inside the
objective) and a trust-region Gauss-Newton-Krylov loop over the remaining parameters, the
second optimiser of the study's discrete nets."""

import dataclasses
import time
from collections.abc import Callable
from typing import Any, cast

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optimistix as optx
from jax.flatten_util import ravel_pytree
from jaxtyping import Array, ArrayLike, Float, Int, PyTree, Scalar

from .._models import NeuralODE, skip_value_checks
from .._paradigms import as_adjoint
from .._surrogate import Surrogate
from ._metrics import error_metrics, predict_in_chunks

_REFERENCES = """**References:** E. Newman, L. Ruthotto, J. Hart, B. van Bloemen Waanders, "Train
Like a (Var)Pro: Efficient Training of Neural Networks with Variable Projection", SIAM J.
Math. Data Sci. 3 (2021), arXiv 2007.13171; T. Steihaug, "The Conjugate Gradient Method and
Trust Regions in Large Scale Optimization", SIAM J. Numer. Anal. 20 (1983); A. Rosso,
L. Ruthotto, K. Sargsyan, arXiv 2507.22045 (the study's use of it)."""


# --- The inner, truncated-CG solve of the trust-region subproblem ------------------------


class _PathState(eqx.Module):
    template: PyTree
    path: Float[Array, "vertices size"]
    norms: Float[Array, " vertices"]
    num_cg: Int[Array, ""]
    gradient_norm: Scalar


class TruncatedCGDescent(optx.AbstractDescent):
    """The Steihaug step of the Gauss-Newton trust-region subproblem
    $\\min_p g^T p + \\frac12 \\|Jp\\|^2$, $\\|p\\| \\le \\Delta$, with $g = J^T r$, matrix-free.

    `query` runs conjugate gradients on $J^T J p = -g$ from $p_0 = 0$ (each iteration one
    Jacobian-vector and one vector-Jacobian product through the residual function's
    linearisation) and keeps the iterates $p_0, \\dots, p_k$; their norms increase
    (Steihaug's theorem), so the Steihaug step for radius $\\Delta$ is the point of this
    piecewise-linear path at distance $\\Delta$ from 0, which `step` reads off without new
    products. A rejected step therefore costs no inner iterations. `step_size` is the radius
    relative to $\\|p_k\\|$ (as in `optimistix.IndirectDampedNewtonDescent`): 1 and above
    take the whole CG step.

    **Arguments:**

    - `max_steps`: at most this many CG iterations per query.
    - `rtol`: stop CG once its residual is below `rtol` times $\\|g\\|$.

    """

    max_steps: int = eqx.field(static=True)
    rtol: float = eqx.field(static=True)

    def init(self, y, f_info_struct):
        del f_info_struct
        flat, _ = ravel_pytree(y)
        return _PathState(
            template=y,
            path=jnp.zeros((self.max_steps + 1, flat.size), flat.dtype),
            norms=jnp.zeros(self.max_steps + 1, flat.dtype),
            num_cg=jnp.array(0),
            gradient_norm=jnp.zeros((), flat.dtype),
        )

    def query(self, y, f_info, state):
        del state
        flat_y, unravel = ravel_pytree(y)
        dtype = flat_y.dtype
        jac = f_info.jac
        jac_t = jac.transpose()
        g = ravel_pytree(jac_t.mv(f_info.residual))[0].astype(dtype)

        def hessian(v):
            return ravel_pytree(jac_t.mv(jac.mv(unravel(v))))[0].astype(dtype)

        g_norm = jnp.linalg.norm(g)
        tolerance = self.rtol * g_norm
        tiny = jnp.finfo(dtype).tiny

        def cond(carry):
            i, _, _, _, rr, _, done = carry
            return (i < self.max_steps) & ~done & (jnp.sqrt(rr) > tolerance)

        def body(carry):
            i, p, res, d, rr, path, _ = carry
            hd = hessian(d)
            curvature = jnp.dot(d, hd)
            flat = curvature <= tiny  # no curvature along d: J^T r is (numerically) zero
            alpha = jnp.where(flat, 0.0, rr / jnp.where(flat, 1.0, curvature))
            p = p + alpha * d
            res = res - alpha * hd
            rr_new = jnp.dot(res, res)
            d = res + (rr_new / jnp.where(rr > 0, rr, 1.0)) * d
            path = path.at[i + 1].set(p)
            return i + 1, p, res, d, rr_new, path, flat

        zero = jnp.zeros_like(g)
        path = jnp.zeros((self.max_steps + 1, g.size), dtype)
        init = (jnp.array(0), zero, -g, -g, jnp.dot(g, g), path, jnp.array(False))
        num_cg, p, _, _, _, path, _ = jax.lax.while_loop(cond, body, init)
        # Rows after the last iterate repeat it, so that the path ends there.
        rows = jnp.arange(self.max_steps + 1)[:, None]
        path = jnp.where(rows > num_cg, p[None, :], path)
        return _PathState(y, path, jnp.linalg.norm(path, axis=1), num_cg, g_norm)

    def step(self, step_size, state):
        norms, path = state.norms, state.path
        radius = (step_size * norms[-1]).astype(norms.dtype)
        # First vertex beyond the radius (index >= 1, as norms[0] = 0); none: the full step.
        beyond = norms > radius
        j = jnp.maximum(jnp.argmax(beyond), 1)
        start, end = path[j - 1], path[j]
        d = end - start
        a = jnp.dot(d, d)
        b = jnp.dot(start, d)
        c = jnp.dot(start, start) - radius**2
        safe_a = jnp.where(a > 0, a, 1.0)
        tau = jnp.clip((-b + jnp.sqrt(jnp.maximum(b**2 - a * c, 0.0))) / safe_a, 0.0, 1.0)
        truncated = start + tau * d
        p = jnp.where(jnp.any(beyond), truncated, path[-1])
        return ravel_pytree(state.template)[1](p), optx.RESULTS.successful


def _silent(**kwargs) -> None:
    del kwargs


class GaussNewtonKrylov(optx.AbstractGaussNewton):
    """Trust-region Gauss-Newton-Krylov for nonlinear least squares $\\min_y \\frac12
    \\|r(y)\\|^2$: an `optimistix.AbstractGaussNewton` with the `TruncatedCGDescent` (Steihaug)
    step and the `optimistix.ClassicalTrustRegion` radius update. The Jacobian is never
    formed: `optimistix` linearises the residual (`jax.linearize`) into a
    `lineax.FunctionLinearOperator`, whose `mv` is a Jacobian-vector product and whose
    transpose a vector-Jacobian product. Usable with `optimistix.least_squares`.

    **Arguments:**

    - `rtol`, `atol`: `optimistix`'s Cauchy termination (small changes of $y$ and $r$); 0
      and 0 never stop early.
    - `max_inner`: CG iterations per accepted step; `inner_rtol`: CG's relative tolerance.
    - `norm`: the norm of the termination test.
    - `search`: the trust-region update, default `optimistix.ClassicalTrustRegion()`.

    """

    rtol: float
    atol: float
    norm: Callable[[PyTree], Scalar]
    descent: TruncatedCGDescent
    search: optx.AbstractSearch
    verbose: Callable[..., None]

    def __init__(
        self,
        rtol: float = 0.0,
        atol: float = 0.0,
        *,
        max_inner: int = 20,
        inner_rtol: float = 1e-2,
        norm: Callable[[PyTree], Scalar] = optx.max_norm,
        search: optx.AbstractSearch | None = None,
    ):
        check_int("max_inner", max_inner)
        check_number("inner_rtol", inner_rtol, strict=False)
        self.rtol = rtol
        self.atol = atol
        self.norm = norm
        self.descent = TruncatedCGDescent(max_steps=max_inner, rtol=inner_rtol)
        self.search = optx.ClassicalTrustRegion() if search is None else search
        self.verbose = _silent


GaussNewtonKrylov.__doc__ = f"{GaussNewtonKrylov.__doc__}\n{_REFERENCES}"


# --- The reduced (variable-projection) objective -----------------------------------------


def split_readout(model: Surrogate) -> tuple[Surrogate, Surrogate]:
    """`(theta, rest)`: the opening and dynamics parameters (every floating-point array
    outside `readout`) and everything else, with `eqx.combine(theta, rest) == model`."""
    spec = jax.tree_util.tree_map(eqx.is_inexact_array, model)
    spec = eqx.tree_at(
        lambda m: m.readout, spec, jax.tree_util.tree_map(lambda _: False, spec.readout)
    )
    return eqx.partition(model, spec)


def _sum_squares(tree) -> Scalar:
    return sum((jnp.sum(leaf**2) for leaf in jax.tree_util.tree_leaves(tree)), jnp.zeros(()))


class VarProObjective(eqx.Module):
    """The study's regularised misfit with the readout eliminated.

    For features $Z(\\theta) \\in \\mathbb{R}^{n \\times w}$ (the model's state at $t_1$ for the
    $n$ training inputs), $A = [Z, 1]$ and targets $C$,

    $$\\Phi(\\theta, W) = \\frac{1}{2n}\\|A W^T - C\\|_F^2 + \\frac{\\beta}{2}\\|W\\|_F^2
    + \\frac{\\alpha}{2}\\|\\theta\\|^2,$$

    with $W = [W_0, w]$ the readout weight and bias, $\\beta$ = `ridge` (penalising the bias
    $w$ too, as the study's $\\|W\\|^2$ of $W[z_T; 1]$ does, unless `penalise_bias=False`)
    and $\\alpha$ = `tikhonov`. $W^*(\\theta)$ solves the normal equations
    $(A^T A / n + \\beta D) W^T = A^T C / n$ ($D = I$, or $I$ without the bias entry), and
    $\\phi(\\theta) = \\Phi(\\theta, W^*(\\theta)) = \\frac12\\|r(\\theta)\\|^2$ with the residual
    $r(\\theta) = [(A W^{*T} - C)/\\sqrt{n};\\ \\sqrt{\\beta} D W^*;\\ \\sqrt{\\alpha}\\theta]$.
    With `penalise_bias=False`, $W^*$ is `ridge_readout` with ridge $n\\beta$.

    **Arguments:**

    - `rest`: the model without $\\theta$ (the second output of `split_readout`).
    - `ridge`: $\\beta > 0$; `tikhonov`: $\\alpha \\ge 0$; `penalise_bias`: see above.

    """

    rest: Surrogate
    ridge: float = eqx.field(static=True)
    tikhonov: float = eqx.field(static=True)
    penalise_bias: bool = eqx.field(static=True, default=True)

    def features(self, theta, xs: Float[ArrayLike, "n in"]) -> Float[Array, "n width"]:
        """$Z(\\theta)$."""
        model = eqx.combine(theta, self.rest)
        with skip_value_checks():
            return model.dynamics.solve_batch(jax.vmap(model.features)(jnp.asarray(xs))).final

    def readout(self, features, targets) -> tuple[Float[Array, "out width"], Float[Array, " out"]]:
        """$W^*$ of `features` as `(weight, bias)`, differentiable (a Cholesky solve of the
        $(w+1) \\times (w+1)$ normal equations)."""
        n, width = features.shape
        a = jnp.concatenate([features, jnp.ones((n, 1), features.dtype)], axis=1)
        penalty = jnp.ones(width + 1, features.dtype)
        if not self.penalise_bias:
            penalty = penalty.at[width].set(0.0)
        gram = a.T @ a / n + self.ridge * jnp.diag(penalty)
        full = jax.scipy.linalg.solve(gram, a.T @ targets / n, assume_a="pos").T
        return full[:, :width], full[:, width]

    def _rows(self, theta, features, targets, weight, bias):
        n = features.shape[0]
        data = (features @ weight.T + bias - targets) / np.sqrt(n)
        ridge = np.sqrt(self.ridge)
        readout = (ridge * weight, ridge * bias) if self.penalise_bias else (ridge * weight,)
        tikhonov = [np.sqrt(self.tikhonov) * leaf for leaf in jax.tree_util.tree_leaves(theta)]
        return (data, readout, tikhonov)

    def residual(self, theta, args):
        """`(r(theta), (weight, bias))` for `args = (xs, ys)`, in `optimistix`'s
        `fn(y, args) -> (out, aux)` form."""
        xs, ys = args
        features = self.features(theta, xs)
        weight, bias = self.readout(features, ys)
        return self._rows(theta, features, ys, weight, bias), (weight, bias)

    def objective(self, theta, xs, ys) -> Scalar:
        """$\\phi(\\theta)$."""
        return 0.5 * _sum_squares(self.residual(theta, (xs, ys))[0])

    def gradient(self, theta, xs, ys):
        """$\\nabla\\phi(\\theta) = \\partial_\\theta \\Phi(\\theta, W)$ at $W = W^*(\\theta)$ held
        fixed (the variable-projection theorem: $\\partial_W \\Phi = 0$ there)."""

        def at_fixed_readout(theta):
            features = self.features(theta, xs)
            weight, bias = jax.lax.stop_gradient(self.readout(features, ys))
            return 0.5 * _sum_squares(self._rows(theta, features, ys, weight, bias))

        return jax.grad(at_fixed_readout)(theta)

    def model(self, theta, readout: tuple) -> Surrogate:
        """The `Surrogate` of `theta` with readout `(weight, bias)`."""
        model = eqx.combine(theta, self.rest)
        return eqx.tree_at(lambda m: (m.readout.weight, m.readout.bias), model, readout)


VarProObjective.__doc__ = f"{VarProObjective.__doc__}\n{_REFERENCES}"


# --- The outer loop, step by step, with its work counted ---------------------------------


@dataclasses.dataclass
class GNvproResult:
    """What `fit_gnvpro` (and `gauss_newton_krylov`) return.

    **Fields:**

    - `model`: the trained `Surrogate` with readout $W^*(\\theta)$ (for `gauss_newton_krylov`:
      the last accepted iterate $y$).
    - `history`: one dict per outer iteration (iteration 0 evaluates the start): `iteration`,
      `objective` ($\\phi$ at the current, last accepted, point), `gradient_norm`,
      `trust_radius` (radius of the step proposed at this iteration), `step_length`,
      `accepted` (whether this iteration's trial point was accepted; iteration 0: `True`),
      `cg_iterations` (of the step proposed here; 0 after a rejection, whose step is cut from
      the previous path), `forward`, `jvp`, `vjp`, `evaluations` (their sum, so far),
      `wall_time`, and with `val` data `val_global`, `val_per_sample`.
    - `status`: `"max_iterations"`, `"max_evaluations"`, `"converged"` (`gtol`, or the
      solver's own termination) or `"stalled"` (the trust radius fell below machine
      precision relative to the step).
    - `iterations`: outer iterations done; `accepted`: accepted ones.
    - `evaluations`: `{"forward", "jvp", "vjp", "total"}`, each in passes over the whole
      training set (see `fit_gnvpro`).
    - `compile_time`: seconds of tracing and compiling the step, with the first iteration's
      run; `num_traces`: how often the step was traced (1: compiled once); `wall_time`:
      seconds of the other iterations' steps (validation excluded; so far, in the history
      rows).
    - `aux`: the residual function's auxiliary output at the last accepted point (for
      `fit_gnvpro`: the readout `(weight, bias)`).

    """

    model: object
    history: list
    status: str
    iterations: int
    accepted: int
    evaluations: dict
    compile_time: float
    num_traces: int
    wall_time: float
    aux: object = None


def check_int(name: str, value, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"`{name}` must be an integer >= 1, got {value!r}.")


def check_number(name: str, value, strict: bool) -> None:
    bad = isinstance(value, bool) or not isinstance(value, (int, float))
    if bad or not (value > 0 if strict else value >= 0) or not np.isfinite(value):
        raise ValueError(
            f"`{name}` must be a finite number {'>' if strict else '>='} 0, got {value!r}."
        )


class GaussNewtonKrylovIterations:
    """The outer iterations of `GaussNewtonKrylov` on `fn(y, args) -> (residuals, aux)`, one
    at a time (each one compiled program), with the work counted in passes of `fn`: every
    iteration linearises `fn` at its trial point (one forward pass) and predicts the
    trust-region reduction (one Jacobian-vector product); an accepted step adds the
    gradient $J^T r$ (one vector-Jacobian product) and CG iterations (one of each per
    iteration). Iteration 0 evaluates the start (and compiles).

    **Attributes:** `y` and `aux`: the current (last accepted) point and the residual
    function's auxiliary output there; `traces`: how often the step was traced;
    `compile_time`, `wall_time`: seconds of iteration 0 and of the others; `accepted`:
    accepted steps after the start; `terminate`: whether the solver's own termination test
    holds at the current point.
    """

    def __init__(self, fn: Callable, y0: PyTree, args: PyTree, *, max_inner: int, inner_rtol):
        solver = GaussNewtonKrylov(max_inner=max_inner, inner_rtol=inner_rtol)
        f_struct, aux_struct = eqx.filter_eval_shape(fn, y0, args)
        self.state = solver.init(fn, y0, args, {}, f_struct, aux_struct, frozenset())
        self.fn, self.args, self.y = fn, args, y0
        self.traces, self.iteration, self.accepted = 0, -1, 0
        self.compile_time = self.wall_time = 0.0
        self.counts = dict(forward=0, jvp=0, vjp=0)
        self.terminate = False

        @eqx.filter_jit
        def step(fn, args, y, state):
            self.traces += 1
            accepted_before = state.num_accepted_steps
            y, state, _ = solver.step(fn, y, args, {}, state, frozenset())
            report = dict(
                objective=0.5 * _sum_squares(state.f_info.residual),
                gradient_norm=state.descent_state.gradient_norm,
                trust_radius=state.search_state.step_size * state.descent_state.norms[-1],
                step_length=jnp.linalg.norm(ravel_pytree(state.y_eval)[0] - ravel_pytree(y)[0]),
                accepted=state.num_accepted_steps > accepted_before,
                cg_iterations=state.descent_state.num_cg,
                terminate=state.terminate,
            )
            return y, state, report

        self._step = step

    @property
    def aux(self):
        return self.state.aux

    def next(self) -> dict:
        """Runs the next iteration; returns its history row (see `GNvproResult.history`)."""
        start = time.perf_counter()
        self.y, self.state, report = self._step(self.fn, self.args, self.y, self.state)
        report = {k: v.item() for k, v in jax.device_get(report).items()}
        self.iteration += 1
        if self.iteration > 0:
            self.wall_time += time.perf_counter() - start
        else:
            self.compile_time = time.perf_counter() - start
        self.counts["forward"] += 1
        self.counts["jvp"] += 1
        if not report["accepted"]:
            report["cg_iterations"] = 0
        else:
            self.accepted += self.iteration > 0
            self.counts["vjp"] += 1 + report["cg_iterations"]
            self.counts["jvp"] += report["cg_iterations"]
        self.terminate = bool(report.pop("terminate"))
        row: dict[str, Any] = dict(iteration=self.iteration, **report)
        row.update(self.counts, evaluations=sum(self.counts.values()), wall_time=self.wall_time)
        return row

    def stop_reason(self, row: dict, *, gtol: float, max_evaluations) -> str | None:
        """Why the loop ends after `row`: `"converged"` (the solver's termination, or the
        gradient norm at most `gtol`), `"max_evaluations"` (the pass budget is used),
        `"stalled"` (the trust radius fell below float32's smallest normal number), or
        `None`: it goes on."""
        if self.terminate or row["gradient_norm"] <= gtol:
            return "converged"
        if max_evaluations is not None and row["evaluations"] >= max_evaluations:
            return "max_evaluations"
        if row["trust_radius"] <= np.finfo(np.float32).tiny:
            return "stalled"
        return None


def gauss_newton_krylov(
    fn: Callable,
    y0: PyTree,
    args: PyTree = None,
    *,
    max_iterations: int = 100,
    max_inner: int = 20,
    inner_rtol: float = 1e-2,
    max_evaluations: float | None = None,
    gtol: float = 0.0,
    on_accept: Callable | None = None,
    callback: Callable | None = None,
) -> GNvproResult:
    """Runs `GaussNewtonKrylov` on `fn(y, args) -> (residuals, aux)` one step at a time (each
    step one compiled program, see `GaussNewtonKrylovIterations`), recording a history and
    the work done.

    **Arguments:**

    - `fn`, `y0`, `args`: the residual function, the start and its fixed arguments.
    - `max_iterations`: outer iterations after the start (trial points evaluated).
    - `max_inner`, `inner_rtol`: see `GaussNewtonKrylov`.
    - `max_evaluations`: stop once this many passes are used (`None`: no limit); the
      iteration that crosses it completes.
    - `gtol`: stop when the gradient norm at the current point is at most this.
    - `on_accept`: called as `on_accept(y, aux)` after each accepted step; a dict it returns
      is merged into that history row.
    - `callback`: called as `callback(row, y, aux)` with each history row once it is
      recorded, `y` and `aux` those of the current (last accepted) point; an exception it
      raises (a `KeyboardInterrupt` too) ends the loop and reaches the caller.

    **Returns:** a `GNvproResult` whose `model` is the last accepted `y`.

    **Raises:** `ValueError` for invalid arguments or a non-finite residual at `y0`.
    """
    check_int("max_iterations", max_iterations)
    if max_evaluations is not None:
        check_number("max_evaluations", max_evaluations, strict=True)
    check_number("gtol", gtol, strict=False)
    iterations = GaussNewtonKrylovIterations(
        fn, y0, args, max_inner=max_inner, inner_rtol=inner_rtol
    )
    history, status = [], "max_iterations"
    for _ in range(max_iterations + 1):
        row = iterations.next()
        if row["iteration"] == 0 and not np.isfinite(row["objective"]):
            raise ValueError("the residual at the start is not finite; check the data.")
        if row["accepted"] and on_accept is not None:
            row.update(on_accept(iterations.y, iterations.aux) or {})
        elif history and on_accept is not None:
            row.update({k: history[-1][k] for k in history[-1] if k.startswith("val_")})
        history.append(row)
        if callback is not None:
            callback(row, iterations.y, iterations.aux)
        reason = iterations.stop_reason(row, gtol=gtol, max_evaluations=max_evaluations)
        if reason is not None:
            status = reason
            break
    counts = dict(iterations.counts, total=sum(iterations.counts.values()))
    return GNvproResult(
        model=iterations.y,
        history=history,
        status=status,
        iterations=len(history) - 1,
        accepted=iterations.accepted,
        evaluations=counts,
        compile_time=iterations.compile_time,
        num_traces=iterations.traces,
        wall_time=iterations.wall_time,
        aux=iterations.aux,
    )


def reduced_problem(model: Surrogate, x, y, *, ridge: float, tikhonov: float, penalise_bias=True):
    """`(objective, theta, args)`: the `VarProObjective` of `model` on the training data
    `(x, y)`, the start $\\theta$ (`split_readout`) and the residual function's arguments
    (the data in the model's precision)."""
    dtype = model.readout.weight.dtype
    theta, rest = split_readout(model)
    objective = VarProObjective(rest, float(ridge), float(tikhonov), penalise_bias)
    return objective, theta, (jnp.asarray(x, dtype), jnp.asarray(y, dtype))


def _check_data(name: str, data, model: Surrogate):
    if not (isinstance(data, tuple) and len(data) == 2):
        raise TypeError(f"`{name}` must be a tuple (x, y) of arrays.")
    x, y = np.asarray(data[0]), np.asarray(data[1])
    if x.ndim != 2 or x.shape[1] != model.in_size or y.ndim != 2 or y.shape[1] != model.out_size:
        raise ValueError(
            f"`{name}` must be (x, y) with shapes (n, {model.in_size}) and (n, "
            f"{model.out_size}), got {x.shape} and {y.shape}."
        )
    if x.shape[0] != y.shape[0] or x.shape[0] < 2:
        raise ValueError(
            f"`{name}`: x and y need the same number (>= 2) of rows, got "
            f"{x.shape[0]} and {y.shape[0]}."
        )
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        raise ValueError(f"`{name}` contains NaN or infinite values; clean the data.")
    return x, y


def _check_dynamics(model: Surrogate) -> None:
    dynamics = model.dynamics
    if isinstance(dynamics, NeuralODE) and not isinstance(
        as_adjoint(dynamics.paradigm), diffrax.DirectAdjoint
    ):
        raise TypeError(
            "`model`: GNvpro needs Jacobian-vector products (forward mode) through the "
            "dynamics, which this NeuralODE's adjoint does not provide; use a ResNet or "
            "HamiltonianNet, or NeuralODE(..., paradigm=diffrax.DirectAdjoint())."
        )


def fit_gnvpro(
    model: Surrogate,
    train: tuple[Float[np.ndarray, "n in"], Float[np.ndarray, "n out"]],
    *,
    val: tuple[Float[np.ndarray, "m in"], Float[np.ndarray, "m out"]] | None = None,
    ridge: float = 1e-3,
    tikhonov: float = 1e-5,
    penalise_bias: bool = True,
    max_iterations: int = 100,
    max_inner: int = 20,
    inner_rtol: float = 1e-2,
    max_evaluations: float | None = None,
    gtol: float = 0.0,
    callback: Callable | None = None,
) -> GNvproResult:
    """Trains a `Surrogate` by GNvpro: the readout is eliminated by a ridge solve inside the
    objective (variable projection, see `VarProObjective`), and the reduced objective
    $\\phi(\\theta) = \\frac{1}{2n}\\sum_i \\|W^*[z_T(y_i); 1] - c_i\\|^2
    + \\frac{\\beta}{2}\\|W^*\\|^2 + \\frac{\\alpha}{2}\\|\\theta\\|^2$ of the opening and
    dynamics parameters $\\theta$ is minimised by `GaussNewtonKrylov` (trust region, Steihaug
    CG, matrix-free) on the full training set. This is the study's scaling: the misfit is a
    mean over samples of half the squared error summed over outputs, so $\\beta$ and
    $\\alpha$ weigh against a per-sample misfit.

    Computes in the model's precision (float32 unless it was built in float64, which needs
    x64 enabled by the caller). Work is counted in passes over the $n$ training samples:
    a forward pass, a Jacobian-vector product and a vector-Jacobian product count one pass
    each (see `gauss_newton_krylov`); one epoch of minibatch Adam is two (a forward and a
    backward pass of every sample).

    **Arguments:**

    - `model`: the initial `Surrogate`; its readout is ignored (replaced by $W^*$). The
      dynamics need forward-mode derivatives: a `ResNet`, `HamiltonianNet`, or a
      `NeuralODE` with `paradigm=diffrax.DirectAdjoint()`.
    - `train`: `(x, y)` arrays (normalised); `val`: optional `(x, y)` whose relative errors
      are recorded after every accepted step (not counted as work).
    - `ridge`: $\\beta > 0$, the readout's Tikhonov weight (study: 1e-3); `penalise_bias`:
      whether it applies to the readout bias too (study: yes; `False` gives `ridge_readout`'s
      convention with ridge $n\\beta$).
    - `tikhonov`: $\\alpha \\ge 0$ on $\\theta$ (study: 1e-5).
    - `max_iterations`: outer (trust-region) iterations; `max_inner`: CG iterations per
      accepted step; `inner_rtol`: CG's relative residual tolerance.
    - `max_evaluations`: a budget of passes (`None`: only `max_iterations`).
    - `gtol`: stop when the reduced gradient's norm is at most this.
    - `callback`: called as `callback(row, model)` with each history row once it is
      recorded, `model` the current `Surrogate` (last accepted $\\theta$ and its $W^*$); an
      exception it raises (a `KeyboardInterrupt` too) stops training and reaches the caller.

    **Returns:** a `GNvproResult` with the trained `Surrogate` (last accepted $\\theta$ and its
    $W^*(\\theta)$) and the history.

    **Raises:** `ValueError` or `TypeError` for invalid arguments (named in the message), a
    `TypeError` for dynamics without forward-mode derivatives, and `ValueError` when the
    start's objective is not finite.
    """
    if not isinstance(model, Surrogate):
        raise TypeError(f"`model` must be a Surrogate, got {type(model).__name__}.")
    _check_dynamics(model)
    check_number("ridge", ridge, strict=True)
    check_number("tikhonov", tikhonov, strict=False)
    if not isinstance(penalise_bias, bool):
        raise TypeError(f"`penalise_bias` must be True or False, got {penalise_bias!r}.")
    check_int("max_iterations", max_iterations)
    check_int("max_inner", max_inner)
    x, y = _check_data("train", train, model)
    if val is not None:
        xv, yv = _check_data("val", val, model)
    objective, theta, args = reduced_problem(
        model, x, y, ridge=ridge, tikhonov=tikhonov, penalise_bias=penalise_bias
    )

    def validate(theta, readout):
        predictions = predict_in_chunks(objective.model(theta, readout), xv)
        return error_metrics(predictions, yv, "val_")

    result = gauss_newton_krylov(
        objective.residual,
        theta,
        args,
        max_iterations=max_iterations,
        max_inner=max_inner,
        inner_rtol=inner_rtol,
        max_evaluations=max_evaluations,
        gtol=gtol,
        on_accept=None if val is None else validate,
        callback=None
        if callback is None
        else lambda row, theta, aux: callback(row, objective.model(theta, aux)),
    )
    result.model = objective.model(result.model, cast(tuple, result.aux))
    return result


fit_gnvpro.__doc__ = f"{fit_gnvpro.__doc__}\n{_REFERENCES}"
