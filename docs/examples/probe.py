"""Probe a trained surrogate far outside its training range, against a law that keeps growing.

A ball thrown upwards at 20 m/s has height $h(t) = 20 t - g t^2 / 2$ and velocity
$v(t) = 20 - g t$. A surrogate learns $(h, v)$ from $t \\in [0, 4]$ s. Inside that range it is
accurate; outside it, a network whose inputs pass through tanh units converges exponentially to
a constant along every ray, while the law grows like $t^2$ and $t$. `jaxode.probes` puts numbers
on this: `ray_limit` classifies each output's tail along rays $x_0 + r d$ (limit, rate, onset,
verdict), and `error_vs_distance` measures how the error grows with the distance from the
training box. The probe is first checked on a function whose answer is known in closed form.

Run: `python docs/examples/probe.py` (about a minute on 2 CPU cores; `--small` for the test
suite's size). Probes run in the precision you choose; float64 resolves longer tails.
"""

# --8<-- [start:imports]
import argparse
import os
import pathlib
import time

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
from jaxode import probes

OUT = pathlib.Path(__file__).resolve().parent / "output" / "probe"
evaluate = eqx.filter_jit(lambda function, points: jax.vmap(function)(points))
T_TRAIN = (0.0, 4.0)  # seconds of flight the surrogate sees
SCALE = 20.0  # outputs are trained divided by this (metres and metres per second are ~20)
LAW = probes.FreeFall()
THROW = jnp.array([0.0, 20.0])  # h(0) = 0 m, v(0) = 20 m/s
# --8<-- [end:imports]


# --8<-- [start:truth]
def truth(t):
    """$(h, v)$ of the throw at time `t` (a 1-vector), in closed form."""
    return LAW.trajectory(THROW, jnp.stack([jnp.zeros_like(t[0]), t[0]]))[-1]


# --8<-- [end:truth]


# --8<-- [start:closed_form]
def closed_form(x):
    """$0.3 + 2\\tanh(0.5 x + 1) - \\tanh(3 x)$: limits 1.3 and -0.7, slowest rate 2 * 0.5 = 1."""
    return 0.3 + 2 * jnp.tanh(0.5 * x[0] + 1) - jnp.tanh(3 * x[0])


# --8<-- [end:closed_form]


# --8<-- [start:physical]
class Physical(eqx.Module):
    """The surrogate as a function of physical time: inputs mapped to [-1, 1], outputs scaled.

    A Module rather than a closure: the probes differentiate along rays in forward mode and
    switch every `NeuralODE` they find in the model's PyTree to `diffrax.ForwardMode()`. A neural
    ODE hidden in a lambda cannot be found, and its reverse-mode adjoint refuses `jax.jvp`; the
    ResNet here would not mind, but a Module works for every model."""

    model: jaxode.Surrogate

    def __call__(self, t):
        centre, half = sum(T_TRAIN) / 2, (T_TRAIN[1] - T_TRAIN[0]) / 2
        return SCALE * self.model((t - centre) / half)


# --8<-- [end:physical]


