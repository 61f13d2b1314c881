"""The members of a cohort (`jaxode train --seeds` or `--ensemble K`) as one predictive model:
the mean of the members' predictions, with a predictive variance per output of
floor^2 + scale^2 spread^2, fitted on the validation split (`fit_calibration`), so that its
intervals cover what they say."""

import dataclasses
import pathlib
from typing import Literal, overload

import numpy as np
from jaxtyping import Float

from .._datasets import Dataset, TrajectoryData
from .._files import atomic_write_text, json_text, read_json
from .._uncertainty import (
    fit_calibration,
    half_width,
    predictive_std,
    scores,
    write_calibration_plot,
)
from ._build import load_data
from ._config import RunConfig
from ._metrics import error_metrics, global_relative_error
from ._run import TrainedSurrogate, load_run, train_cohort
from ._rundir import CohortDir

ENSEMBLE, CALIBRATION_PLOT = "ensemble.json", "calibration.png"
SPLITS = ("train", "val", "test")


@dataclasses.dataclass(frozen=True)
class Ensemble:
    """Trained members of one data set and normalisation as one model with a predictive
    standard deviation.

    **Fields:** `members` (at least two `TrainedSurrogate`s); `floors` (physical units) and
    `scales`, one per output: the predictive standard deviation is
    sqrt(floor^2 + scale^2 spread^2), where spread is the members' sample standard deviation
    (ddof 1); `None` for both: not calibrated, the spread alone.

    `predict(xs)` is the members' mean in physical units; `predict(xs, return_std=True)`
    gives `(mean, std)`, `interval(xs, level)` the central interval of the normal
    distribution N(mean, std^2). `calibrated(xs, ys)` fits `floors` and `scales` on held-out
    data (the validation split: never the test split).
    """

    members: tuple[TrainedSurrogate, ...]
    floors: np.ndarray | None = None
    scales: np.ndarray | None = None

    def __post_init__(self):
        members = tuple(self.members)
        object.__setattr__(self, "members", members)
        if len(members) < 2:
            raise ValueError(
                f"an ensemble needs at least two members, got {len(members)}; train more seeds."
            )
        first = members[0]
        for k, member in enumerate(members[1:], 1):
            same = all(
                np.array_equal(getattr(a, f), getattr(b, f))
                for a, b in ((first.x_norm, member.x_norm), (first.y_norm, member.y_norm))
                for f in ("shift", "scale")
            )
            if not same or member.config.data != first.config.data:
                raise ValueError(
                    f"ensemble member {k} was trained on other data (its data settings or "
                    "normalisation differ from member 0's): members must share one data set."
                )
        if (self.floors is None) != (self.scales is None):
            raise ValueError("give both `floors` and `scales` (a calibration), or neither.")
        for name in ("floors", "scales"):
            value = getattr(self, name)
            if value is None:
                continue
            array = np.asarray(value, dtype=np.float64)
            if array.shape != (first.model.out_size,) or not np.all(array >= 0):
                raise ValueError(
                    f"`{name}` must be {first.model.out_size} non-negative numbers (one per "
                    f"output), got {value!r}."
                )
            object.__setattr__(self, name, array)

    @property
    def config(self) -> RunConfig:
        """Member 0's configuration (the members differ in their seeds)."""
        return self.members[0].config

    @property
    def model(self):
        """Member 0's model (for its sizes: `in_size`, `out_size`)."""
        return self.members[0].model

    @property
    def domain(self):
        return self.members[0].domain

    @property
    def x_norm(self):
        return self.members[0].x_norm

    @property
    def y_norm(self):
        return self.members[0].y_norm

    def outside_domain(self, xs):
        """As `TrainedSurrogate.outside_domain` (the members share their training data)."""
        return self.members[0].outside_domain(xs)

    def member_predictions(
        self, xs: Float[np.ndarray, "batch in_size"]
    ) -> Float[np.ndarray, "members batch out_size"]:
        """Every member's physical predictions of the physical inputs `xs`."""
        return np.stack([member.predict(xs) for member in self.members])

    @overload
    def predict(
        self, xs: Float[np.ndarray, "batch in_size"], return_std: Literal[False] = False
    ) -> np.ndarray: ...

    @overload
    def predict(
        self, xs: Float[np.ndarray, "batch in_size"], return_std: Literal[True]
    ) -> tuple[np.ndarray, np.ndarray]: ...

    def predict(self, xs: Float[np.ndarray, "batch in_size"], return_std: bool = False):
        """The members' mean prediction (physical units) of the physical inputs `xs`; with
        `return_std`, `(mean, std)`: std is sqrt(floor^2 + scale^2 spread^2), with spread the
        members' sample standard deviation (ddof 1).

        **Raises:** `ValueError` if `xs` is not `(batch, in_size)` or holds NaN/inf."""
        mean, spread = _moments(self.member_predictions(xs))
        return (mean, self.predict_std_of(spread)) if return_std else mean

    def predict_std_of(self, spread: np.ndarray) -> np.ndarray:
        """The predictive standard deviation of the members' spread `spread`."""
        if self.scales is None or self.floors is None:
            return spread
        return predictive_std(spread, self.floors, self.scales)

    def interval(self, xs, level: float = 0.9) -> tuple[np.ndarray, np.ndarray]:
        """`(lower, upper)`: the central interval of nominal `level` of each prediction."""
        mean, std = self.predict(xs, return_std=True)
        width = half_width(level) * std
        return mean - width, mean + width

    def calibrated(self, xs, ys) -> "Ensemble":
        """This ensemble with `floors` and `scales` fitted by maximum likelihood to physical
        inputs `xs` and outputs `ys` (`fit_calibration`); fit on the validation split, never
        on test."""
        mean, spread = _moments(self.member_predictions(xs))
        floors, scales = fit_calibration(mean, spread, np.asarray(ys, dtype=np.float64))
        return dataclasses.replace(self, floors=floors, scales=scales)

    def __call__(self, x):
        return self.predict(np.asarray(x)[None])[0]


