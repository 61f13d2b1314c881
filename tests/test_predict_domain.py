"""The training domain a run stores, and `jaxode predict` on inputs outside it: a warning that
names the rows, the columns and how far out, `--mark-outside` and `--strict`; old runs without a
stored domain still predict."""

import json
import shutil

import numpy as np
import pytest

import jaxode
from jaxode import DomainCheck, RunConfig, TrainingDomain
from jaxode._cli import main

# tests/test_runs.py's TINY: the compilation cache (conftest.py) compiles its programs once.
TINY = {
    "data": {"dataset": "cdr"},
    "model": {"model": "resnet", "field": "layer", "width": 3, "steps": 2, "degree": 1},
    "train": {"epochs": 3, "batch_size": 100, "precision": "float64"},
}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """`(run directory, surrogate train returned)` of TINY."""
    out = tmp_path_factory.mktemp("domain") / "run"
    trained, _, _ = jaxode.train(RunConfig.from_dict(TINY), out, progress=False)
    return out, trained


def _train_x() -> np.ndarray:
    x, _ = jaxode.load_cdr(0).arrays("train", normalised=False)
    return x


def test_the_stored_domain_is_the_min_and_max_of_the_training_split(run):
    out, trained = run
    x = _train_x()
    stored = json.loads((out / "normalisation.json").read_text())["domain"]
    np.testing.assert_array_equal(stored["min"], x.min(axis=0))  # exact: JSON keeps floats
    np.testing.assert_array_equal(stored["max"], x.max(axis=0))
    for surrogate in (trained, jaxode.load(out)):
        assert isinstance(surrogate.domain, TrainingDomain)
        np.testing.assert_array_equal(surrogate.domain.low, x.min(axis=0))
        np.testing.assert_array_equal(surrogate.domain.high, x.max(axis=0))
    # Every training row lies inside, the extreme ones included.
    assert jaxode.load(out).outside_domain(x).count == 0


def test_distances_in_training_ranges_match_a_hand_computation(run):
    # The case: a column trained on [0.918, 2.142] asked at 0 and 1, then above it.
    domain = TrainingDomain(np.array([0.918, -1.0, 3.0]), np.array([2.142, 1.0, 3.0]))
    xs = np.array([[0.0, 0.0, 3.0], [1.0, 0.0, 3.0], [2.448, 2.0, 3.0], [1.5, -1.5, 3.5]])
    check = domain.check(xs)
    expected = [
        [(0.918 - 0.0) / (2.142 - 0.918), 0.0, 0.0],
        [0.0, 0.0, 0.0],
        [(2.448 - 2.142) / (2.142 - 0.918), (2.0 - 1.0) / 2.0, 0.0],
        [0.0, (-1.0 - -1.5) / 2.0, np.inf],  # a constant training column: any other value
    ]
    np.testing.assert_allclose(check.distance, expected, rtol=1e-15)
    assert check.outside.tolist() == [True, False, True, True] and check.count == 3
    assert check.columns == [0, 1, 2]
    np.testing.assert_allclose(check.largest, [0.75, 0.5, np.inf], rtol=1e-15)
    assert check.describe(["a", "b", "c"]) == (
        "3 of 4 rows lie outside the training domain; largest distance per column, in "
        "training ranges: column 2 ('c') inf, column 0 ('a') 0.75, column 1 ('b') 0.5"
    )
    assert check.describe(limit=1).endswith("column 2 inf and 2 more columns")
    assert DomainCheck(np.zeros((1, 3))).describe() == "1 row lies inside the training domain"

    # On the trained run: one column pushed a quarter of its range below, one twice above.
    _, trained = run
    x, low, high = _train_x()[:3].copy(), trained.domain.low, trained.domain.high
    x[0, 5] = low[5] - 0.25 * (high[5] - low[5])
    x[2, 7] = high[7] + 2.0 * (high[7] - low[7])
    check = trained.outside_domain(x)
    assert check.outside.tolist() == [True, False, True] and check.columns == [5, 7]
    assert check.distance[0, 5] == pytest.approx(0.25, rel=1e-12)
    assert check.distance[2, 7] == pytest.approx(2.0, rel=1e-12)
    with pytest.raises(ValueError, match=r"inputs must have shape \(batch, 55\)"):
        trained.outside_domain(x[:, :3])


def _inputs(run, folder) -> tuple[np.ndarray, str]:
    """Five CDR test rows moved inside the domain, then row 1 half a training range below it
    in column 2 and row 3 three ranges above it in column 9; a CSV with a header."""
    _, trained = run
    low, high = trained.domain.low, trained.domain.high
    x, _ = jaxode.load_cdr(0).arrays("test", normalised=False)
    x = np.clip(x[:5], low, high)
    x[1, 2] = low[2] - 0.5 * (high[2] - low[2])
    x[3, 9] = high[9] + 3.0 * (high[9] - low[9])
    path = folder / "in.csv"
    header = ",".join(f"p{j}" for j in range(x.shape[1]))
    np.savetxt(path, x, delimiter=",", header=header, comments="")
    return x, str(path)


