"""The DC-resistivity forward solver and data set (`jaxode._datasets._dcr`): second-order
convergence on a manufactured solution, reciprocity, a homogeneous medium against an independent
DCT solution, the fast reduction against the dense solve, and `load_dcr` (splits, protocols,
cache, errors) on a small sample count."""

import os

import numpy as np
import pytest
import scipy.fft

import jaxode
from jaxode._datasets import _bundled, _dcr

GRID = _dcr.DEFAULT_GRID


def _dipole(grid, plus, minus):
    rhs = np.zeros(grid * grid)
    rhs[plus], rhs[minus] = 1.0, -1.0
    return rhs.reshape(grid, grid)


def _data_from_potentials(u, grid):
    """The 42 receiver differences of flat potentials `u` (one row per source)."""
    top, bottom = _dcr.electrode_cells(grid)
    return np.concatenate([u[:, top[:-1]] - u[:, top[1:]], u[:, bottom[:-1]] - u[:, bottom[1:]]], 1)


def _dense_data(conductivity):
    grid = conductivity.shape[0]
    top, _ = _dcr.electrode_cells(grid)
    rhs = np.stack([_dipole(grid, top[s], top[s + 1]) for s in range(_dcr.NUM_SOURCES)])
    u = _dcr.dcr_solve(conductivity, rhs).reshape(_dcr.NUM_SOURCES, -1)
    return _data_from_potentials(u, grid).ravel()


def _manufactured(grid):
    """u = cos(pi x) cos(pi y) (zero normal derivative on the boundary, zero mean) with
    m = 2 + sin(pi x) cos(2 pi y); q = -div(m grad u) in closed form."""
    c = (np.arange(grid) + 0.5) / grid
    x, y = np.meshgrid(c, c)  # arrays indexed [iy, ix]
    pi = np.pi
    u = np.cos(pi * x) * np.cos(pi * y)
    m = 2.0 + np.sin(pi * x) * np.cos(2 * pi * y)
    m_x = pi * np.cos(pi * x) * np.cos(2 * pi * y)
    m_y = -2 * pi * np.sin(pi * x) * np.sin(2 * pi * y)
    u_x = -pi * np.sin(pi * x) * np.cos(pi * y)
    u_y = -pi * np.cos(pi * x) * np.sin(pi * y)
    q = -(m_x * u_x + m_y * u_y) + 2 * pi**2 * m * u
    return m, q, u


def test_manufactured_solution_converges_at_second_order():
    grids = np.array([8, 16, 24, 32, 48])
    errors = []
    for grid in grids:
        m, q, u = _manufactured(grid)
        h = 1.0 / grid
        u_h = _dcr.dcr_solve(m, q * h**2)  # current per cell = density x cell area
        assert abs(u_h.mean()) < 1e-12
        errors.append(np.sqrt(h**2 * np.sum((u_h - (u - u.mean())) ** 2)))
    slope = np.polyfit(np.log(1.0 / grids), np.log(errors), 1)[0]
    assert 1.8 <= slope <= 2.2, (slope, errors)
    assert errors[-1] < 1e-3


def test_operator_is_a_symmetric_neumann_laplacian():
    m = _dcr.dcr_conductivity([0.4, 0.6, 1.5], grid=6)[0]
    a = _dcr.dcr_operator(m)
    assert a.shape == (36, 36)
    np.testing.assert_allclose(a, a.T, rtol=0, atol=0)
    np.testing.assert_allclose(a @ np.ones(36), 0.0, atol=1e-13)
    # face (iy=2, ix=3)-(iy=2, ix=4): harmonic mean of the two cells
    i, j = 2 * 6 + 3, 2 * 6 + 4
    np.testing.assert_allclose(-a[i, j], 2 * m[2, 3] * m[2, 4] / (m[2, 3] + m[2, 4]))
    assert a[0, 7] == 0.0  # no diagonal neighbours
    eig = np.linalg.eigvalsh(a)
    assert abs(eig[0]) < 1e-12 and eig[1] > 1e-3  # one null vector: the constants
    reduced = _dcr.kron_reduce(m)[0]
    np.testing.assert_allclose(reduced, reduced.T, atol=1e-13)
    np.testing.assert_allclose(reduced.sum(axis=1), 0.0, atol=1e-12)


