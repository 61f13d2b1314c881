"""An inverse problem through a trained surrogate: recover a simulation's inputs from its outputs.

A surrogate stands in for a simulation in loops that call it thousands of times. Here the
"simulation" is a damped oscillator observed at 20 times, $y_k = e^{-\\zeta \\omega t_k}
\\cos(\\omega \\sqrt{1 - \\zeta^2}\\, t_k)$, with inputs $(\\omega, \\zeta)$. A surrogate trained
on samples of it is turned into a JAX function of physical inputs (`jaxode.surrogate_function`),
and a `jax.jit`-compiled Adam loop recovers the inputs of given observations by gradient descent
through it: several problems at once (`jax.vmap`), each from the centre of the training domain.

Run: `python docs/examples/inverse.py` (about a minute on 2 CPU cores; `--small` for the test
suite's size).
"""

# --8<-- [start:imports]
import argparse
import os
import pathlib
import tempfile
import time

import jax
import jax.numpy as jnp
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import optax
from _transcript import Transcript

import jaxode

OUT = pathlib.Path(__file__).resolve().parent / "output" / "inverse"
LOW, HIGH = np.array([1.0, 0.05]), np.array([3.0, 0.5])  # omega, zeta
TIMES = np.linspace(0.0, 4.0, 20)
# --8<-- [end:imports]


# --8<-- [start:simulation]
def simulate(x: np.ndarray) -> np.ndarray:
    """The damped oscillator at `TIMES` for each row (omega, zeta) of `x`."""
    omega, zeta = x[:, :1], x[:, 1:]
    return np.exp(-zeta * omega * TIMES) * np.cos(omega * np.sqrt(1 - zeta**2) * TIMES)


# --8<-- [end:simulation]


# --8<-- [start:invert]
def invert(function, observed: jnp.ndarray, steps: int, rate: float) -> jnp.ndarray:
    """The inputs whose surrogate outputs are closest to `observed` (least squares), found
    by Adam on inputs scaled to the unit box, from its centre; one problem per row."""
    optimiser = optax.adam(rate)
    low, span = jnp.asarray(LOW), jnp.asarray(HIGH - LOW)

    def misfit(u, y):
        return jnp.sum((function(low + span * u) - y) ** 2)

    def solve(y):
        u = jnp.full(2, 0.5)

        def step(_, carry):
            u, state = carry
            updates, state = optimiser.update(jax.grad(misfit)(u, y), state)
            return jnp.clip(optax.apply_updates(u, updates), 0.0, 1.0), state

        u, _ = jax.lax.fori_loop(0, steps, step, (u, optimiser.init(u)))
        return low + span * u

    return jax.jit(jax.vmap(solve))(observed)


# --8<-- [end:invert]


def main(small: bool = False, out: pathlib.Path = OUT) -> dict:
    out = pathlib.Path(out)
    out.mkdir(parents=True, exist_ok=True)
    began = time.perf_counter()
    transcript = Transcript()
    show = transcript.show

    transcript.part("data")
    # --8<-- [start:data]
    samples, epochs, steps = (400, 30, 300) if small else (2000, 300, 2000)
    rng = np.random.default_rng(0)
    x = LOW + (HIGH - LOW) * rng.uniform(size=(samples, 2))
    folder = pathlib.Path(tempfile.mkdtemp(prefix="jaxode-inverse-"))
    np.savez(folder / "oscillator.npz", x=x, y=simulate(x))
    show(f"{samples} simulations: 2 inputs (omega, zeta) -> {len(TIMES)} observations")
    # --8<-- [end:data]

    transcript.part("train")
    # --8<-- [start:train]
    config = jaxode.RunConfig.from_dict(
        {
            "data": {"dataset": str(folder / "oscillator.npz")},
            "model": {"model": "resnet", "field": "layer", "width": 32, "steps": 8},
            "train": {"epochs": epochs, "learning_rate": 3e-3},
        }
    )
    trained, _, metrics = jaxode.train(config, folder / "run", progress=False)
    show(f"surrogate: test relative error {metrics['test_physical_global']:.4f} (physical)")
    # --8<-- [end:train]

    transcript.part("recover")
    # --8<-- [start:recover]
    function = jaxode.surrogate_function(trained)  # one input (2,) -> outputs (20,), in JAX
    truth = LOW + (HIGH - LOW) * np.random.default_rng(1).uniform(size=(5, 2))
    tic = time.perf_counter()
    found = np.asarray(invert(function, jnp.asarray(simulate(truth)), steps, 0.02))
    seconds = time.perf_counter() - tic
    show(f"5 inverse problems, {steps} Adam steps each, one compiled program: {seconds:.1f} s")
    show("   omega true   found     zeta true   found")
    for (w, z), (fw, fz) in zip(truth, found):
        show(f"   {w:9.4f} {fw:8.4f}     {z:9.4f} {fz:8.4f}")
    relative = np.abs(found - truth) / (HIGH - LOW)
    show(f"largest error in units of the input ranges: {relative.max():.4f}")
    # --8<-- [end:recover]

    transcript.part("own")
    # --8<-- [start:own]
    # Observations the surrogate itself made: here the inputs are recoverable exactly, and
    # what is left is the optimiser's error, not the surrogate's.
    own = jax.vmap(function)(jnp.asarray(truth))
    again = np.asarray(invert(function, own, steps, 0.02))
    show(
        "from the surrogate's own outputs, largest error in units of the input ranges: "
        f"{(np.abs(again - truth) / (HIGH - LOW)).max():.2e}"
    )
    # --8<-- [end:own]

    fig, (left, right) = plt.subplots(1, 2, figsize=(9.6, 3.8))
    fitted = np.asarray(jax.vmap(function)(jnp.asarray(found)))
    for k, colour in zip(range(3), ("C0", "C1", "C2")):
        left.plot(TIMES, simulate(truth[k : k + 1])[0], "o", color=colour, markersize=4)
        left.plot(TIMES, fitted[k], "-", color=colour, label=f"problem {k}")
    left.set_xlabel("time (observations: dots; surrogate at the recovered inputs: lines)")
    left.set_ylabel("y")
    left.legend(fontsize="small")
    left.grid(True, alpha=0.3)
    right.scatter(
        truth[:, 0], truth[:, 1], marker="o", facecolors="none", edgecolors="k", label="true inputs"
    )
    right.scatter(found[:, 0], found[:, 1], marker="x", color="C3", label="recovered")
    right.set_xlim(LOW[0], HIGH[0])
    right.set_ylim(LOW[1], HIGH[1])
    right.set_xlabel("omega")
    right.set_ylabel("zeta")
    right.legend(fontsize="small")
    right.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "inverse.png", dpi=120)
    plt.close(fig)
    transcript.part("end")
    show("wrote inverse.png")
    show(
        f"finished in {time.perf_counter() - began:.0f} s ({'small' if small else 'full'} size, "
        f"{jax.default_backend()}, {os.cpu_count()} cores)"
    )
    transcript.write(out / "output.txt")
    return dict(
        truth=truth,
        found=found,
        again=again,
        function=function,
        trained=trained,
        metrics=metrics,
        seconds=time.perf_counter() - began,
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="the test suite's size (seconds)")
    parser.add_argument("--out", type=pathlib.Path, default=OUT, help="folder for the outputs")
    arguments = parser.parse_args()
    main(small=arguments.small, out=arguments.out)
