"""Training from a `RunConfig` into run directories, and loading a trained model back."""

import contextlib
import dataclasses
from typing import Any, cast

import equinox as eqx
import jax
import numpy as np
from jaxtyping import ArrayLike, Float

from .._datasets import Affine, Dataset, TrajectoryData
from .._files import load_checkpoint, save_checkpoint
from .._provenance import PROVENANCE_FIELDS, provenance
from .._surrogate import Surrogate, count_dynamics_parameters, count_parameters
from .._trajectories import TrajectoryModel
from ._build import build_cohort_trainers, build_model, build_settings, load_data
from ._config import RECORDING_ONLY, RunConfig
from ._domain import DomainCheck, TrainingDomain
from ._fit import FitResult, fit
from ._horizons import rescale, unrescale
from ._members import read_best
from ._memory import check_memory
from ._metrics import error_metrics, predict_in_chunks, predictions_and_status
from ._padding import pad, unpad
from ._plots import write_loss_plot
from ._rundir import (
    CHECKPOINT,
    METRICS,
    MODEL,
    PLOT,
    CohortLayout,
    RunDir,
    check_cohort,
    cohort_layout,
)
from ._settings import Checkpointing
from ._status import Status


class TrainedSurrogate(eqx.Module):
    """A trained `Surrogate` with the normalisations of its data: maps physical inputs to
    physical outputs.

    **Fields:** `model` (works in normalised units), `x_norm`, `y_norm` (`Affine`, static),
    `config` (the `RunConfig`, static), `domain` (the `TrainingDomain`, static: the box of the
    training inputs; `None` for a time series and for a run saved before jaxode stored it).
    """

    model: Surrogate | TrajectoryModel
    x_norm: Affine = eqx.field(static=True)
    y_norm: Affine = eqx.field(static=True)
    config: RunConfig = eqx.field(static=True)
    domain: TrainingDomain | None = eqx.field(static=True, default=None)

    def _inputs(self, xs) -> np.ndarray:
        xs = np.asarray(xs, dtype=np.float64)
        if xs.ndim == 1:
            xs = xs[None]
        if xs.ndim != 2 or xs.shape[1] != self.model.in_size:
            raise ValueError(
                f"inputs must have shape (batch, {self.model.in_size}), got {xs.shape}."
            )
        if not np.all(np.isfinite(xs)):
            raise ValueError("inputs contain NaN or infinite values; clean them first.")
        return xs

    def predict(
        self, xs: Float[np.ndarray, "batch in_size"]
    ) -> Float[np.ndarray, "batch out_size"]:
        """Physical outputs (float64 NumPy) for physical inputs `xs`.

        A prediction is made wherever it is asked for, without a word: a model extrapolates
        outside the box its training inputs spanned, often badly. `outside_domain(xs)` says
        which rows lie outside and by how much (`jaxode predict` warns of them).

        **Raises:** `ValueError` if `xs` is not `(batch, in_size)` or holds NaN/inf.
        """
        xs = self._inputs(xs)
        return self.y_norm.invert(predict_in_chunks(self.model, self.x_norm.apply(xs)))

    def outside_domain(self, xs: Float[np.ndarray, "batch in_size"]) -> DomainCheck:
        """Which rows of the physical inputs `xs` lie outside the training domain, and how far
        outside each column, in units of its training range (see `DomainCheck`).

        **Raises:** `ValueError` if `xs` is not `(batch, in_size)` or holds NaN/inf, or if
        the run stores no training domain (`domain` is `None`: a time series, which has no box
        of inputs, or a run trained before jaxode stored one: retrain it to get the check).
        """
        xs = self._inputs(xs)
        if self.domain is not None:
            return self.domain.check(xs)
        if isinstance(self.model, TrajectoryModel):
            raise ValueError(
                "a time-series run has no training domain (its inputs are states, not a box of "
                "parameters); there is nothing to check its inputs against."
            )
        raise ValueError(
            "this run stores no training domain (it was trained before jaxode stored one); "
            "retrain it to check inputs against the range of its training data."
        )

    def __call__(self, x: Float[ArrayLike, " in_size"]) -> Float[np.ndarray, " out_size"]:
        return self.predict(np.asarray(x)[None])[0]


