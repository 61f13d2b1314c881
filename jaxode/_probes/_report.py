"""`probe_report`: run the applicable probes on a trained model and write JSON plus plots.

The `jaxode probe RUN_DIR` command loads a run and calls `probe_report`; matplotlib is optional
(imported lazily; without it the plots are skipped with a note in the JSON).
"""

import json
import pathlib
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from .._models import NeuralODE
from .._surrogate import Surrogate
from ._common import as_float_array, check_count
from ._extrapolation import trajectory_extrapolation
from ._laws import AbstractLaw
from ._maps import limit_map
from ._rays import forward_mode, ray_derivatives, ray_limit
from ._weights import weight_asymptotics


def _load_pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    return plt


def _has_time_varying_layers(model) -> bool:
    from .._layers import TimeVaryingLinear

    leaves = jax.tree_util.tree_leaves(model, is_leaf=lambda x: isinstance(x, TimeVaryingLinear))
    return any(isinstance(leaf, TimeVaryingLinear) for leaf in leaves)


def probe_report(
    model,
    out_dir: str | pathlib.Path,
    *,
    inputs_train=None,
    targets_train=None,
    in_size: int | None = None,
    law: AbstractLaw | None = None,
    initial_states=None,
    t_ext_factor: float = 5.0,
    num_directions: int = 64,
    radius_factor: float = 1e5,
    num_radii: int = 400,
    key=None,
) -> dict:
    """Runs the probes that apply to `model` and writes `report.json` and PNG plots to `out_dir`.

    - Input-space models (a `Surrogate` or any function of one input vector): ray limit and
      rate, limit map (rays from the training inputs' mean on a geometric grid from 0.01 to
      `radius_factor` times the data radius: fast and slow tails alike settle on it); plots
      `rays.png` (outputs along rays far past the data), `limit_map.png`.
    - Models with time-parameterized weights: weight asymptotics; plot `weight_norms.png`.
    - A `NeuralODE` with a ground-truth `law`: trajectory extrapolation to
      `t_ext_factor * t1`; plot `extrapolation_error.png`.

    **Arguments:**

    - `model`: the loaded model.
    - `out_dir`: output folder (created if needed).
    - `inputs_train`, `targets_train`: training data, (num_samples, in_size) and
      (num_samples, out_size), to centre the rays and compare output ranges.
    - `in_size`: input size of a plain function when `inputs_train` is not given.
    - `law`, `initial_states`: ground truth and initial states for a `NeuralODE` (default: the
      law's default initial state).
    - `t_ext_factor`, `num_directions`, `radius_factor`, `num_radii`: probe extents.
    - `key`: `jax.random` key for the directions (default `PRNGKey(0)`).

    **Returns:**

    The report as a dictionary (what `report.json` holds).

    **Raises:**

    `ValueError` if no probe applies or the input size cannot be determined.
    """
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    key = jax.random.PRNGKey(0) if key is None else key
    num_directions = check_count("num_directions", num_directions)
    plt = _load_pyplot()
    report: dict = {"model": type(model).__name__, "plots": [], "notes": []}
    if plt is None:
        report["notes"].append("matplotlib is not installed: plots skipped (pip install matplotlib).")

    is_input_model = isinstance(model, Surrogate) or not isinstance(model, NeuralODE)
    if is_input_model:
        _input_space_probes(model, report, out_dir, plt, inputs_train, targets_train, in_size, num_directions,
                            radius_factor, num_radii, key)
    if _has_time_varying_layers(model):
        weights = weight_asymptotics(model)
        report["weight_asymptotics"] = weights.as_dict()
        if plt is not None:
            figure, axis = plt.subplots(figsize=(6, 4))
            for name, times, norms in zip(weights.names, weights.times, weights.norms):
                axis.loglog(times, np.maximum(norms, 1e-300), label=name)
            axis.set_xlabel("t (past the window)")
            axis.set_ylabel("||theta(t)||")
            axis.set_title("weight norm versus time")
            axis.legend(fontsize="small")
            _save(figure, plt, out_dir / "weight_norms.png", report)
    if isinstance(model, NeuralODE) and law is not None:
        states = law.default_initial_state()[None] if initial_states is None else initial_states
        result = trajectory_extrapolation(model, states, law, t_train=model.t1, t_ext=model.t0 + t_ext_factor * (model.t1 - model.t0))
        report["trajectory_extrapolation"] = result.as_dict()
        if plt is not None:
            figure, axis = plt.subplots(figsize=(6, 4))
            for errors in result.errors:
                axis.semilogy(result.ts, np.where(np.isfinite(errors), errors, np.nan))
            axis.axvline(result.t_train, color="k", linestyle="--", label="end of training window")
            axis.axhline(result.threshold, color="r", linestyle=":", label="threshold")
            axis.set_xlabel("t")
            axis.set_ylabel("error")
            axis.set_title("extrapolation error versus time")
            axis.legend(fontsize="small")
            _save(figure, plt, out_dir / "extrapolation_error.png", report)
    if not any(k in report for k in ("ray_limit", "weight_asymptotics", "trajectory_extrapolation")):
        raise ValueError(
            "no probe applies to `model`: pass a function of an input vector, a model with "
            "time-parameterized weights, or a NeuralODE with a ground-truth `law`."
        )
    (out_dir / "report.json").write_text(json.dumps(report, indent=2))
    return report


