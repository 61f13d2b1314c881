"""Mean and sample standard deviation of metrics over the members of a cohort (seeds)."""

import re

import numpy as np


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


def parse_seeds(text: str) -> list[int]:
    """Seeds from `"0-4"`, `"0,2,7"` or `"0-2,9"` (ranges inclusive), in order.

    **Raises:** `ValueError` naming `--seeds` for anything else, or for repeated seeds.
    """
    seeds = []
    for part in text.split(","):
        match = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", part)
        if match is None or (match[2] is not None and int(match[2]) < int(match[1])):
            raise ValueError(
                f"--seeds {text!r}: write seeds as a range or a list, e.g. 0-4 or 0,2,7."
            )
        low = int(match[1])
        seeds += range(low, int(match[2] or low) + 1)
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"--seeds {text!r} repeats a seed; give each seed once.")
    return seeds
