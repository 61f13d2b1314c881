"""Learn the Lorenz-63 vector field from one trajectory, then extrapolate past the training window.

Lorenz-63 is chaotic: two nearby states separate like $e^{\\lambda t}$, $\\lambda \\approx 0.906$,
so even a perfect model in floating point only follows the true orbit for a few Lyapunov times
$1/\\lambda$. What a learned model can do is stay close for a while and then keep moving on
the right attractor. This example generates a trajectory with Diffrax at tight tolerance, fits a
neural ODE $du/dt = f(u)$ to short windows of it (`jaxode.TrajectoryData`,
`jaxode.TrajectoryModel`, `jaxode.fit`), runs the model from the last training state far past
the window, and measures the valid prediction time (error below 30 %) in Lyapunov times.

Two choices matter. The model learns in normalised coordinates $u = (y - \\mu)/s$: raw states of
size 10-40 saturate the tanh units of a fresh field. And its weights are static
(`ConstantBasis`): the law is autonomous, while polynomial weights $\\theta(t)$ keep changing
past their window (see docs/probes.md, "Does a Legendre basis extrapolate worse").

Run: `python docs/examples/lorenz.py` (a few minutes on 2 CPU cores; `--small` for the test
suite's size).
"""

# --8<-- [start:imports]
import argparse
import os
import pathlib
import time

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import optax
from _transcript import Transcript

import jaxode

OUT = pathlib.Path(__file__).resolve().parent / "output" / "lorenz"
SIGMA, RHO, BETA = 10.0, 28.0, 8.0 / 3.0
LYAPUNOV = 0.9056  # largest Lyapunov exponent at the classic parameters (Sprott 2003)
# --8<-- [end:imports]


# --8<-- [start:valid_prediction_time]
@eqx.filter_jit
def predict(model, x):
    return model.predict(x)


def valid_prediction_time(errors, times, threshold: float = 0.3) -> float:
    """Time from `times[0]` until the relative error first exceeds `threshold` (the whole run
    if it never does), as in Zhang and Gilpin (ICLR 2025)."""
    beyond = np.nonzero(errors > threshold)[0]
    return float((times[beyond[0]] if beyond.size else times[-1]) - times[0])


# --8<-- [end:valid_prediction_time]


# --8<-- [start:generate]
def lorenz(t, y, args=None):
    x, p, z = y
    return jnp.stack([SIGMA * (p - x), x * (RHO - z) - p, x * p - BETA * z])


def simulate(y0, ts):
    """Lorenz-63 from `y0` at time 0, saved at `ts`: Dopri8 at a tolerance near the rounding
    of the active precision (1e-11 in float64; float32 cannot do better than about 1e-6)."""
    tol = 1e-11 if ts.dtype == jnp.float64 else 1e-6
    # throw=False, and the status checked here: a program without Diffrax's runtime check (a
    # host callback) can be kept by JAX's persistent compilation cache.
    solution = diffrax.diffeqsolve(
        diffrax.ODETerm(lorenz),
        diffrax.Dopri8(),
        0.0,
        ts[-1],
        None,
        y0,
        saveat=diffrax.SaveAt(ts=ts),
        stepsize_controller=diffrax.PIDController(rtol=tol, atol=tol),
        max_steps=1_000_000,
        throw=False,
    )
    if solution.result != diffrax.RESULTS.successful:
        raise RuntimeError(f"the Lorenz-63 reference solve failed: {solution.result}")
    return solution.ys


def generate(dt: float, t_train: float, t_val: float, t_test: float):
    """A trajectory on the attractor (after a burn-in of 20 time units from (-8, 7, 27)),
    sampled every `dt` over training, validation and test regions of the given lengths."""
    dtype = jnp.zeros(()).dtype
    count = int(round((t_train + t_val + t_test) / dt))
    # The times in float64 NumPy: TrajectoryData checks that they are equispaced to 1e-9, which
    # a float32 grid is not.
    ts = np.arange(count + 1) * dt
    # One solve: the burn-in, then the saves (the first, at 20, is the trajectory's start).
    ys = np.asarray(simulate(jnp.array([-8.0, 7.0, 27.0], dtype), jnp.asarray(20.0 + ts, dtype)))
    return ys[0], ts, ys


# --8<-- [end:generate]


