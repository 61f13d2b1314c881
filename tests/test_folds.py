"""Splits as an axis (issue 29): k-fold cross-validation of the training and validation rows,
the test rows kept, the normalisation derived again from each fold's training rows, usable in
a run configuration (and so as a sweep axis) and followed by `jaxode evaluate`."""

import json

import numpy as np
import pytest

import jaxode
from jaxode._cli import main


def test_folds_partition_the_training_and_validation_rows_and_keep_the_test_rows():
    data = jaxode.load_dataset("elm")
    pool = np.sort(np.concatenate([data.splits["train"], data.splits["val"]]))
    folds = [jaxode.load_dataset("elm", folds=5, fold=k) for k in range(5)]
    validated = np.concatenate([f.splits["val"] for f in folds])
    np.testing.assert_array_equal(np.sort(validated), pool)
    for f in folds:
        np.testing.assert_array_equal(f.splits["test"], data.splits["test"])
        train = np.sort(np.concatenate([f.splits["train"], f.splits["val"]]))
        np.testing.assert_array_equal(train, pool)
        # ELM's outputs are min-max scaled with the training rows' statistics: this fold's.
        y = data.y[f.splits["train"]]
        np.testing.assert_allclose(f.y_norm.shift, y.min(axis=0))
        np.testing.assert_allclose(f.y_norm.scale, y.max(axis=0) - y.min(axis=0))
    assert {len(f.splits["val"]) for f in folds} <= {len(pool) // 5, len(pool) // 5 + 1}


def test_a_run_trains_and_evaluates_on_its_fold(tmp_path):
    config = jaxode.RunConfig.from_dict(
        {
            "data": {"dataset": "cdr", "folds": 4, "fold": 3, "split_seed": 2},
            "model": {"model": "resnet", "field": "layer", "width": 3, "steps": 2},
            "train": {"iterations": 10, "batch_size": 32},
        }
    )
    _, _, metrics = jaxode.train(config, tmp_path / "run", progress=False)
    data = jaxode.load_dataset("cdr", seed=2, folds=4, fold=3)
    x_train = data.x[data.splits["train"]]
    stored = json.loads((tmp_path / "run" / "normalisation.json").read_text())
    np.testing.assert_allclose(stored["x"]["shift"], x_train.mean(axis=0))
    assert main(["evaluate", str(tmp_path / "run"), "--output", str(tmp_path / "e.json")]) == 0
    evaluated = json.loads((tmp_path / "e.json").read_text())
    assert evaluated["val_global"] == pytest.approx(metrics["val_global"], rel=1e-6)


def test_bad_folds_are_refused_with_the_field_named():
    base = {"data": {"dataset": "elm"}}
    with pytest.raises(ValueError, match=r"data.fold must be an integer in \[0, data.folds\)"):
        jaxode.RunConfig.from_dict({"data": {"dataset": "elm", "folds": 5, "fold": 5}})
    with pytest.raises(ValueError, match="set data.folds"):
        jaxode.RunConfig.from_dict({"data": {"dataset": "elm", "fold": 1}})
    with pytest.raises(ValueError, match="data.folds must be none or an integer >= 2"):
        jaxode.RunConfig.from_dict({"data": {**base["data"], "folds": 1}})
    with pytest.raises(ValueError, match="a time series is split into regions"):
        jaxode.load_dataset("spiral", folds=3)
