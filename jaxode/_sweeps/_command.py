"""`jaxode sweep SPEC.toml` and `jaxode sweep report DIR`."""

import argparse
import collections
import pathlib

from .._tracking import add_tracking_options, track_finished

EXECUTORS = ("local", "ray")


def add_parser(sub) -> None:
    p = sub.add_parser(
        "sweep",
        help="train every cell of a sweep spec (TOML), resumably; `sweep report DIR` reads it",
        description="Train the cells of a sweep spec, grouped into cohorts (one compiled program "
        "per structure). Running it again resumes; `jaxode sweep report DIR` writes its tables "
        "and plots.",
    )
    p.add_argument("spec", type=pathlib.Path, metavar="SPEC.toml")
    p.add_argument("--out", type=pathlib.Path, help="sweep folder (default sweeps/<spec name>)")
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="print the plan (cells, cohorts, compilations) and a cost estimate from a short "
        "timing of one cohort per kind; train nothing",
    )
    p.add_argument("--no-estimate", action="store_true", help="--dry-run without the timing")
    p.add_argument("--executor", choices=EXECUTORS, default="local", help="default local")
    p.add_argument("--address", help="Ray cluster address (--executor ray; default: local)")
    p.add_argument("--retry-failed", action="store_true", help="train failed cells again")
    p.add_argument(
        "--max-members",
        type=int,
        help="split larger cohorts into near-equal parts (default: what the memory limit allows)",
    )
    p.add_argument(
        "--max-padding",
        type=float,
        help="keep cells of polynomial bases in separate cohorts where one cohort would pad a "
        "member's basis to more than this many times its own functions (default: no limit, "
        "one cohort)",
    )
    p.add_argument(
        "--no-progress", action="store_true", help="no progress bars (planning, training)"
    )
    add_tracking_options(p)
    p.set_defaults(handler=run_sweep)


def report_parser(parser_class) -> argparse.ArgumentParser:
    """The parser of `jaxode sweep report` (read before the main parser, which would take
    `report` for a spec file)."""
    r = parser_class(
        prog="jaxode sweep report",
        description="Tables (mean +- sample std over seeds, Markdown and CSV) and plots of a "
        "sweep's results.csv.",
    )
    r.add_argument("directory", type=pathlib.Path, metavar="DIR")
    r.add_argument(
        "--rows", default="basis,degree", help="fields of the table's rows (default basis,degree)"
    )
    r.add_argument("--cols", default="model", help="fields of its columns (default model)")
    r.add_argument("--metric", default="test_global", help="metric (default test_global)")
    r.add_argument("--out", type=pathlib.Path, help="report folder (default DIR/report)")
    r.add_argument(
        "--compare",
        metavar="FIELD=A,B,...",
        help="paired comparison of levels B, ... against A across the cells that agree in "
        "every other field (seeds, splits): mean difference and ratio with 95 %% bootstrap "
        "intervals, paired t-test and Wilcoxon p-values; e.g. model.basis=monomial,legendre",
    )
    r.add_argument(
        "--where",
        action="append",
        default=[],
        metavar="FIELD=V,...",
        help="report only the cells whose FIELD is one of the values (repeatable), e.g. "
        "data.dataset=elm",
    )
    r.add_argument(
        "--ensembles",
        action="store_true",
        help="each configuration's seeds as one ensemble, calibrated on validation: its errors, "
        "NLL and interval coverage (ensembles.md, ensembles.csv)",
    )
    r.set_defaults(handler=run_report, command="sweep report")
    return r


def _names(text: str) -> tuple:
    return tuple(name.strip() for name in text.split(",") if name.strip())


def run_report(args) -> int:
    from ._report import sweep_report

    written = sweep_report(
        args.directory,
        rows=_names(args.rows),
        cols=_names(args.cols),
        metric=args.metric,
        out=args.out,
        compare=args.compare,
        ensembles=args.ensembles,
        where=tuple(args.where),
    )
    print(written["table"])
    print(f"written: {', '.join(str(p) for p in written['files'])}")
    return 0