def _moments(predictions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return predictions.mean(axis=0), predictions.std(axis=0, ddof=1)


def evaluate_ensemble(ensemble: Ensemble, data: Dataset) -> dict:
    """On each split of `data`: the ensemble mean's relative errors (`{split}_global`,
    `{split}_per_sample`, and `{split}_physical_...`), its members' global errors (mean and
    sample std: `{split}_members_global_mean`, `..._std`, and `..._physical_...`), and the
    scores of its predictive distribution in normalised units (`{split}_nll`,
    `{split}_coverage_90`, ...; see `scores`), calibrated and, as `{split}_raw_...`, with the
    members' spread alone."""
    metrics: dict = {}
    for split in SPLITS:
        x, y = data.arrays(split, normalised=False)
        if not len(x):
            continue
        predictions = ensemble.member_predictions(x)
        mean = predictions.mean(axis=0)
        norm = ensemble.y_norm
        metrics.update(error_metrics(norm.apply(mean), norm.apply(y), f"{split}_"))
        metrics.update(error_metrics(mean, y, f"{split}_physical_"))
        for units, apply in (("", norm.apply), ("physical_", lambda a: a)):
            errors = [global_relative_error(apply(p), apply(y)) for p in predictions]
            metrics[f"{split}_members_{units}global_mean"] = float(np.mean(errors))
            metrics[f"{split}_members_{units}global_std"] = float(np.std(errors, ddof=1))
        # Normalised units: outputs of different sizes weigh alike in the mean NLL.
        spread = predictions.std(axis=0, ddof=1)
        mean_n, y_n = mean / norm.scale, y / norm.scale
        if ensemble.scales is not None:
            std = ensemble.predict_std_of(spread)
            metrics.update(scores(mean_n, std / norm.scale, y_n, f"{split}_"))
        if np.all(spread > 0):
            metrics.update(scores(mean_n, spread / norm.scale, y_n, f"{split}_raw_"))
    return metrics


def load_ensemble(path) -> Ensemble:
    """The ensemble of a cohort folder, with the calibration its `ensemble.json` holds (none,
    and so the members' spread alone, before `calibrate_cohort` wrote it).

    **Raises:** `FileNotFoundError` if `path` holds no cohort or a member holds no trained
    parameters."""
    cohort = CohortDir(path)
    if not cohort.holds_cohort():
        raise FileNotFoundError(
            f"{str(path)!r} holds no cohort (no cohort.json); pass a folder written by "
            "`jaxode train --ensemble K` or `--seeds`."
        )
    members = tuple(load_run(member.path) for member in cohort.members())
    stored = pathlib.Path(path) / ENSEMBLE
    if not stored.is_file():
        return Ensemble(members)
    remedy = "recalibrate it: jaxode evaluate on the folder rewrites it."
    record = read_json(stored, "ensemble calibration", remedy)
    return Ensemble(members, record.get("floors"), record.get("scales"))


def calibrate_cohort(path) -> tuple[Ensemble, dict]:
    """Fits the ensemble of the cohort folder `path` on its validation split, evaluates it on
    every split (`evaluate_ensemble`) and writes `ensemble.json` (calibration and metrics) and
    `calibration.png` (observed against nominal coverage on validation and test, calibrated
    and raw). Returns `(ensemble, metrics)`.

    **Raises:** `ValueError` for data without a validation split."""
    ensemble = load_ensemble(path)
    data = load_data(ensemble.config)
    if isinstance(data, TrajectoryData):
        raise ValueError(
            "ensembles of time-series runs are not calibrated yet: their members are "
            "evaluated region by region (jaxode evaluate on each member's folder)."
        )
    x_val, y_val = data.arrays("val", normalised=False)
    if not len(x_val):
        raise ValueError(
            "the ensemble is calibrated on the validation split, and this data set has none; "
            "train with a validation split."
        )
    ensemble = ensemble.calibrated(x_val, y_val)
    metrics = evaluate_ensemble(ensemble, data)
    record = {"members": len(ensemble.members), **calibration_record(ensemble), **metrics}
    folder = pathlib.Path(path)
    atomic_write_text(folder / ENSEMBLE, json_text(record))
    curves = {}
    for split in ("val", "test"):
        x, y = data.arrays(split, normalised=False)
        if len(x):
            predictions = ensemble.member_predictions(x)
            mean, spread = _moments(predictions)
            curves[f"{split}, calibrated"] = (mean, ensemble.predict_std_of(spread), y)
            if np.all(spread > 0):
                curves[f"{split}, members' spread"] = (mean, spread, y)
    write_calibration_plot(curves, folder / CALIBRATION_PLOT)
    return ensemble, metrics


def calibration_record(ensemble: Ensemble) -> dict:
    """`floors` (physical units) and `scales` of a calibrated `ensemble`, as JSON lists."""
    assert ensemble.floors is not None and ensemble.scales is not None
    return {"floors": ensemble.floors.tolist(), "scales": ensemble.scales.tolist()}


def train_ensemble(
    config: RunConfig, out, size: int = 5, *, progress: bool = True
) -> tuple[Ensemble, dict]:
    """Trains `size` members of `config` (seeds `config.train.seed` onwards) as one cohort in
    the new folder `out`, a run directory per member, then calibrates and evaluates the
    ensemble (`calibrate_cohort`). Returns `(ensemble, metrics)`.

    **Raises:** `ValueError` for `size` < 2; `FileExistsError` for a folder not new or empty;
    `RuntimeError` when a member ended without trained parameters."""
    if isinstance(size, bool) or not isinstance(size, int) or size < 2:
        raise ValueError(f"an ensemble's `size` must be an integer >= 2, got {size!r}.")
    seeds = list(range(config.train.seed, config.train.seed + size))
    cohort = CohortDir(out)
    with cohort.lock():
        configs = cohort.start(config, seeds)
        outcomes = train_cohort(configs, [m.path for m in cohort.members()], progress=progress)
    untrained = [s for s, (_, _, metrics) in zip(seeds, outcomes) if "test_global" not in metrics]
    if untrained:
        raise RuntimeError(
            f"the members of seeds {untrained} ended without trained parameters (their folders' "
            "metrics.json say why): the ensemble is not calibrated."
        )
    return calibrate_cohort(out)


def load(path) -> TrainedSurrogate | Ensemble:
    """The trained model of a run directory (a `TrainedSurrogate`) or the ensemble of a cohort
    folder (an `Ensemble`, calibrated where its `ensemble.json` says).

    **Raises:** `FileNotFoundError` if `path` holds neither, or no trained parameters yet;
    `ValueError` if its files do not match its configuration."""
    if CohortDir(path).holds_cohort():
        return load_ensemble(path)
    return load_run(path)
