"""Run directories: train from a `RunConfig`, write everything, load a trained model back."""

import io
import json
import math
import pathlib

import equinox as eqx
import jax
import numpy as np
from jaxtyping import ArrayLike, Float

from .._datasets import Affine, Dataset, TrajectoryData, load_dataset
from .._surrogate import Surrogate, count_dynamics_parameters, count_parameters
from .._trajectories import TrajectoryModel
from ._build import build_loss, build_model, build_optimiser, build_regularisers
from ._checkpoint import atomic_write_bytes, atomic_write_text, load_checkpoint, save_checkpoint
from ._config import RunConfig
from ._fit import CHECKPOINT, FitResult, fit, fit_cohort, read_best
from ._gnvpro_train import fit_gnvpro_members, gnvpro_arguments
from ._metrics import error_metrics, predict_in_chunks, predictions_and_status

CONFIG, MODEL, METRICS, HISTORY, NORMALISATION, PLOT = (
    "config.toml",
    "model.eqx",
    "metrics.json",
    "history.csv",
    "normalisation.json",
    "loss.png",
)


class TrainedSurrogate(eqx.Module):
    """A trained `Surrogate` with the normalisations of its data: maps physical inputs to
    physical outputs.

    **Fields:** `model` (works in normalised units), `x_norm`, `y_norm` (`Affine`, static),
    `config` (the `RunConfig`, static).
    """

    model: Surrogate | TrajectoryModel
    x_norm: Affine = eqx.field(static=True)
    y_norm: Affine = eqx.field(static=True)
    config: RunConfig = eqx.field(static=True)

    def predict(
        self, xs: Float[np.ndarray, "batch in_size"]
    ) -> Float[np.ndarray, "batch out_size"]:
        """Physical outputs (float64 NumPy) for physical inputs `xs`.

        **Raises:** `ValueError` if `xs` is not `(batch, in_size)` or holds NaN/inf.
        """
        xs = np.asarray(xs, dtype=np.float64)
        if xs.ndim == 1:
            xs = xs[None]
        if xs.ndim != 2 or xs.shape[1] != self.model.in_size:
            raise ValueError(
                f"inputs must have shape (batch, {self.model.in_size}), got {xs.shape}."
            )
        if not np.all(np.isfinite(xs)):
            raise ValueError("inputs contain NaN or infinite values; clean them first.")
        return self.y_norm.invert(predict_in_chunks(self.model, self.x_norm.apply(xs)))

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


def _json_text(values: dict) -> str:
    """Strict JSON: non-finite numbers become `null` (JSON has no NaN)."""

    def clean(value):
        if isinstance(value, float) and not math.isfinite(value):
            return None
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [clean(v) for v in value]
        return value

    return json.dumps(clean(values), indent=2, allow_nan=False)