def evaluate_model(model: Surrogate | TrajectoryModel, data: Dataset | TrajectoryData) -> dict:
    """Global and per-sample relative errors on every split, normalised and physical (for a
    time series the two agree, and a validation or test region is one sample). A split with
    failed solves (a model that blows up far out) gets infinite errors and
    `{split}_failed_solves`, the number of its samples whose solve failed."""
    out = {}
    for split in ("train", "val", "test"):
        x, y = data.arrays(split, normalised=True)
        if len(x) == 0:
            continue
        # A trajectory's validation or test region is one sample: predicted alone.
        chunk = 1 if isinstance(data, TrajectoryData) and split != "train" else 256
        p, succeeded = predictions_and_status(model.for_outputs(y.shape[1]), x, chunk)
        if not np.all(succeeded):
            out[f"{split}_failed_solves"] = int(np.sum(~succeeded))
            p = np.where(succeeded[:, None], p, np.inf)
        out.update(error_metrics(p, y, prefix=f"{split}_"))
        if isinstance(data, TrajectoryData):
            p_physical, y_physical = p, y
        else:
            p_physical, y_physical = data.y_norm.invert(p), data.y_norm.invert(y)
        out.update(error_metrics(p_physical, y_physical, prefix=f"{split}_physical_"))
    return out


def _initial(config: RunConfig, data: Dataset | TrajectoryData):
    """`(model, minibatch key)` of `config.train.seed`."""
    model_key, batch_key = jax.random.split(jax.random.PRNGKey(config.train.seed))
    dt = data.dt if isinstance(data, TrajectoryData) else None
    return build_model(config, data.in_size, data.out_size, key=model_key, dt=dt), batch_key


def _finish(config: RunConfig, data, run_dir: RunDir, result: FitResult, evaluated=None):
    """Writes what a stopped run leaves (`model.eqx`, `metrics.json`, `loss.png`) and returns
    `(trained, result, metrics)` as `train` does; the errors are those of `evaluated` (the
    same model in a padded cohort's bases) where given."""
    domain = TrainingDomain.of(data)
    trained = TrainedSurrogate(result.model, data.x_norm, data.y_norm, config, domain)
    if result.status == Status.INTERRUPTED:
        return trained, result, {}
    metrics: dict[str, Any] = dict(
        status=str(result.status), message=result.message, steps=result.steps
    )
    metrics.update({name: provenance()[name] for name in PROVENANCE_FIELDS})
    if result.checkpoint_step is None:
        run_dir.write_metrics(metrics)
        return trained, result, metrics
    save_checkpoint(run_dir / MODEL, {"best_step": result.best_step}, result.model)
    metrics.update(evaluate_model(result.model if evaluated is None else evaluated, data))
    last = result.history[-1] if result.history else {}
    counted = [row for row in result.history if "forward_evaluations" in row]
    counts = counted[-1] if counted else {}
    metrics.update(
        best_step=result.best_step,
        solver_failures=result.solver_failures,
        compile_time=result.compile_time,
        training_started=result.training_started,
        train_time=last.get("wall_time", 0.0),
        parameters=count_parameters(result.model),
        dynamics_parameters=count_dynamics_parameters(result.model),
        forward_evaluations=counts.get("forward_evaluations"),
        backward_evaluations=counts.get("backward_evaluations"),
    )
    plotted = write_loss_plot(result.history, result.best_step, config.train.loss, run_dir / PLOT)
    metrics["plot"] = plotted
    run_dir.write_metrics(metrics)
    return trained, result, metrics


def train(
    config: RunConfig | None, run_dir, *, resume: bool = False, progress: bool = True
) -> tuple[TrainedSurrogate, FitResult, dict]:
    """Trains the surrogate of `config` and fills `run_dir` with `config.toml`,
    `normalisation.json`, `checkpoint.eqx` and `history.csv` (at every evaluation), and at
    the end `model.eqx` (the returned parameters), `metrics.json` and `loss.png`.

    **Arguments:**

    - `config`: a `RunConfig` (`None` when resuming: the stored one is used).
    - `run_dir`: output directory: new, or empty (created).
    - `resume`: continue from `run_dir`'s checkpoint with the configuration stored there.
    - `progress`: show a progress bar.

    **Returns:** `(trained, fit_result, metrics)`. `metrics` is empty for an interrupted run;
    for a run that stopped (diverged or failing solves) before its first evaluation it holds
    only `status`, `message` and `steps`, and no `model.eqx` is written.

    **Raises:** `FileExistsError` when `run_dir` already holds a run (and `resume` is off) or
    holds other files; `FileNotFoundError` when resuming a directory without a run;
    `ValueError` when resuming with a configuration other than the stored one, or for
    settings the data cannot satisfy. A failed start leaves no run files behind.
    """
    [outcome] = train_cohort(
        None if config is None else [config], [run_dir], resume=resume, progress=progress
    )
    return outcome


