"""A cohort: several seeds of one surrogate trained as one compiled program.

Every claim about a model should hold over seeds, and small models leave a device mostly idle.
`jaxode.fit_cohort` trains K models of one structure (here K initialisations and minibatch
orders) as one program, a `vmap` over the members, each keeping its own early stopping, best
parameters and failure state. This example reports every member, the mean and sample standard
deviation over the seeds, and the ensemble that averages the members' predictions; it also
checks that a member ends where `jaxode.fit` ends the same model alone.

Run: `python docs/examples/cohort.py` (about a minute on 2 CPU cores; `--small` for the test
suite's size).
"""

# --8<-- [start:imports]
import argparse
import os
import pathlib
import time

import equinox as eqx
import jax
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import optax
from _transcript import Transcript
from jax.flatten_util import ravel_pytree

import jaxode

OUT = pathlib.Path(__file__).resolve().parent / "output" / "cohort"
# --8<-- [end:imports]


# --8<-- [start:build]
@eqx.filter_jit
def predict(model, x):
    return model.predict(x)


def build(seed: int, width: int, hidden: int) -> jaxode.Surrogate:
    """Member `seed`: a ResNet over an MLP field with Legendre degree 3 weights. Every member has
    the same structure; only the values drawn from the seed differ."""
    field_key, model_key = jax.random.split(jax.random.PRNGKey(seed))
    field = jaxode.MLPField(width, hidden, jaxode.LegendreBasis(3), key=field_key)
    return jaxode.Surrogate(15, 10, jaxode.ResNet(field, t1=1.0, steps=12), key=model_key)


# --8<-- [end:build]


def main(small: bool = False, out: pathlib.Path = OUT) -> dict:
    out = pathlib.Path(out)
    out.mkdir(parents=True, exist_ok=True)
    began = time.perf_counter()
    transcript = Transcript()
    show = transcript.show

    transcript.part("setup")
    # --8<-- [start:setup]
    seeds, width, hidden, epochs = ((0, 1, 2), 8, 16, 2) if small else ((0, 1, 2, 3, 4), 32, 64, 40)
    data = jaxode.load_dataset("elm")
    train, val = data.arrays("train"), data.arrays("val")
    x_test, y_test = data.arrays("test", normalised=False)
    steps = epochs * (len(train[0]) // 32)
    optimiser = optax.adam(optax.cosine_decay_schedule(3e-3, steps))
    settings = dict(val=val, epochs=epochs, batch_size=32, clip_norm=1.0)
    models = [build(seed, width, hidden) for seed in seeds]
    keys = [jax.random.PRNGKey(100 + seed) for seed in seeds]
    show(
        f"{len(seeds)} members: ResNet (12 steps) over an MLP field (width {width}, hidden "
        f"{hidden}), Legendre degree 3; {epochs} epochs on ELM"
    )
    # --8<-- [end:setup]

    transcript.part("train")
    # --8<-- [start:train]
    results = jaxode.fit_cohort(models, train, optimiser, keys=keys, **settings)
    show(
        f"one program: traced {results[0].num_traces} time(s), compiled in "
        f"{results[0].compile_time:.1f} s"
    )
    # --8<-- [end:train]

    transcript.part("members")
    # --8<-- [start:members]
    # Per member: errors in physical units (the data's own), from the best validated step.
    show("  seed   status      best step   test error (global)   per sample")
    predictions, errors = [], []
    for seed, result in zip(seeds, results):
        p = data.y_norm.invert(np.asarray(predict(result.model, data.x_norm.apply(x_test))))
        predictions.append(p)
        errors.append(
            (jaxode.global_relative_error(p, y_test), jaxode.mean_relative_error(p, y_test))
        )
        show(
            f"  {seed:4d}   {result.status:10s}  {result.best_step:9d}   {errors[-1][0]:19.4f}   "
            f"{errors[-1][1]:10.4f}"
        )
    errors = np.array(errors)
    mean, std = errors.mean(axis=0), errors.std(axis=0, ddof=1)  # sample std: n - 1
    show(
        f"  mean ± std (n = {len(seeds)}, ddof = 1)   {mean[0]:.4f} ± {std[0]:.4f}   "
        f"{mean[1]:.4f} ± {std[1]:.4f}"
    )
    # --8<-- [end:members]

    transcript.part("ensemble")
    # --8<-- [start:ensemble]
    # The ensemble: the average of the members' predictions. By the triangle inequality its
    # global error cannot exceed the members' mean; how far below it lands says how
    # independent the members' errors are.
    ensemble = np.mean(predictions, axis=0)
    ensemble_error = jaxode.global_relative_error(ensemble, y_test)
    show(
        f"  ensemble of the {len(seeds)} members: test error {ensemble_error:.4f} "
        f"(per sample {jaxode.mean_relative_error(ensemble, y_test):.4f})"
    )
    # --8<-- [end:ensemble]

    transcript.part("alone")
    # --8<-- [start:alone]
    # Member 0 trained alone with jaxode.fit: the same model to rounding (a cohort is a vmap,
    # not an approximation).
    alone = jaxode.fit(models[0], train, optimiser, key=keys[0], **settings)
    difference = float(
        np.max(
            np.abs(
                ravel_pytree(eqx.filter(alone.model, eqx.is_inexact_array))[0]
                - ravel_pytree(eqx.filter(results[0].model, eqx.is_inexact_array))[0]
            )
        )
    )
    show(
        f"member 0 against the same model trained alone by jaxode.fit: parameters differ by at "
        f"most {difference:.1e}"
    )
    # --8<-- [end:alone]

    fig, (left, right) = plt.subplots(
        1, 2, figsize=(9.6, 3.8), gridspec_kw=dict(width_ratios=(3, 2))
    )
    for seed, result in zip(seeds, results):
        left.plot(
            [r["step"] for r in result.history],
            [r["val_global"] for r in result.history],
            label=f"seed {seed}",
            linewidth=1,
        )
    left.set_xlabel("optimisation step")
    left.set_ylabel("validation error (global, normalised)")
    left.set_ylim(top=min(left.get_ylim()[1], 0.5))
    left.grid(True, alpha=0.3)
    left.legend(fontsize="small")
    right.bar([str(s) for s in seeds], errors[:, 0], color="C0", label="members")
    right.axhline(mean[0], color="k", linestyle="--", label=f"mean {mean[0]:.4f}")
    right.axhline(ensemble_error, color="C3", label=f"ensemble {ensemble_error:.4f}")
    right.set_ylim(0.9 * min(errors[:, 0].min(), ensemble_error), 1.05 * errors[:, 0].max())
    right.set_xlabel("seed")
    right.set_ylabel("test error (global, physical)")
    right.legend(fontsize="small", loc="lower right")
    fig.tight_layout()
    fig.savefig(out / "cohort.png", dpi=120)
    plt.close(fig)
    transcript.part("end")
    show("wrote cohort.png")
    show(
        f"finished in {time.perf_counter() - began:.0f} s ({'small' if small else 'full'} size, "
        f"{jax.default_backend()}, {os.cpu_count()} cores)"
    )
    transcript.write(out / "output.txt")
    return dict(
        seeds=seeds,
        results=results,
        member_errors=errors,
        mean=mean,
        std=std,
        ensemble_error=ensemble_error,
        alone_difference=difference,
        predictions=np.array(predictions),
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="the test suite's size (seconds)")
    parser.add_argument("--out", type=pathlib.Path, default=OUT, help="folder for the outputs")
    arguments = parser.parse_args()
    main(small=arguments.small, out=arguments.out)
