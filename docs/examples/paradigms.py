"""Discretize-then-optimize against optimize-then-discretize: gradients, memory, evaluations.

A neural ODE's gradient can be taken two ways. `DiscretizeThenOptimize()` differentiates
through the solver's own steps: the exact gradient of the discrete model, at the cost of
storing (or recomputing from checkpoints) the forward steps. `OptimizeThenDiscretize()` solves
the continuous adjoint equation backwards in time: memory that does not grow with the number
of steps, and a gradient that is only as accurate as the backward solve. This example measures
the three things that decide between them on one surrogate: how far apart the gradients are
at each solver tolerance (and against finite differences), the memory of the compiled gradient
program (`memory_analysis` of the XLA executable), and the right-hand-side evaluations of each
(`jaxode.EvaluationCounter`).

Run: `python docs/examples/paradigms.py` (float32, the default; add `--float64` to see the
gradients converge past float32's rounding; `--small` for the test suite's size).
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
from _transcript import Transcript
from jax.flatten_util import ravel_pytree

import jaxode

OUT = pathlib.Path(__file__).resolve().parent / "output" / "paradigms"
PARADIGMS = {
    "discretize-then-optimize": jaxode.DiscretizeThenOptimize(),
    "optimize-then-discretize": jaxode.OptimizeThenDiscretize(),
}
# --8<-- [end:imports]


# --8<-- [start:model]
def build(paradigm, width: int, hidden: int, max_steps: int = 4096, *, key) -> jaxode.Surrogate:
    field_key, model_key = jax.random.split(key)
    field = jaxode.MLPField(width, hidden, jaxode.LegendreBasis(3), key=field_key)
    node = jaxode.NeuralODE(
        field, t1=1.0, solver=diffrax.Dopri5(), paradigm=paradigm, max_steps=max_steps
    )
    return jaxode.Surrogate(15, 10, node, key=model_key)


def mse(model, x, y):
    return jnp.mean((model.predict(x) - y) ** 2)


# --8<-- [end:model]


# --8<-- [start:gradient_program]
def gradient_program(model, x, y):
    """The compiled loss-and-gradient of `model`'s parameters, with the solver tolerance as an
    argument: one compilation serves every tolerance (a Python float inside the model would be
    baked into the program, one compilation each)."""
    params, static = eqx.partition(model, eqx.is_inexact_array)

    def loss(params, rtol, x, y):
        model = eqx.combine(params, static)
        controller = diffrax.PIDController(rtol=rtol, atol=1e-2 * rtol)
        # OptimizeThenDiscretize() without its own controller reuses this one backwards.
        model = eqx.tree_at(lambda m: m.dynamics.stepsize_controller, model, controller)
        return mse(model, x, y)

    rtol = jnp.asarray(1e-3, x.dtype)
    compiled = jax.jit(jax.value_and_grad(loss)).lower(params, rtol, x, y).compile()
    return compiled, params


def flat(tree) -> np.ndarray:
    """Every leaf of `tree` in one vector (the inverse is `ravel_pytree`'s second output)."""
    return np.asarray(ravel_pytree(tree)[0])


# --8<-- [end:gradient_program]


# --8<-- [start:temp_bytes]
def temp_bytes(compiled) -> int | None:
    """Scratch memory XLA allocated for the program (`None` where the backend does not say)."""
    analysis = compiled.memory_analysis()
    return None if analysis is None else int(analysis.temp_size_in_bytes)


# --8<-- [end:temp_bytes]


def main(small: bool = False, out: pathlib.Path = OUT) -> dict:
    out = pathlib.Path(out)
    out.mkdir(parents=True, exist_ok=True)
    began = time.perf_counter()
    transcript = Transcript()
    show = transcript.show

    transcript.part("setup")
    # --8<-- [start:setup]
    dtype = jnp.zeros(()).dtype
    float64 = dtype == jnp.float64
    width, hidden, batch = (4, 8, 8) if small else (16, 32, 64)
    tolerances = (1e-3, 1e-5) if small else (1e-3, 1e-4, 1e-5, 1e-6)
    if float64:
        tolerances += (1e-8, 1e-10)
    data = jaxode.load_dataset("elm")
    x, y = (jnp.asarray(a[:batch], dtype) for a in data.arrays("train"))
    key = jax.random.PRNGKey(0)
    show(
        f"surrogate: neural ODE (Dopri5) over an MLP field (width {width}, hidden {hidden}), "
        f"Legendre degree 3 weights; MSE on {batch} ELM samples; {dtype}"
    )
    # --8<-- [end:setup]

    transcript.part("gradients")
    # --8<-- [start:gradients]
    # 1. Gradients at each tolerance. The same parameters (same key) in both paradigms.
    programs = {
        name: gradient_program(build(p, width, hidden, key=key), x, y)
        for name, p in PARADIGMS.items()
    }
    params = programs["discretize-then-optimize"][1]
    gradients = {name: {} for name in PARADIGMS}
    for rtol in tolerances:
        for name, (compiled, p) in programs.items():
            value, grad = compiled(p, jnp.asarray(rtol, dtype), x, y)
            gradients[name][rtol] = (float(value), flat(grad))
    dto, otd = gradients["discretize-then-optimize"], gradients["optimize-then-discretize"]
    tightest = tolerances[-1]
    reference = dto[tightest][1]  # the best gradient available: through the tightest solve
    show("relative differences of the gradients, ||g_a - g_b|| / ||g_b||")
    show(
        "   rtol     loss          OTD vs DTO   DTO vs ref   OTD vs ref   (ref: DTO at "
        f"rtol {tightest:g})"
    )
    differences = {}
    for rtol in tolerances:
        g_dto, g_otd = dto[rtol][1], otd[rtol][1]
        between = np.linalg.norm(g_otd - g_dto) / np.linalg.norm(g_dto)
        differences[rtol] = between
        show(
            f"  {rtol:6.0e}  {dto[rtol][0]:.6e}  {between:10.2e}   "
            f"{np.linalg.norm(g_dto - reference) / np.linalg.norm(reference):10.2e}   "
            f"{np.linalg.norm(g_otd - reference) / np.linalg.norm(reference):10.2e}"
        )
    # --8<-- [end:gradients]

    transcript.part("finite_differences")
    # --8<-- [start:finite_differences]
    # 2. Both against central finite differences along one random direction, at the tightest
    # tolerance. The step trades truncation error (h^2) against rounding (eps / h).
    direction = jax.random.normal(jax.random.PRNGKey(1), reference.shape, dtype)
    direction = np.asarray(direction / jnp.linalg.norm(direction))
    h = 1e-5 if float64 else 1e-2
    unflatten = ravel_pytree(params)[1]
    compiled = programs["discretize-then-optimize"][0]

    def loss_at(shift):
        return float(
            compiled(unflatten(flat(params) + shift), jnp.asarray(tightest, dtype), x, y)[0]
        )

    finite_difference = (loss_at(h * direction) - loss_at(-h * direction)) / (2 * h)
    directional = {
        "DTO": float(dto[tightest][1] @ direction),
        "OTD": float(otd[tightest][1] @ direction),
    }
    show(
        f"directional derivative at rtol {tightest:g}, central differences with h = {h:g}: "
        f"{finite_difference:.8e}"
    )
    for name, value in directional.items():
        show(
            f"  {name}: {value:.8e} (relative difference "
            f"{abs(value - finite_difference) / abs(finite_difference):.1e})"
        )
    # --8<-- [end:finite_differences]

    transcript.part("evaluations")
    # --8<-- [start:evaluations]
    # 3. Right-hand-side evaluations per sample, measured by counting wrappers around the field.
    counts = {}
    show("field evaluations per sample at rtol 1e-5 (loss, then the extra ones of its gradient)")
    show("  paradigm                    forward   backward   accepted steps   rejected")
    for name, paradigm in PARADIGMS.items():
        model = build(paradigm, width, hidden, key=key)
        model = eqx.tree_at(
            lambda m: m.dynamics.stepsize_controller,
            model,
            diffrax.PIDController(rtol=1e-5, atol=1e-7),
        )
        counts[name] = jaxode.EvaluationCounter(mse)(model, x, y)
        c = counts[name]
        show(
            f"  {name:26s}  {c.forward_evaluations:7.0f}   {c.backward_evaluations:8.0f}   "
            f"{c.accepted_steps:14.0f}   {c.rejected_steps:8.0f}"
        )
    # --8<-- [end:evaluations]

    transcript.part("memory")
    # --8<-- [start:memory]
    # 4. Memory. Diffrax sizes the checkpoints of discretize-then-optimize from `max_steps`
    # (the solve's length is not known when compiling); the adjoint needs none.
    memory = {}
    budgets = (4096,) if small else (64, 256, 1024, 4096)
    show("scratch memory of the compiled loss-and-gradient program (XLA memory_analysis), KiB")
    show("  max_steps   " + "   ".join(f"{name:>24s}" for name in PARADIGMS))
    for max_steps in budgets:
        row = {}
        for name, paradigm in PARADIGMS.items():
            if max_steps == 4096:
                compiled = programs[name][0]  # already compiled above
            else:
                compiled = gradient_program(
                    build(paradigm, width, hidden, max_steps, key=key), x, y
                )[0]
            row[name] = temp_bytes(compiled)
        memory[max_steps] = row
        show(
            f"  {max_steps:9d}   "
            + "   ".join(f"{'n/a' if v is None else f'{v / 1024:.1f}':>24s}" for v in row.values())
        )
    # --8<-- [end:memory]

    fig, (left, right) = plt.subplots(1, 2, figsize=(9.6, 3.8))
    left.loglog(tolerances, [differences[r] for r in tolerances], "o-", color="C0")
    left.set_xlabel("solver rtol (atol = rtol / 100)")
    left.set_ylabel("||g_OTD - g_DTO|| / ||g_DTO||")
    left.set_title("the adjoint's gradient converges to the discrete one", fontsize="medium")
    left.invert_xaxis()
    left.grid(True, which="both", alpha=0.3)
    for k, name in enumerate(PARADIGMS):
        kib = [memory[m][name] / 1024 if memory[m][name] is not None else np.nan for m in budgets]
        right.plot(budgets, kib, "o-", color=f"C{k + 1}", label=name)
    right.set_xscale("log", base=2)
    right.set_xlabel("max_steps")
    right.set_ylabel("scratch memory of the gradient (KiB)")
    right.set_title("memory of the compiled program", fontsize="medium")
    right.grid(True, which="both", alpha=0.3)
    right.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(out / "paradigms.png", dpi=120)
    plt.close(fig)

    transcript.part("end")
    show("wrote paradigms.png")
    show(
        f"finished in {time.perf_counter() - began:.0f} s ({'small' if small else 'full'} size, "
        f"{jax.default_backend()}, {os.cpu_count()} cores)"
    )
    transcript.write(out / "output.txt")
    return dict(
        tolerances=tolerances,
        differences=differences,
        finite_difference=finite_difference,
        directional=directional,
        counts=counts,
        memory=memory,
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="the test suite's size (seconds)")
    parser.add_argument("--float64", action="store_true", help="run in double precision")
    parser.add_argument(
        "--out",
        type=pathlib.Path,
        help="folder for the outputs (default: "
        "output/paradigms, or output/paradigms/float64 with --float64)",
    )
    arguments = parser.parse_args()
    if arguments.float64:
        jax.config.update("jax_enable_x64", True)  # a script may choose; the library never does
    default = OUT / "float64" if arguments.float64 else OUT
    main(small=arguments.small, out=arguments.out or default)
