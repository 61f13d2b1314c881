"""Steps per second of `jaxode.fit`'s compiled engine against hand-written training loops on
the study's ELM neural-ODE surrogate, measured side by side in one process.

Model: `jaxode.preset("study-node")` (ELM data in the study's protocol; neural ODE, width 15,
MLP field with hidden 50, Legendre basis, Dopri5 at rtol 1e-7 / atol 1e-9, float32), trained
with Adam (constant learning rate, no clipping) on the MSE of minibatches of 20. Variants, each
`--steps` steps from the same initial model on the same float32 training arrays:

- `fit chunk=C`: `jaxode.fit(..., eval_every=C)`: C steps per compiled `lax.scan`, minibatch
  indices drawn on the device (default `sampling="epochs"`: a permutation per epoch).
- `fit eval_every=1`: one step per chunk (a host round trip and fit's evaluation bookkeeping
  after every step).
- `hand step`: a `jax.jit` step written directly against the model (`value_and_grad` of the
  MSE of `model.predict(xb)` plus the Optax update), called with arrays only (the model is
  partitioned once with `eqx.partition`, its static part closed over), taking the minibatches
  that fit takes (epoch e visits `permutation(fold_in(key, e))`, as `fit` documents, computed
  before the timing and placed on the device), so that every variant does the same solver
  work (asynchronous dispatch, synchronised every C steps),
  traced inside `jaxode.skip_value_checks()` as fit's programs are: the same compiled work,
  without the host callback of `predict`'s NaN check of its input.
- `hand step, checks on`: the same step traced without that context, as a loop written over
  `model.predict` gets it by default (one host callback per step).
- `hand step, synced`: the same, reading the loss back after every step (as a loop that logs
  it would).
- `hand scan C`: a `jax.lax.scan` over C such steps per call.

Then, with `--pairs P`, the compiled chunk alone: the program `fit` runs for each chunk
(the run `MinibatchTrainer.start` returns, as `fit` builds it) against the hand-written scan,
called alternately chunk by chunk, P pairs from the same initial model on the same
minibatches (the final parameters compared): load changes slower than a chunk, so the ratios
of adjacent chunks pin down what the rates of whole runs cannot on shared cores. The median of
the per-pair ratios comes with a bootstrap 95 % interval.

Compilation is excluded everywhere. The rates are steady-state: steps 2C to N (for `fit`
from its `history` wall times; the first chunk runs on fresh buffers and the first evaluation
compiles fit's bookkeeping program, which fit counts in its `wall_time`); rates over all N
steps are reported too. The two variants of each goal run back to back (which first
alternating, the pairs' order rotated in every repeat) and each ratio is the median over
repeats of ratios measured within one repeat, so a change of machine load hits both sides
alike. A temporary persistent compilation cache spares the repeated
`fit` calls their XLA compilation.

    python benchmarks/engine_speed.py [--steps 500] [--repeats 15] [--chunk 100] [--pairs 60]
        [--out benchmarks/results/engine_speed.json]
"""

import argparse
import dataclasses
import os
import shutil
import tempfile
import time

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from _results import run_context, write_json

import jaxode


def study_setup(batch_size: int, seed: int):
    """The study-node preset's data (float32 arrays) and initial model (throw=False, as `fit`
    solves)."""
    cfg = jaxode.preset("study-node")
    d = cfg.data
    data = jaxode.load_dataset(
        d.dataset, seed=d.split_seed, protocol=d.protocol, num_outputs=d.num_outputs
    )
    x, y = data.arrays("train")
    x, y = np.asarray(x, np.float32), np.asarray(y, np.float32)
    if batch_size > len(x):
        raise SystemExit(f"--batch-size {batch_size} exceeds the {len(x)} training samples")
    model = jaxode.build_model(cfg, data.in_size, data.out_size, key=jax.random.PRNGKey(seed))
    # `fit` solves with throw=False (failures come back as data); do the same by hand.
    model = eqx.tree_at(
        lambda m: m.dynamics, model, dataclasses.replace(model.dynamics, throw=False)
    )
    return cfg, x, y, model


