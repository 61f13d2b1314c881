"""Why a vmapped cohort of width-15 models trains only ~1.5x faster than its members one after
the other on a CPU: the cost of the matrix product that dominates one ResNet step, alone and
under `jax.vmap` over K members.

One layer of the study's ResNet multiplies a minibatch of 20 states of width 15 by a 15 x 15
weight. Each variant runs `--repeats` such products, each followed by `tanh` as in the layer,
inside one compiled `lax.scan`, so that dispatch is paid once and the time per iteration is the
kernels' own; variants are timed in turn over `--rounds` rounds and medians reported:

- `one member`: [20, 15] @ [15, 15], what one sequential fit runs;
- `K members (vmap)`: the same product under `jax.vmap` over K members' states and weights,
  which XLA compiles to a batched dot ([K, 20, 15] @ [K, 15, 15]), what a cohort runs;
- `K members, one weight`: [20 K, 15] @ [15, 15], the same arithmetic as one wide product (not
  a cohort: members have their own weights), the bound a single large kernel would reach;
- `tanh only`: the elementwise part over [K, 20, 15].

A ratio `K members (vmap) / one member` near K means the batched product does K members'
work at K times the cost: vmapping saves dispatch and compilation, not arithmetic.

    python benchmarks/member_products.py [--members 8 64] [--repeats 100] [--rounds 15]
        [--seconds 0.1] [--out benchmarks/results/member_products.json]
"""

import argparse
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
from _results import run_context, write_json

BATCH, WIDTH = 20, 15


def compiled(product, repeats: int):
    """`repeats` products, each followed by tanh, in one compiled scan."""

    @jax.jit
    def run(h, w):
        def body(h, _):
            return jnp.tanh(product(h, w)), None

        return jax.lax.scan(body, h, None, length=repeats)[0]

    return run


def seconds(run, h, w, calls: int) -> float:
    tic = time.perf_counter()
    for _ in range(calls):
        out = run(h, w)
    jax.block_until_ready(out)
    return (time.perf_counter() - tic) / calls


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, nargs="+", default=[8, 64])
    parser.add_argument("--repeats", type=int, default=100, help="products per compiled call")
    parser.add_argument(
        "--rounds", type=int, default=15, help="rounds; each times every variant once, in turn"
    )
    parser.add_argument(
        "--seconds",
        type=float,
        default=0.1,
        help="about how long one variant is timed in one round",
    )
    parser.add_argument("--out", default="benchmarks/results/member_products.json")
    args = parser.parse_args()
    load_before = os.getloadavg()
    rng = np.random.default_rng(0)

    def array(*shape):
        return jnp.asarray(rng.normal(size=shape) / np.sqrt(WIDTH), jnp.float32)

    def matmul(h, w):
        return h @ w.T

    variants = {("one member", 1): (matmul, array(BATCH, WIDTH), array(WIDTH, WIDTH))}
    for k in args.members:
        variants[("K members (vmap)", k)] = (
            jax.vmap(matmul),
            array(k, BATCH, WIDTH),
            array(k, WIDTH, WIDTH),
        )
        variants[("K members, one weight", k)] = (
            matmul,
            array(k * BATCH, WIDTH),
            array(WIDTH, WIDTH),
        )
        variants[("tanh only", k)] = (lambda h, w: h, array(k, BATCH, WIDTH), None)
    runs, calls = {}, {}
    for name, (product, h, w) in variants.items():
        runs[name] = compiled(product, args.repeats)
        per_call = min(seconds(runs[name], h, w, 3) for _ in range(3))
        calls[name] = max(int(args.seconds / per_call), 5)
    samples = {name: [] for name in variants}
    for round_ in range(args.rounds):
        order = list(variants) if round_ % 2 == 0 else list(variants)[::-1]
        for name in order:
            _, h, w = variants[name]
            samples[name].append(1e6 * seconds(runs[name], h, w, calls[name]) / args.repeats)
    single = np.median(samples[("one member", 1)])
    rows = []
    print(
        f"{'variant':24s} {'K':>4s} {'us/iteration':>13s} {'quartiles':>15s} {'/ one member':>13s}"
    )
    for (variant, k), us in samples.items():
        q1, median, q3 = np.percentile(us, [25, 50, 75])
        rows.append(
            dict(
                variant=variant,
                members=k,
                us=float(median),
                us_quartiles=[q1, q3],
                over_one_member=float(median / single),
                samples_us=us,
            )
        )
        print(f"{variant:24s} {k:4d} {median:13.2f} {q1:7.2f}-{q3:<7.2f} {median / single:13.2f}")
    write_json(
        args.out,
        {
            **run_context("member_products", load_before),
            "shapes": {"states": [BATCH, WIDTH], "weight": [WIDTH, WIDTH]},
            "repeats": args.repeats,
            "rounds": args.rounds,
            "rows": rows,
            "note": "microseconds per scan iteration of one product followed by tanh (median over "
            "rounds; every round times each variant in turn, order alternating); each "
            "compiled call runs `repeats` iterations, so dispatch is amortised",
        },
    )


if __name__ == "__main__":
    main()
