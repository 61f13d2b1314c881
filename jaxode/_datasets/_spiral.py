"""The study's two-dimensional spiral ODE task: a trajectory, a time-window split, and batches of
short windows."""

import dataclasses

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int, PRNGKeyArray

SPIRAL_MATRIX = np.array([[-0.1, 2.0], [-2.0, -0.1]])


def spiral_rate(t, y: Float[Array, " 2"], args=None) -> Float[Array, " 2"]:
    """The spiral's right-hand side $dy/dt = (y^3) A$ (row vector, cubed componentwise),
    $A = [[-0.1, 2], [-2, -0.1]]$."""
    return (y**3) @ jnp.asarray(SPIRAL_MATRIX, dtype=y.dtype)


@dataclasses.dataclass(frozen=True)
class SpiralData:
    """A sampled spiral trajectory and its time-window split.

    **Fields:**

    - `ts`: `(num_times,)` sample times on $[0, t_1]$; `ys`: `(num_times, 2)` states.
    - `windows`: for `"train"`, `"val"`, `"test"`, the `(start, stop)` index range of the
      samples with $t$ in $[0, 16]$, $[16, 20]$ and $[20, 25]$ (the study's split; test is
      extrapolation).
    """

    ts: np.ndarray
    ys: np.ndarray
    windows: dict

    def split(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """`(ts, ys)` of one split."""
        if name not in self.windows:
            raise ValueError(f"`name` must be one of {tuple(self.windows)}, got {name!r}.")
        a, b = self.windows[name]
        return self.ts[a:b], self.ys[a:b]


def spiral(
    num_times: int = 1000,
    t1: float = 25.0,
    y0: tuple[float, float] = (2.0, 0.0),
    bounds: tuple[float, float] = (16.0, 20.0),
    rtol: float = 1e-9,
    atol: float = 1e-11,
) -> SpiralData:
    """Samples the spiral trajectory at `num_times` equispaced times on $[0, t_1]$.

    **Arguments:**

    - `num_times`: number of samples (at least 30).
    - `t1`: final time (study: 25); `y0`: initial state (study: $(2, 0)$).
    - `bounds`: the train/validation and validation/test boundaries (study: 16 and 20).
    - `rtol`, `atol`: tolerances of the reference solve (Dopri5, in the active JAX precision).

    **Returns:** a `SpiralData`.

    **Raises:** `ValueError` for too few samples or boundaries outside $(0, t_1)$.
    """
    if isinstance(num_times, bool) or not isinstance(num_times, int) or num_times < 30:
        raise ValueError(f"`num_times` must be an integer >= 30, got {num_times!r}.")
    if not 0.0 < bounds[0] < bounds[1] < t1:
        raise ValueError(f"`bounds` must satisfy 0 < b0 < b1 < t1={t1}, got {bounds}.")
    ts = np.linspace(0.0, t1, num_times)
    solution = diffrax.diffeqsolve(
        diffrax.ODETerm(spiral_rate),
        diffrax.Dopri5(),
        0.0,
        t1,
        None,
        jnp.asarray(y0, dtype=jnp.zeros(()).dtype),
        saveat=diffrax.SaveAt(ts=jnp.asarray(ts)),
        stepsize_controller=diffrax.PIDController(rtol=rtol, atol=atol),
        max_steps=100_000,
    )
    ys = np.asarray(solution.ys, dtype=np.float64)
    first_val = int(np.searchsorted(ts, bounds[0]))
    first_test = int(np.searchsorted(ts, bounds[1]))
    windows = {
        "train": (0, first_val),
        "val": (first_val, first_test),
        "test": (first_test, num_times),
    }
    return SpiralData(ts, ys, windows)


def spiral_batch(
    data: SpiralData, split: str, *, key: PRNGKeyArray, batch_size: int = 20, length: int = 10
) -> tuple[Float[Array, "batch length"], Float[Array, "batch length 2"], Int[Array, " batch"]]:
    """A batch of `batch_size` windows of `length` consecutive samples, all inside `split`
    (the study: 20 windows of 10 points).

    **Returns:** `(ts, ys, starts)`: times and states of every window, and the window's first
    sample index in the full trajectory. Integrate from `ys[:, 0]` over `ts[i]` to compare.

    **Raises:** `ValueError` if a split is shorter than `length`.
    """
    if split not in data.windows:
        raise ValueError(f"`split` must be one of {tuple(data.windows)}, got {split!r}.")
    a, b = data.windows[split]
    if b - a < length:
        raise ValueError(f"split {split!r} has {b - a} samples, fewer than `length`={length}.")
    starts = jax.random.randint(key, (batch_size,), a, b - length + 1)
    index = starts[:, None] + jnp.arange(length)[None, :]
    return jnp.asarray(data.ts)[index], jnp.asarray(data.ys)[index], starts
