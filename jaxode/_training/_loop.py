"""The one host loop that drives every trainer: compile, then one chunk of work per evaluation,
with history, checkpoints, progress and callbacks, until every member has stopped."""

import contextlib
import sys
import time
from collections.abc import Callable

import jax

from ._members import writes_files
from ._progress import progress_bar
from ._trainer import AbstractRun


def drive(
    run: AbstractRun,
    *,
    progress: bool,
    callback: Callable | None = None,
    pause_at: int | None = None,
) -> None:
    """Trains until every member of `run` has stopped. Each evaluated member's history row is
    appended to its record and, where the trainer says so, written with its checkpoint; then
    `callback(k, row)` is called; an exception it raises stops training, the checkpoints
    kept. A `KeyboardInterrupt` (Ctrl-C, or SIGTERM as the command line handles it), or an
    evaluation at or after step `pause_at`, marks the members still running as interrupted.
    Nothing is shown when no member has work left."""
    if not run.running():
        return
    done, total, _ = run.progress()
    elapsed = max(record.wall for record in run.members)
    shown = progress and writes_files()
    bar = None
    try:
        with announced_compilation(shown):
            run.compile()
        # The bar starts after compilation: its rate and time left are training's alone.
        bar = progress_bar(total, done, shown, elapsed=elapsed)
        while run.running():
            evaluations = run.advance()
            bar.update(run.progress()[0] - bar.n)
            for k, evaluated in evaluations.items():
                record = run.members[k]
                record.history.append(evaluated.row)
                if evaluated.write:
                    record.save(evaluated.row["step"], evaluated.checkpoint)
            text = run.progress()[2]
            if text:
                bar.set_postfix_str(text)
            if callback is not None:
                for k, evaluated in evaluations.items():
                    callback(int(k), evaluated.row)
            if pause_at is not None and any(
                evaluated.row["step"] >= pause_at for evaluated in evaluations.values()
            ):
                run.interrupt()
                break
    except KeyboardInterrupt:
        run.interrupt()
    finally:
        if bar is not None:
            bar.close()


@contextlib.contextmanager
def announced_compilation(shown: bool):
    """Says on stderr that the training program compiles, and how long it took: on a CPU a
    short run is mostly compilation, which a silent progress bar would count as training."""
    if shown:
        cached = bool(getattr(jax.config, "jax_compilation_cache_dir", None))
        where = " (kept in the compilation cache for the next run)" if cached else ""
        print(f"compiling the training program{where} ...", end="", file=sys.stderr, flush=True)
    tic = time.perf_counter()
    try:
        yield
    finally:
        if shown:
            print(f" {time.perf_counter() - tic:.1f} s", file=sys.stderr, flush=True)