def loss_figure(rows: list, best_step: int, loss_name: str):
    """The figure of loss.png: the training loss and the validation error on panels of their
    own, the returned (best) step marked; `None` without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    validated = bool(rows) and "val_global" in rows[0]
    fig, axes = plt.subplots(
        2 if validated else 1, 1, figsize=(6, 6 if validated else 3.5), sharex=True, squeeze=False
    )
    steps = [r["step"] for r in rows]
    top = axes[0, 0]
    top.semilogy(steps, [r["train_loss"] for r in rows], color="C0", label="training loss")
    top.set_ylabel(f"training loss ({loss_name},\nnormalised units)")
    panels = [top]
    if validated:
        bottom = axes[1, 0]
        bottom.semilogy(
            steps, [r["val_global"] for r in rows], color="C1", label="validation error"
        )
        bottom.set_ylabel("validation relative error\n(global, normalised units)")
        panels.append(bottom)
    for ax in panels:
        ax.axvline(
            best_step, color="k", linestyle=":", label=f"returned parameters (step {best_step})"
        )
        ax.legend(fontsize="small")
        ax.grid(True, which="both", alpha=0.3)
    panels[-1].set_xlabel("optimisation step")
    # Fixed margins: tight_layout measured every tick label and took half of a sweep
    # cell's plotting time.
    fig.subplots_adjust(left=0.22, right=0.97, top=0.97, bottom=0.09 if validated else 0.15,
                        hspace=0.08)
    return fig


def _plot(rows: list, best_step: int, loss_name: str, path: pathlib.Path) -> bool:
    """Writes loss.png atomically; `False` without matplotlib."""
    fig = loss_figure(rows, best_step, loss_name)
    if fig is None:
        return False
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    atomic_write_bytes(path, buffer.getvalue())
    return True


def _dataset(config: RunConfig) -> Dataset | TrajectoryData:
    d = config.data
    return load_dataset(
        d.dataset,
        seed=d.split_seed,
        protocol=d.protocol,
        num_outputs=d.num_outputs,
        window=d.window,
    )


def _differences(a: RunConfig, b: RunConfig) -> list[str]:
    one, other = a.to_dict(), b.to_dict()
    return [
        f"{section}.{key}: {other[section][key]!r} stored, {value!r} given"
        for section, values in one.items()
        for key, value in values.items()
        if other[section][key] != value
    ]


def _check_out(run_dir: pathlib.Path) -> None:
    if run_dir.exists() and not run_dir.is_dir():
        raise FileExistsError(f"{str(run_dir)!r} is a file; choose a directory for the run.")
    if (run_dir / CONFIG).exists():
        raise FileExistsError(
            f"{str(run_dir)!r} already holds a run; pass --resume to continue it or choose "
            "another --out."
        )
    if run_dir.is_dir() and any(run_dir.iterdir()):
        raise FileExistsError(
            f"{str(run_dir)!r} exists and holds files but no run; choose an empty or new "
            "directory (--out)."
        )


def _stored_config(config: RunConfig | None, run_dir: pathlib.Path) -> RunConfig:
    stored = run_dir / CONFIG
    if not stored.is_file():
        raise FileNotFoundError(f"no run to resume in {str(run_dir)!r} (missing {CONFIG}).")
    stored_config = RunConfig.from_toml(stored.read_text())
    if config is not None and config != stored_config:
        raise ValueError(
            f"resuming {str(run_dir)!r} with a configuration other than its stored one ("
            + "; ".join(_differences(config, stored_config))
            + "); pass config=None (CLI: --resume alone) to continue the stored run."
        )
    return stored_config


def _fit_arguments(config: RunConfig, data: Dataset | TrajectoryData) -> dict:
    """The model and the keyword arguments of `fit` that `config` describes."""
    t = config.train
    train_size = data.sizes()["train"]
    if t.batch_size > train_size:
        raise ValueError(
            f"train.batch_size={t.batch_size} exceeds the {train_size} training samples of "
            f"{data.name!r}; lower it (--batch-size {train_size} or less)."
        )
    per_epoch = train_size // t.batch_size
    total = t.iterations if t.iterations is not None else t.epochs * per_epoch
    return dict(
        optimiser=build_optimiser(t, total),
        val=data.arrays("val"),
        steps=total,
        batch_size=t.batch_size,
        sampling=t.sampling,
        loss=build_loss(t),
        clip_norm=t.clip_norm,
        patience=t.patience,
        eval_every=t.eval_every_iterations or t.eval_every * per_epoch,
        ridge=t.ridge,
        max_failed_batches=t.max_failed_batches,
        divergence_factor=t.divergence_factor,
    )


def _initial(config: RunConfig, data: Dataset | TrajectoryData):
    """`(model, minibatch key)` of `config.train.seed`."""
    model_key, batch_key = jax.random.split(jax.random.PRNGKey(config.train.seed))
    dt = data.dt if isinstance(data, TrajectoryData) else None
    return build_model(config, data.in_size, data.out_size, key=model_key, dt=dt), batch_key


def _write_start(config: RunConfig, data: Dataset | TrajectoryData, run_dir: pathlib.Path) -> None:
    atomic_write_text(run_dir / CONFIG, config.to_toml())
    normalisation = {"x": data.x_norm.to_dict(), "y": data.y_norm.to_dict()}
    atomic_write_text(run_dir / NORMALISATION, json.dumps(normalisation))


def _finish(
    config: RunConfig, data: Dataset | TrajectoryData, run_dir: pathlib.Path, result: FitResult
):
    """Writes what a stopped run leaves (`model.eqx`, `metrics.json`, `loss.png`) and returns
    `(trained, result, metrics)` as `train` does."""
    trained = TrainedSurrogate(result.model, data.x_norm, data.y_norm, config)
    if result.status == "interrupted":
        return trained, result, {}
    metrics = dict(status=result.status, message=result.message, steps=result.steps)
    if result.checkpoint_step is None:
        atomic_write_text(run_dir / METRICS, _json_text(metrics))
        return trained, result, metrics
    save_checkpoint(run_dir / MODEL, {"best_step": result.best_step}, result.model)
    metrics.update(evaluate_model(result.model, data))
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
    metrics["plot"] = _plot(result.history, result.best_step, config.train.loss, run_dir / PLOT)
    atomic_write_text(run_dir / METRICS, _json_text(metrics))
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


# The fields in which the members of one cohort may differ.
COHORT_FIELDS = (("train", "seed"),)


def _check_cohort(configs: list[RunConfig]) -> None:
    first = configs[0].to_dict()
    for k, config in enumerate(configs[1:], start=1):
        values = config.to_dict()
        differing = [
            f"{section}.{key}"
            for section, entries in values.items()
            for key, value in entries.items()
            if first[section][key] != value and (section, key) not in COHORT_FIELDS
        ]
        if differing:
            allowed = ", ".join(f"{s}.{k}" for s, k in COHORT_FIELDS)
            raise ValueError(
                f"cohort member {k} differs from member 0 in {', '.join(differing)}; members "
                f"may differ only in {allowed}: train the others as separate runs or cohorts."
            )


def train_cohort(
    configs: list[RunConfig] | None, run_dirs, *, resume: bool = False, progress: bool = True
) -> list[tuple[TrainedSurrogate, FitResult, dict]]:
    """Trains the runs of `configs`, which differ only in their seeds, as one cohort (one
    compiled program, see `fit_cohort`): each of `run_dirs` becomes the run directory that
    `train` would write for its configuration, and resumes as part of the cohort or alone.

    **Arguments:** as for `train`, with one configuration and one directory per member
    (`configs=None` when resuming).

    **Returns:** one `(trained, fit_result, metrics)` per member.

    **Raises:** as `train`, and `ValueError` when the configurations differ in more than
    `train.seed`.
    """
    run_dirs = [pathlib.Path(d) for d in run_dirs]
    if resume:
        given = [None] * len(run_dirs) if configs is None else list(configs)
        configs = [_stored_config(c, d) for c, d in zip(given, run_dirs)]
    else:
        for config in configs:
            if not isinstance(config, RunConfig):
                raise TypeError(f"`config` must be a RunConfig, got {type(config).__name__}.")
        if len(configs) != len(run_dirs):
            raise ValueError(f"{len(configs)} configurations for {len(run_dirs)} run directories.")
        for run_dir in run_dirs:
            _check_out(run_dir)
    _check_cohort(configs)
    data = _dataset(configs[0])
    gnvpro = configs[0].train.optimiser == "gnvpro"
    arguments = (gnvpro_arguments if gnvpro else _fit_arguments)(configs[0], data)
    initial = [_initial(config, data) for config in configs]
    created = [not d.exists() for d in run_dirs]
    try:
        if not resume:
            for config, run_dir in zip(configs, run_dirs):
                _write_start(config, data, run_dir)
        common = dict(
            checkpoint_dirs=run_dirs,
            resume=resume,
            progress=progress,
            regularisers=build_regularisers(configs[0].train),
            **arguments,
        )
        if gnvpro:
            results = fit_gnvpro_members(
                [model for model, _ in initial],
                data.arrays("train"),
                checkpoint_dirs=run_dirs,
                resume=resume,
                progress=progress,
                **arguments,
            )
        elif len(configs) == 1:
            del common["checkpoint_dirs"]
            model, key = initial[0]
            results = [
                fit(model, data.arrays("train"), key=key, checkpoint_dir=run_dirs[0], **common)
            ]
        else:
            results = fit_cohort(
                [model for model, _ in initial],
                data.arrays("train"),
                keys=[key for _, key in initial],
                **common,
            )
    except BaseException:
        if not resume:
            for run_dir, made in zip(run_dirs, created):
                if not (run_dir / CHECKPOINT).exists():
                    _remove_start(run_dir, made)
        raise
    return [
        _finish(config, data, run_dir, result)
        for config, run_dir, result in zip(configs, run_dirs, results)
    ]


def _remove_start(run_dir: pathlib.Path, created: bool) -> None:
    """Undoes a start that failed before the first checkpoint: the same command can run again."""
    for name in (CONFIG, NORMALISATION, HISTORY):
        (run_dir / name).unlink(missing_ok=True)
    if created and run_dir.is_dir() and not any(run_dir.iterdir()):
        run_dir.rmdir()


def load(run_dir) -> TrainedSurrogate:
    """The trained model of a run directory, ready for `predict` in physical units: its
    `model.eqx`, or, for a run that has not finished (interrupted), the best parameters of its
    last checkpoint.

    **Raises:** `FileNotFoundError` if `run_dir` holds no run or no trained parameters yet;
    `ValueError` if its files do not match its configuration.
    """
    run_dir = pathlib.Path(run_dir)
    if not (run_dir / CONFIG).is_file():
        raise FileNotFoundError(f"{str(run_dir)!r} is not a jaxode run directory (no {CONFIG}).")
    config = RunConfig.from_toml((run_dir / CONFIG).read_text())
    normalisation = json.loads((run_dir / NORMALISATION).read_text())
    x_norm, y_norm = Affine.from_dict(normalisation["x"]), Affine.from_dict(normalisation["y"])
    skeleton = build_model(config, len(x_norm.shift), len(y_norm.shift), key=jax.random.PRNGKey(0))
    if (run_dir / MODEL).is_file():
        _, model = load_checkpoint(run_dir / MODEL, skeleton)
    elif (run_dir / CHECKPOINT).is_file():
        params, static = eqx.partition(skeleton, eqx.is_inexact_array)
        _, best = read_best(run_dir / CHECKPOINT, params)
        model = eqx.combine(best, static)
    else:
        raise FileNotFoundError(
            f"{str(run_dir)!r} has no trained parameters: training stopped before its first "
            f"checkpoint (see {METRICS} if present); start it again."
        )
    return TrainedSurrogate(model, x_norm, y_norm, config)
