"""Run directories: train from a `RunConfig`, write everything, load a trained model back."""

import csv
import io
import json
import pathlib

import equinox as eqx
import jax
import numpy as np
from jaxtyping import Array, Float

from .._datasets import Affine, Dataset, load_dataset
from .._surrogate import Surrogate, count_dynamics_parameters, count_parameters
from ._build import build_loss, build_model, build_optimiser, build_regularisers
from ._checkpoint import atomic_write_bytes, atomic_write_text, load_checkpoint, save_checkpoint
from ._config import RunConfig
from ._fit import FitResult, fit
from ._metrics import error_metrics, predict_in_chunks

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

    model: Surrogate
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

    def __call__(self, x: Float[Array, " in_size"]) -> Float[Array, " out_size"]:
        return self.predict(np.asarray(x)[None])[0]


def evaluate_model(model: Surrogate, data: Dataset) -> dict:
    """Global and per-sample relative errors on every split, normalised and physical."""
    out = {}
    for split in ("train", "val", "test"):
        x, y = data.arrays(split, normalised=True)
        if len(x) == 0:
            continue
        p = predict_in_chunks(model, x)
        out.update(error_metrics(p, y, prefix=f"{split}_"))
        out.update(
            error_metrics(data.y_norm.invert(p), data.y_norm.invert(y), prefix=f"{split}_physical_")
        )
    return out


def _history_csv(rows: list) -> str:
    columns = []
    for row in rows:
        columns += [c for c in row if c not in columns]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns)
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def _plot(rows: list, path: pathlib.Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, ax = plt.subplots(figsize=(6, 4))
    steps = [r["step"] for r in rows]
    ax.semilogy(steps, [r["train_loss"] for r in rows], label="train loss")
    if rows and "val_global" in rows[0]:
        ax.semilogy(steps, [r["val_global"] for r in rows], label="val relative error")
    ax.set_xlabel("step")
    ax.legend()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    atomic_write_bytes(path, buffer.getvalue())
    return True


def _dataset(config: RunConfig) -> Dataset:
    return load_dataset(config.data.dataset, seed=config.data.split_seed)


def train(
    config: RunConfig, run_dir, *, resume: bool = False, progress: bool = True
) -> tuple[TrainedSurrogate, FitResult, dict]:
    """Trains the surrogate of `config` and fills `run_dir` with `config.toml`,
    `normalisation.json`, `checkpoint.eqx` (model and optimiser state, at every evaluation),
    `model.eqx`, `history.csv`, `metrics.json` and `loss.png` (with matplotlib).

    **Arguments:**

    - `config`: a `RunConfig`.
    - `run_dir`: output directory (created).
    - `resume`: continue from `run_dir`'s checkpoint, using the configuration stored there.
    - `progress`: show a progress bar.

    **Returns:** `(trained, fit_result, metrics)`.

    **Raises:** `FileExistsError` when `run_dir` already holds a run and `resume` is off;
    `ValueError` when resuming with a configuration other than the stored one.
    """
    run_dir = pathlib.Path(run_dir)
    stored = run_dir / CONFIG
    if resume:
        if not stored.is_file():
            raise FileNotFoundError(f"no run to resume in {str(run_dir)!r} (missing {CONFIG}).")
        config = RunConfig.from_toml(stored.read_text())
    elif stored.exists():
        raise FileExistsError(
            f"{str(run_dir)!r} already holds a run; pass --resume to continue it or choose another --out."
        )
    data = _dataset(config)
    t = config.train
    key = jax.random.PRNGKey(t.seed)
    model_key, batch_key = jax.random.split(key)
    model = build_model(config, data.in_size, data.out_size, key=model_key)
    run_dir.mkdir(parents=True, exist_ok=True)
    if not resume:
        atomic_write_text(stored, config.to_toml())
        normalisation = {"x": data.x_norm.to_dict(), "y": data.y_norm.to_dict()}
        atomic_write_text(run_dir / NORMALISATION, json.dumps(normalisation))
    per_epoch = len(data.splits["train"]) // t.batch_size
    result = fit(
        model,
        data.arrays("train"),
        build_optimiser(t, t.epochs * max(per_epoch, 1)),
        key=batch_key,
        val=data.arrays("val"),
        epochs=t.epochs,
        batch_size=t.batch_size,
        loss=build_loss(t),
        regularisers=build_regularisers(t),
        clip_norm=t.clip_norm,
        patience=t.patience,
        eval_every=t.eval_every * max(per_epoch, 1),
        ridge=t.ridge,
        checkpoint_dir=run_dir,
        resume=resume,
        progress=progress,
    )
    trained = TrainedSurrogate(result.model, data.x_norm, data.y_norm, config)
    if result.status == "interrupted":
        return trained, result, {}
    save_checkpoint(run_dir / MODEL, {"best_step": result.best_step}, result.model)
    atomic_write_text(run_dir / HISTORY, _history_csv(result.history))
    metrics = evaluate_model(result.model, data)
    last = result.history[-1] if result.history else {}
    counted = [row for row in result.history if "forward_evaluations" in row]
    counts = counted[-1] if counted else {}
    metrics.update(
        status=result.status,
        message=result.message,
        steps=result.steps,
        best_step=result.best_step,
        solver_failures=result.solver_failures,
        compile_time=result.compile_time,
        train_time=last.get("wall_time", 0.0),
        parameters=count_parameters(result.model),
        dynamics_parameters=count_dynamics_parameters(result.model),
        forward_evaluations=counts.get("forward_evaluations", float("nan")),
        backward_evaluations=counts.get("backward_evaluations", float("nan")),
    )
    atomic_write_text(run_dir / METRICS, json.dumps(metrics, indent=2))
    _plot(result.history, run_dir / PLOT)
    return trained, result, metrics


def load(run_dir) -> TrainedSurrogate:
    """The trained model of a run directory, ready for `predict` in physical units (the last
    checkpoint's best parameters if training did not finish).

    **Raises:** `FileNotFoundError` if `run_dir` holds no run; `ValueError` if its files do
    not match its configuration.
    """
    run_dir = pathlib.Path(run_dir)
    if not (run_dir / CONFIG).is_file():
        raise FileNotFoundError(f"{str(run_dir)!r} is not a jaxode run directory (no {CONFIG}).")
    config = RunConfig.from_toml((run_dir / CONFIG).read_text())
    normalisation = json.loads((run_dir / NORMALISATION).read_text())
    x_norm, y_norm = Affine.from_dict(normalisation["x"]), Affine.from_dict(normalisation["y"])
    skeleton = build_model(config, len(x_norm.shift), len(y_norm.shift), key=jax.random.PRNGKey(0))
    if not (run_dir / MODEL).is_file():
        raise FileNotFoundError(
            f"{str(run_dir)!r} has no {MODEL}: training did not finish; resume it with "
            f"`jaxode train --resume {run_dir}`."
        )
    _, model = load_checkpoint(run_dir / MODEL, skeleton)
    return TrainedSurrogate(model, x_norm, y_norm, config)
