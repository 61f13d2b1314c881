"""A cohort of adaptive neural ODEs sharded over devices: `fit_cohort(devices=D,
shard_map=True)` (one loop per device) against `shard_map=False` (the vmapped program
partitioned by XLA) and `devices=None` (one device), and the collectives XLA puts inside the
adaptive solver's while loops when it partitions a vmapped solve.

Runs in a subprocess with `JAX_PLATFORMS=cpu` and
`XLA_FLAGS=--xla_force_host_platform_device_count=D` (D = `--devices`, default 4); with
`--no-subprocess` it runs in this process on its own devices (e.g. D GPUs).
On a CPU machine the D devices are host threads sharing its cores: on a 2-core machine 4
"devices" share 2 cores, so sharding cannot speed anything up there; what this shows on CPU is
the overhead of each layout and the structure of the compiled programs.

Model: `jaxode.preset("study-node")` (ELM, width 15, MLP hidden 50, Dopri5 rtol 1e-7 / atol
1e-9, float32), K members (`--members`, default 8), Adam, MSE, batches of 20 drawn with
replacement, `--steps` steps evaluated every `--chunk`. Time per step is the steady state
(steps 2C..N from the history wall times). Variants are interleaved over `--repeats`.

HLO: the same structure written with public JAX: the members' stacked parameters with their
member axis sharded over a `NamedSharding` of the D devices, the members' batches likewise, and
`jax.jit` of `jax.vmap` over members of the MSE of `Surrogate.predict` (forward and
`value_and_grad`), or the same inside `jax.shard_map` (one loop per device). In
`.lower(...).compile().as_text()` we count collective instructions (all-reduce, all-gather,
all-to-all, collective-permute, reduce-scatter) in each while loop's body and condition
(nested computations included): a collective there runs once per loop iteration.

    python benchmarks/sharding_loops.py [--devices 4] [--members 8] [--steps 75] [--chunk 25]
        [--repeats 2] [--out benchmarks/results/sharding_loops.json]
"""

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import time

from _results import write_json

COLLECTIVES = ("all-reduce", "all-gather", "all-to-all", "collective-permute", "reduce-scatter")
_COLLECTIVE = re.compile(r"\s(" + "|".join(COLLECTIVES) + r")(?:-start)?\(")
_HEADER = re.compile(r"^\s*(?:ENTRY\s+)?%?([\w.\-]+)\s.*\{\s*$")
_WHILE = re.compile(r"\swhile\(.*?condition=%?([\w.\-]+).*?body=%?([\w.\-]+)")
_WHILE_ALT = re.compile(r"\swhile\(.*?body=%?([\w.\-]+).*?condition=%?([\w.\-]+)")
_CALLS = re.compile(
    r"(?:calls|to_apply|body|condition|true_computation|false_computation)=%?([\w.\-]+)"
)
_BRANCHES = re.compile(r"branch_computations=\{([^}]*)\}")


def computations(hlo: str) -> dict:
    """Computation name -> its instruction lines, from HLO text."""
    found, name = {}, None
    for line in hlo.splitlines():
        if name is None:
            match = _HEADER.match(line)
            if match and "=" not in line.split("(")[0]:
                name = match.group(1)
                found[name] = []
        elif line.strip() == "}":
            name = None
        else:
            found[name].append(line)
    return found


def callees(lines) -> set:
    out = set()
    for line in lines:
        out.update(_CALLS.findall(line))
        for group in _BRANCHES.findall(line):
            out.update(n.strip().lstrip("%") for n in group.split(","))
    return out


def reachable(comps: dict, roots) -> set:
    seen, todo = set(), list(roots)
    while todo:
        name = todo.pop()
        if name in seen or name not in comps:
            continue
        seen.add(name)
        todo.extend(callees(comps[name]))
    return seen


def collective_count(lines) -> dict:
    counts = {}
    for line in lines:
        for match in _COLLECTIVE.finditer(line):
            counts[match.group(1)] = counts.get(match.group(1), 0) + 1
    return counts