# --8<-- [start:train]
def train(small: bool, *, key) -> jaxode.Surrogate:
    """A surrogate of $(h, v)$ on the training range: a ResNet (8 forward-Euler steps) over an MLP
    field with Legendre weights. Probes treat every jaxode model alike; a ResNet compiles fast."""
    k_data, k_field, k_model = jax.random.split(key, 3)
    ts = jax.random.uniform(k_data, (320, 1), minval=T_TRAIN[0], maxval=T_TRAIN[1])
    centre, half = sum(T_TRAIN) / 2, (T_TRAIN[1] - T_TRAIN[0]) / 2
    x = (ts - centre) / half
    y = jax.vmap(truth)(ts) / SCALE
    field = jaxode.MLPField(
        8 if small else 16, 16 if small else 32, jaxode.LegendreBasis(2), key=k_field
    )
    model = jaxode.Surrogate(1, 2, jaxode.ResNet(field, t1=1.0, steps=8), key=k_model)
    steps = 60 if small else 3000
    result = jaxode.fit(
        model,
        (x[:256], y[:256]),
        optax.adam(optax.cosine_decay_schedule(1e-2, steps)),
        key=key,
        val=(x[256:], y[256:]),
        steps=steps,
        batch_size=64,
        eval_every=max(steps // 10, 1),
        count_evaluations=False,
    )
    return result.model


# --8<-- [end:train]


def main(small: bool = False, out: pathlib.Path = OUT) -> dict:
    out = pathlib.Path(out)
    out.mkdir(parents=True, exist_ok=True)
    began = time.perf_counter()
    transcript = Transcript()
    show = transcript.show

    transcript.part("check")
    # --8<-- [start:check]
    show(f"precision: {jnp.zeros(()).dtype}")

    # 1. The probe on a closed form: two rays from the origin, limits and rate known exactly.
    check = probes.ray_limit(closed_form, [0.0], [[1.0], [-1.0]], np.linspace(0.0, 60.0, 241))
    show("closed form 0.3 + 2 tanh(0.5 x + 1) - tanh(3 x): expected limits 1.3 and -0.7, rate 1")
    for d, name in enumerate(("+x", "-x")):
        show(
            f"  ray {name}: {check.verdicts[0, d, 0]}, limit {check.limit[0, d, 0]:.6f}, "
            f"rate {check.rate[0, d, 0]:.4f}"
        )
    # --8<-- [end:check]

    transcript.part("inside")
    # --8<-- [start:inside]
    # 2. Train the surrogate and check it inside its range.
    model = train(small, key=jax.random.PRNGKey(0))
    surrogate = Physical(model)
    # Geometric radii: fast tails settle on the dense start, slow ones on the far end.
    radii = np.geomspace(1e-2, 1e4, 120 if small else 400)
    # Every point this example evaluates, in one batch (one compilation): the training range,
    # then both rays of the probe below.
    base, directions = [sum(T_TRAIN) / 2], [[1.0], [-1.0]]
    inside = np.linspace(T_TRAIN[0], T_TRAIN[1], 101)
    points = jnp.asarray(np.concatenate([inside, base[0] + radii, base[0] - radii])[:, None])
    model_values = np.asarray(evaluate(surrogate, points))
    law_values = np.asarray(evaluate(truth, points))
    predicted, expected = model_values[: len(inside)], law_values[: len(inside)]
    inside_error = jaxode.global_relative_error(predicted, expected)
    show(f"surrogate on t in [0, 4] s: relative error {inside_error:.2e}")
    # --8<-- [end:inside]

    transcript.part("rays")
    # --8<-- [start:rays]
    # 3. Rays from the middle of the training range, into the future (+t) and the past (-t).
    model_rays = probes.ray_limit(surrogate, base, directions, radii)
    law_rays = probes.ray_limit(truth, base, directions, radii)
    show("tails along t = 2 s + r d, r up to 1e4 s")
    show("  output    ray   law: verdict   power    surrogate: verdict   limit      rate     onset")
    for d, ray in enumerate(("+t", "-t")):
        for o, name in enumerate(("height", "velocity")):
            show(
                f"  {name:8s}  {ray}    {law_rays.verdicts[0, d, o]:12s}   "
                f"{law_rays.power[0, d, o]:5.3f}    "
                f"{model_rays.verdicts[0, d, o]:18s}   {model_rays.limit[0, d, o]:8.3f}   "
                f"{model_rays.rate[0, d, o]:6.3f}   {model_rays.onset[0, d, o]:7.3f}"
            )
    for note in model_rays.notes:
        show(f"  note: {note}")
    # --8<-- [end:rays]

    transcript.part("distance")
    # --8<-- [start:distance]
    # 4. Error against distance from the training box: it grows like the law itself.
    distances = np.geomspace(0.1, 1e3, 12)
    far = probes.error_vs_distance(
        surrogate,
        truth,
        [T_TRAIN[0]],
        [T_TRAIN[1]],
        distances,
        num_points=64,
        key=jax.random.PRNGKey(1),
    )
    show(
        f"RMS error at distance d outside [0, 4] s: in the range {far.in_domain_error:.3g}; "
        f"at d = {distances[0]:g} s {far.shell_error[0]:.3g}, at d = {distances[-1]:g} s "
        f"{far.shell_error[-1]:.3g}; growth {far.verdict} (power {far.power:.2f})"
    )
    # --8<-- [end:distance]

    # The figure: each output along both rays against the distance, the training range shaded.
    # Linear in the output, so the plateaus read as plateaus; the law leaves the frame.
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2))
    rays = (("future, t = 2 s + r", "C0"), ("past, t = 2 s - r", "C1"))
    for o, (ax, name, unit) in enumerate(zip(axes, ("height", "velocity"), ("m", "m/s"))):
        for d, (ray, colour) in enumerate(rays):
            ray_points = slice(len(inside) + d * len(radii), len(inside) + (d + 1) * len(radii))
            ax.plot(radii, model_values[ray_points, o], color=colour, label=f"surrogate, {ray}")
            ax.plot(
                radii, law_values[ray_points, o], color=colour, linestyle="--", label=f"law, {ray}"
            )
            ax.axhline(
                model_rays.limit[0, d, o],
                color=colour,
                linestyle=":",
                linewidth=1,
                label=f"probed limit, {ray}",
            )
        ax.axvspan(radii[0], (T_TRAIN[1] - T_TRAIN[0]) / 2, color="0.88", label="training range")
        low, high = model_values[:, o].min(), model_values[:, o].max()
        ax.set_ylim(low - 0.5 * (high - low), high + 0.5 * (high - low))
        ax.set_xscale("log")
        ax.set_xlabel("distance r from the middle of the training range (s)")
        ax.set_ylabel(f"{name} ({unit})")
        ax.set_title(
            f"{name}: the law is {law_rays.verdicts[0, 0, o]}, the surrogate "
            f"{model_rays.verdicts[0, 0, o]}",
            fontsize="medium",
        )
        ax.grid(True, which="major", alpha=0.3)
    fig.legend(*axes[0].get_legend_handles_labels(), loc="lower center", ncols=4, fontsize="small")
    fig.suptitle(
        "A surrogate trained on 4 s of a ball's flight, asked about the next 10 000 s",
        fontsize="medium",
    )
    fig.tight_layout(rect=(0, 0.12, 1, 1))
    fig.savefig(out / "rays.png", dpi=120)
    plt.close(fig)
    transcript.part("end")
    show("wrote rays.png")
    show(
        f"finished in {time.perf_counter() - began:.0f} s ({'small' if small else 'full'} size, "
        f"{jax.default_backend()}, {os.cpu_count()} cores)"
    )
    transcript.write(out / "output.txt")
    return dict(
        check=check,
        model_rays=model_rays,
        law_rays=law_rays,
        far=far,
        inside_error=inside_error,
        radii=radii,
        points=np.asarray(points),
        model_values=model_values,
        law_values=law_values,
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="the test suite's size (seconds)")
    parser.add_argument("--out", type=pathlib.Path, default=OUT, help="folder for the outputs")
    arguments = parser.parse_args()
    main(small=arguments.small, out=arguments.out)