def _configs(configs, run_dirs: list[RunDir], resume: bool) -> list[RunConfig]:
    """The members' configurations: the stored ones when resuming (equal to `configs` when
    given), else `configs`, checked, with run directories that hold nothing yet."""
    if resume:
        given = [None] * len(run_dirs) if configs is None else list(configs)
        configs = [d.stored_config(c) for c, d in zip(given, run_dirs)]
    else:
        for config in configs:
            if not isinstance(config, RunConfig):
                raise TypeError(f"`config` must be a RunConfig, got {type(config).__name__}.")
        if len(configs) != len(run_dirs):
            raise ValueError(f"{len(configs)} configurations for {len(run_dirs)} run directories.")
        for run_dir in run_dirs:
            run_dir.check_new()
    check_cohort(configs)
    return configs


def train_cohort(
    configs: list[RunConfig] | None,
    run_dirs,
    *,
    resume: bool = False,
    progress: bool = True,
    layout: CohortLayout | None = None,
    stop_at: int | None = None,
) -> list[tuple[TrainedSurrogate, FitResult, dict]]:
    """Trains the runs of `configs`, which differ only in `COHORT_FIELDS` (seed, learning
    rate, regulariser weights, initial scale), as one cohort (one compiled program, see
    `fit`; GNvpro, which trains members one after another, one per Tikhonov weight): each of
    `run_dirs` becomes the run directory that `train` would write for its configuration, and
    resumes as part of the cohort or alone.

    **Arguments:** as for `train`, with one configuration and one directory per member
    (`configs=None` when resuming), and:

    - `layout`: how the cohort lays out its members' differences (`CohortLayout`: the degree
      polynomial bases are padded to, learning rates as member data); default:
      `cohort_layout(configs)`. Members that resume from a larger cohort pass its layout.
    - `stop_at`: stop every member at the first evaluation at or after this step, as an
      interrupt does (status `"interrupted"`, checkpoints kept, no metrics): a rung of
      successive halving, from which `resume=True` goes on.

    **Returns:** one `(trained, fit_result, metrics)` per member.

    **Raises:** as `train`, and `ValueError` when the configurations differ in more than
    `COHORT_FIELDS`.
    """
    run_dirs = [RunDir(d) for d in run_dirs]
    created = [not d.path.exists() for d in run_dirs]
    locked = []
    with contextlib.ExitStack() as locks:
        try:
            for run_dir in run_dirs:
                locks.enter_context(run_dir.lock())
                locked.append(run_dir)
            return _train_locked(configs, run_dirs, created, resume, progress, layout, stop_at)
        except BaseException:
            # A directory the lock created for a start that failed goes again.
            for run_dir, made in zip(locked, created):
                run_dir.remove_if_empty(made)
            raise


def _identity(config: RunConfig, layout: CohortLayout | None = None) -> dict:
    """What a run's checkpoints record of its configuration (see `Checkpointing`): all but
    what changes only what the run records; for a member of a cohort of several bases, the
    degree its checkpoints are padded to (`pad`), and of several horizons, that they are
    rescaled (`rescale`): only such a cohort can resume them."""
    identity = {
        f"{section}.{name}": value
        for section, values in config.to_dict().items()
        for name, value in values.items()
        if f"{section}.{name}" not in RECORDING_ONLY
    }
    if layout is not None and layout.pad_to is not None:
        identity["padded_degree"] = layout.pad_to
    if layout is not None and layout.horizons:
        identity["horizon_as_data"] = True
    return identity