def hand_written(model, optimiser):
    """A jitted step and a jitted scan of steps, both taking arrays only (traced where they
    are first called)."""
    params, static = eqx.partition(model, eqx.is_inexact_array)

    def loss(p, xb, yb):
        return jnp.mean((eqx.combine(p, static).predict(xb) - yb) ** 2)

    def step(p, opt_state, xs, ys, index):
        value, grads = jax.value_and_grad(loss)(p, xs[index], ys[index])
        updates, opt_state = optimiser.update(grads, opt_state, p)
        return eqx.apply_updates(p, updates), opt_state, value

    def scan(p, opt_state, xs, ys, indices):
        def body(carry, index):
            p, o, value = step(*carry, xs, ys, index)
            return (p, o), value

        (p, opt_state), values = jax.lax.scan(body, (p, opt_state), indices)
        return p, opt_state, values

    return params, static, jax.jit(step), jax.jit(scan)


def fit_indices(key, steps: int, n: int, batch: int) -> np.ndarray:
    """(steps, batch) row indices of fit's minibatches for `key` (`sampling="epochs"`):
    epoch e visits `permutation(fold_in(key, e))`, the last partial batch dropped."""
    per_epoch = n // batch
    rows = []
    for epoch in range(-(-steps // per_epoch)):
        order = np.asarray(jax.random.permutation(jax.random.fold_in(key, epoch), n))
        rows.extend(order[: per_epoch * batch].reshape(per_epoch, batch))
    return np.asarray(rows[:steps], np.int32)


def chunk_pairs(model, optimiser, xs, ys, key, scan, chunk: int, pairs: int, batch: int) -> dict:
    """`fit`'s compiled chunk program against the hand-written `scan`, called alternately
    chunk by chunk (which first alternating), `pairs` pairs; the first two are left out."""
    n = xs.shape[0]
    trainer = jaxode.MinibatchTrainer(optimiser, steps=pairs * chunk, batch_size=batch)
    problem = jaxode.Problem(
        models=(model,),
        keys=(key,),
        train=(np.asarray(xs), np.asarray(ys)),
        val=None,
        stopping=jaxode.Stopping(patience=None, divergence_factor=None, max_failed_batches=None),
        evaluation=jaxode.Evaluation(every=chunk, count_evaluations=False),
        placement=jaxode.SingleDevice(),
    )
    # The run `fit` would drive, built as `fit` builds it; its chunk is called here directly.
    run = trainer.start(problem, [jaxode.MemberRecord(None)], resume=False)
    programs, state, a = run.programs, run.state, run.arrays
    keys, regularisers = a.keys, a.regularisers
    params0 = eqx.partition(model, eqx.is_inexact_array)[0]
    opt0 = optimiser.init(params0)
    program = programs.chunk.lower(
        state, a.xs, a.ys, keys, regularisers, programs.table(state.step, keys)
    ).compile()
    indices = jnp.asarray(fit_indices(key, pairs * chunk, n, batch))
    p, o = params0, opt0
    engine_s, hand_s = [], []
    for k in range(pairs):
        orders = jax.block_until_ready(programs.table(state.step, keys))
        rows = jax.block_until_ready(indices[k * chunk : (k + 1) * chunk])
        for side in ("engine", "hand") if k % 2 else ("hand", "engine"):
            tic = time.perf_counter()
            if side == "engine":
                state = jax.block_until_ready(
                    program(state, a.xs, a.ys, keys, regularisers, orders)[0]
                )
                engine_s.append(time.perf_counter() - tic)
            else:
                p, o, _ = jax.block_until_ready(scan(p, o, xs, ys, rows))
                hand_s.append(time.perf_counter() - tic)
    ratios = np.array(hand_s[2:]) / np.array(engine_s[2:])
    medians = np.median(np.random.default_rng(0).choice(ratios, (2000, len(ratios))), axis=1)
    flat = lambda t: np.concatenate([np.ravel(a) for a in jax.tree_util.tree_leaves(t)])
    final = flat(jax.tree_util.tree_map(lambda a: a[0], state.params))
    return dict(
        pairs=len(ratios),
        ratio_median=float(np.median(ratios)),
        ratio_ci95=[float(v) for v in np.quantile(medians, [0.025, 0.975])],
        ratio_quartiles=[float(v) for v in np.quantile(ratios, [0.25, 0.75])],
        engine_chunk_s_median=float(np.median(engine_s[2:])),
        hand_chunk_s_median=float(np.median(hand_s[2:])),
        params_max_abs_diff=float(np.max(np.abs(final - flat(p)))),
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=500, help="steps per variant per repeat")
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--chunk", type=int, default=100, help="steps per compiled chunk/scan")
    parser.add_argument(
        "--pairs",
        type=int,
        default=60,
        help="chunk-by-chunk pairs of fit's compiled chunk and the hand-written scan (0: none)",
    )
    parser.add_argument("--batch-size", type=int, default=20)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--no-cache",
        action="store_true",
        help="do not use a (temporary) JAX compilation cache for the repeated fits",
    )
    parser.add_argument("--out", default="benchmarks/results/engine_speed.json")
    args = parser.parse_args()
    if args.steps % args.chunk or args.steps < 3 * args.chunk:
        raise SystemExit("--steps must be a multiple of --chunk and at least 3 chunks")
    if args.pairs and args.pairs < 5:
        raise SystemExit("--pairs must be 0 or at least 5 (the first two pairs are left out)")
    load_before = os.getloadavg()
    cache = None
    if not args.no_cache:
        # Every `fit` call builds new programs; a temporary persistent cache spares the
        # repeats their XLA compilation (compilation is excluded from every rate anyway).
        cache = tempfile.mkdtemp(prefix="jaxode-engine-cache-")
        jax.config.update("jax_compilation_cache_dir", cache)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)

    cfg, x, y, model = study_setup(args.batch_size, args.seed)
    optimiser = optax.adam(args.learning_rate)
    n, batch, steps, chunk = len(x), args.batch_size, args.steps, args.chunk
    measured = steps - 2 * chunk  # steady state: the first two chunks are left out
    xs, ys = jnp.asarray(x), jnp.asarray(y)
    params0, static, step, scan = hand_written(model, optimiser)
    checked_step = hand_written(model, optimiser)[2]
    opt0 = optimiser.init(params0)
    probe_x = xs[:batch]

    # Compile the hand-written programs once, before any timing (the first call traces).
    tic = time.perf_counter()
    with jaxode.skip_value_checks():
        jax.block_until_ready(step(params0, opt0, xs, ys, jnp.zeros(batch, jnp.int32)))
        step_compile = time.perf_counter() - tic
        tic = time.perf_counter()
        jax.block_until_ready(scan(params0, opt0, xs, ys, jnp.zeros((chunk, batch), jnp.int32)))
        scan_compile = time.perf_counter() - tic
    jax.block_until_ready(checked_step(params0, opt0, xs, ys, jnp.zeros(batch, jnp.int32)))
    for program, shape, checks in (
        (step, batch, False),
        (scan, (chunk, batch), False),
        (checked_step, batch, True),
    ):
        text = program.lower(params0, opt0, xs, ys, jnp.zeros(shape, jnp.int32)).as_text()
        if ("callback" in text) != checks:
            raise RuntimeError("a hand-written program does not hold the checks it should")

    @jax.jit
    def solver_steps(p):
        trained = eqx.combine(p, static)
        return trained.dynamics.solve_batch(jax.vmap(trained.features)(probe_x)).num_steps

    def ending(p):
        """Adaptive steps of the trained model's solve of the first batch, and its parameters
        flattened (same work?)."""
        flat = np.concatenate([np.ravel(a) for a in jax.tree_util.tree_leaves(p)])
        return dict(ode_steps=int(solver_steps(p)), params=flat)

    def run_fit(eval_every, key):
        result = jaxode.fit(
            model,
            (x, y),
            optimiser,
            key=key,
            steps=steps,
            batch_size=batch,
            eval_every=eval_every,
            count_evaluations=False,
            divergence_factor=None,
            max_failed_batches=None,
        )
        if result.steps != steps or result.status != "completed":
            raise RuntimeError(f"fit: {result.status}, {result.steps} steps: {result.message}")
        walls = {row["step"]: row["wall_time"] for row in result.history}
        p = eqx.filter(result.model, eqx.is_inexact_array)
        return dict(
            seconds=walls[steps],
            steady=walls[steps] - walls[2 * chunk],
            compile_s=result.compile_time,
            num_traces=result.num_traces,
            **ending(p),
        )

    def timed(marks):
        """Total and steady-state (steps 2C..N) seconds from (step, time) marks."""
        t = dict(marks)
        return dict(seconds=t[steps] - t[0], steady=t[steps] - t[2 * chunk])

    def run_step(indices, synced, program=step):
        p, o = params0, opt0
        marks = [(0, time.perf_counter())]
        for k, index in enumerate(indices, start=1):
            p, o, value = program(p, o, xs, ys, index)
            if synced:
                float(value)
            if k % chunk == 0:
                jax.block_until_ready(p)
                marks.append((k, time.perf_counter()))
        return dict(timed(marks), **ending(p))

    def run_scan(indices):
        p, o = params0, opt0
        marks = [(0, time.perf_counter())]
        for begin in range(0, steps, chunk):
            p, o, values = scan(p, o, xs, ys, indices[begin : begin + chunk])
            jax.block_until_ready(p)
            marks.append((begin + chunk, time.perf_counter()))
        return dict(timed(marks), **ending(p))

    names = [
        f"fit chunk={chunk}",
        "fit eval_every=1",
        "hand step",
        "hand step, synced",
        f"hand scan {chunk}",
        "hand step, checks on",
    ]
    samples = {name: [] for name in names}
    for repeat in range(args.repeats):
        key = jax.random.PRNGKey(1000 + repeat)
        indices = jnp.asarray(fit_indices(key, steps, n, batch))
        index_list = list(indices)  # device arrays, so the loop does not time transfers
        runs = {
            names[0]: lambda key=key: run_fit(chunk, key),
            names[1]: lambda key=key: run_fit(1, key),
            names[2]: lambda rows=index_list: run_step(rows, False),
            names[3]: lambda rows=index_list: run_step(rows, True),
            names[4]: lambda rows=indices: run_scan(rows),
            names[5]: lambda rows=index_list: run_step(rows, False, checked_step),
        }
        # The variants of each goal run back to back, which of them first alternating, so
        # that the machine's load changes as little as possible between the two.
        pairs_run = [(names[0], names[4]), (names[1], names[2]), (names[3], names[5])]
        pairs_run = pairs_run[repeat % 3 :] + pairs_run[: repeat % 3]
        order = [name for pair in pairs_run for name in (pair[::-1] if repeat % 2 else pair)]
        for name in order:
            samples[name].append(runs[name]())
        line = "  ".join(f"{name}: {measured / samples[name][-1]['steady']:.0f}" for name in names)
        print(f"repeat {repeat + 1}/{args.repeats} (steady steps/s)  {line}", flush=True)

    def rate(name, which="steady"):
        count = measured if which == "steady" else steps
        return [count / s[which] for s in samples[name]]

    def ratio(a, b, which="steady"):
        """Median over repeats of the within-repeat ratio of steps/s a / b."""
        return float(np.median(np.array(rate(a, which)) / np.array(rate(b, which))))

    rows = []
    for name in names:
        r = rate(name)
        row = dict(
            variant=name,
            steps_per_s=float(np.median(r)),
            min_steps_per_s=float(min(r)),
            max_steps_per_s=float(max(r)),
            ms_per_step=1e3 / float(np.median(r)),
            total_steps_per_s=float(np.median(rate(name, "seconds"))),
            ode_steps_after=[s["ode_steps"] for s in samples[name]],
            params_rel_diff_to_hand_scan=[
                float(np.max(np.abs(s["params"] - r["params"])) / np.max(np.abs(r["params"])))
                for s, r in zip(samples[name], samples[names[4]])
            ],
        )
        if name.startswith("fit"):
            row["compile_s"] = [round(s["compile_s"], 2) for s in samples[name]]
            row["num_traces"] = [s["num_traces"] for s in samples[name]]
        rows.append(row)
    pairs = [
        (names[0], names[4]),
        (names[0], names[2]),
        (names[1], names[2]),
        (names[1], names[3]),
        (names[4], names[2]),
        (names[2], names[5]),
    ]
    ratios = {f"{a} / {b}": ratio(a, b) for a, b in pairs}
    spreads = {
        f"{a} / {b}": [
            float(v)
            for v in np.quantile(np.array(rate(a)) / np.array(rate(b)), [0.0, 0.25, 0.75, 1.0])
        ]
        for a, b in pairs
    }
    total_ratios = {f"{a} / {b}": ratio(a, b, "seconds") for a, b in pairs}
    goals = {
        f"{names[0]} / {names[4]} >= 0.95": ratios[f"{names[0]} / {names[4]}"] >= 0.95,
        f"{names[1]} / {names[2]} >= 0.95": ratios[f"{names[1]} / {names[2]}"] >= 0.95,
    }
    paired = None
    if args.pairs:
        paired = chunk_pairs(
            model,
            optimiser,
            xs,
            ys,
            jax.random.PRNGKey(999),
            scan,
            chunk,
            args.pairs,
            batch,
        )
        goals[f"compiled chunk / {names[4]}, chunk by chunk >= 0.95"] = (
            paired["ratio_median"] >= 0.95
        )

    print(
        f"\n{steps} steps per variant per repeat ({measured} steady: steps {2 * chunk}-{steps}), "
        f"{args.repeats} repeats, batch {batch}, {jax.default_backend()}, "
        f"load average before {load_before}"
    )
    print(
        f"{'variant':26s} {'steps/s':>8s} {'min':>7s} {'max':>7s} {'ms/step':>8s} "
        f"{'all-steps/s':>11s} {'params vs scan':>14s}  compile s (per repeat)"
    )
    for r in rows:
        compiled = ", ".join(map(str, r.get("compile_s", [])))
        print(
            f"{r['variant']:26s} {r['steps_per_s']:8.1f} {r['min_steps_per_s']:7.1f} "
            f"{r['max_steps_per_s']:7.1f} {r['ms_per_step']:8.2f} {r['total_steps_per_s']:11.1f}"
            f" {max(r['params_rel_diff_to_hand_scan']):14.1e}  {compiled}"
        )
    print(f"hand-written compile: step {step_compile:.2f} s, scan {scan_compile:.2f} s")
    print(f"{'ratio of steps/s (median of per-repeat ratios)':52s} {'steady':>7s} {'all':>7s}")
    for name, value in ratios.items():
        low, q1, q3, high = spreads[name]
        print(
            f"{name:52s} {value:7.3f} {total_ratios[name]:7.3f}   per repeat {low:.3f} "
            f"[{q1:.3f}, {q3:.3f}] {high:.3f}"
        )
    if paired is not None:
        low, high = paired["ratio_ci95"]
        print(
            f"compiled chunk / {names[4]}, {paired['pairs']} adjacent pairs: median "
            f"{paired['ratio_median']:.3f} (95 % interval {low:.3f} to {high:.3f}, quartiles "
            f"{paired['ratio_quartiles'][0]:.3f} to {paired['ratio_quartiles'][1]:.3f}); "
            f"chunk {paired['engine_chunk_s_median']:.3f} s against "
            f"{paired['hand_chunk_s_median']:.3f} s; final parameters differ by "
            f"{paired['params_max_abs_diff']:.1e}"
        )
    for name, met in goals.items():
        print(f"goal {name}: {'met' if met else 'missed'}")

    result = {
        **run_context("engine_speed", load_before),
        "model": "study-node preset (ELM, study protocol): neural ODE width 15, MLP hidden 50, "
        f"Legendre degree {cfg.model.degree}, Dopri5 rtol {cfg.model.rtol} atol "
        f"{cfg.model.atol}, float32; Adam lr {args.learning_rate}, MSE",
        "train_samples": n,
        "batch_size": batch,
        "steps": steps,
        "chunk": chunk,
        "repeats": args.repeats,
        "compilation_cache": cache is not None,
        "hand_compile_s": {"step": step_compile, "scan": scan_compile},
        "rows": rows,
        "steady_steps": measured,
        "ratios": ratios,
        "ratio_quantiles_steady": spreads,
        "ratios_all_steps": total_ratios,
        "goals": goals,
        "chunk_pairs": paired,
        "samples_s": {name: [s["seconds"] for s in samples[name]] for name in names},
        "samples_steady_s": {name: [s["steady"] for s in samples[name]] for name in names},
        "note": "ratio_quantiles_steady: min, quartiles and max over repeats of the per-repeat "
        "ratios (the spread behind each median). steps/s: steady state, steps 2C..N (the "
        "first chunk runs on fresh buffers and "
        "the first evaluation compiles fit's bookkeeping program, which fit counts in its "
        "wall_time); all-steps/s: all N steps (fit: history[-1]['wall_time']). "
        "ode_steps_after: adaptive Dopri5 steps of the trained model's solve of one "
        "fixed batch, per repeat; params_rel_diff_to_hand_scan: max |difference| of "
        "the final parameters against the hand-written scan's over their max |value| "
        "(float32 rounding: every variant trains on the same minibatches, fit drawing "
        "them on the device, the hand-written loops taking them from the host, so "
        "they do the same solver work). The hand-written programs are traced "
        "inside jaxode.skip_value_checks() (no host callback, as in fit's programs), "
        "except 'hand step, checks on'.",
    }
    write_json(args.out, result)
    if cache is not None:
        shutil.rmtree(cache, ignore_errors=True)


if __name__ == "__main__":
    main()