def while_collectives(hlo: str) -> dict:
    """Collectives in the whole module and in every while loop (body, condition and what they
    call; nested loops are listed as loops of their own too)."""
    comps = computations(hlo)
    loops = []
    for name, lines in comps.items():
        for line in lines:
            if " while(" not in line:
                continue
            match = _WHILE.search(line)
            if match:
                condition, body = match.groups()
            else:
                match = _WHILE_ALT.search(line)
                if not match:
                    continue
                body, condition = match.groups()
            inside = reachable(comps, [body, condition])
            counts = {}
            for part in inside:
                for op, c in collective_count(comps[part]).items():
                    counts[op] = counts.get(op, 0) + c
            in_condition = collective_count(
                [hlo_line for part in reachable(comps, [condition]) for hlo_line in comps[part]]
            )
            loops.append(
                dict(
                    computation=name,
                    body=body,
                    condition=condition,
                    collectives_per_iteration=counts,
                    collectives_in_condition=in_condition,
                )
            )
    total = collective_count([line for lines in comps.values() for line in lines])
    return dict(
        module_collectives=total,
        while_loops=len(loops),
        loops_with_collectives=sum(1 for loop in loops if loop["collectives_per_iteration"]),
        loops=loops,
    )


def failure(error: BaseException) -> str:
    """The exception's type and the first lines of its message."""
    lines = [line for line in str(error).splitlines() if line.strip()][:3]
    return f"{type(error).__name__}: " + " / ".join(lines)