def test_reciprocity_in_a_heterogeneous_medium():
    grid = GRID
    rng = np.random.default_rng(3)
    m = _dcr.dcr_conductivity([0.35, 0.55, 1.8], grid=grid)[0] * np.exp(
        0.5 * rng.standard_normal((grid, grid))
    )
    top, bottom = _dcr.electrode_cells(grid)
    interior = (grid // 2) * grid + np.array([5, 9])
    pairs = [(top[2], top[3]), (bottom[10], bottom[11]), (top[15], bottom[4]), tuple(interior)]
    for k, (a, b) in enumerate(pairs):
        for mm, nn in pairs[k + 1 :]:
            u_ab = _dcr.dcr_solve(m, _dipole(grid, a, b)).ravel()
            u_mn = _dcr.dcr_solve(m, _dipole(grid, mm, nn)).ravel()
            forward, backward = u_ab[mm] - u_ab[nn], u_mn[a] - u_mn[b]
            assert abs(forward - backward) <= 1e-10 * abs(forward)
    # the data set's top-source / top-receiver block is symmetric
    top_block = _dcr.dcr_data(m).reshape(_dcr.NUM_SOURCES, _dcr.NUM_RECEIVERS)[:, :21]
    np.testing.assert_allclose(top_block, top_block.T, rtol=1e-10, atol=0)


def test_homogeneous_medium_matches_the_dct_solution():
    grid = GRID
    k = np.arange(grid)
    lam1 = 2.0 - 2.0 * np.cos(np.pi * k / grid)
    lam = lam1[:, None] + lam1[None, :]
    lam[0, 0] = 1.0
    top, _ = _dcr.electrode_cells(grid)
    rng = np.random.default_rng(0)
    sources = [_dipole(grid, top[s], top[s + 1]) for s in range(_dcr.NUM_SOURCES)]
    sources.append(rng.standard_normal((grid, grid)))
    sources[-1] -= sources[-1].mean()
    u_dct = []
    for b in sources:
        coef = scipy.fft.dctn(b, type=2, norm="ortho") / lam
        coef[0, 0] = 0.0
        u_dct.append(scipy.fft.idctn(coef, type=2, norm="ortho"))
    u_dct = np.stack(u_dct)
    ones = np.ones((grid, grid))
    u = _dcr.dcr_solve(ones, np.stack(sources))
    np.testing.assert_allclose(u, u_dct, rtol=0, atol=1e-10 * np.abs(u_dct).max())
    data = _data_from_potentials(u_dct[:-1].reshape(_dcr.NUM_SOURCES, -1), grid).ravel()
    np.testing.assert_allclose(
        _dcr.dcr_data(ones)[0], data, rtol=0, atol=1e-10 * np.abs(data).max()
    )


@pytest.mark.parametrize("grid", [24, 27])
def test_fast_data_match_the_dense_solve(grid):
    params = np.array([[0.3, 0.7, -1.9], [0.62, 0.41, 2.0]])
    m = _dcr.dcr_conductivity(params, grid=grid)
    fast = _dcr.dcr_forward(params, grid=grid)
    assert fast.shape == (2, 882)
    for i in range(2):
        dense = _dense_data(m[i])
        np.testing.assert_allclose(fast[i], dense, rtol=0, atol=1e-10 * np.abs(dense).max())
    # the anomaly changes the data
    assert np.abs(fast[0] - fast[1]).max() > 1e-3


def test_mirror_symmetry_of_the_layout():
    """Mirroring x -> 1 - x maps electrode j to 21 - j: source s -> 20 - s and receiver
    r -> 20 - r on each line (both reversed, so the sign is kept)."""
    d = _dcr.dcr_forward([[0.3, 0.45, 1.2], [0.7, 0.45, 1.2]], grid=GRID)
    d = d.reshape(2, _dcr.NUM_SOURCES, 2, 21)
    mirrored = d[1][::-1][:, :, ::-1]
    np.testing.assert_allclose(d[0], mirrored, rtol=0, atol=1e-10 * np.abs(d).max())


def test_conductivity_model():
    grid = GRID
    m = _dcr.dcr_conductivity([0.5, 0.25, -2.0], grid=grid)[0]
    c = (np.arange(grid) + 0.5) / grid
    iy, ix = np.unravel_index(np.argmin(m), m.shape)
    assert abs(c[ix] - 0.5) <= 0.5 / grid + 1e-12 and abs(c[iy] - 0.25) <= 0.5 / grid + 1e-12
    expected = np.exp(-2.0 * np.exp(-((c[3] - 0.5) ** 2 + (c[7] - 0.25) ** 2) / (2 * 0.15**2)))
    np.testing.assert_allclose(m[7, 3], expected, rtol=1e-14)
    p = _dcr.draw_params(1000)
    assert p.shape == (1000, 3)
    assert p[:, :2].min() >= 0.25 and p[:, :2].max() <= 0.75
    assert p[:, 2].min() >= -2 and p[:, 2].max() <= 2 and p[:, 2].min() < -1.9
    np.testing.assert_array_equal(_dcr.draw_params(700), p[:700])


@pytest.fixture
def cache(tmp_path, monkeypatch):
    folder = tmp_path / "cache"
    monkeypatch.setenv("JAXODE_DATA_CACHE", str(folder))
    return folder


def test_load_dcr_splits_protocols_and_cache(cache, monkeypatch):
    data = _dcr.load_dcr(3, protocol="study", num_samples=800, progress=False)
    assert data.name == "dcr"
    assert data.x.shape == (800, 3) and data.y.shape == (800, 882)
    assert data.sizes() == {"train": 400, "val": 200, "test": 200}
    files = sorted(os.listdir(cache))
    assert files == [_dcr.cache_path(800).name]
    assert "v1" in files[0] and "grid24" in files[0] and "n800" in files[0]
    np.testing.assert_allclose(data.x, _dcr.draw_params(800))
    x_tr, y_tr = data.arrays("train")
    np.testing.assert_allclose(y_tr.mean(axis=0), 0.0, atol=1e-12)
    np.testing.assert_array_equal(data.y_norm.scale, 1.0)
    np.testing.assert_allclose(x_tr.mean(axis=0), 0.0, atol=1e-12)
    np.testing.assert_allclose(x_tr.std(axis=0), 1.0)
    np.testing.assert_allclose(data.y[:2], _dcr.dcr_forward(data.x[:2]), rtol=0, atol=1e-13)

    # a second call reads the cache: the solver is not called again
    def no_solver(*args, **kwargs):
        raise AssertionError("the solver ran although the cache holds the data")

    monkeypatch.setattr(_dcr, "dcr_forward", no_solver)
    again = _dcr.load_dcr(3, num_samples=800, progress=False)
    np.testing.assert_array_equal(again.y, data.y)
    np.testing.assert_array_equal(again.splits["test"], data.splits["test"])
    _, y_tr = again.arrays("train")
    scale = again.y_norm.scale
    assert np.all(scale == scale[0])  # one common factor keeps the observations' relative sizes
    np.testing.assert_allclose(y_tr.mean(axis=0), 0.0, atol=1e-9)
    np.testing.assert_allclose(y_tr.std(), 1.0)
    other = _dcr.load_dcr(4, num_samples=800, progress=False)
    assert not np.array_equal(other.splits["train"], data.splits["train"])
    np.testing.assert_array_equal(other.y, data.y)  # the seed moves the split, not the samples


def test_cache_is_keyed_by_settings_and_stale_files_are_regenerated(cache, monkeypatch):
    calls = []

    def fake_forward(params, *, grid, progress):
        calls.append((len(params), grid))
        return np.tile(params[:, :1], (1, 882)) + np.arange(882)

    monkeypatch.setattr(_dcr, "dcr_forward", fake_forward)
    first = _dcr.load_dcr(num_samples=600, progress=False)
    assert first.sizes() == {"train": 400, "val": 200, "test": 0}
    _dcr.load_dcr(num_samples=600, progress=False)
    assert calls == [(600, 24)]
    _dcr.load_dcr(num_samples=600, grid=25, progress=False)
    assert calls[-1] == (600, 25)
    path = _dcr.cache_path(600)
    path.write_bytes(b"truncated")  # unreadable: regenerated, not an error
    _dcr.load_dcr(num_samples=600, progress=False)
    assert len(calls) == 3
    with np.load(path) as f:
        assert f["y"].shape == (600, 882)
    old = path.name
    monkeypatch.setattr(_dcr, "GENERATOR_VERSION", 2)
    assert _dcr.cache_path(600).name != old  # a new generator never reads an old file
    assert not [name for name in os.listdir(cache) if name.endswith(".tmp")]


def test_cache_folder_defaults(monkeypatch, tmp_path):
    monkeypatch.delenv("JAXODE_DATA_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert _dcr.cache_dir() == tmp_path / "jaxode" / "data"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert _dcr.cache_dir() == tmp_path / "home" / ".cache" / "jaxode" / "data"


def test_load_dataset_routes_dcr(monkeypatch):
    seen = []
    monkeypatch.setattr(_bundled, "load_dcr", lambda seed, protocol: seen.append((seed, protocol)))
    jaxode.load_dataset("DCR", seed=5, protocol="study")
    assert seen == [(5, "study")]
    assert "dcr" in jaxode._datasets.BUNDLED
    assert jaxode.load_dcr is _dcr.load_dcr


@pytest.mark.parametrize(
    "call, name",
    [
        (lambda: _dcr.load_dcr(num_samples=599), "num_samples"),
        (lambda: _dcr.load_dcr(num_samples=800.0), "num_samples"),
        (lambda: _dcr.load_dcr(grid=23), "grid"),
        (lambda: _dcr.load_dcr(protocol="raw"), "protocol"),
        (lambda: _dcr.load_dcr(seed=-1), "seed"),
        (lambda: _dcr.dcr_forward([np.nan, 0.5, 1.0]), "params"),
        (lambda: _dcr.dcr_forward(np.ones((2, 4))), "params"),
        (lambda: _dcr.dcr_forward([0.5, 0.5, 1.0], grid=10), "grid"),
        (lambda: _dcr.dcr_conductivity([0.5, 0.5, 1.0], grid=1), "grid"),
        (lambda: _dcr.dcr_data(np.ones((20, 20))), "grid"),
        (lambda: _dcr.dcr_data(-np.ones((24, 24))), "conductivity"),
        (lambda: _dcr.dcr_solve(np.ones((4, 4)), np.ones((5, 5))), "rhs"),
    ],
)
def test_bad_arguments_name_the_argument(cache, call, name):
    with pytest.raises(ValueError, match=f"`{name}`"):
        call()
    assert not cache.exists()  # nothing generated or written


def test_progress_bar(capsys):
    out = _dcr.dcr_forward(_dcr.draw_params(3), progress=True)
    assert out.shape == (3, 882)
    assert "3/3" in capsys.readouterr().err
