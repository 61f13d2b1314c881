"""The training loop: minibatch optimisation with evaluation, early stopping, divergence and
solver-failure handling, and atomic checkpoints that resume exactly."""

import dataclasses
import math
import pathlib
import time

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import Array, Float, PRNGKeyArray

from .._counting import EvaluationCounter
from .._models import NeuralODE
from .._surrogate import Surrogate
from ._checkpoint import load_checkpoint, save_checkpoint
from ._losses import AbstractLoss, MSELoss
from ._metrics import error_metrics, forward, predict_in_chunks, ridge_warm_start
from ._progress import progress_bar

CHECKPOINT = "checkpoint.eqx"


@dataclasses.dataclass
class FitResult:
    """What `fit` returns.

    **Fields:**

    - `model`: the trained `Surrogate` (best validation parameters when validation data were
      given, else the last good ones).
    - `history`: one dict per evaluation: `step`, `epoch`, `train_loss` (mean batch loss since
      the last evaluation), `val_loss`, `val_global`, `val_per_sample`, `forward_evaluations`,
      `backward_evaluations` (per solve, measured on one batch), `solver_failures`, `wall_time`
      (seconds of training, compilation excluded).
    - `status`: `"completed"`, `"early_stopped"`, `"diverged"` or `"interrupted"`.
    - `message`: a sentence about how training ended.
    - `steps`: optimisation steps done; `best_step`: step of the returned parameters.
    - `solver_failures`: samples whose solve failed (their batches were skipped);
      `failed_batches`: the number of such batches.
    - `compile_time`: seconds of the first step (compilation included).
    - `num_traces`: how often the training step was traced (1 means no recompilation).
    """

    model: Surrogate
    history: list
    status: str
    message: str
    steps: int
    best_step: int
    solver_failures: int
    failed_batches: int
    compile_time: float
    num_traces: int


def _no_throw(model: Surrogate) -> Surrogate:
    """The model with `throw=False` solves, so failures come back as data."""
    dynamics = model.dynamics
    if isinstance(dynamics, NeuralODE) and dynamics.throw:
        return eqx.tree_at(lambda m: m.dynamics, model, dataclasses.replace(dynamics, throw=False))
    return model


def _restore_throw(trained: Surrogate, original: Surrogate) -> Surrogate:
    if isinstance(original.dynamics, NeuralODE) and original.dynamics.throw:
        dynamics = dataclasses.replace(trained.dynamics, throw=True)
        return eqx.tree_at(lambda m: m.dynamics, trained, dynamics)
    return trained


def epoch_order(key: PRNGKeyArray, epoch: int, num_samples: int) -> np.ndarray:
    """The sample order of `epoch`: a pure function of `(key, epoch)`, so a resumed run replays
    the same minibatches."""
    return np.asarray(jax.random.permutation(jax.random.fold_in(key, epoch), num_samples))


def _select(good, new, old):
    return jax.tree_util.tree_map(lambda a, b: jnp.where(good, a, b), new, old)


def _all_finite(tree) -> Array:
    leaves = jax.tree_util.tree_leaves(eqx.filter(tree, eqx.is_inexact_array))
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(leaf)) for leaf in leaves]))


def _check_arrays(name: str, data, in_size: int, out_size: int):
    if not (isinstance(data, tuple) and len(data) == 2):
        raise TypeError(f"`{name}` must be a tuple (x, y) of arrays.")
    x, y = np.asarray(data[0]), np.asarray(data[1])
    if x.ndim != 2 or x.shape[1] != in_size or y.ndim != 2 or y.shape[1] != out_size:
        raise ValueError(
            f"`{name}` must be (x, y) with shapes (n, {in_size}) and (n, {out_size}), "
            f"got {x.shape} and {y.shape}."
        )
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"`{name}`: x has {x.shape[0]} rows but y has {y.shape[0]}.")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        raise ValueError(f"`{name}` contains NaN or infinite values; clean the data.")
    return x, y


