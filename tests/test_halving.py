"""Successive halving in a sweep (issue 27): at each rung the members of a cohort are ranked on
their best validation error so far, the worse half is recorded as pruned with its rung, and the
survivors train on as a smaller cohort from their checkpoints, ending as they would have without
pruning. A resume after a kill ranks as the first attempt did."""

import csv

import numpy as np
import pytest

import jaxode
from jaxode._sweeps._pruning import Halving

SPEC = """
name = "halving"
[base.data]
dataset = "elm"
[base.model]
model = "resnet"
field = "layer"
width = 3
steps = 2
[base.train]
iterations = 40
eval_every_iterations = 10
batch_size = 16
[grid]
train.learning_rate = [1e-4, 1e-3, 1e-2, 3e-2]
train.seed = [0, 1]
"""
PRUNING = """
[pruning]
kind = "halving"
first_rung = 10
reduction = 2
"""


def _history(path) -> list[dict]:
    with open(path / "history.csv", newline="") as f:
        return [{k: float(v) if v else None for k, v in row.items()} for row in csv.DictReader(f)]


def _best_by(out, row, step: int) -> float:
    return min(r["val_global"] for r in _history(out / row["run_dir"]) if r["step"] <= step)


@pytest.fixture(scope="module")
def halved(tmp_path_factory):
    folder = tmp_path_factory.mktemp("halving")
    spec = jaxode.SweepSpec.from_toml(SPEC + PRUNING)
    rows = jaxode.sweep(spec, folder / "pruned", progress=False)
    full = jaxode.sweep(jaxode.SweepSpec.from_toml(SPEC), folder / "full", progress=False)
    return folder, rows, full


def test_the_worse_half_is_pruned_at_each_rung_on_validation_error(halved):
    folder, rows, _ = halved
    out = folder / "pruned"
    statuses = sorted((r["status"], r.get("rung")) for r in rows)
    assert statuses == [("completed", None)] * 2 + [("pruned", 1)] * 4 + [("pruned", 2)] * 2
    # Rung 1 (step 10): the 4 pruned are the 4 worst of all 8 by their best error up to it.
    at_first = sorted(rows, key=lambda r: (_best_by(out, r, 10), r["cell"]))
    assert {r["cell"] for r in at_first[4:]} == {r["cell"] for r in rows if r.get("rung") == 1}
    survivors = at_first[:4]
    at_second = sorted(survivors, key=lambda r: (_best_by(out, r, 20), r["cell"]))
    assert {r["cell"] for r in at_second[2:]} == {r["cell"] for r in rows if r.get("rung") == 2}
    for row in rows:
        if row["status"] == "pruned":
            rung = 10 * 2 ** (row["rung"] - 1)
            assert row["steps"] == rung  # no step after its rung
            assert row["val_global"] == pytest.approx(_best_by(out, row, rung), rel=1e-12)
            assert row["test_global"] is None  # a pruned cell is never evaluated on test
            assert f"pruned at rung {row['rung']} (step {rung})" in row["message"]


def test_survivors_end_as_they_would_without_pruning(halved):
    _, rows, full = halved
    by_cell = {r["cell"]: r for r in full}
    for row in rows:
        if row["status"] == "completed":
            reference = by_cell[row["cell"]]
            assert row["steps"] == reference["steps"] == 40
            np.testing.assert_allclose(row["test_global"], reference["test_global"], rtol=1e-5)
            np.testing.assert_allclose(row["val_global"], reference["val_global"], rtol=1e-5)


def test_a_resume_after_a_kill_ranks_as_the_first_attempt(halved):
    """A kill after the second rung trained but before its pruning was written: the cells
    pruned there and the survivors lose their records, and the sweep resumes."""
    folder, rows, _ = halved
    out = folder / "pruned"
    for row in rows:
        if row["status"] == "completed" or row.get("rung") == 2:
            (out / row["run_dir"] / "metrics.json").unlink()
    (out / "results.csv").unlink()
    again = jaxode.sweep(jaxode.SweepSpec.from_toml(SPEC + PRUNING), out, progress=False)
    pick = lambda rs: {r["cell"]: (r["status"], r.get("rung")) for r in rs}
    assert pick(again) == pick(rows)
    errors = {r["cell"]: r["val_global"] for r in rows}
    assert {r["cell"]: r["val_global"] for r in again} == pytest.approx(errors, rel=1e-6)


def test_halving_settings_are_checked():
    assert Halving(100, 3).rungs(1000) == [100, 300, 900]
    assert [Halving(10).survivors(n) for n in (1, 2, 3, 8, 9, 31, 40)] == [1, 1, 1, 4, 4, 8, 16]
    with pytest.raises(ValueError, match="pruning.reduction must be at least 2"):
        Halving(100, 1)
    with pytest.raises(ValueError, match="a test metric never selects"):
        Halving(100, metric="test_global")
    with pytest.raises(ValueError, match="pruning.kind must be one of"):
        jaxode.SweepSpec.from_toml(SPEC + '[pruning]\nkind = "median"\n')
    off = SPEC + PRUNING.replace("first_rung = 10", "first_rung = 15")
    with pytest.raises(ValueError, match="make pruning.first_rung a multiple of 10"):
        jaxode.make_plan(jaxode.SweepSpec.from_toml(off))