def main(small: bool = False, out: pathlib.Path = OUT) -> dict:
    out = pathlib.Path(out)
    out.mkdir(parents=True, exist_ok=True)
    began = time.perf_counter()
    transcript = Transcript()
    show = transcript.show

    transcript.part("data")
    # --8<-- [start:data]
    dt = 0.02
    t_train, t_val, t_test = (2.0, 0.4, 1.0) if small else (20.0, 2.0, 8.0)
    start, ts, ys = generate(dt, t_train, t_val, t_test)
    n_train, n_val = int(round(t_train / dt)), int(round(t_val / dt))
    show(
        f"Lorenz-63 from {np.array2string(np.asarray(start), precision=4)} "
        "(after a burn-in of 20): "
        f"{len(ts)} states every {dt} on [0, {ts[-1]:g}], {ys.dtype}"
    )
    # --8<-- [end:data]

    transcript.part("windows")
    # --8<-- [start:windows]
    # Normalise with the training region's statistics only: the future is not seen.
    mean, scale = ys[:n_train].mean(axis=0), ys[:n_train].std(axis=0)
    data = jaxode.TrajectoryData(
        "lorenz",
        ts,
        (ys - mean) / scale,
        windows={
            "train": (0, n_train),
            "val": (n_train, n_train + n_val),
            "test": (n_train + n_val, len(ts)),
        },
        window=8,  # a training sample: 8 consecutive states (0.14 time units)
    )
    show(
        f"training region [0, {t_train:g}]: {data.sizes()['train']} windows "
        f"of {data.window} states; "
        f"validation [{t_train:g}, {t_train + t_val:g}], test [{t_train + t_val:g}, {ts[-1]:g}]"
    )
    # --8<-- [end:windows]

    transcript.part("training")
    # --8<-- [start:training]
    hidden, steps = (8, 30) if small else (64, 12000)
    field = jaxode.MLPField(3, hidden, jaxode.ConstantBasis(t1=t_train), key=jax.random.PRNGKey(0))
    model = jaxode.TrajectoryModel(
        field,
        data.dt,
        data.window,
        solver=diffrax.Tsit5(),
        stepsize_controller=diffrax.ConstantStepSize(),
        dt0=data.dt / 2,
    )
    begin = time.perf_counter()
    result = jaxode.fit(
        model,
        data.arrays("train"),
        optax.adam(optax.cosine_decay_schedule(3e-3, steps)),
        key=jax.random.PRNGKey(1),
        val=data.arrays("val"),
        steps=steps,
        batch_size=64,
        sampling="replacement",
        eval_every=max(steps // 20, 10),
        clip_norm=1.0,
        count_evaluations=False,
    )
    trained = result.model
    first, last = result.history[0], result.history[-1]
    show(
        f"trained {result.steps} steps in {time.perf_counter() - begin:.0f} s: window loss "
        f"{first['train_loss']:.2e} -> {last['train_loss']:.2e}; returned step {result.best_step}"
    )
    # --8<-- [end:training]

    transcript.part("extrapolation")
    # --8<-- [start:extrapolation]
    # Extrapolate: one solve from the last training state to the end of the data.
    a = n_train - 1
    x0 = np.concatenate([ts[a : a + 1], data.ys[a]])[None]
    future = predict(trained.for_outputs((len(ts) - a) * 3), jnp.asarray(x0))
    predicted = mean + scale * np.asarray(future).reshape(-1, 3)  # back to physical units
    truth, times = ys[a:], ts[a:]
    errors = np.linalg.norm(predicted - truth, axis=1) / np.linalg.norm(truth, axis=1)
    vpt = valid_prediction_time(errors, times)
    show(
        f"largest Lyapunov exponent {LYAPUNOV} (Sprott 2003): one Lyapunov time is "
        f"{1 / LYAPUNOV:.2f} time units"
    )
    show(
        f"extrapolation from t = {times[0]:g}: relative error {errors[int(round(0.5 / dt))]:.3f} "
        f"after 0.5, {errors[int(round(1.0 / dt))]:.3f} after 1.0 time units"
    )
    show(
        f"valid prediction time (error < 30 %): {vpt:.2f} time units = {vpt * LYAPUNOV:.2f} "
        "Lyapunov times"
    )
    # --8<-- [end:extrapolation]

    transcript.part("spread")
    # --8<-- [start:spread]
    # One run is one draw: under chaos the valid prediction time depends on where a run starts.
    # Runs from several true states past the training window (states the model never saw, on
    # the same orbit) give its spread; they are solved as one batch.
    horizon, spacing, count = (0.6, 0.2, 3) if small else (4.0, 0.5, 8)
    length = int(round(horizon / dt)) + 1
    starts = a + np.arange(count) * int(round(spacing / dt))
    x0s = np.concatenate([ts[starts, None], data.ys[starts]], axis=1)
    runs = predict(trained.for_outputs(length * 3), jnp.asarray(x0s))
    runs = mean + scale * np.asarray(runs).reshape(count, length, 3)
    truths = ys[starts[:, None] + np.arange(length)]
    run_errors = np.linalg.norm(runs - truths, axis=2) / np.linalg.norm(truths, axis=2)
    vpts = np.array([valid_prediction_time(e, ts[:length]) for e in run_errors])
    show(
        f"from {count} true states {spacing:g} apart from t = {ts[a]:g}, runs of {horizon:g}: "
        f"valid prediction time {np.median(vpts) * LYAPUNOV:.2f} Lyapunov times (median; "
        f"{vpts.min() * LYAPUNOV:.2f} to {vpts.max() * LYAPUNOV:.2f})"
    )
    # --8<-- [end:spread]

    transcript.part("statistics")
    # --8<-- [start:statistics]
    # Past the valid prediction time, the statistics of the motion are what is left to compare.
    show("statistics over the extrapolation    mean (x, y, z)               std (x, y, z)")
    for name, states in (("truth", truth), ("model", predicted)):
        show(
            f"  {name:34s} {' '.join(f'{v:6.2f}' for v in states.mean(axis=0)):28s} "
            f"{' '.join(f'{v:6.2f}' for v in states.std(axis=0))}"
        )
    # --8<-- [end:statistics]

    fig = plt.figure(figsize=(11, 6))
    grid = fig.add_gridspec(3, 2, width_ratios=(2.2, 1))
    shown = ts >= max(0.0, t_train - 3.0)
    for k, name in enumerate("xyz"):
        ax = fig.add_subplot(grid[k, 0])
        ax.plot(ts[shown], ys[shown, k], color="k", linewidth=1, label="truth")
        ax.plot(
            times,
            predicted[:, k],
            color="C1",
            linestyle="--",
            linewidth=1.2,
            label="neural ODE, run from the last training state",
        )
        ax.axvspan(ts[shown][0], t_train, color="0.88", label="training data")
        ax.axvline(
            times[0] + vpt,
            color="C3",
            linestyle=":",
            label=f"valid prediction time ({vpt * LYAPUNOV:.1f} Lyapunov times)",
        )
        ax.set_ylabel(name)
        if k == 0:
            handles, labels = ax.get_legend_handles_labels()
            fig.legend(
                handles,
                labels,
                loc="upper center",
                ncols=4,
                fontsize="small",
                bbox_to_anchor=(0.5, 0.96),
            )
        if k == 2:
            ax.set_xlabel("t")
    ax = fig.add_subplot(grid[:, 1])
    ax.plot(truth[:, 0], truth[:, 2], color="k", linewidth=0.6, label="truth")
    ax.plot(predicted[:, 0], predicted[:, 2], color="C1", linewidth=0.6, alpha=0.8, label="model")
    ax.set_xlabel("x")
    ax.set_ylabel("z")
    ax.set_title(f"past t = {times[0]:g}", fontsize="medium")
    ax.legend(fontsize="small")
    fig.suptitle(
        f"Lorenz-63: a neural ODE trained on t in [0, {t_train:g}], then run alone from "
        "the last training state",
        fontsize="medium",
        y=0.995,
    )
    fig.tight_layout(rect=(0, 0, 1, 0.945))
    fig.savefig(out / "extrapolation.png", dpi=120)
    plt.close(fig)
    transcript.part("end")
    show("wrote extrapolation.png")
    show(
        f"finished in {time.perf_counter() - began:.0f} s ({'small' if small else 'full'} size, "
        f"{jax.default_backend()}, {os.cpu_count()} cores)"
    )
    transcript.write(out / "output.txt")
    return dict(
        start=np.asarray(start),
        ts=ts,
        ys=ys,
        history=result.history,
        errors=errors,
        times=times,
        vpt=vpt,
        predicted=predicted,
        vpts=vpts,
        run_errors=run_errors,
        starts=starts,
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="the test suite's size (seconds)")
    parser.add_argument("--out", type=pathlib.Path, default=OUT, help="folder for the outputs")
    arguments = parser.parse_args()
    main(small=arguments.small, out=arguments.out)
