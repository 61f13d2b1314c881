"""`probe_report`: run the applicable probes on a trained model and write JSON plus plots.

The `jaxode probe RUN_DIR` command loads a run and calls `probe_report`; matplotlib is optional
(imported lazily; without it the plots are skipped, listed under `plots_skipped` and in a note).
"""

import json
import math
import pathlib
from collections.abc import Callable

import equinox as eqx
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
from ._weights import layer_tensors, tensor_norms, weight_asymptotics

# Directions drawn in rays.png (each panel shows all of them for one output).
SHOWN_DIRECTIONS = 8
# Columns of the small multiples in rays.png.
PANEL_COLUMNS = 4


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
    units: str = "normalised units",
    key=None,
) -> dict:
    """Runs the probes that apply to `model` and writes `report.json` and PNG plots to `out_dir`.

    - Input-space models (a `Surrogate` or any function of one input vector): ray limit and
      rate, limit map (rays from the training inputs' mean on a geometric grid from 0.01 to
      `radius_factor` times the data radius: fast and slow tails alike settle on it); plots
      `rays.png` (one panel per output: the output along 8 rays far past the data, the data
      radius marked) and `limit_map.png`.
    - Models with time-parameterized weights: weight asymptotics; plot `weight_norms.png`
      (the norm of every weight and bias from $t_0$ to far past the window, the training window
      $[t_0, t_1]$ shaded).
    - A `NeuralODE` with a ground-truth `law`: trajectory extrapolation to
      `t_ext_factor * t1`; plot `extrapolation_error.png`.

    **Arguments:**

    - `model`: the loaded model.
    - `out_dir`: output folder (created if needed).
    - `inputs_train`, `targets_train`: training data, (num_samples, in_size) and
      (num_samples, out_size), to centre the rays and compare output ranges; in the units the
      model works in.
    - `in_size`: input size of a plain function when `inputs_train` is not given.
    - `law`, `initial_states`: ground truth and initial states for a `NeuralODE` (default: the
      law's default initial state).
    - `t_ext_factor`, `num_directions`, `radius_factor`, `num_radii`: probe extents.
    - `units`: the units of the model's inputs and outputs, for the plots' axis labels (a
      jaxode run's model works in normalised units, the default).
    - `key`: `jax.random` key for the directions (default `PRNGKey(0)`).

    **Returns:**

    The report as a dictionary (what `report.json` holds): `"model"` (class name), one entry
    per probe that ran (`"ray_limit"`, `"ray_limit_summary"`, `"limit_map"`, `"data_radius"`,
    `"weight_asymptotics"`, `"trajectory_extrapolation"`), `"plots"` (names of the PNG files
    written to `out_dir`), `"plots_skipped"` (names of the plots that were not written because
    matplotlib is not installed; empty otherwise) and `"notes"` (a line saying so when plots
    were skipped).

    **Raises:**

    `ValueError` if no probe applies or the input size cannot be determined.
    """
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    key = jax.random.PRNGKey(0) if key is None else key
    num_directions = check_count("num_directions", num_directions)
    plt = _load_pyplot()
    report: dict = {"model": type(model).__name__, "plots": [], "plots_skipped": [], "notes": []}

    is_input_model = isinstance(model, Surrogate) or not isinstance(model, NeuralODE)
    if is_input_model:
        _input_space_probes(
            model,
            report,
            out_dir,
            plt,
            inputs_train,
            targets_train,
            in_size,
            num_directions,
            radius_factor,
            num_radii,
            units,
            key,
        )
    if _has_time_varying_layers(model):
        weights = weight_asymptotics(model)
        report["weight_asymptotics"] = weights.as_dict()
        _plot(report, plt, out_dir / "weight_norms.png", lambda: weight_norms_figure(plt, model))
    if isinstance(model, NeuralODE) and law is not None:
        states = law.default_initial_state()[None] if initial_states is None else initial_states
        result = trajectory_extrapolation(
            model,
            states,
            law,
            t_train=model.t1,
            t_ext=model.t0 + t_ext_factor * (model.t1 - model.t0),
        )
        report["trajectory_extrapolation"] = result.as_dict()
        _plot(
            report,
            plt,
            out_dir / "extrapolation_error.png",
            lambda: _extrapolation_figure(plt, result),
        )
    if not any(
        k in report for k in ("ray_limit", "weight_asymptotics", "trajectory_extrapolation")
    ):
        raise ValueError(
            "no probe applies to `model`: pass a function of an input vector, a model with "
            "time-parameterized weights, or a NeuralODE with a ground-truth `law`."
        )
    if report["plots_skipped"]:
        report["notes"].append(
            f"matplotlib is not installed: plots skipped ({', '.join(report['plots_skipped'])}); "
            "pip install matplotlib to get them."
        )
    (out_dir / "report.json").write_text(json.dumps(report, indent=2))
    return report


