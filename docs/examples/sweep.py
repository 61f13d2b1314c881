"""A small ablation sweep from Python: declare the grid, check the plan, train, report.

Question: on the ELM data, do time-varying (Legendre) weights help a ResNet surrogate, at which
degree, and does the answer depend on the field (one layer, or a two-layer MLP)? A
`jaxode.SweepSpec` declares the grid; `jaxode.make_plan` validates every cell before anything
trains and groups the cells that differ only in their seed and polynomial basis into cohorts
(one compiled program each: a cohort's bases are padded to its largest degree);
`jaxode.sweep` trains them and keeps one results row per cell (run it again and finished cells
are skipped); `jaxode.sweep_report` turns the rows into a table of mean ± sample std over
the seeds, and plots.

Run: `python docs/examples/sweep.py` (a few minutes on 2 CPU cores; `--small` for the test
suite's size). The sweep folder is temporary unless `--sweep-dir` names one; the report goes
to the output folder.
"""

# --8<-- [start:imports]
import argparse
import os
import pathlib
import tempfile
import time

import jax
from _transcript import Transcript

import jaxode

OUT = pathlib.Path(__file__).resolve().parent / "output" / "sweep"
# --8<-- [end:imports]


# --8<-- [start:spec]
def spec(small: bool) -> jaxode.SweepSpec:
    """The grid: static weights (degree 0) next to Legendre weights of degree 1-3, for two
    fields, three seeds each. Evaluation counting is on, for the report's loss against the
    number of field evaluations."""
    precision = "float64" if jax.config.jax_enable_x64 else "float32"
    base = dict(
        data=dict(dataset="elm"),
        model=dict(model="resnet", width=4 if small else 15, hidden=8 if small else 30, steps=12),
        train=dict(
            epochs=1 if small else 30,
            eval_every=1 if small else 3,
            precision=precision,
            count_evaluations=True,
        ),
    )
    if small:
        return jaxode.SweepSpec(
            base=base,
            name="elm-resnet-small",
            grid={"train.seed": [0, 1]},
            blocks=(
                {"model.basis": ["static"], "model.degree": [0], "model.field": ["layer"]},
                {"model.basis": ["legendre"], "model.degree": [1], "model.field": ["layer"]},
            ),
        )
    return jaxode.SweepSpec(
        base=base,
        name="elm-resnet-fields",
        description="ResNet surrogates of ELM: static or Legendre weights, one-layer or MLP field",
        grid={"train.seed": [0, 1, 2], "model.field": ["layer", "mlp"]},
        blocks=(
            {"model.basis": ["static"], "model.degree": [0]},
            {"model.basis": ["legendre"], "model.degree": [1, 2, 3]},
        ),
    )


# --8<-- [end:spec]


def main(
    small: bool = False, out: pathlib.Path = OUT, sweep_dir: pathlib.Path | None = None
) -> dict:
    out = pathlib.Path(out)
    out.mkdir(parents=True, exist_ok=True)
    began = time.perf_counter()
    transcript = Transcript()
    show = transcript.show

    transcript.part("plan")
    # --8<-- [start:plan]
    declared = spec(small)
    # The plan is checked before any training: a bad value or an impossible combination
    # fails here, naming the cell, instead of an hour into the sweep.
    plan = jaxode.make_plan(declared)
    show(plan.describe())
    # --8<-- [end:plan]

    transcript.part("train")
    # --8<-- [start:train]
    with tempfile.TemporaryDirectory() as scratch:
        folder = pathlib.Path(scratch) / "sweep" if sweep_dir is None else pathlib.Path(sweep_dir)
        start = time.perf_counter()
        rows = jaxode.sweep(declared, folder, executor=jaxode.LocalExecutor(), progress=False)
        show(f"trained {len(rows)} cells in {time.perf_counter() - start:.0f} s")
        # --8<-- [end:train]

        transcript.part("again")
        # --8<-- [start:again]
        # A second call finds every cell in results.csv and trains nothing.
        start = time.perf_counter()
        again = jaxode.sweep(declared, folder, progress=False)
        show(
            f"the same sweep again: {len(again)} rows, nothing to train "
            f"({time.perf_counter() - start:.1f} s)"
        )
        # --8<-- [end:again]

        transcript.part("report")
        # --8<-- [start:report]
        report = jaxode.sweep_report(
            folder,
            rows=("basis", "degree"),
            cols=("field",),
            metric="test_global",
            out=out / "report",
        )
        show(report["table"].rstrip())
        # --8<-- [end:report]

    transcript.part("end")
    written = sorted(pathlib.Path(p).name for p in report["files"])
    show(f"report files: {', '.join(written)}")
    show(
        f"finished in {time.perf_counter() - began:.0f} s ({'small' if small else 'full'} size, "
        f"{jax.default_backend()}, {os.cpu_count()} cores)"
    )
    transcript.write(out / "output.txt")
    return dict(plan=plan, rows=rows, again=again, report=report)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="the test suite's size (seconds)")
    parser.add_argument("--out", type=pathlib.Path, default=OUT, help="folder for the report")
    parser.add_argument("--sweep-dir", type=pathlib.Path, help="keep the sweep folder here")
    arguments = parser.parse_args()
    main(small=arguments.small, out=arguments.out, sweep_dir=arguments.sweep_dir)