def test_predict_warns_marks_and_refuses_outside_the_domain(run, tmp_path, capsys):
    out, trained = run
    x, inputs = _inputs(run, tmp_path)
    capsys.readouterr()
    assert main(["predict", str(out), inputs]) == 0
    warning = capsys.readouterr().err
    assert warning == (
        "jaxode predict: warning: 2 of 5 rows lie outside the training domain; largest "
        "distance per column, in training ranges: column 9 ('p9') 3, column 2 ('p2') 0.5; "
        "their predictions extrapolate (--mark-outside flags them in the output, --strict "
        "refuses them)\n"
    )
    plain = (tmp_path / "in_predictions.csv").read_text().splitlines()
    assert plain[0] == ",".join(f"y{i}" for i in range(72))  # the format of today
    np.testing.assert_allclose(
        np.loadtxt(tmp_path / "in_predictions.csv", delimiter=",", skiprows=1),
        trained.predict(x),
        rtol=1e-15,
    )

    marked = tmp_path / "marked.csv"
    assert main(["predict", str(out), inputs, "--mark-outside", "--output", str(marked)]) == 0
    assert "marked 1 in the column outside_domain" in capsys.readouterr().err
    lines = marked.read_text().splitlines()
    assert lines[0] == plain[0] + ",outside_domain"
    assert [line.rsplit(",", 1)[1] for line in lines[1:]] == ["0", "1", "0", "1", "0"]
    assert [line.rsplit(",", 1)[0] for line in lines[1:]] == plain[1:]

    strict = tmp_path / "strict.csv"
    assert main(["predict", str(out), inputs, "--strict", "--output", str(strict)]) == 2
    error = capsys.readouterr().err
    assert error.startswith("jaxode predict: error: 2 of 5 rows lie outside the training domain")
    assert "--strict refuses to extrapolate" in error and error.count("\n") == 1
    assert not strict.exists()


def test_predict_inside_the_domain_is_unchanged_and_marks_zeros(run, tmp_path, capsys):
    out, _ = run
    np.savez(tmp_path / "inside.npz", x=_train_x()[:4])
    capsys.readouterr()
    assert main(["predict", str(out), str(tmp_path / "inside.npz"), "--strict"]) == 0
    assert capsys.readouterr().err == ""
    lines = (tmp_path / "inside_predictions.csv").read_text().splitlines()
    assert lines[0] == ",".join(f"y{i}" for i in range(72)) and len(lines) == 5
    argv = ["predict", str(out), str(tmp_path / "inside.npz"), "--mark-outside", "--force"]
    assert main(argv) == 0
    marked = (tmp_path / "inside_predictions.csv").read_text().splitlines()
    assert marked[0] == lines[0] + ",outside_domain"
    assert marked[1:] == [line + ",0" for line in lines[1:]]


def test_an_old_run_without_a_domain_still_predicts_with_a_note(run, tmp_path, capsys):
    out, trained = run
    old = tmp_path / "old"
    shutil.copytree(out, old)
    stored = json.loads((old / "normalisation.json").read_text())
    del stored["domain"]
    (old / "normalisation.json").write_text(json.dumps(stored))
    loaded = jaxode.load(old)
    assert loaded.domain is None
    x = _train_x()[:2] * 0.0  # far outside: nothing to tell
    np.testing.assert_array_equal(loaded.predict(x), trained.predict(x))
    with pytest.raises(ValueError, match="stores no training domain.*retrain it"):
        loaded.outside_domain(x)
    np.savez(tmp_path / "in.npz", x=x)
    capsys.readouterr()
    assert main(["predict", str(old), str(tmp_path / "in.npz")]) == 0
    assert capsys.readouterr().err == (
        f"jaxode predict: note: {str(old)!r} stores no training domain (trained before jaxode "
        "stored one), so the inputs were not checked for extrapolation; retrain the run to get "
        "the check.\n"
    )
    assert (tmp_path / "in_predictions.csv").read_text().startswith("y0,y1,")
    strict = tmp_path / "strict.csv"
    argv = ["predict", str(old), str(tmp_path / "in.npz"), "--strict", "--output", str(strict)]
    assert main(argv) == 2
    assert "--strict needs the run's training domain" in capsys.readouterr().err
    assert not strict.exists()


def test_a_time_series_has_no_domain(tmp_path):
    data = jaxode.spiral(num_times=200)
    assert TrainingDomain.of(data) is None
    config = RunConfig.from_dict({"data": {"dataset": "spiral"}})
    jaxode.RunDir(tmp_path).start(config, data)
    assert "domain" not in json.loads((tmp_path / "normalisation.json").read_text())
    assert jaxode.RunDir(tmp_path).domain() is None
