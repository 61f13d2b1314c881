"""Train a surrogate from Python, evaluate it, save it, load it back and plot its training.

`jaxode.train` is what the `jaxode train` command runs: it takes a `RunConfig`, trains, and
leaves a run directory that holds everything needed to evaluate, resume or reload the model.
Here it trains the default surrogate (a neural ODE over an MLP field whose weights are Legendre
polynomials of degree 3 in time) on the bundled ELM land-model data.

Run: `python docs/examples/train_surrogate.py` (about 2 minutes on 2 CPU cores; `--small`
trains a tiny ResNet for one epoch in seconds, which is what the test suite runs).
"""

# --8<-- [start:imports]
import argparse
import os
import pathlib
import tempfile
import time

import jax
import matplotlib

matplotlib.use("Agg")  # files only: the example must run on a machine without a display
import matplotlib.pyplot as plt
import numpy as np
from _transcript import Transcript

import jaxode

OUT = pathlib.Path(__file__).resolve().parent / "output" / "train_surrogate"
# --8<-- [end:imports]


# --8<-- [start:configuration]
def configuration(small: bool) -> jaxode.RunConfig:
    """The defaults of `jaxode train` (80 epochs) with evaluation counting on, or a tiny model
    for the test suite."""
    # The library never switches JAX's precision; the run follows what the caller chose.
    precision = "float64" if jax.config.jax_enable_x64 else "float32"
    config = jaxode.RunConfig().replace("train", precision=precision, count_evaluations=True)
    if small:
        # A fixed-step ResNet compiles in a fraction of an adaptive solver's time.
        config = config.replace("model", model="resnet", steps=4, width=8, hidden=16)
        config = config.replace("train", epochs=1)
    return config


# --8<-- [end:configuration]


# --8<-- [start:plot]
def plot_history(history: list, best_step: int, path: pathlib.Path) -> None:
    """Training loss and validation error against the optimisation step."""
    steps = [row["step"] for row in history]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(6.4, 5.2), sharex=True)
    top.semilogy(steps, [row["train_loss"] for row in history], color="C0")
    top.set_ylabel("training loss\n(MSE, normalised)")
    bottom.plot(steps, [row["val_global"] for row in history], color="C1")
    bottom.set_ylabel("validation error\n(global relative)")
    bottom.set_xlabel("optimisation step")
    for ax in (top, bottom):
        ax.axvline(best_step, color="k", linestyle=":", label=f"returned (step {best_step})")
        ax.grid(True, which="both", alpha=0.3)
    top.legend()
    top.set_title("ELM surrogate: neural ODE, Legendre degree 3 weights")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# --8<-- [end:plot]


def main(small: bool = False, out: pathlib.Path = OUT, run_dir: pathlib.Path | None = None) -> dict:
    """Trains, evaluates, reloads and plots; writes `output.txt` and `loss_curves.png` to `out`.

    `run_dir` is where the run directory goes (default: a temporary folder, deleted at the
    end, so that the committed output holds no checkpoints)."""
    out = pathlib.Path(out)
    out.mkdir(parents=True, exist_ok=True)
    began = time.perf_counter()
    transcript = Transcript()
    show = transcript.show

    transcript.part("data")
    # --8<-- [start:data]
    data = jaxode.load_dataset("elm")
    sizes = data.sizes()
    show(
        f"ELM: {data.in_size} inputs -> {data.out_size} outputs; "
        f"{sizes['train']} train / {sizes['val']} val / {sizes['test']} test samples"
    )
    # --8<-- [end:data]

    transcript.part("config")
    # --8<-- [start:config]
    config = configuration(small)
    m, t = config.model, config.train
    show(
        f"model: {m.model} over an {m.field} field (width {m.width}, hidden {m.hidden}), "
        f"{m.basis} weights of degree {m.degree}; {t.epochs} epochs of batches of {t.batch_size}, "
        f"{t.precision}"
    )
    # --8<-- [end:config]

    transcript.part("train")
    # --8<-- [start:train]
    with tempfile.TemporaryDirectory() as scratch:
        run_dir = pathlib.Path(scratch) / "elm-run" if run_dir is None else pathlib.Path(run_dir)
        start = time.perf_counter()
        trained, result, metrics = jaxode.train(config, run_dir, progress=False)
        show(
            f"training: {result.status} after {result.steps} steps "
            f"({time.perf_counter() - start:.0f} s, of which {result.compile_time:.0f} s "
            "compiling); "
            f"the returned parameters are those of step {result.best_step}, the best on validation"
        )
        show(f"run directory: {', '.join(sorted(p.name for p in run_dir.iterdir()))}")
        # --8<-- [end:train]

        transcript.part("metrics")
        # --8<-- [start:metrics]
        # The metrics were computed at the end of training, on every split and in both units:
        # normalised (what the model sees) and physical (what the data file holds).
        show("relative test error      global    per sample")
        show(
            f"  normalised units        {metrics['test_global']:.4f}    "
            f"{metrics['test_per_sample']:.4f}"
        )
        show(
            f"  physical units          {metrics['test_physical_global']:.4f}    "
            f"{metrics['test_physical_per_sample']:.4f}"
        )
        show(
            "field evaluations per solve at the end: "
            f"{metrics['forward_evaluations']:.0f} forward, "
            f"{metrics['backward_evaluations']:.0f} backward (gradient)"
        )
        # --8<-- [end:metrics]

        transcript.part("reload")
        # --8<-- [start:reload]
        # The run directory is the saved model: `load` rebuilds it from config.toml,
        # normalisation.json and model.eqx, and predicts in physical units.
        loaded = jaxode.load(run_dir)
        x_test, y_test = data.arrays("test", normalised=False)
        before, after = trained.predict(x_test), loaded.predict(x_test)
        recomputed = jaxode.global_relative_error(after, y_test)
        show(
            f"loaded from disk: predictions differ from the trained model's by at most "
            f"{np.max(np.abs(after - before)):.1e}; its test error, recomputed: {recomputed:.4f}"
        )
        # Evaluating the loaded model on the data set gives the metrics train() wrote.
        again = jaxode.evaluate_model(loaded.model, data)
        show(
            "evaluate_model on the loaded model: test error "
            f"{again['test_global']:.4f} (normalised)"
        )
        # --8<-- [end:reload]

        transcript.part("samples")
        # --8<-- [start:samples]
        show("first three test samples, outputs 0-3 (physical units)")
        for i in range(3):
            show(
                f"  sample {i}: predicted {np.array2string(after[i, :4], precision=3)}  "
                f"true {np.array2string(y_test[i, :4], precision=3)}"
            )
        # --8<-- [end:samples]

    plot_history(result.history, result.best_step, out / "loss_curves.png")
    transcript.part("end")
    show("wrote loss_curves.png")
    show(
        f"finished in {time.perf_counter() - began:.0f} s ({'small' if small else 'full'} size, "
        f"{jax.default_backend()}, {os.cpu_count()} cores)"
    )
    transcript.write(out / "output.txt")
    return dict(
        metrics=metrics,
        history=result.history,
        status=result.status,
        predictions=after,
        predictions_before=before,
        recomputed_test_error=recomputed,
        evaluated=again,
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="the test suite's size (seconds)")
    parser.add_argument("--out", type=pathlib.Path, default=OUT, help="folder for the outputs")
    parser.add_argument("--run-dir", type=pathlib.Path, help="keep the run directory here")
    arguments = parser.parse_args()
    main(small=arguments.small, out=arguments.out, run_dir=arguments.run_dir)
