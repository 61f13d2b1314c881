"""Trajectory data (fitting a time series, not an input -> output map) and the study's
two-dimensional spiral ODE task: a trajectory, a time-window split, and batches of short
windows."""

import dataclasses

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int, PRNGKeyArray

from ._core import Affine

SPIRAL_MATRIX = np.array([[-0.1, 2.0], [-2.0, -0.1]])


def spiral_rate(t, y: Float[Array, " 2"], args=None) -> Float[Array, " 2"]:
    """The spiral's right-hand side $dy/dt = (y^3) A$ (row vector, cubed componentwise),
    $A = [[-0.1, 2], [-2, -0.1]]$."""
    return (y**3) @ jnp.asarray(SPIRAL_MATRIX, dtype=y.dtype)


@dataclasses.dataclass(frozen=True)
class TrajectoryData:
    """A sampled trajectory, its time-window split, and its samples for training: a sample is
    a window of consecutive states, its input the window's start `(t, y(t))`.

    **Fields:**

    - `name`: a label.
    - `ts`: `(num_times,)` equispaced sample times; `ys`: `(num_times, state)` states.
    - `windows`: for `"train"`, `"val"`, `"test"`, the `(start, stop)` index range of the
      samples of that region (for the spiral: $t$ in $[0, 16]$, $[16, 20]$, $[20, 25]$; test
      is extrapolation).
    - `window`: points per training window (the study: 10).

    `arrays("train")` holds every window of `window` consecutive samples inside the training
    region; `arrays("val")` and `arrays("test")` hold one sample each, the whole region
    integrated from the true state at its start. Outputs are the window's states flattened
    point by point, the first (the start state itself) included. Training happens in physical
    units: `x_norm` and `y_norm` are identities.
    """

    name: str
    ts: np.ndarray
    ys: np.ndarray
    windows: dict
    window: int = 10

    def __post_init__(self):
        ts, ys = np.asarray(self.ts, np.float64), np.asarray(self.ys, np.float64)
        if ts.ndim != 1 or ys.ndim != 2 or len(ts) != len(ys):
            raise ValueError(
                f"`ts` must be (num_times,) and `ys` (num_times, state), got {ts.shape} and "
                f"{ys.shape}."
            )
        steps = np.diff(ts)
        if len(ts) < 3 or not np.allclose(steps, steps[0], rtol=1e-9, atol=0) or steps[0] <= 0:
            raise ValueError(
                "`ts` must hold at least 3 increasing, equispaced times (steps equal to a "
                f"relative 1e-9; got steps from {steps.min() if len(steps) else 0:.17g} to "
                f"{steps.max() if len(steps) else 0:.17g}): build them in float64, e.g. "
                "np.linspace(t0, t1, n) with NumPy's default dtype, not in float32."
            )
        if not (np.all(np.isfinite(ts)) and np.all(np.isfinite(ys))):
            raise ValueError("`ys` contains NaN or infinite values; clean the data.")
        if isinstance(self.window, bool) or not isinstance(self.window, int) or self.window < 2:
            raise ValueError(f"`window` must be an integer >= 2, got {self.window!r}.")
        for split in ("train", "val", "test"):
            a, b = self.windows.get(split, (0, 0))
            if not 0 <= a < b <= len(ts):
                raise ValueError(f"`windows[{split!r}]` must be a range inside the samples.")
        a, b = self.windows["train"]
        if b - a < self.window:
            raise ValueError(
                f"the training region has {b - a} samples, fewer than `window`={self.window}."
            )
        object.__setattr__(self, "ts", ts)
        object.__setattr__(self, "ys", ys)

    @property
    def state_size(self) -> int:
        return self.ys.shape[1]

    @property
    def dt(self) -> float:
        """The sample spacing."""
        return float(self.ts[1] - self.ts[0])

    @property
    def in_size(self) -> int:
        return self.state_size + 1

    @property
    def out_size(self) -> int:
        """Outputs of one training sample."""
        return self.window * self.state_size

    @property
    def x_norm(self) -> Affine:
        return Affine.identity(self.in_size)

    @property
    def y_norm(self) -> Affine:
        return Affine.identity(self.out_size)

    def split(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """`(ts, ys)` of one region."""
        if name not in self.windows:
            raise ValueError(f"`name` must be one of {tuple(self.windows)}, got {name!r}.")
        a, b = self.windows[name]
        return self.ts[a:b], self.ys[a:b]

    def arrays(self, split: str, normalised: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """`(x, y)` of one split: rows `[t, y(t)]` of window starts and the windows' states
        flattened (`normalised` is accepted for `Dataset`'s interface: both are identities)."""
        if split not in ("train", "val", "test"):
            raise ValueError(f"`split` must be one of ('train', 'val', 'test'), got {split!r}.")
        a, b = self.windows[split]
        length = self.window if split == "train" else b - a
        starts = np.arange(a, b - length + 1)
        x = np.concatenate([self.ts[starts, None], self.ys[starts]], axis=1)
        index = starts[:, None] + np.arange(length)[None, :]
        return x, self.ys[index].reshape(len(starts), -1)

    def sizes(self) -> dict:
        return {split: len(self.arrays(split)[0]) for split in ("train", "val", "test")}


def spiral(
    num_times: int = 1000,
    t1: float = 25.0,
    y0: tuple[float, float] = (2.0, 0.0),
    bounds: tuple[float, float] = (16.0, 20.0),
    rtol: float = 1e-9,
    atol: float = 1e-11,
    window: int = 10,
) -> TrajectoryData:
    """Samples the spiral trajectory at `num_times` equispaced times on $[0, t_1]$.

    **Arguments:**

    - `num_times`: number of samples (at least 30).
    - `t1`: final time (study: 25); `y0`: initial state (study: $(2, 0)$).
    - `bounds`: the train/validation and validation/test boundaries (study: 16 and 20).
    - `rtol`, `atol`: tolerances of the reference solve (Dopri5, in the active JAX precision).
    - `window`: points per training window (study: 10).

    **Returns:** a `TrajectoryData`.

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
    return TrajectoryData("spiral", ts, ys, windows, window)


def spiral_batch(
    data: TrajectoryData, split: str, *, key: PRNGKeyArray, batch_size: int = 20, length: int = 10
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