def _plot(report: dict, plt, path: pathlib.Path, draw: Callable) -> None:
    """Draws and saves one plot, or records it under `plots_skipped` without matplotlib."""
    if plt is None:
        report["plots_skipped"].append(path.name)
        return
    _save(draw(), plt, path, report)


def _save(figure, plt, path: pathlib.Path, report: dict) -> None:
    figure.savefig(path, dpi=100)
    plt.close(figure)
    report["plots"].append(path.name)


def _input_space_probes(
    model,
    report,
    out_dir,
    plt,
    inputs_train,
    targets_train,
    in_size,
    num_directions,
    radius_factor,
    num_radii,
    units,
    key,
):
    if inputs_train is not None:
        inputs = as_float_array("inputs_train", inputs_train, (2,))
        center = inputs.mean(axis=0)
        data_radius = float(np.max(np.linalg.norm(inputs - center, axis=1))) or 1.0
        in_size = inputs.shape[1]
    else:
        in_size = getattr(model, "in_size", in_size)
        if in_size is None:
            raise ValueError(
                "pass `inputs_train` or `in_size` so that rays can be drawn in input space."
            )
        center, data_radius = np.zeros(in_size), 1.0
    directions = np.asarray(jax.random.normal(key, (num_directions, in_size)))
    if not radius_factor > 1.0:
        raise ValueError(
            f"`radius_factor` must be > 1 (rays reach past the data), got {radius_factor!r}."
        )
    radii = data_radius * np.geomspace(1e-2, radius_factor, num_radii)
    model_function: Callable = forward_mode(model)
    rays = ray_limit(model_function, center, directions, radii)
    report["ray_limit"] = rays.as_dict()
    report["ray_limit_summary"] = {
        name: int(count) for name, count in zip(*np.unique(rays.verdicts, return_counts=True))
    }
    limits = limit_map(
        model_function, directions, radii, base_point=center, targets_train=targets_train
    )
    report["limit_map"] = limits.as_dict()
    report["data_radius"] = data_radius
    unit = directions[:SHOWN_DIRECTIONS] / np.linalg.norm(
        directions[:SHOWN_DIRECTIONS], axis=1, keepdims=True
    )
    _plot(
        report,
        plt,
        out_dir / "rays.png",
        lambda: rays_figure(plt, model_function, center, unit, radii, data_radius, units),
    )
    _plot(
        report,
        plt,
        out_dir / "limit_map.png",
        lambda: _limit_map_figure(plt, limits, in_size, units),
    )


@eqx.filter_jit
def _values_along(model, center, directions, radii):
    """g on every radius of every direction, (num_directions, num_radii, out_size)."""
    return jax.vmap(lambda d: ray_derivatives(model, center, d, radii)[0])(directions)