def _save(figure, plt, path: pathlib.Path, report: dict) -> None:
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    report["plots"].append(path.name)


def _input_space_probes(model, report, out_dir, plt, inputs_train, targets_train, in_size, num_directions,
                        radius_factor, num_radii, key):
    if inputs_train is not None:
        inputs = as_float_array("inputs_train", inputs_train, (2,))
        center = inputs.mean(axis=0)
        data_radius = float(np.max(np.linalg.norm(inputs - center, axis=1))) or 1.0
        in_size = inputs.shape[1]
    else:
        in_size = getattr(model, "in_size", in_size)
        if in_size is None:
            raise ValueError("pass `inputs_train` or `in_size` so that rays can be drawn in input space.")
        center, data_radius = np.zeros(in_size), 1.0
    directions = np.asarray(jax.random.normal(key, (num_directions, in_size)))
    if not radius_factor > 1.0:
        raise ValueError(f"`radius_factor` must be > 1 (rays reach past the data), got {radius_factor!r}.")
    radii = data_radius * np.geomspace(1e-2, radius_factor, num_radii)
    model_function: Callable = forward_mode(model)
    rays = ray_limit(model_function, center, directions, radii)
    report["ray_limit"] = rays.as_dict()
    report["ray_limit_summary"] = {
        name: int(count) for name, count in zip(*np.unique(rays.verdicts, return_counts=True))
    }
    limits = limit_map(model_function, directions, radii, base_point=center, targets_train=targets_train)
    report["limit_map"] = limits.as_dict()
    report["data_radius"] = data_radius
    if plt is None:
        return
    shown = min(8, num_directions)
    unit = directions[:shown] / np.linalg.norm(directions[:shown], axis=1, keepdims=True)
    values = [np.asarray(ray_derivatives(model_function, jnp.asarray(center), jnp.asarray(d), jnp.asarray(radii))[0])
              for d in unit]
    figure, axis = plt.subplots(figsize=(6, 4))
    for curve in values:
        axis.semilogx(radii, curve[:, 0])
    axis.axvline(data_radius, color="k", linestyle="--", label="data radius")
    axis.set_xlabel("r (distance from the data centre, log scale)")
    axis.set_ylabel("output 0")
    axis.set_title("output along rays far past the data")
    axis.legend(fontsize="small")
    _save(figure, plt, out_dir / "rays.png", report)
    figure, axis = plt.subplots(figsize=(6, 4))
    order = np.argsort(np.arctan2(limits.directions[:, min(1, in_size - 1)], limits.directions[:, 0]))
    axis.plot(limits.limit[order, 0], "o", markersize=3, label="limit along direction")
    if np.all(np.isfinite(limits.target_range[0])):
        axis.axhspan(*limits.target_range[0], color="g", alpha=0.2, label="training target range")
    axis.set_xlabel("direction (sorted by angle of its first two components)")
    axis.set_ylabel("limit of output 0")
    axis.set_title(f"limit map: {limits.num_distinct} distinct limits")
    axis.legend(fontsize="small")
    _save(figure, plt, out_dir / "limit_map.png", report)
