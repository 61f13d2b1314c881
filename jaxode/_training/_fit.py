"""The training loop: minibatch optimisation with evaluation, early stopping, divergence and
solver-failure handling, and atomic checkpoints that resume exactly."""

import dataclasses
import math
import pathlib
import time

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import Array, Float, PRNGKeyArray

from .._counting import EvaluationCounter
from .._models import NeuralODE
from .._surrogate import Surrogate
from ._checkpoint import load_checkpoint, save_checkpoint, write_history
from ._losses import AbstractLoss, MSELoss
from ._metrics import error_metrics, predict_in_chunks, ridge_warm_start
from ._progress import progress_bar

CHECKPOINT, HISTORY = "checkpoint.eqx", "history.csv"
SAMPLINGS = ("epochs", "replacement")
# Checkpoint trees hold (best, params, last_good, opt_state): best first, so that the best
# parameters can be read without building the optimiser (see `read_best`).
_LAYOUT = 2


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
    - `status`: `"completed"`, `"early_stopped"`, `"diverged"` (NaN/inf, or the monitored error
      grew past `divergence_factor` times its best), `"solver_failed"` (`max_failed_batches`
      consecutive batches whose solve failed) or `"interrupted"`.
    - `message`: a sentence about how training ended and, when it did not complete, what to
      change.
    - `steps`: optimisation steps done; `best_step`: step of the returned parameters.
    - `solver_failures`: samples whose solve failed (their batches were skipped);
      `failed_batches`: the number of such batches.
    - `compile_time`: seconds of the first step (compilation included).
    - `num_traces`: how often the training step was traced (1 means no recompilation).
    - `checkpoint_step`: step of the last checkpoint written (`None`: none was written); a
      resume restarts from it.
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
    checkpoint_step: int | None = None


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


def batch_order(
    key: PRNGKeyArray, step: int, num_samples: int, batch_size: int, sampling: str, cache: dict
) -> np.ndarray:
    """Row indices of the minibatch of `step`: a pure function of `(key, step)`, so a resumed
    run replays the same batches. `"epochs"`: each epoch a permutation (`epoch_order`), cut
    into consecutive batches; `"replacement"`: every batch drawn uniformly with replacement."""
    if sampling == "replacement":
        index = jax.random.randint(jax.random.fold_in(key, step), (batch_size,), 0, num_samples)
        return np.asarray(index)
    epoch, offset = divmod(step, num_samples // batch_size)
    if cache.get("epoch") != epoch:
        cache.update(epoch=epoch, order=epoch_order(key, epoch, num_samples))
    return cache["order"][offset * batch_size : (offset + 1) * batch_size]


# Why a solve failed, as a small integer the host can read: 0 is success.
_FAILURE_REASONS = (
    "",
    "the solver reached `max_steps`",
    "the step size fell below its minimum",
    "the solve failed",
)


def _failure_code(result) -> Array:
    return jnp.where(
        result == diffrax.RESULTS.successful,
        0,
        jnp.where(
            result == diffrax.RESULTS.max_steps_reached,
            1,
            jnp.where(result == diffrax.RESULTS.dt_min_reached, 2, 3),
        ),
    )


def read_best(path, params_skeleton) -> tuple[dict, object]:
    """`(meta, best parameters)` of a checkpoint written by `fit`, without the optimiser
    state (best parameters are the first tree of the file).

    **Raises:** `ValueError` for a checkpoint of another layout or model.
    """
    meta, best = load_checkpoint(path, params_skeleton)
    _check_layout(path, meta)
    return meta, best


def _check_layout(path, meta: dict) -> None:
    if meta.get("layout") != _LAYOUT:
        raise ValueError(f"{path} was written by an older version of jaxode; start a new run.")


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


def _checked_int(name: str, value, allow_none: bool = True) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"`{name}` must be an integer >= 1, got {value!r}.")


