"""Paired comparisons in a sweep's report (issue 29): cells that agree in every other field pair
up; the mean difference, its bootstrap interval, the paired t-test against its closed form, and
a winner only where the interval excludes zero."""

import math

import numpy as np
import pytest
import scipy.stats

from jaxode._sweeps._compare import compare, comparison_table, pairs, parse_compare


def _rows(shift: float, seeds: int = 10) -> list[dict]:
    rng = np.random.default_rng(3)
    rows = []
    for seed in range(seeds):
        base = 1.0 + 0.1 * seed
        for basis, value in (("monomial", base), ("legendre", base + shift + 0.01 * rng.normal())):
            rows.append(
                {
                    "status": "completed",
                    "model.basis": basis,
                    "train.seed": seed,
                    "model.degree": 3,
                    "test_global": value,
                }
            )
    # Without a partner of the other level: left out.
    rows.append(
        {
            "status": "completed",
            "model.basis": "legendre",
            "train.seed": 99,
            "model.degree": 3,
            "test_global": 5.0,
        }
    )
    return rows


def test_pairs_agree_in_every_other_field_and_the_t_test_is_the_closed_form():
    rows = _rows(-0.05)
    matched = np.array(pairs(rows, "model.basis", "monomial", "legendre", "test_global"))
    assert matched.shape == (10, 2)
    [found] = compare(rows, "model.basis", ["monomial", "legendre"], "test_global")
    difference = matched[:, 1] - matched[:, 0]
    assert found.pairs == 10
    assert found.difference == pytest.approx(np.mean(difference), rel=1e-12)
    assert found.ratio == pytest.approx(np.mean(matched[:, 1] / matched[:, 0]), rel=1e-12)
    t = np.mean(difference) / (np.std(difference, ddof=1) / math.sqrt(10))
    assert found.t_p == pytest.approx(2 * scipy.stats.t.sf(abs(t), 9), rel=1e-9)
    assert found.difference_low <= found.difference <= found.difference_high < 0
    assert found.verdict == "legendre lower"
    assert "| legendre vs monomial | 10 |" in comparison_table([found])


def test_no_winner_where_the_interval_includes_zero():
    [found] = compare(_rows(0.0), "model.basis", ["monomial", "legendre"], "test_global")
    assert found.difference_low < 0 < found.difference_high
    assert found.verdict.startswith("no winner")


def test_compare_takes_a_field_and_two_levels():
    assert parse_compare("basis=legendre, monomial") == ("basis", ["legendre", "monomial"])
    with pytest.raises(ValueError, match="--compare takes FIELD=LEVEL,LEVEL"):
        parse_compare("basis=legendre")


def test_the_report_filters_cells_before_its_tables_and_comparisons(tmp_path):
    import pathlib

    import jaxode

    sweep = pathlib.Path(__file__).resolve().parent.parent / "experiments/results/elm-bases"
    written = jaxode.sweep_report(
        sweep,
        rows=("basis",),
        cols=("degree",),
        out=tmp_path,
        where=("degree=3",),
        compare="basis=monomial,legendre",
    )
    assert "degree=3" in written["table"] and "degree=4" not in written["table"]
    assert "| legendre vs monomial | 3 |" in (tmp_path / "compare.md").read_text()
    with pytest.raises(ValueError, match="--where 'degree=9' leaves no cell"):
        jaxode.sweep_report(sweep, out=tmp_path, where=("degree=9",))
    with pytest.raises(ValueError, match="--where takes FIELD=VALUE"):
        jaxode.sweep_report(sweep, out=tmp_path, where=("degree",))