def _train_locked(
    configs,
    run_dirs: list[RunDir],
    created: list[bool],
    resume: bool,
    progress: bool,
    layout: CohortLayout | None = None,
    stop_at: int | None = None,
) -> list[tuple[TrainedSurrogate, FitResult, dict]]:
    configs = _configs(configs, run_dirs, resume)
    layout = cohort_layout(configs) if layout is None else layout
    data = load_data(configs[0])
    check_memory(configs, data)
    groups = build_cohort_trainers(configs, data, layout.member_rates)
    settings = build_settings(configs[0], data)
    if stop_at is not None:
        settings["evaluation"] = dataclasses.replace(settings["evaluation"], pause_at=stop_at)
    initial = [_initial(config, data) for config in configs]
    degree = layout.pad_to
    own = [model for model, _ in initial]
    if degree is not None:
        initial = [(pad(model, degree), key) for model, key in initial]
    unscaled = [model for model, _ in initial]
    if layout.horizons:
        initial = [(rescale(m, c.model.t1), key) for (m, key), c in zip(initial, configs)]
    val = data.arrays("val")
    results: list = [None] * len(configs)
    # Evaluated as trained: padded members share one structure, so one prediction program
    # serves them all (their own bases would compile one per basis and degree).
    padded: list = [None] * len(configs)
    try:
        for config, run_dir in zip(configs, run_dirs):
            if resume:
                run_dir.record_resume()
            else:
                run_dir.start(config, data)
        for members, trainer in groups:
            common = dict(
                val=val if len(val[0]) else None,
                checkpointing=Checkpointing(
                    [run_dirs[k].path for k in members],
                    resume=resume,
                    identity=[_identity(configs[k], layout) for k in members],
                ),
                progress=progress,
                **settings,
            )
            train_data = data.arrays("train")
            if len(configs) == 1:  # a cohort of one on one device (no vmap): `train`'s run
                ((model, key),) = initial
                found = [fit(model, train_data, trainer, key=key, **common)]
            else:
                models, keys = [initial[k][0] for k in members], [initial[k][1] for k in members]
                found = fit(models, train_data, trainer, keys=keys, **common)
            for k, result in zip(members, found):
                padded[k] = result.model
                model = result.model
                if layout.horizons:
                    model = unrescale(model, unscaled[k])
                if degree is not None:
                    model = unpad(model, own[k])
                results[k] = dataclasses.replace(result, model=model)
    except BaseException:
        if not resume:
            for run_dir, made in zip(run_dirs, created):
                if not (run_dir / CHECKPOINT).exists():
                    run_dir.remove_start(made)
        raise
    return [
        _finish(config, data, run_dir, result, evaluated)
        for config, run_dir, result, evaluated in zip(configs, run_dirs, results, padded)
    ]


def load_run(run_dir) -> TrainedSurrogate:
    """The trained model of a run directory, ready for `predict` in physical units: its
    `model.eqx`, or, for a run that has not finished (interrupted), the best parameters of its
    last checkpoint. Its `domain` is the stored training domain (`None` for a time series and
    for a run trained before jaxode stored it; `outside_domain` then refuses).

    **Raises:** `FileNotFoundError` if `run_dir` holds no run or no trained parameters yet;
    `ValueError` if its files do not match its configuration.
    """
    run_dir = RunDir(run_dir)
    config = run_dir.config()
    x_norm, y_norm = run_dir.normalisation()
    skeleton = build_model(
        config, len(x_norm.shift), len(y_norm.shift), key=jax.random.PRNGKey(0), warn_window=False
    )
    if (run_dir / MODEL).is_file():
        model = cast(Surrogate | TrajectoryModel, load_checkpoint(run_dir / MODEL, skeleton)[1])
    elif (run_dir / CHECKPOINT).is_file():
        params, static = eqx.partition(skeleton, eqx.is_inexact_array)
        _, best = read_best(run_dir / CHECKPOINT, params)
        model = eqx.combine(best, static)
    else:
        raise FileNotFoundError(
            f"{str(run_dir.path)!r} has no trained parameters: training stopped before its "
            f"first checkpoint (see {METRICS} if present); start it again."
        )
    domain = run_dir.domain()
    if domain is not None and domain.size != len(x_norm.shift):
        raise ValueError(
            f"the training domain of {str(run_dir.path)!r} has {domain.size} columns but the "
            f"model takes {len(x_norm.shift)} inputs; restore normalisation.json from a copy, or "
            "delete its 'domain' entry to predict without the check."
        )
    model = cast(Surrogate | TrajectoryModel, model)
    return TrainedSurrogate(model, x_norm, y_norm, config, domain)