def child(args) -> dict:
    import dataclasses

    import equinox as eqx
    import jax
    import jax.numpy as jnp
    import numpy as np
    import optax
    from jax.sharding import NamedSharding, PartitionSpec as P

    import jaxode

    if len(jax.devices()) < args.devices:
        raise SystemExit(f"need {args.devices} devices, have {jax.devices()}")
    cfg = jaxode.preset("study-node")
    cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, width=args.width))
    d = cfg.data
    data = jaxode.load_dataset(
        d.dataset, seed=d.split_seed, protocol=d.protocol, num_outputs=d.num_outputs
    )
    x, y = (np.asarray(a, np.float32) for a in data.arrays("train"))
    K, batch = args.members, args.batch_size
    models = [
        jaxode.build_model(cfg, data.in_size, data.out_size, key=jax.random.PRNGKey(k))
        for k in range(K)
    ]
    keys = [jax.random.PRNGKey(100 + k) for k in range(K)]
    optimiser = optax.adam(args.learning_rate)
    info = dict(
        devices=[str(dev) for dev in jax.devices()],
        backend=jax.default_backend(),
        jax_version=jax.__version__,
        xla_flags=os.environ.get("XLA_FLAGS"),
        members=K,
        width=args.width,
        steps=args.steps,
        chunk=args.chunk,
    )

    # --- HLO of the same structure, through public JAX -----------------------------------
    hlo = {}
    if not args.skip_hlo:
        from jax.sharding import AxisType

        # Auto axes, as fit_cohort's mesh: the compiler chooses the partitioning.
        mesh = jax.make_mesh(
            (args.devices,),
            ("members",),
            axis_types=(AxisType.Auto,),
            devices=jax.devices()[: args.devices],
        )
        sharded = NamedSharding(mesh, P("members"))
        members = [
            eqx.tree_at(lambda m: m.dynamics, m, dataclasses.replace(m.dynamics, throw=False))
            for m in models
        ]
        parts = [eqx.partition(m, eqx.is_inexact_array) for m in members]
        static = parts[0][1]
        stacked = jax.tree_util.tree_map(lambda *a: jnp.stack(a), *[p for p, _ in parts])
        index = np.random.default_rng(0).integers(0, len(x), (K, batch))
        xb, yb = jnp.asarray(x[index]), jnp.asarray(y[index])
        place = lambda tree: jax.device_put(tree, sharded)
        stacked, xb, yb = place(stacked), place(xb), place(yb)

        def member_loss(p, xm, ym):
            return jnp.mean((eqx.combine(p, static).predict(xm) - ym) ** 2)

        forward = jax.vmap(member_loss)

        def gradient(p, xm, ym):
            return jax.vmap(jax.value_and_grad(member_loss))(p, xm, ym)

        def per_device(function):
            return jax.shard_map(
                function,
                mesh=mesh,
                in_specs=(P("members"),) * 3,
                out_specs=P("members"),
                check_vma=False,
            )

        programs = {
            "vmap, XLA-partitioned: forward": forward,
            "vmap, XLA-partitioned: value_and_grad": gradient,
            "shard_map: forward": per_device(forward),
            "shard_map: value_and_grad": per_device(gradient),
        }
        for name, function in programs.items():
            tic = time.perf_counter()
            try:
                compiled = jax.jit(function).lower(stacked, xb, yb).compile()
            except Exception as error:  # reported, and the other programs still run
                hlo[name] = dict(error=failure(error))
                print(f"[child] {name}: FAILED to compile: {hlo[name]['error']}", flush=True)
                continue
            seconds = time.perf_counter() - tic
            found = while_collectives(compiled.as_text())
            found["compile_s"] = seconds
            # Runtime of the program itself (median of a few calls).
            out = compiled(stacked, xb, yb)
            jax.block_until_ready(out)
            times = []
            for _ in range(args.hlo_calls):
                tic = time.perf_counter()
                jax.block_until_ready(compiled(stacked, xb, yb))
                times.append(time.perf_counter() - tic)
            found["call_ms"] = 1e3 * float(np.median(times))
            hlo[name] = found
            per_iteration = [loop["collectives_per_iteration"] for loop in found["loops"]]
            print(
                f"[child] {name}: {found['while_loops']} while loops, "
                f"{found['loops_with_collectives']} with collectives; per-iteration "
                f"collectives {per_iteration}; module {found['module_collectives']}; "
                f"call {found['call_ms']:.2f} ms",
                flush=True,
            )

    # --- Training: the three layouts, interleaved -----------------------------------------
    variants = {
        f"devices={args.devices}, shard_map=True": dict(devices=args.devices, shard_map=True),
        f"devices={args.devices}, shard_map=False": dict(devices=args.devices, shard_map=False),
        "devices=None": dict(devices=None),
    }
    names = list(variants)
    samples = {name: [] for name in names}
    failed = {}
    begin = 2 * args.chunk
    for repeat in range(args.repeats):
        order = names[repeat % len(names) :] + names[: repeat % len(names)]
        for name in order:
            if name in failed:
                continue
            tic = time.perf_counter()
            try:
                results = jaxode.fit_cohort(
                    models,
                    (x, y),
                    optimiser,
                    keys=keys,
                    steps=args.steps,
                    batch_size=batch,
                    eval_every=args.chunk,
                    sampling="replacement",
                    count_evaluations=False,
                    **variants[name],
                )
            except Exception as error:  # reported, and the other layouts still run
                failed[name] = failure(error)
                print(f"[child] {name}: FAILED: {failed[name]}", flush=True)
                continue
            wall = time.perf_counter() - tic
            for r in results:
                if r.steps != args.steps or r.status != "completed":
                    raise RuntimeError(f"{name}: {r.status} after {r.steps}: {r.message}")
            w = {row["step"]: row["wall_time"] for row in results[0].history}
            sample = dict(
                end_to_end_s=wall,
                compile_s=results[0].compile_time,
                train_s=w[args.steps],
                steady_s=w[args.steps] - w[begin],
                num_traces=results[0].num_traces,
            )
            samples[name].append(sample)
            print(
                f"[child] repeat {repeat + 1}/{args.repeats} {name}: "
                f"{1e3 * sample['steady_s'] / (args.steps - begin):.1f} ms/step, compile "
                f"{sample['compile_s']:.2f} s",
                flush=True,
            )
    rows = []
    reference = names[-1]
    for name in names:
        if name in failed:
            rows.append(dict(variant=name, error=failed[name]))
            continue
        per_step = [s["steady_s"] / (args.steps - begin) for s in samples[name]]
        row = dict(
            variant=name,
            ms_per_step=1e3 * float(np.median(per_step)),
            compile_s=float(np.median([s["compile_s"] for s in samples[name]])),
            num_traces=samples[name][-1]["num_traces"],
            samples=samples[name],
        )
        row["time_over_one_device"] = (
            float(
                np.median(
                    [
                        a["steady_s"] / b["steady_s"]
                        for a, b in zip(samples[name], samples[reference])
                    ]
                )
            )
            if samples[reference]
            else None
        )
        rows.append(row)
    return dict(
        info, hlo=hlo, rows=rows, steady_steps=args.steps - begin, load_average=os.getloadavg()
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=4)
    parser.add_argument("--members", type=int, default=8)
    parser.add_argument("--width", type=int, default=15)
    parser.add_argument("--steps", type=int, default=75)
    parser.add_argument("--chunk", type=int, default=25)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=20)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--hlo-calls", type=int, default=5)
    parser.add_argument("--skip-hlo", action="store_true")
    parser.add_argument(
        "--no-subprocess",
        action="store_true",
        help="run here, on this process's devices (e.g. D GPUs)",
    )
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", default="benchmarks/results/sharding_loops.json")
    args = parser.parse_args()
    if args.steps % args.chunk or args.steps < 3 * args.chunk:
        raise SystemExit("--steps must be a multiple of --chunk and at least 3 chunks")
    if args.members % args.devices:
        raise SystemExit("--members must be a multiple of --devices")
    if args.child:
        print("RESULT " + json.dumps(child(args)), flush=True)
        return
    load_before = os.getloadavg()
    if args.no_subprocess:
        record = child(args)
        environment = "this process"
    else:
        env = dict(
            os.environ,
            JAX_PLATFORMS="cpu",
            XLA_FLAGS=(
                os.environ.get("XLA_FLAGS", "")
                + f" --xla_force_host_platform_device_count={args.devices}"
            ).strip(),
        )
        command = [
            sys.executable,
            os.path.abspath(__file__),
            "--child",
            *[a for a in sys.argv[1:] if a != "--child"],
        ]
        done = subprocess.run(command, env=env, stdout=subprocess.PIPE, text=True)
        for line in done.stdout.splitlines():
            if not line.startswith("RESULT "):
                print(line)
        if done.returncode != 0:
            raise SystemExit(f"child failed ({done.returncode})")
        lines = [text for text in done.stdout.splitlines() if text.startswith("RESULT ")]
        record = json.loads(lines[-1][len("RESULT ") :])
        environment = f"subprocess, JAX_PLATFORMS=cpu, XLA_FLAGS={env['XLA_FLAGS']}"
    cores = os.cpu_count()
    note = f"{args.devices} devices on {record['backend']}; this machine has {cores} CPU cores" + (
        f", so the {args.devices} host-platform devices share {cores} cores and sharding "
        "cannot speed training up here (timings show each layout's overhead)"
        if record["backend"] == "cpu" and cores < args.devices * 2
        else ""
    )
    print(f"\n{note}")
    print(
        f"cohort of {args.members} adaptive neural ODEs (study-node, width {args.width}), "
        f"steady state over {record['steady_steps']} steps, medians of {args.repeats} repeats:"
    )
    print(f"{'variant':32s} {'ms/step':>8s} {'x one device':>12s} {'compile s':>10s} traces")
    for r in record["rows"]:
        if "error" in r:
            print(f"{r['variant']:32s} FAILED: {r['error'][:160]}")
            continue
        ratio = "-" if r["time_over_one_device"] is None else f"{r['time_over_one_device']:.2f}"
        print(
            f"{r['variant']:32s} {r['ms_per_step']:8.1f} {ratio:>12s} "
            f"{r['compile_s']:10.2f} {r['num_traces']}"
        )
    if record["hlo"]:
        print(
            f"\ncollectives in the compiled HLO of a member-vmapped Surrogate.predict solve "
            f"sharded over {args.devices} devices:"
        )
        print(
            f"{'program':40s} {'loops':>5s} {'w/ coll.':>8s} "
            f"{'per-iteration collectives (in condition)':44s} "
            f"{'module':>14s} {'call ms':>8s}"
        )
        for name, h in record["hlo"].items():
            if "error" in h:
                print(f"{name:40s} FAILED to compile: {h['error'][:120]}")
                continue
            per = "; ".join(
                (",".join(f"{k}:{v}" for k, v in loop["collectives_per_iteration"].items()) or "-")
                + (
                    f" (cond {sum(loop['collectives_in_condition'].values())})"
                    if loop["collectives_in_condition"]
                    else ""
                )
                for loop in h["loops"]
            )
            module = ",".join(f"{k}:{v}" for k, v in h["module_collectives"].items()) or "none"
            print(
                f"{name:40s} {h['while_loops']:5d} {h['loops_with_collectives']:8d} "
                f"{per[:44]:44s} {module:>14s} {h['call_ms']:8.2f}"
            )
    import jax

    result = {
        "benchmark": "sharding_loops",
        "command": " ".join([sys.executable] + sys.argv),
        "environment": environment,
        "parent_jax_version": jax.__version__,
        "machine": platform.platform(),
        "cpus": cores,
        "load_average_before": load_before,
        "load_average": os.getloadavg(),
        "note": note,
        **record,
    }
    write_json(args.out, result)


if __name__ == "__main__":
    main()