def _checkpoint_phrase(state: dict, eval_every: int) -> str:
    if state["checkpoint_step"] is None:
        return f"no checkpoint had been written yet (the first evaluation is at step {eval_every})"
    return f"kept the last good checkpoint (step {state['checkpoint_step']})"


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
    sampling: str = "epochs",
    loss: AbstractLoss | None = None,
    regularisers: tuple = (),
    clip_norm: float | None = None,
    patience: int | None = None,
    eval_every: int | None = None,
    ridge: float | None = None,
    max_failed_batches: int | None = 10,
    divergence_factor: float | None = 100.0,
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
    - `key`: seeds the minibatches (see `sampling`).
    - `epochs` or `steps`: training length (exactly one of them); an epoch is
      `len(x) // batch_size` steps.
    - `batch_size`: samples per step; every step has one shape, so the step compiles once.
    - `sampling`: `"epochs"` (default): epoch $e$ visits the samples in the order
      `permutation(fold_in(key, e))`, its last partial batch dropped; `"replacement"`: the
      batch of step $s$ is drawn uniformly with replacement with `fold_in(key, s)`.
    - `loss`: an `AbstractLoss` (default `MSELoss()`); `regularisers`: `AbstractRegulariser`s
      added to it.
    - `clip_norm`: clip gradients to this global norm first (`None`: no clipping).
    - `patience`: stop after this many evaluations without a better validation error.
    - `eval_every`: steps between evaluations (default: one epoch).
    - `ridge`: if given, first replace the readout by the ridge solution on the training data.
    - `max_failed_batches`: stop (status `"solver_failed"`) after this many consecutive
      batches whose ODE solve failed (`None`: never). A failed batch is skipped: the
      parameters stay as they were.
    - `divergence_factor`: stop (status `"diverged"`) at an evaluation whose monitored error
      (validation global relative error, or the training loss without `val`) exceeds this
      multiple of the lowest seen, the initial model's included (`None`: never).
    - `checkpoint_dir`: write `checkpoint.eqx` and `history.csv` there (atomically) at every
      evaluation; `resume`: continue from that checkpoint when present.
    - `count_evaluations`: measure field evaluations per solve on one batch (forward and
      backward, through host callbacks) at the first, every `count_every`-th and the last
      evaluation; other history rows leave them out (counting costs about a training epoch).
    - `progress`: show a progress bar (tqdm if installed).
    - `callback`: called with each history row after its checkpoint is written; an exception
      it raises stops training (the checkpoint stays).

    **Returns:** a `FitResult`. Its model holds the best validation parameters (the last
    checkpointed ones without `val`); after a divergence before the first evaluation, the
    initial parameters.

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
        ("max_failed_batches", max_failed_batches),
    ):
        _checked_int(name, value)
    if sampling not in SAMPLINGS:
        raise ValueError(f"`sampling` must be one of {SAMPLINGS}, got {sampling!r}.")
    if divergence_factor is not None and not divergence_factor > 1:
        raise ValueError(f"`divergence_factor` must be > 1 or None, got {divergence_factor!r}.")
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
    directory = None if checkpoint_dir is None else pathlib.Path(checkpoint_dir)
    path = None if directory is None else directory / CHECKPOINT
    resuming = resume and path.is_file()
    if ridge is not None and not resuming:
        model = ridge_warm_start(model, x, y, ridge)
    params, static = eqx.partition(model, eqx.is_inexact_array)
    opt_state = optimiser.init(params)
    xs, ys = jnp.asarray(x, dtype), jnp.asarray(y, dtype)
    traces = [0]

    def objective(p, xb, yb):
        m = eqx.combine(p, static)
        trajectory = m.dynamics.solve_batch(jax.vmap(m.features)(xb))
        misfit = loss(jax.vmap(m.readout)(trajectory.final), yb)
        penalty = sum((r(m) for r in regularisers), jnp.zeros((), misfit.dtype))
        failed = jnp.sum(~jnp.broadcast_to(trajectory.succeeded, (xb.shape[0],)))
        return misfit + penalty, (misfit, failed, jnp.max(_failure_code(trajectory.result)))

    @eqx.filter_jit
    def train_step(params, opt_state, xs, ys, index):
        traces[0] += 1
        (_, (misfit, failed, reason)), grads = jax.value_and_grad(objective, has_aux=True)(
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
            reason,
            finite,
        )

    state = dict(
        layout=_LAYOUT,
        step=0,
        best_step=0,
        best_val=math.inf,
        lowest=math.inf,
        bad=0,
        failures=0,
        failed_batches=0,
        consecutive_failures=0,
        history=[],
        wall=0.0,
        compile_time=0.0,
        checkpoint_step=None,
    )
    best, last_good = params, params
    if resuming:
        meta, (best, params, last_good, opt_state) = load_checkpoint(
            path, (params, params, params, opt_state)
        )
        _check_layout(path, meta)
        state.update(meta)
    elif val is not None:
        # The initial model's error is the first reference of the divergence test.
        initial = error_metrics(predict_in_chunks(eqx.combine(params, static), xv), yv)
        state["lowest"] = initial["global"] if np.isfinite(initial["global"]) else math.inf

    counter = (
        EvaluationCounter(lambda m, xb, yb: loss(m.predict(xb), yb)) if count_evaluations else None
    )
    bar = progress_bar(total, state["step"], progress, elapsed=state["wall"])
    status, message, running, count, first = "completed", "", 0.0, 0, True
    start = time.perf_counter() - state["wall"]
    orders = {}

    def failure_advice() -> str:
        return (
            "loosen the solver tolerances (rtol/atol), raise max_steps or lower the learning rate"
            + ("" if clip_norm is not None else ", or enable gradient clipping (clip_norm)")
        )

    try:
        while state["step"] < total:
            s = state["step"]
            index = jnp.asarray(batch_order(key, s, len(x), batch_size, sampling, orders))
            tic = time.perf_counter()
            params, opt_state, misfit, failed, reason, finite = train_step(
                params, opt_state, xs, ys, index
            )
            misfit, failed, reason, finite = float(misfit), int(failed), int(reason), bool(finite)
            if first:
                first = False
                state["compile_time"] = time.perf_counter() - tic
                start += state["compile_time"]
                if val is None and not resuming and math.isfinite(misfit):
                    state["lowest"] = misfit  # the initial model's loss on the first batch
            state["step"] = s + 1
            bar.update(1)
            if failed:
                state["failures"] += failed
                state["failed_batches"] += 1
                state["consecutive_failures"] += 1
                run = state["consecutive_failures"]
                if max_failed_batches is not None and run >= max_failed_batches:
                    status = "solver_failed"
                    params = last_good
                    message = (
                        f"the ODE solve failed in {run} consecutive batches (steps "
                        f"{s + 2 - run} to {s + 1}; {_FAILURE_REASONS[reason]}); stopped at "
                        f"step {s + 1} and {_checkpoint_phrase(state, eval_every)}; "
                        f"{failure_advice()}."
                    )
                    break
            elif not finite:
                status = "diverged"
                params = last_good
                advice = (
                    "lower the learning rate or enable gradient clipping (clip_norm)"
                    if clip_norm is None
                    else f"lower the learning rate (gradients are already clipped at norm {clip_norm:g})"
                )
                message = (
                    f"loss or parameters became NaN/inf at step {s + 1} (epoch "
                    f"{s // per_epoch + 1}); {_checkpoint_phrase(state, eval_every)}; {advice}."
                )
                break
            else:
                state["consecutive_failures"] = 0
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
                    monitored = row["val_global"]
                else:
                    monitored = row["train_loss"]
                monitored = monitored if np.isfinite(monitored) else math.inf
                threshold = (
                    math.inf if divergence_factor is None else divergence_factor * state["lowest"]
                )
                row["solver_failures"] = state["failures"]
                state["wall"] = time.perf_counter() - start
                row["wall_time"] = state["wall"]
                if monitored > threshold and math.isfinite(state["lowest"]):
                    status = "diverged"
                    params = last_good
                    what = "validation error" if val is not None else "training loss"
                    message = (
                        f"the {what} exploded: {monitored:.3g} at step {state['step']} is more "
                        f"than {divergence_factor:g} times its lowest value "
                        f"({state['lowest']:.3g}); stopped and "
                        f"{_checkpoint_phrase(state, eval_every)}; {failure_advice()}."
                    )
                    state["history"].append(row)
                    if directory is not None:
                        write_history(directory / HISTORY, state["history"])
                    break
                state["lowest"] = min(state["lowest"], monitored)
                if val is not None:
                    if monitored < state["best_val"]:
                        state.update(best_val=monitored, best_step=state["step"], bad=0)
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
                state["history"].append(row)
                last_good = params
                if directory is not None:
                    meta = dict(state, checkpoint_step=state["step"])
                    save_checkpoint(path, meta, (best, params, last_good, opt_state))
                    state["checkpoint_step"] = state["step"]
                    write_history(directory / HISTORY, state["history"])
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
        status = "interrupted"
        if directory is None:
            restart = "nothing to resume from (no checkpoint_dir)"
        elif state["checkpoint_step"] is None:
            restart = "no checkpoint was written yet, so a resume starts from step 0"
        else:
            restart = f"a resume restarts from the checkpoint at step {state['checkpoint_step']}"
        message = f"interrupted at step {state['step']}; {restart}."
    finally:
        bar.close()
    if not message:
        message = f"finished {state['step']} steps."
    if state["failures"] and status != "solver_failed":
        message += (
            f" {state['failures']} solver failures in {state['failed_batches']} batches "
            "were skipped; loosen tolerances or raise max_steps."
        )
    chosen = best if val is not None else last_good
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
        checkpoint_step=state["checkpoint_step"],
    )
