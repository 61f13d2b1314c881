"""Shared pieces of the probes: verdict codes, result tables, input checks, masked fits."""

import dataclasses
import json
import math
from typing import TYPE_CHECKING, cast

import jax
import jax.numpy as jnp
import numpy as np

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

# Verdict codes, stored as integers so that they can be computed under jit.
CONSTANT_EXP = 0
"""Verdict: the output converges to a constant, $|g'|$ decaying exponentially in the radius."""
LINEAR = 1
"""Verdict: the output becomes linear in the radius ($g'$ tends to a constant, as in ReLU nets)."""
POLY = 2
"""Verdict: the output grows like a power $r^p$ other than linear; `verdict_name(POLY, p)`."""
EXP_GROWTH = 3
"""Verdict: $|g'|$ grows exponentially in the radius."""
OSCILLATORY = 4
"""Verdict: $g'$ keeps changing sign, at gaps that do not grow."""
UNRESOLVED = 5
"""Verdict: the radii end before the tail shows its kind; extend them."""
_VERDICT_NAMES = ("CONSTANT_EXP", "LINEAR", "POLY", "EXP_GROWTH", "OSCILLATORY", "UNRESOLVED")

# A derivative is "resolvable" when it stands this many machine epsilons above its largest value
# on the ray: below that, rounding of saturated activations dominates (tanh' is exactly 0 once
# tanh rounds to +-1).
RESOLUTION_FACTOR = 1e3
FLOAT32_EPS = float(np.finfo(np.float32).eps)


def verdict_name(code: int | np.integer, power: float | np.floating = math.nan) -> str:
    """Readable verdict for an integer code; `POLY(p)` carries its power, rounded."""
    code = int(code)
    if code == POLY:
        return f"POLY({_round_power(power)})"
    return _VERDICT_NAMES[code]


def _round_power(power: float | np.floating) -> str:
    if not math.isfinite(power):
        return "?"
    nearest = round(power)
    if abs(power - nearest) < 0.05:
        return str(int(nearest))
    return f"{power:.2f}"


def verdict_names(codes, powers) -> np.ndarray:
    """Vectorised `verdict_name` over arrays of codes and powers (same shape)."""
    codes = np.asarray(codes)
    powers = np.broadcast_to(np.asarray(powers, dtype=float), codes.shape)
    out = np.empty(codes.shape, dtype=object)
    for index in np.ndindex(codes.shape):
        # A full index gives a NumPy scalar, which NumPy's stubs type as an array.
        out[index] = verdict_name(cast(np.integer, codes[index]), cast(np.floating, powers[index]))
    return out


def _jsonable(value):
    """Converts arrays and numbers to JSON types; non-finite floats become strings."""
    if isinstance(value, (np.ndarray, jnp.ndarray)):
        return _jsonable(np.asarray(value).tolist())
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (np.bool_, bool)):
        return bool(value)
    if isinstance(value, (np.integer, int)):
        return int(value)
    if isinstance(value, (np.floating, float)):
        value = float(value)
        return value if math.isfinite(value) else str(value)
    if isinstance(value, complex):
        return {"real": _jsonable(value.real), "imag": _jsonable(value.imag)}
    return value


class ProbeResult:
    """Mixin of every probe result (a frozen dataclass): `as_dict`, `to_json` and a table.

    Subclasses list what the table shows in `_table_rows`, as (header, rows) pairs.
    """

    def as_dict(self) -> dict:
        """Fields as plain Python values (arrays become nested lists)."""
        out = {}
        for field in dataclasses.fields(cast("DataclassInstance", self)):
            value = getattr(self, field.name)
            if isinstance(value, np.ndarray) and np.iscomplexobj(value):
                value = {"real": value.real, "imag": value.imag}
            out[field.name] = _jsonable(value)
        if hasattr(type(self), "verdicts"):
            # Only the subclasses that define it get here, which pyright cannot see.
            verdicts = self.verdicts  # pyright: ignore[reportAttributeAccessIssue]
            out["verdicts"] = np.asarray(verdicts).tolist()
        out["probe"] = type(self).__name__
        return out

    def to_json(self, indent: int | None = 2) -> str:
        """The result as a JSON string; `inf` and `nan` are written as strings."""
        return json.dumps(self.as_dict(), indent=indent)

    def _table(self) -> tuple[list[str], list[list]]:
        raise NotImplementedError

    def __str__(self) -> str:
        header, rows = self._table()
        lines = [type(self).__name__]
        lines.append(format_table(header, rows))
        notes = getattr(self, "notes", ())
        lines.extend(f"note: {note}" for note in notes)
        return "\n".join(lines)


def _cell(value) -> str:
    if isinstance(value, (float, np.floating)):
        value = float(value)
        if not math.isfinite(value):
            return str(value)
        if value != 0 and (abs(value) >= 1e5 or abs(value) < 1e-3):
            return f"{value:.3e}"
        return f"{value:.4f}"
    return str(value)


def format_table(header: list[str], rows: list[list]) -> str:
    """A plain-text table with right-aligned columns."""
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(header)]
    line = "  ".join(h.rjust(w) for h, w in zip(header, widths))
    out = [line, "-" * len(line)]
    out += ["  ".join(c.rjust(w) for c, w in zip(row, widths)) for row in cells]
    return "\n".join(out)


def precision_notes(dtype, resolution_radius) -> tuple[str, ...]:
    """A note when a probe ran in float32, with the radius where float32 loses the tail."""
    if np.dtype(dtype) == np.float64:
        return ()
    finite = np.asarray(resolution_radius, dtype=float)
    finite = finite[np.isfinite(finite)]
    where = (
        f"r ~ {np.median(finite):.3g} (median over rays)" if finite.size else "an unknown radius"
    )
    return (
        f"ran in {np.dtype(dtype).name}: the tail cannot be resolved beyond {where}; "
        "enable float64 with jax.config.update('jax_enable_x64', True) for faithful rates.",
    )