def fit(
    model: Surrogate,
    train: tuple[Float[np.ndarray, "n in"], Float[np.ndarray, "n out"]],
    optimiser: optax.GradientTransformation,
    *,
    key: PRNGKeyArray,
    val: tuple[Float[np.ndarray, "m in"], Float[np.ndarray, "m out"]] | None = None,
    epochs: int | None = None,
    steps: int | None = None,
    batch_size: int = 32,
    loss: AbstractLoss | None = None,
    regularisers: tuple = (),
    clip_norm: float | None = None,
    patience: int | None = None,
    eval_every: int | None = None,
    ridge: float | None = None,
    checkpoint_dir=None,
    resume: bool = False,
    count_evaluations: bool = True,
    count_every: int = 10,
    progress: bool = False,
    callback=None,
) -> FitResult:
    """Trains a `Surrogate` on `(x, y)` arrays (already normalised) by minibatch optimisation.

    **Arguments:**

    - `model`: the initial `Surrogate`.
    - `train`, `val`: `(x, y)` arrays; `val` (optional) drives early stopping and the choice
      of the returned parameters.
    - `optimiser`: any Optax optimiser (schedules included).
    - `key`: seeds the minibatch order; epoch $e$ uses `fold_in(key, e)`.
    - `epochs` or `steps`: training length (exactly one of them). The last partial batch of
      an epoch is dropped, so every step has one shape and the step compiles once.
    - `batch_size`: samples per step.
    - `loss`: an `AbstractLoss` (default `MSELoss()`); `regularisers`: `AbstractRegulariser`s added to it.
    - `clip_norm`: clip gradients to this global norm first (`None`: no clipping).
    - `patience`: stop after this many evaluations without a better validation error.
    - `eval_every`: steps between evaluations (default: one epoch).
    - `ridge`: if given, first replace the readout by the ridge solution on the training data.
    - `checkpoint_dir`: write `checkpoint.eqx` there (atomically) at every evaluation;
      `resume`: continue from that checkpoint when present.
    - `count_evaluations`: measure field evaluations per solve on one batch (forward and
      backward, through host callbacks) at the first, every `count_every`-th and the last
      evaluation; other history rows leave them out (counting costs about a training epoch).
    - `progress`: show a progress bar (tqdm if installed).
    - `callback`: called with each history row after its checkpoint is written; an exception
      it raises stops training (the checkpoint stays).

    **Returns:** a `FitResult`.

    **Raises:** `ValueError` for inconsistent arguments (named in the message).
    """
    if not isinstance(model, Surrogate):
        raise TypeError(f"`model` must be a jaxode.Surrogate, got {type(model).__name__}.")
    x, y = _check_arrays("train", train, model.in_size, model.out_size)
    if val is not None:
        xv, yv = _check_arrays("val", val, model.in_size, model.out_size)
    if (epochs is None) == (steps is None):
        raise ValueError("pass exactly one of `epochs` and `steps`.")
    for name, value in (
        ("epochs", epochs),
        ("steps", steps),
        ("batch_size", batch_size),
        ("patience", patience),
        ("eval_every", eval_every),
    ):
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int) or value < 1
        ):
            raise ValueError(f"`{name}` must be an integer >= 1, got {value!r}.")
    if batch_size > len(x):
        raise ValueError(
            f"`batch_size`={batch_size} exceeds the {len(x)} training samples; lower `batch_size`."
        )
    if resume and checkpoint_dir is None:
        raise ValueError("`resume=True` needs `checkpoint_dir`.")
    per_epoch = len(x) // batch_size
    total = steps if steps is not None else epochs * per_epoch
    eval_every = eval_every or per_epoch
    if clip_norm is not None:
        optimiser = optax.chain(optax.clip_by_global_norm(clip_norm), optimiser)

    loss = MSELoss() if loss is None else loss
    original = model
    model = _no_throw(model)
    dtype = model.readout.weight.dtype
    path = None if checkpoint_dir is None else pathlib.Path(checkpoint_dir) / CHECKPOINT
    resuming = resume and path.is_file()
    if ridge is not None and not resuming:
        model = ridge_warm_start(model, x, y, ridge)
    params, static = eqx.partition(model, eqx.is_inexact_array)
    opt_state = optimiser.init(params)
    xs, ys = jnp.asarray(x, dtype), jnp.asarray(y, dtype)
    traces = [0]

    def objective(p, xb, yb):
        m = eqx.combine(p, static)
        predictions, succeeded = forward(m, xb)
        misfit = loss(predictions, yb)
        penalty = sum((r(m) for r in regularisers), jnp.zeros((), misfit.dtype))
        return misfit + penalty, (misfit, jnp.sum(~succeeded))

    @eqx.filter_jit
    def train_step(params, opt_state, xs, ys, index):
        traces[0] += 1
        (_, (misfit, failed)), grads = jax.value_and_grad(objective, has_aux=True)(
            params, xs[index], ys[index]
        )
        updates, new_state = optimiser.update(grads, opt_state, params)
        new_params = eqx.apply_updates(params, updates)
        finite = jnp.isfinite(misfit) & _all_finite(new_params)
        good = finite & (failed == 0)
        return (
            _select(good, new_params, params),
            _select(good, new_state, opt_state),
            misfit,
            failed,
            finite,
        )

    state = dict(
        step=0,
        best_step=0,
        best_val=math.inf,
        bad=0,
        failures=0,
        failed_batches=0,
        history=[],
        wall=0.0,
        compile_time=0.0,
    )
    best, last_good = params, params
    if resuming:
        meta, (params, opt_state, best, last_good) = load_checkpoint(
            path, (params, opt_state, best, last_good)
        )
        state.update(meta)

    counter = (
        EvaluationCounter(lambda m, xb, yb: loss(m.predict(xb), yb)) if count_evaluations else None
    )
    bar = progress_bar(total, state["step"], progress)
    status, message, running, count, first = "completed", "", 0.0, 0, True
    start = time.perf_counter() - state["wall"]
    order_epoch, order = -1, None
    try:
        while state["step"] < total:
            s = state["step"]
            epoch, offset = divmod(s, per_epoch)
            if epoch != order_epoch:
                order_epoch, order = epoch, epoch_order(key, epoch, len(x))
            index = jnp.asarray(order[offset * batch_size : (offset + 1) * batch_size])
            tic = time.perf_counter()
            params, opt_state, misfit, failed, finite = train_step(params, opt_state, xs, ys, index)
            misfit, failed, finite = float(misfit), int(failed), bool(finite)
            if first:
                first = False
                state["compile_time"] = time.perf_counter() - tic
                start += state["compile_time"]
            state["step"] = s + 1
            bar.update(1)
            if failed:
                state["failures"] += failed
                state["failed_batches"] += 1
            elif not finite:
                status = "diverged"
                params = last_good
                message = (
                    f"loss or parameters became NaN/inf at step {s + 1} (epoch {epoch + 1}); "
                    f"kept the last good checkpoint (step {state['history'][-1]['step'] if state['history'] else 0}); "
                    "lower the learning rate or enable gradient clipping."
                )
                break
            else:
                running, count = running + misfit, count + 1
            if state["step"] % eval_every == 0 or state["step"] == total:
                model_now = eqx.combine(params, static)
                row = {
                    "step": state["step"],
                    "epoch": state["step"] / per_epoch,
                    "train_loss": running / count if count else math.nan,
                }
                running, count = 0.0, 0
                if val is not None:
                    pv = predict_in_chunks(model_now, xv)
                    row["val_loss"] = float(loss(jnp.asarray(pv), jnp.asarray(yv)))
                    row.update(error_metrics(pv, yv, prefix="val_"))
                    value = row["val_global"] if np.isfinite(row["val_global"]) else math.inf
                    if value < state["best_val"]:
                        state.update(best_val=value, best_step=state["step"], bad=0)
                        best = params
                    else:
                        state["bad"] += 1
                else:
                    best, state["best_step"] = params, state["step"]
                evaluation = len(state["history"])
                stopping = patience is not None and state["bad"] >= patience
                last = state["step"] == total or stopping
                if counter is not None and (evaluation % count_every == 0 or last):
                    counts = counter(model_now, xs[:batch_size], ys[:batch_size])
                    row["forward_evaluations"] = counts.forward_evaluations
                    row["backward_evaluations"] = counts.backward_evaluations
                row["solver_failures"] = state["failures"]
                state["wall"] = time.perf_counter() - start
                row["wall_time"] = state["wall"]
                state["history"].append(row)
                last_good = params
                if path is not None:
                    save_checkpoint(path, state, (params, opt_state, best, last_good))
                bar.set_postfix_str(
                    f"loss {row['train_loss']:.3g}"
                    + (f" val {row['val_global']:.4f}" if val is not None else "")
                )
                if callback is not None:
                    callback(row)
                if stopping:
                    status = "early_stopped"
                    message = f"no validation improvement in {patience} evaluations; stopped at step {state['step']}."
                    break
    except KeyboardInterrupt:
        status, message = (
            "interrupted",
            f"interrupted at step {state['step']}; resume from the checkpoint.",
        )
    finally:
        bar.close()
    if not message:
        message = f"finished {state['step']} steps."
    if state["failures"]:
        message += (
            f" {state['failures']} solver failures in {state['failed_batches']} batches "
            "were skipped; loosen tolerances or raise max_steps."
        )
    chosen = best if status != "diverged" or val is not None else last_good
    trained = _restore_throw(eqx.combine(chosen, static), original)
    return FitResult(
        model=trained,
        history=state["history"],
        status=status,
        message=message,
        steps=state["step"],
        best_step=state["best_step"],
        solver_failures=state["failures"],
        failed_batches=state["failed_batches"],
        compile_time=state["compile_time"],
        num_traces=traces[0],
    )
