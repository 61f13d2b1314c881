"""Bundled data sets, the user-file loader and the spiral task, against independent NumPy."""

import jax
import numpy as np
import pytest
from scipy.integrate import solve_ivp

from jaxode._datasets import load_cdr, load_dataset, load_elm, load_file, spiral, spiral_batch
from jaxode._datasets._bundled import DATA_DIR


def test_elm_split_and_normalisation():
    data = load_elm()
    assert data.sizes() == {"train": 1740, "val": 497, "test": 249}
    raw = np.load(DATA_DIR / "elm.npz")
    low, high = raw["param_range"][:, 0], raw["param_range"][:, 1]
    x, y = data.arrays("test")
    expected_x = 2 * (raw["x"][raw["idx_test"]] - (low + high) / 2) / (high - low)
    np.testing.assert_allclose(x, expected_x, rtol=1e-13, atol=1e-13)
    ytr = raw["y"][raw["idx_train"]]
    expected_y = (raw["y"][raw["idx_test"]] - ytr.min(0)) / (ytr - ytr.min(0)).max(0)
    np.testing.assert_allclose(y, expected_y, rtol=1e-13, atol=1e-13)
    _, y_train = data.arrays("train")
    np.testing.assert_allclose(y_train.min(0), 0.0, atol=1e-14)
    np.testing.assert_allclose(y_train.max(0), 1.0, atol=1e-14)
    np.testing.assert_allclose(data.y_norm.invert(y), raw["y"][raw["idx_test"]], rtol=1e-12)


def test_cdr_seeded_split_and_zscore():
    a, b, c = load_cdr(0), load_cdr(0), load_cdr(1)
    assert a.sizes() == {"train": 400, "val": 200, "test": 200}
    np.testing.assert_array_equal(a.splits["test"], b.splits["test"])
    assert not np.array_equal(a.splits["test"], c.splits["test"])
    order = np.random.default_rng(0).permutation(800)
    np.testing.assert_array_equal(a.splits["val"], order[400:600])
    x, y = a.arrays("train")
    np.testing.assert_allclose(x.mean(0), 0.0, atol=1e-10)
    np.testing.assert_allclose(x.std(0), 1.0, atol=1e-10)
    np.testing.assert_allclose(y.mean(0), 0.0, atol=1e-10)
    np.testing.assert_allclose(y.std(0), 1.0, atol=1e-10)
    raw = np.load(DATA_DIR / "cdr.npz")["y"]
    np.testing.assert_allclose(a.y_norm.invert(a.arrays("test")[1]), raw[order[600:]], rtol=1e-12)


def test_unknown_name_lists_valid_names():
    with pytest.raises(ValueError, match="'elm', 'cdr'"):
        load_dataset("mnist")


def _write_npz(path, x, y, **extra):
    np.savez(path, x=x, y=y, **extra)
    return path


def test_user_npz_with_and_without_split(tmp_path):
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(50, 3)), rng.normal(size=(50, 2))
    data = load_file(_write_npz(tmp_path / "a.npz", x, y), seed=3)
    assert data.sizes() == {"train": 30, "val": 10, "test": 10}
    xt, yt = data.arrays("train")
    np.testing.assert_allclose(xt.mean(0), 0.0, atol=1e-12)
    np.testing.assert_allclose(yt.std(0), 1.0, atol=1e-12)
    idx = {"idx_train": np.arange(40), "idx_val": np.arange(40, 45), "idx_test": np.arange(45, 50)}
    stored = load_file(_write_npz(tmp_path / "b.npz", x, y, **idx))
    np.testing.assert_array_equal(stored.arrays("test", normalised=False)[0], x[45:])


def test_user_csv_header_and_num_outputs(tmp_path):
    rng = np.random.default_rng(1)
    table = rng.normal(size=(20, 4))
    path = tmp_path / "d.csv"
    np.savetxt(path, table, delimiter=",", header="a,y1,b,y2", comments="")
    data = load_file(path)
    np.testing.assert_allclose(data.x, table[:, [0, 2]])
    np.testing.assert_allclose(data.y, table[:, [1, 3]])
    bare = tmp_path / "e.csv"
    np.savetxt(bare, table, delimiter=",")
    np.testing.assert_allclose(load_file(bare, num_outputs=3).y, table[:, 1:])
    with pytest.raises(ValueError, match="num_outputs"):
        load_file(bare)


@pytest.mark.parametrize(
    "x, y, message",
    [
        (np.zeros((10, 2)), np.zeros((9, 1)), "10 samples but outputs have 9"),
        (np.full((10, 2), np.nan), np.zeros((10, 1)), "NaN/inf"),
        (np.zeros((3, 2)), np.zeros((3, 1)), "too few samples"),
    ],
)
def test_bad_user_files(tmp_path, x, y, message):
    with pytest.raises(ValueError, match=message):
        load_file(_write_npz(tmp_path / "bad.npz", x, y))


def test_missing_file_and_missing_arrays(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_file(tmp_path / "none.npz")
    np.savez(tmp_path / "k.npz", inputs=np.zeros((10, 2)))
    with pytest.raises(ValueError, match="'x'"):
        load_file(tmp_path / "k.npz")


def test_spiral_solves_its_equation_and_splits():
    data = spiral(num_times=2001)
    ts, ys = data.ts, data.ys
    a = np.array([[-0.1, 2.0], [-2.0, -0.1]])
    reference = solve_ivp(
        lambda t, y: (y**3) @ a,
        (0.0, 25.0),
        [2.0, 0.0],
        t_eval=ts,
        method="DOP853",
        rtol=1e-11,
        atol=1e-12,
    )
    np.testing.assert_allclose(ys, reference.y.T, atol=1e-6)
    np.testing.assert_allclose(ys[0], [2.0, 0.0])
    t_val, _ = data.split("val")
    assert data.split("train")[0].max() < 16.0 <= t_val.min() and t_val.max() < 20.0
    assert data.split("test")[0].min() >= 20.0 and data.split("test")[0].max() == 25.0


def test_spiral_batches_are_consecutive_windows_inside_the_split(getkey):
    data = spiral(num_times=500)
    ts, ys, starts = spiral_batch(data, "val", key=getkey(), batch_size=20, length=10)
    assert ts.shape == (20, 10) and ys.shape == (20, 10, 2)
    a, b = data.windows["val"]
    assert np.all(np.asarray(starts) >= a) and np.all(np.asarray(starts) + 10 <= b)
    for i, s in enumerate(np.asarray(starts)):
        np.testing.assert_array_equal(np.asarray(ys[i]), data.ys[s : s + 10])
    key = jax.random.PRNGKey(5)
    np.testing.assert_array_equal(
        spiral_batch(data, "train", key=key)[2], spiral_batch(data, "train", key=key)[2]
    )