# ---------------------------------------------------------------------------------------------
# Input checks (on the host, before jit): each names the argument and says how to fix it.


def as_float_array(name: str, value, ndim: tuple[int, ...]) -> np.ndarray:
    """`value` as a finite float NumPy array with one of the allowed numbers of axes."""
    try:
        array = np.asarray(value, dtype=float)
    except (TypeError, ValueError) as error:
        raise ValueError(
            f"`{name}` must be a numeric array, got {type(value).__name__}."
        ) from error
    if array.ndim not in ndim:
        allowed = " or ".join(str(n) for n in ndim)
        raise ValueError(f"`{name}` must have {allowed} axes, got shape {array.shape}.")
    if array.size == 0:
        raise ValueError(f"`{name}` must not be empty, got shape {array.shape}.")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"`{name}` contains NaN or infinite values; pass finite numbers.")
    return array


def check_radii(radii, *, min_points: int = 8, name: str = "radii") -> np.ndarray:
    """Radii: 1-D, finite, >= 0, strictly increasing, at least `min_points` of them."""
    radii = as_float_array(name, radii, (1,))
    if radii.size < min_points:
        raise ValueError(f"`{name}` needs at least {min_points} values, got {radii.size}.")
    if radii[0] < 0:
        raise ValueError(
            f"`{name}` must be >= 0, got {radii[0]}; for the opposite ray negate the direction."
        )
    if np.any(np.diff(radii) <= 0):
        raise ValueError(f"`{name}` must be strictly increasing; sort them and drop duplicates.")
    return radii


def check_directions(directions, in_size: int | None = None) -> np.ndarray:
    """Directions as a (num_directions, in_size) array of unit vectors."""
    directions = as_float_array("directions", directions, (1, 2))
    if directions.ndim == 1:
        directions = directions[None]
    if in_size is not None and directions.shape[1] != in_size:
        raise ValueError(
            f"`directions` must have {in_size} columns (the model's input size), "
            f"got shape {directions.shape}."
        )
    norms = np.linalg.norm(directions, axis=1)
    if np.any(norms == 0):
        raise ValueError("`directions` contains a zero vector; every direction must be non-zero.")
    return directions / norms[:, None]


def check_base_points(base_points, in_size: int) -> np.ndarray:
    """Base points as a (num_base, in_size) array."""
    base_points = as_float_array("base_points", base_points, (1, 2))
    if base_points.ndim == 1:
        base_points = base_points[None]
    if base_points.shape[1] != in_size:
        raise ValueError(
            f"`base_points` must have {in_size} columns like `directions`, got shape "
            f"{base_points.shape}."
        )
    return base_points


def check_positive(name: str, value: float) -> float:
    if not (isinstance(value, (int, float, np.number)) and math.isfinite(value) and value > 0):
        raise ValueError(f"`{name}` must be a finite number > 0, got {value!r}.")
    return float(value)


def check_count(name: str, value: int, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"`{name}` must be an integer >= {minimum}, got {value!r}.")
    return int(value)


# ---------------------------------------------------------------------------------------------
# Masked least squares under jit: fixed-size arrays, a 0/1 weight selects the points.


def masked_line_fit(x, y, mask, weight=None):
    """Slope, intercept and RMS residual of the least-squares line through the masked points.

    `weight` (optional, same shape, > 0) weights each point's squared residual, as $1/\\sigma^2$
    does for a point with uncertainty $\\sigma$; the RMS residual is weighted the same way.
    """
    weight = (
        mask.astype(y.dtype) if weight is None else jnp.where(mask, weight, 0.0).astype(y.dtype)
    )
    count = jnp.sum(mask)
    total = jnp.sum(weight)
    safe_total = jnp.where(total > 0, total, 1.0)
    x = jnp.where(mask, x, 0.0)
    y = jnp.where(mask, y, 0.0)
    x_mean = jnp.sum(weight * x) / safe_total
    y_mean = jnp.sum(weight * y) / safe_total
    sxx = jnp.sum(weight * (x - x_mean) ** 2)
    sxy = jnp.sum(weight * (x - x_mean) * (y - y_mean))
    slope = jnp.where(sxx > 0, sxy / jnp.where(sxx > 0, sxx, 1.0), 0.0)
    intercept = y_mean - slope * x_mean
    residual = jnp.sqrt(jnp.sum(weight * (y - intercept - slope * x) ** 2) / safe_total)
    return slope, intercept, jnp.where(count >= 2, residual, jnp.inf)


def sign_change_flags(values, mask):
    """Boolean per entry: its sign differs from the previous masked non-zero entry's sign."""
    signs = jnp.where(mask, jnp.sign(values), 0.0)
    # The last non-zero sign so far, carried forward by a cumulative maximum over indices.
    index = jnp.arange(signs.shape[0])
    last_index = jax.lax.cummax(jnp.where(signs != 0, index, -1))
    previous_index = jnp.concatenate([jnp.array([-1]), last_index[:-1]])
    previous_sign = jnp.where(previous_index >= 0, signs[jnp.maximum(previous_index, 0)], 0.0)
    return (signs != 0) & (previous_sign != 0) & (signs != previous_sign)


def sign_changes(values, mask):
    """Number of sign changes of `values` over the masked entries, in order (zeros skipped)."""
    return jnp.sum(sign_change_flags(values, mask))