def _estimate_text(cost: dict) -> str:
    """`estimate`'s result as the lines `--dry-run` prints."""
    failed = [f"  cohort {key}: {reason}" for key, reason in cost["not_timed"].items()]
    if cost["seconds"] is None:
        return "\n".join(
            [
                f"no cost estimate: none of the {len(failed)} kinds of cohort timed could be "
                "timed (their timing runs stopped early; the sweep would record such cells "
                "with their status):",
                *failed,
            ]
        )
    lines = [
        f"estimated {cost['seconds'] / 60:.1f} min here ({cost['fixed_seconds']:.0f} s of "
        "it compilation, evaluation and files), from three timed evaluation intervals of "
        f"{cost['kinds_timed']} of {cost['kinds']} kinds of cohort"
    ]
    if failed:
        lines += ["not timed (given the mean of the kinds timed):", *failed]
    return "\n".join(lines)


def run_sweep(args) -> int:
    from ._plan import estimate, make_plan
    from ._spec import SweepSpec
    from ._sweep import sweep

    spec = SweepSpec.from_file(args.spec)
    if spec.search is not None:
        return _run_search(spec, args)
    if args.dry_run:
        plan = make_plan(
            spec,
            progress=not args.no_progress,
            max_members=args.max_members,
            max_padding=args.max_padding,
        )
        print(plan.describe())
        if not args.no_estimate:
            print(_estimate_text(estimate(plan, set_precision=True)))
        return 0
    executor, out = _executor(args), _out(args, spec)
    plan = make_plan(
        spec,
        progress=not args.no_progress,
        max_members=args.max_members,
        max_padding=args.max_padding,
    )
    rows = sweep(
        plan, out, executor=executor, retry_failed=args.retry_failed, progress=not args.no_progress
    )
    counts = collections.Counter(row["status"] for row in rows)
    merged = (
        f" ({len(plan.merged)} more combinations merged into them: see --dry-run)"
        if plan.merged
        else ""
    )
    print(
        f"{len(rows)} cells{merged}: "
        + ", ".join(f"{n} {status}" for status, n in counts.most_common())
        + f"; results in {out / 'results.csv'}; tables and plots: jaxode sweep report {out}"
    )
    if counts["busy"]:
        print(
            f"{counts['busy']} cells were in training by another process and are left to it; "
            "run the same sweep again once it has finished to record them."
        )
    track_finished(
        args,
        [
            (out / row["run_dir"], {"sweep": spec.name, "cell": row["cell"]})
            for row in rows
            if row.get("run_dir")
        ],
    )
    return 0 if set(counts) <= {"completed", "early_stopped"} else 1


def _run_search(spec, args) -> int:
    """`jaxode sweep` of a spec with a [search]: its trials (`run_search`), or with
    `--dry-run` the search and the plan of its first batch."""
    from ._plan import make_plan
    from ._search_run import TRIALS, first_batch, run_search

    search = spec.search
    if args.dry_run:
        sampler = type(search.sampler).__name__
        print(
            f"search {spec.name!r}: {search.trials} trials in batches of {search.batch} "
            f"({sampler}, seed {search.sampler.seed}), minimising {search.metric}"
        )
        for field, distribution in sorted(search.space.items()):
            print(f"  {field}: {distribution}")
        plan = make_plan(
            first_batch(spec), max_members=args.max_members, max_padding=args.max_padding
        )
        print("the first batch (as the random sampler draws it): " + plan.describe())
        return 0
    executor, out = _executor(args), _out(args, spec)
    records = run_search(
        spec,
        out,
        executor=executor,
        progress=not args.no_progress,
        retry_failed=args.retry_failed,
        max_members=args.max_members,
        max_padding=args.max_padding,
    )
    complete = [r for r in records if r["state"] == "complete"]
    best = min(complete, key=lambda r: float(r["value"]), default=None)
    states = collections.Counter(r["state"] for r in records)
    found = (
        f"; best {search.metric} {float(best['value']):.4g} (trial {best['trial']}, cell "
        f"{best['cell']})"
        if best
        else ""
    )
    print(
        f"{len(records)} trials: "
        + ", ".join(f"{n} {s}" for s, n in states.most_common())
        + found
        + f"; trials in {out / TRIALS}; tables and plots: jaxode sweep report {out}"
    )
    return 0 if complete else 1


def _executor(args):
    """The executor the command's `--executor` and `--address` name."""
    from ._executors import LocalExecutor, RayExecutor

    if args.address is not None and args.executor != "ray":
        raise ValueError("--address needs --executor ray.")
    if args.executor == "ray":
        return RayExecutor(address=args.address)
    return LocalExecutor(set_precision=True)


def _out(args, spec) -> pathlib.Path:
    # The spec's name is a single folder name (see SweepSpec).
    return pathlib.Path(args.out) if args.out else pathlib.Path("sweeps") / spec.name
