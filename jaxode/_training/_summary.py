"""Mean and sample standard deviation of metrics over the members of a cohort (seeds)."""

import re

import numpy as np

from ._config import SEED_LIMIT


def summarise(metrics: list[dict]) -> dict:
    """`{name: {"mean", "std", "n"}}` for every numeric metric of the runs in `metrics`: the
    mean and sample standard deviation (ddof = 1; `None` for a single value) over the runs
    that report a finite value. Runs without trained parameters (no `test_global`) are left
    out; `"runs"` and `"statuses"` say how many there were and how they ended."""
    trained = [m for m in metrics if "test_global" in m]
    names = []
    for m in trained:
        names += [
            k
            for k, v in m.items()
            if k not in names and isinstance(v, (int, float)) and not isinstance(v, bool)
        ]
    out = {"runs": len(metrics), "statuses": [m.get("status", "interrupted") for m in metrics]}
    for name in names:
        values = np.asarray(
            [float(m[name]) for m in trained if isinstance(m.get(name), (int, float))]
        )
        values = values[np.isfinite(values)]
        if not len(values):
            continue
        std = float(np.std(values, ddof=1)) if len(values) > 1 else None
        out[name] = {"mean": float(np.mean(values)), "std": std, "n": int(len(values))}
    return out


def summary_table(summary: dict, names: tuple[str, ...]) -> str:
    """Lines `name  mean +- std  (n)` of `names` in `summary` (those present)."""
    lines = []
    for name in names:
        entry = summary.get(name)
        if entry is None:
            continue
        form = ".4f" if name.endswith(("global", "per_sample")) else ".4g"
        spread = "" if entry["std"] is None else f" +- {entry['std']:{form}}"
        lines.append(f"{name:<28} {entry['mean']:{form}}{spread}  (n={entry['n']})")
    return "\n".join(lines)


# The most members one cohort may have: a cohort trains as one program, its members side
# by side in memory; more seeds go in several cohorts.
MAX_COHORT = 4096
_MAX_DIGITS = 12  # more digits than any seed below SEED_LIMIT has: out of range unread


def _seed(text: str, digits: str) -> int:
    """The seed `digits` of `--seeds text`, after checking its range (`SEED_LIMIT`)."""
    digits = digits.lstrip("0") or "0"
    if len(digits) > _MAX_DIGITS or int(digits) >= SEED_LIMIT:
        shown = digits if len(digits) <= 40 else f"{digits[:20]}...({len(digits)} digits)"
        raise ValueError(
            f"--seeds {text!r}: seed {shown} is out of range; a seed (train.seed) is an integer "
            f"in [0, {SEED_LIMIT - 1}] (0 to 2**32 - 1)."
        )
    return int(digits)


def parse_seeds(text: str) -> list[int]:
    """Seeds from `"0-4"`, `"0,2,7"` or `"0-2,9"` (ranges inclusive), in order. The seeds
    are counted from the ranges before any list is built, so a huge range costs nothing.

    **Arguments:**

    - `text`: the value of `--seeds`.

    **Returns:** the seeds, at most `MAX_COHORT` of them, each in $[0, 2^{32})$.

    **Raises:** `ValueError` naming `--seeds` for anything else: text that is not ranges and
    lists, a range that runs backwards, a seed out of range, more than `MAX_COHORT` seeds
    (with their count), or repeated seeds.
    """
    ranges = []
    for part in text.split(","):
        match = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", part)
        if match is None:
            raise ValueError(
                f"--seeds {text!r}: write seeds as a range or a list, e.g. 0-4 or 0,2,7."
            )
        low = _seed(text, match[1])
        high = low if match[2] is None else _seed(text, match[2])
        if high < low:
            raise ValueError(
                f"--seeds {text!r}: the range {low}-{high} runs backwards; write it as "
                f"{high}-{low}, or write seeds as a range or a list, e.g. 0-4 or 0,2,7."
            )
        ranges.append((low, high))
    count = sum(high - low + 1 for low, high in ranges)
    if count > MAX_COHORT:
        raise ValueError(
            f"--seeds {text!r} gives {count} seeds; a cohort holds at most {MAX_COHORT}: train "
            f"the seeds in several cohorts of up to {MAX_COHORT} (e.g. --seeds 0-"
            f"{MAX_COHORT - 1}, then --seeds {MAX_COHORT}-{2 * MAX_COHORT - 1})."
        )
    seeds = [seed for low, high in ranges for seed in range(low, high + 1)]
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"--seeds {text!r} repeats a seed; give each seed once.")
    return seeds
