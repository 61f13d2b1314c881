"""The one host loop that drives every trainer: compile, then one chunk of work per evaluation,
with history, checkpoints, progress and callbacks, until every member has stopped."""

from collections.abc import Callable

from ._members import writes_files
from ._progress import progress_bar
from ._trainer import AbstractRun


def drive(run: AbstractRun, *, progress: bool, callback: Callable | None = None) -> None:
    """Trains until every member of `run` has stopped. Each evaluated member's history row is
    appended to its record and written (with its checkpoint, when the trainer gives one),
    then `callback(k, row)` is called; an exception it raises stops training, the
    checkpoints kept. A `KeyboardInterrupt` (Ctrl-C, or SIGTERM as the command line handles
    it) marks the members still running as interrupted."""
    done, total, _ = run.progress()
    elapsed = max(record.wall for record in run.members)
    bar = progress_bar(total, done, progress and writes_files(), elapsed=elapsed)
    try:
        run.compile()
        while run.running():
            evaluations = run.advance()
            for k, evaluated in evaluations.items():
                record = run.members[k]
                record.history.append(evaluated.row)
                if evaluated.write:
                    record.save(evaluated.row["step"], evaluated.checkpoint)
            done, total, text = run.progress()
            bar.update(done - bar.n)
            if text:
                bar.set_postfix_str(text)
            if callback is not None:
                for k, evaluated in evaluations.items():
                    callback(int(k), evaluated.row)
    except KeyboardInterrupt:
        run.interrupt()
    finally:
        bar.close()
