"""Where a sweep's cohorts train: in this process, or as tasks on a Ray cluster."""

import abc
import os
from collections.abc import Iterator

import equinox as eqx

from .._process import use_compilation_cache
from ._cells import result_row, train_cells
from ._plan import Cohort


def _train_in_worker(*arguments) -> list[dict]:
    """`train_cells` in a Ray worker, a process jaxode owns: it sets the precision and uses the
    CLI's persistent compilation cache, so retried and later tasks skip compilation."""
    use_compilation_cache()
    return train_cells(*arguments, set_precision=True)


def _arguments(cohort: Cohort, directory) -> tuple:
    return (
        [c.config for c in cohort.cells],
        [c.key for c in cohort.cells],
        cohort.key,
        os.fspath(directory),
    )


class AbstractExecutor(eqx.Module):
    """Runs `train_cells` for cohorts and yields `(cohort, rows)` as each one finishes (in any
    order). Executors hold no results: the sweep's driver keeps the table and resumes, so a
    sweep can move from one executor to another."""

    @abc.abstractmethod
    def map(self, cohorts: list[Cohort], directory) -> Iterator[tuple[Cohort, list[dict]]]:
        raise NotImplementedError


class LocalExecutor(AbstractExecutor):
    """One cohort after another in this process (no setup).

    **Arguments:** `set_precision`: switch JAX's 64-bit mode to each cohort's precision (the
    CLI does; a library caller who leaves it off enables x64 themselves for float64 cells)."""

    set_precision: bool = False

    def map(self, cohorts, directory):
        for cohort in cohorts:
            yield (
                cohort,
                train_cells(*_arguments(cohort, directory), set_precision=self.set_precision),
            )


class RayExecutor(AbstractExecutor):
    """Every cohort as a Ray task (`pip install "jaxode[ray]"`). The sweep's folder must be
    reachable at the same path from every node (a shared file system), since workers write
    the run directories; a task whose worker dies is retried and resumes from its cells'
    checkpoints.

    **Arguments:**

    - `address`: the cluster to join (`"auto"`, `"ray://host:10001"`); `None` joins the
      cluster this process already initialised, or starts a local one.
    - `max_retries`: retries of a task whose worker died.
    - `gpus_per_task`: GPUs each task asks for; `None`: one when the cluster has GPUs.
    - `cpus_per_task`: CPUs each task asks for.
    - `num_cpus`: the size of a local cluster this executor starts (`None`: all cores).
    """

    address: str | None = None
    max_retries: int = 3
    gpus_per_task: float | None = None
    cpus_per_task: float = 1.0
    num_cpus: int | None = None

    def map(self, cohorts, directory):
        try:
            import ray
            import ray.exceptions  # loaded by `import ray` already; named for type checkers
        except ImportError:
            raise ImportError(
                'the Ray executor needs Ray: pip install "jaxode[ray]" (or pip install ray).'
            ) from None
        if not ray.is_initialized():
            ray.init(address=self.address, num_cpus=self.num_cpus, log_to_driver=False)
        gpus = self.gpus_per_task
        if gpus is None:
            gpus = 1.0 if ray.cluster_resources().get("GPU", 0) else 0.0
        task = ray.remote(num_cpus=self.cpus_per_task, num_gpus=gpus, max_retries=self.max_retries)(
            _train_in_worker
        )
        pending = {task.remote(*_arguments(c, directory)): c for c in cohorts}
        try:
            while pending:
                [done], _ = ray.wait(list(pending), num_returns=1)
                cohort = pending.pop(done)
                try:
                    rows = ray.get(done)
                except ray.exceptions.RayError as error:
                    rows = _failed(cohort, f"Ray task failed: {type(error).__name__}: {error}")
                yield cohort, rows
        finally:
            for ref in pending:
                ray.cancel(ref)


def _failed(cohort: Cohort, message: str) -> list[dict]:
    metrics = {"status": "error", "message": message}
    return [
        result_row(c.config, c.key, cohort.key, f"cells/{c.key}", metrics) for c in cohort.cells
    ]
