"""Where a sweep's cohorts train: in this process, or as tasks on a Ray cluster."""

import abc
import contextlib
import os
import socket
import urllib.parse
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
        cohort.layout,
        cohort.pruning,
        cohort.steps,
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

    - `address`: the cluster to join (`"auto"`: the one started on this machine,
      `"HOST:6379"`, `"ray://HOST:10001"`); `None` joins the cluster this process already
      initialised, or the one `RAY_ADDRESS` names, or else starts a local one.
    - `max_retries`: retries of a task whose worker died.
    - `gpus_per_task`: GPUs each task asks for; `None`: one when the cluster has GPUs.
    - `cpus_per_task`: CPUs each task asks for.
    - `num_cpus`: the size of a local cluster this executor starts (`None`: all cores).
    - `connect_timeout`: seconds to wait for an explicit address (`address` or `RAY_ADDRESS`,
      other than `"auto"` and `"local"`) to accept a TCP connection before `ray.init`
      (which would otherwise retry for minutes).
    - `bind_all`: let a local cluster this executor starts listen on every network interface
      (Ray's default on Linux, so that other machines can join it). Off: it listens on the
      loopback interface only (its node address is 127.0.0.1, no dashboard), reachable from
      this machine alone.

    **Raises** (from `map`): `ConnectionError` when `address` does not accept a connection
    within `connect_timeout`; `ImportError` without Ray.
    """

    address: str | None = None
    max_retries: int = 3
    gpus_per_task: float | None = None
    cpus_per_task: float = 1.0
    num_cpus: int | None = None
    connect_timeout: float = 30.0
    bind_all: bool = False

    def map(self, cohorts, directory):
        try:
            import ray
            import ray.exceptions  # loaded by `import ray` already; named for type checkers
        except ImportError:
            raise ImportError(
                'the Ray executor needs Ray: pip install "jaxode[ray]" (or pip install ray).'
            ) from None
        if not ray.is_initialized():
            self._init(ray)
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

    def _init(self, ray) -> None:
        """Joins the cluster at `address` (or `RAY_ADDRESS`) once it answers, or starts a
        local one."""
        address = self.address if self.address is not None else os.environ.get("RAY_ADDRESS")
        if address:
            if address not in ("auto", "local"):
                check_reachable(address, self.connect_timeout)
            ray.init(address=address, num_cpus=self.num_cpus, log_to_driver=False)
            return
        local = dict(address="local", num_cpus=self.num_cpus, log_to_driver=False)
        if self.bind_all:
            ray.init(**local)
            return
        with _single_machine(ray):
            ray.init(**local, include_dashboard=False, _node_ip_address="127.0.0.1")


@contextlib.contextmanager
def _single_machine(ray):
    """Ray on Linux replaces a loopback node address by the machine's network address (so
    that other nodes can join), unless its single-machine mode is on: the default on macOS
    and Windows, `RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0` elsewhere, read when Ray is imported
    into `ray._private.ray_constants.ENABLE_RAY_CLUSTER`. This turns it on while a cluster
    starts, so that its servers (GCS, raylet, workers) bind to 127.0.0.1."""
    constants = getattr(getattr(ray, "_private", None), "ray_constants", None)
    if constants is None or not hasattr(constants, "ENABLE_RAY_CLUSTER"):
        yield
        return
    saved = constants.ENABLE_RAY_CLUSTER
    constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        constants.ENABLE_RAY_CLUSTER = saved


def _host_port(address: str) -> tuple[str, int] | None:
    """`(host, port)` of a Ray address (`HOST:PORT`, `ray://HOST[:PORT]`, IPv6 in brackets),
    with Ray's default ports (6379, Ray Client 10001); `None` for other schemes."""
    scheme, _, rest = address.rpartition("://")
    if scheme not in ("", "ray"):
        return None
    parts = urllib.parse.urlsplit("//" + rest)
    try:
        port = parts.port
    except ValueError:  # not a port: Ray's own error names it
        return None
    if not parts.hostname:
        return None
    return parts.hostname, port or (10001 if scheme == "ray" else 6379)


def check_reachable(address: str, timeout: float) -> None:
    """**Raises:** `ConnectionError` when the Ray `address` (`HOST:PORT` or
    `ray://HOST:PORT`) does not accept a TCP connection within `timeout` seconds, naming the
    address and what to check. Addresses of other schemes are not checked."""
    target = _host_port(address)
    if target is None:
        return
    try:
        socket.create_connection(target, timeout=timeout).close()
    except OSError as error:
        reason = "timed out" if isinstance(error, TimeoutError) else error.strerror or error
        raise ConnectionError(
            f"the Ray cluster at address {address!r} ({target[0]} port {target[1]}) did not "
            f"accept a connection within connect_timeout={timeout:g} s ({reason}). Check that "
            "the cluster is running (`ray start --head --port=PORT` on its head node), that "
            "the address and port are right (the head's GCS port, 6379 by default, or "
            "ray://HOST:10001 for Ray Client) and that no firewall blocks the port from this "
            "machine; RayExecutor(connect_timeout=...) sets the wait."
        ) from None


def _failed(cohort: Cohort, message: str) -> list[dict]:
    metrics = {"status": "error", "message": message}
    return [
        result_row(c.config, c.key, cohort.key, f"cells/{c.key}", metrics) for c in cohort.cells
    ]