def rays_figure(plt, model, center, directions, radii, data_radius: float, units: str):
    """Small multiples, one panel per output: the output along each of `directions` (unit
    vectors) against the distance from `center`, log scale, the data radius marked."""
    values = np.asarray(
        _values_along(model, jnp.asarray(center), jnp.asarray(directions), jnp.asarray(radii))
    )
    out_size = values.shape[-1]
    columns = min(PANEL_COLUMNS, out_size)
    rows = math.ceil(out_size / columns)
    figure, axes = plt.subplots(
        rows,
        columns,
        figsize=(3.2 * columns + 1.6, 2.4 * rows + 0.8),
        squeeze=False,
        layout="constrained",
    )
    for index, axis in enumerate(axes.ravel()):
        if index >= out_size:
            axis.remove()
            continue
        for k, curve in enumerate(values[:, :, index]):
            axis.semilogx(radii, curve, linewidth=1.0, label=f"direction {k}")
        axis.axvline(data_radius, color="k", linestyle="--", linewidth=1.0, label="data radius")
        axis.set_title(f"output {index}", fontsize="medium")
    handles, labels = axes.ravel()[0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="outside right upper", fontsize="small")
    figure.supxlabel(f"r: distance from the data centre along the ray ({units}, log scale)")
    figure.supylabel(f"output ({units})")
    figure.suptitle(f"outputs along {len(directions)} rays far past the data")
    return figure


def _limit_map_figure(plt, limits, in_size: int, units: str):
    figure, axis = plt.subplots(figsize=(6, 4), layout="constrained")
    order = np.argsort(
        np.arctan2(limits.directions[:, min(1, in_size - 1)], limits.directions[:, 0])
    )
    axis.plot(limits.limit[order, 0], "o", markersize=3, label="limit along direction")
    if np.all(np.isfinite(limits.target_range[0])):
        axis.axhspan(*limits.target_range[0], color="g", alpha=0.2, label="training target range")
    axis.set_xlabel("direction (sorted by angle of its first two components)")
    axis.set_ylabel(f"limit of output 0 ({units})")
    axis.set_title(f"limit map: {limits.num_distinct} distinct limits")
    axis.legend(fontsize="small")
    return figure


def weight_norms_figure(plt, model, num_times: int = 200):
    """$\\|\\theta(t)\\|$ of every weight and bias of `model` from the start of its window to
    $10^4$ window widths past it (symmetric log time axis, linear over the window), with the
    training window $[t_0, t_1]$ shaded and its ends marked."""
    tensors = layer_tensors(model)
    windows = sorted({(float(basis.t0), float(basis.t1)) for _, basis, _ in tensors})
    t0 = min(w[0] for w in windows)
    t1 = max(w[1] for w in windows)
    width = t1 - t0
    times = np.concatenate(
        [
            np.linspace(t0, t1, num_times // 4, endpoint=False),
            t1
            + width
            * np.concatenate([[0.0], np.geomspace(1e-2, 1e4, num_times - num_times // 4 - 1)]),
        ]
    )
    figure, axis = plt.subplots(figsize=(7, 4.5), layout="constrained")
    for name, basis, coefficients in tensors:
        norms = tensor_norms(basis, coefficients, times)
        axis.plot(times, np.where(norms > 0, norms, np.nan), label=name)
    for start, end in windows:
        axis.axvspan(
            start, end, color="0.85", zorder=0, label=f"training window [{start:g}, {end:g}]"
        )
        axis.axvline(start, color="k", linestyle="--", linewidth=1.0)
        axis.axvline(end, color="k", linestyle="--", linewidth=1.0)
    axis.set_xscale("symlog", linthresh=width)
    axis.set_xlim(t0 - 0.02 * width, times[-1])
    axis.set_yscale("log")
    axis.set_xlabel(f"t (symmetric log scale: linear over the window, t0 = {t0:g}, t1 = {t1:g})")
    axis.set_ylabel(r"$\|\theta(t)\|$: spectral norm (weights), Euclidean norm (biases)")
    axis.set_title("weight norms in and past the training window")
    axis.legend(fontsize="small")
    return figure


def _extrapolation_figure(plt, result):
    figure, axis = plt.subplots(figsize=(6, 4), layout="constrained")
    for errors in result.errors:
        axis.semilogy(result.ts, np.where(np.isfinite(errors), errors, np.nan))
    axis.axvline(result.t_train, color="k", linestyle="--", label="end of training window")
    axis.axhline(result.threshold, color="r", linestyle=":", label="threshold")
    axis.set_xlabel("t")
    axis.set_ylabel("error")
    axis.set_title("extrapolation error versus time")
    axis.legend(fontsize="small")
    return figure
