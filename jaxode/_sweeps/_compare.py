"""Paired comparisons of a sweep's levels: `jaxode sweep report DIR --compare
model.basis=legendre,monomial`. Cells that agree in every other configuration field (seed,
split, degree, ...) form a pair; over the pairs, the mean difference and the mean ratio of a
metric with 95 % bootstrap intervals, a paired t-test and Wilcoxon's signed-rank test, and a
winner only where the interval of the difference excludes zero."""

import dataclasses

import numpy as np
import scipy.stats

from ._spec import FIELDS
from ._table import SUCCEEDED


@dataclasses.dataclass(frozen=True)
class Comparison:
    """Level `other` against level `reference` of `field` on `metric`, over `pairs` pairs:
    `difference` = mean(other - reference) and `ratio` = mean(other / reference), each with
    its bootstrap interval (`*_low`, `*_high`, at `level`); `t_p` and `wilcoxon_p`, the
    two-sided p-values of the paired t-test and the signed-rank test (`None` below 2 and 6
    pairs); `verdict`."""

    field: str
    metric: str
    reference: str
    other: str
    pairs: int
    reference_mean: float
    other_mean: float
    difference: float
    difference_low: float
    difference_high: float
    ratio: float
    ratio_low: float
    ratio_high: float
    t_p: float | None
    wilcoxon_p: float | None
    level: float

    @property
    def verdict(self) -> str:
        if self.pairs < 2:
            return "too few pairs to judge"
        if self.difference_high < 0:
            return f"{self.other} lower"
        if self.difference_low > 0:
            return f"{self.other} higher"
        return "no winner: the interval of the difference includes 0"


def parse_compare(text: str) -> tuple[str, list[str]]:
    """`field=level,level,...` -> `(field, levels)`.

    **Raises:** `ValueError` naming `--compare` for another form or fewer than two levels."""
    field, _, levels = text.partition("=")
    chosen = [level.strip() for level in levels.split(",") if level.strip()]
    if not field.strip() or len(chosen) < 2:
        raise ValueError(
            f"--compare takes FIELD=LEVEL,LEVEL[,...] (two levels or more), e.g. "
            f"model.basis=legendre,monomial; got {text!r}."
        )
    return field.strip(), chosen


def parse_filter(text: str) -> tuple[str, list[str]]:
    """`field=value,value,...` -> `(field, values)`.

    **Raises:** `ValueError` naming `--where` for another form."""
    field, _, values = text.partition("=")
    chosen = [value.strip() for value in values.split(",") if value.strip()]
    if not field.strip() or not chosen:
        raise ValueError(
            f"--where takes FIELD=VALUE[,VALUE...], e.g. data.dataset=elm; got {text!r}."
        )
    return field.strip(), chosen


def same(value, level: str) -> bool:
    """Whether a results-table value is the level a user typed (`3` is `3.0`)."""
    if str(value) == level:
        return True
    try:
        return float(value) == float(level)
    except (TypeError, ValueError):
        return False


def pairs(rows: list[dict], field: str, reference: str, other: str, metric: str):
    """`[(reference value, other value)]` of `metric` for the cells of the two levels that agree
    in every other configuration field, finished cells with a finite `metric` only."""
    keys = [f for f in FIELDS if f != field]
    found: dict[tuple, dict[str, float]] = {}
    for row in rows:
        value = row.get(metric)
        if row.get("status") not in SUCCEEDED or not isinstance(value, (int, float)):
            continue
        if not np.isfinite(value):
            continue
        for level in (reference, other):
            if same(row.get(field), level):
                found.setdefault(tuple(str(row.get(k)) for k in keys), {})[level] = float(value)
    return [(v[reference], v[other]) for v in found.values() if len(v) == 2]


def _interval(values: np.ndarray, level: float, rng) -> tuple[float, float]:
    if len(values) < 2:
        return float("nan"), float("nan")
    means = rng.choice(values, size=(10000, len(values)), replace=True).mean(axis=1)
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(means, [tail, 100 - tail])
    return float(low), float(high)


def _mean(values: np.ndarray) -> float:
    return float(np.mean(values)) if len(values) else float("nan")


def compare(
    rows: list[dict], field: str, levels: list[str], metric: str, level: float = 0.95
) -> list[Comparison]:
    """Each level after the first against the first (`Comparison`), bootstrap seeded (0)."""
    out = []
    for other in levels[1:]:
        matched = np.array(pairs(rows, field, levels[0], other, metric)).reshape(-1, 2)
        a, b = matched[:, 0], matched[:, 1]
        difference, ratio = b - a, b / a
        n = len(matched)
        d_low, d_high = _interval(difference, level, np.random.default_rng(0))
        r_low, r_high = _interval(ratio, level, np.random.default_rng(0))
        t_p = float(scipy.stats.ttest_rel(b, a)[1]) if n >= 2 else None
        nonzero = np.count_nonzero(difference)
        wilcoxon_p = None
        if nonzero >= 6:
            wilcoxon_p = float(np.asarray(scipy.stats.wilcoxon(b, a)[1]))
        out.append(
            Comparison(
                field=field,
                metric=metric,
                reference=levels[0],
                other=other,
                pairs=n,
                reference_mean=_mean(a),
                other_mean=_mean(b),
                difference=_mean(difference),
                difference_low=d_low,
                difference_high=d_high,
                ratio=_mean(ratio),
                ratio_low=r_low,
                ratio_high=r_high,
                t_p=t_p,
                wilcoxon_p=wilcoxon_p,
                level=level,
            )
        )
    return out


def comparison_table(comparisons: list[Comparison]) -> str:
    """The comparisons as a Markdown table, with what paired them and how."""
    if not comparisons:
        return ""
    first = comparisons[0]
    pct = round(100 * first.level)
    p = lambda value: "–" if value is None else f"{value:.3g}"
    lines = [
        f"Paired comparison of {first.field} on {first.metric}: cells that agree in every other "
        f"configuration field form a pair; mean difference (other - {first.reference}) and mean "
        f"ratio with {pct} % bootstrap intervals over the pairs; two-sided p-values of the "
        "paired t-test and of Wilcoxon's signed-rank test.",
        "",
        f"| {first.field} | pairs | mean {first.reference} | mean other | difference [{pct} %] "
        f"| ratio [{pct} %] | t-test p | Wilcoxon p | verdict |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for c in comparisons:
        lines.append(
            f"| {c.other} vs {c.reference} | {c.pairs} | {c.reference_mean:.4g} | "
            f"{c.other_mean:.4g} | {c.difference:+.4g} [{c.difference_low:+.4g}, "
            f"{c.difference_high:+.4g}] | {c.ratio:.3f} [{c.ratio_low:.3f}, {c.ratio_high:.3f}] "
            f"| {p(c.t_p)} | {p(c.wilcoxon_p)} | {c.verdict} |"
        )
    return "\n".join(lines) + "\n"
