"""Inputs that used to end in tracebacks, huge allocations or messages that named nothing
(issue 25): seeds out of range, cohorts too large to list, sizes beyond the memory limit,
archives that expand to gigabytes, values too large to standardise, empty stored splits,
paths that are not regular files and non-finite settings."""

import io
import math
import os
import time
import tracemalloc
import warnings
import zipfile
from typing import Any

import jax
import numpy as np
import pytest

from jaxode._cli import main
from jaxode._datasets import TrajectoryData, load_file, load_inputs
from jaxode._memory_limit import (
    DEFAULT_MEMORY_FRACTION,
    MEMORY_LIMIT_VARIABLE,
    memory_limit,
    parse_size,
)
from jaxode._surrogate import count_parameters
from jaxode._training import (
    RunConfig,
    build_model,
    check_memory,
    load_data,
    parse_seeds,
    train,
)
from jaxode._training._memory import (
    COPIES_PER_MEMBER,
    estimate_memory,
    parameter_count,
)
from jaxode._training._summary import MAX_COHORT

LIMIT = MEMORY_LIMIT_VARIABLE
TOP_SEED = 2**32 - 1


def _error(kind, call) -> str:
    with pytest.raises(kind) as caught:
        call()
    message = str(caught.value)
    assert "\n" not in message
    return message


# --- A. seeds ---------------------------------------------------------------------------


def test_prng_key_keeps_32_bits_of_a_seed_so_the_range_is_0_to_2_32():
    # Why [0, 2**32): below it the key is [0, seed] in either precision (this session runs
    # x64); 2**63 overflows outright; numpy's RandomState stops at 2**32 - 1.
    assert jax.random.PRNGKey(TOP_SEED).tolist() == [0, TOP_SEED]
    with pytest.raises(OverflowError):
        jax.random.PRNGKey(2**63)
    with pytest.raises(ValueError):
        np.random.RandomState(2**32)


@pytest.mark.parametrize("section, name", [("train", "seed"), ("data", "split_seed")])
@pytest.mark.parametrize("value", [2**32, 99999999999999999999, -1])
def test_config_refuses_seeds_out_of_range(section, name, value):
    message = _error(ValueError, lambda: RunConfig().replace(section, **{name: value}))
    assert message == (
        f"{section}.{name} must be an integer in [0, {TOP_SEED}] (0 to 2**32 - 1), got {value}."
    )


@pytest.mark.parametrize("section, name", [("train", "seed"), ("data", "split_seed")])
def test_config_accepts_the_ends_of_the_seed_range(section, name):
    for value in (0, TOP_SEED):
        assert getattr(getattr(RunConfig().replace(section, **{name: value}), section), name) == (
            value
        )


@pytest.mark.parametrize(
    "flag, field",
    [("--seed", "train.seed"), ("--split-seed", "data.split_seed")],
)
def test_cli_seed_out_of_range_is_a_one_line_error(flag, field, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["train", flag, "99999999999999999999", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert f"{field} must be an integer in [0, {TOP_SEED}]" in err
    assert "got 99999999999999999999" in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


def test_parse_seeds_refuses_a_seed_out_of_range():
    message = _error(ValueError, lambda: parse_seeds("99999999999999999999"))
    assert message == (
        "--seeds '99999999999999999999': seed 99999999999999999999 is out of range; a seed "
        f"(train.seed) is an integer in [0, {TOP_SEED}] (0 to 2**32 - 1)."
    )
    assert "4294967296 is out of range" in _error(ValueError, lambda: parse_seeds("1-4294967296"))
    assert parse_seeds(f"{TOP_SEED}") == [TOP_SEED]
    assert parse_seeds("0000000000000007") == [7]  # leading zeros are no large seed


def test_parse_seeds_counts_the_seeds_before_listing_them():
    tracemalloc.start()
    try:
        message = _error(ValueError, lambda: parse_seeds("0-99999999"))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert message.startswith(
        f"--seeds '0-99999999' gives 100000000 seeds; a cohort holds at most {MAX_COHORT}: "
    )
    assert peak < 1_000_000  # the list would take gigabytes
    assert MAX_COHORT == 4096
    assert len(parse_seeds("0-4095")) == MAX_COHORT
    assert "gives 4097 seeds" in _error(ValueError, lambda: parse_seeds("0-4095,5000"))


def test_parse_seeds_keeps_its_other_checks():
    assert parse_seeds("0-2,9") == [0, 1, 2, 9]
    assert "runs backwards" in _error(ValueError, lambda: parse_seeds("2-1"))
    assert "repeats a seed" in _error(ValueError, lambda: parse_seeds("0-3,2"))
    assert "write seeds as a range or a list" in _error(ValueError, lambda: parse_seeds("a"))


# --- B. the memory limit and the estimate -----------------------------------------------


@pytest.mark.parametrize(
    "text, size",
    [
        ("16GB", 16 * 10**9),
        ("500MB", 500 * 10**6),
        ("500 mb", 500 * 10**6),
        ("2GiB", 2 * 2**30),
        ("1.5kB", 1500),
        ("123456", 123456),
        ("5e8", 5 * 10**8),
        ("none", None),
        ("OFF", None),
    ],
)
def test_parse_size_reads_bytes_and_units(text, size):
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["lots", "16 parsecs", "-5GB", "0", "0.1", "1e400GB"])
def test_parse_size_refuses_other_text_naming_the_variable(text):
    message = _error(ValueError, lambda: parse_size(text))
    assert message.startswith(f"{LIMIT}={text!r} is not a")
    assert "16GB" in message and "'none' for no limit" in message


def test_memory_limit_comes_from_the_variable_or_the_machine(monkeypatch):
    monkeypatch.setenv(LIMIT, "16GB")
    assert memory_limit() == (16 * 10**9, f"{LIMIT}=16GB")
    monkeypatch.setenv(LIMIT, "much")
    assert _error(ValueError, memory_limit).startswith(f"{LIMIT}='much' is not a memory size")
    monkeypatch.delenv(LIMIT)
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    limit, source = memory_limit()
    assert limit == int(DEFAULT_MEMORY_FRACTION * total)
    assert source.startswith("80 % of this machine's")

    def missing(name):
        raise ValueError(f"unrecognized configuration name {name}")

    monkeypatch.setattr(os, "sysconf", missing)
    assert memory_limit()[0] is None


@pytest.fixture(scope="module")
def elm():
    return load_data(RunConfig())


MODELS = [
    dict(),
    dict(width=7, hidden=5, degree=2),
    dict(field="layer", basis="fourier", degree=3, width=6),
    dict(model="resnet", field="antisymmetric", basis="chebyshev", degree=4, width=5),
    dict(model="hamiltonian", field="hamiltonian", basis="monomial", degree=1, width=4),
    dict(basis="piecewise", degree=5, width=3, hidden=4),
    dict(basis="static", degree=0, width=3, hidden=2, field_init="normal"),
]


@pytest.mark.parametrize("changes", MODELS)
def test_parameter_count_from_shapes_is_count_parameters_of_the_built_model(changes, elm):
    config = RunConfig().replace("model", **changes).replace("train", precision="float64")
    built = build_model(config, elm.in_size, elm.out_size, key=jax.random.PRNGKey(0))
    assert parameter_count(config, elm) == count_parameters(built)


def test_parameter_count_of_a_time_series_model():
    config = RunConfig().replace("data", dataset="spiral").replace("train", precision="float64")
    data = load_data(config)
    assert isinstance(data, TrajectoryData)
    built = build_model(config, data.in_size, data.out_size, key=jax.random.PRNGKey(0), dt=data.dt)
    assert parameter_count(config, data) == count_parameters(built)


def test_parameter_count_in_closed_form_for_absurd_sizes_is_fast(elm):
    # MLP field: two layers (width -> hidden, hidden -> width) with biases, each of degree+1
    # coefficients; the opening (in -> width) and the readout (width -> out) with biases.
    def closed(width, hidden, degree):
        n = degree + 1
        field = n * (width * hidden + hidden + hidden * width + width)
        return field + elm.in_size * width + width + width * elm.out_size + elm.out_size

    for width, degree in ((1_000_000, 3), (32, 100_000)):
        config = RunConfig().replace("model", width=width, degree=degree)
        start = time.perf_counter()
        assert parameter_count(config, elm) == closed(width, 64, degree)
        assert time.perf_counter() - start < 1.0


def test_estimate_is_copies_times_members_times_bytes_plus_data(elm):
    configs = [RunConfig().replace("train", seed=s) for s in range(3)]
    estimate = estimate_memory(configs, elm)
    parameters = count_parameters(
        build_model(configs[0], elm.in_size, elm.out_size, key=jax.random.PRNGKey(0))
    )
    assert estimate.parameters == parameters
    assert estimate.model_bytes == parameters * COPIES_PER_MEMBER * 3 * 4
    raw = elm.x.nbytes + elm.y.nbytes
    assert estimate.data_bytes == raw + raw + raw // 2  # float64, copies, float32 on device
    assert estimate.gram_bytes == 0
    assert estimate.total == estimate.model_bytes + estimate.data_bytes


def test_estimate_counts_the_gram_matrices_quadratic_in_the_degree(elm):
    config = RunConfig().replace("model", degree=999).replace("train", gram=1e-3)
    estimate = estimate_memory([config, config.replace("train", seed=1)], elm)
    n = 1000
    # The host's float64 unit Gram matrix and its float32 copy; per member, two layers of the
    # MLP field, weight and bias each, a product `flat @ flat.T` and its cotangent.
    assert estimate.gram_bytes == n * n * (8 + 4) + 2 * (2 * 2 * 2 * n * n * 4)


def test_check_memory_of_the_default_config_is_fast_and_passes(elm, monkeypatch):
    monkeypatch.delenv(LIMIT, raising=False)
    check_memory([RunConfig()], elm)
    start = time.perf_counter()
    check_memory([RunConfig()], elm)
    assert time.perf_counter() - start < 1.0


@pytest.mark.parametrize(
    "changes, fragments",
    [
        (dict(model=dict(width=1_000_000)), ["model.width (1000000)", "542,000,266 parameters"]),
        (
            dict(model=dict(degree=100_000), train=dict(gram=1.0)),
            ["model.degree (100000)", "of Gram matrices", "419,205,034 parameters"],
        ),
    ],
)
def test_check_memory_refuses_absurd_sizes_in_under_a_second(changes, fragments, elm, monkeypatch):
    monkeypatch.setenv(LIMIT, "16GB")
    config = RunConfig()
    for section, values in changes.items():
        config = config.replace(section, **values)
    start = time.perf_counter()
    message = _error(ValueError, lambda: check_memory([config], elm))
    assert time.perf_counter() - start < 1.0
    assert message.startswith("training needs about ")
    assert " GB, more than the memory limit of 16 GB (JAXODE_MEMORY_LIMIT=16GB)" in message
    assert "the number of members (1)" in message
    assert f"raise the limit with the environment variable {LIMIT}" in message
    for fragment in fragments:
        assert fragment in message


def test_check_memory_names_the_members_and_follows_the_variable(elm, monkeypatch):
    configs = [RunConfig().replace("train", seed=s) for s in range(4)]
    monkeypatch.setenv(LIMIT, "100kB")
    message = _error(ValueError, lambda: check_memory(configs, elm))
    assert "x 4 members x 4 bytes (float32)" in message
    assert "model.width (32), model.hidden (64), model.degree (3)" in message
    monkeypatch.setenv(LIMIT, "none")
    check_memory(configs, elm)
    monkeypatch.setenv(LIMIT, "a lot")
    assert LIMIT in _error(ValueError, lambda: check_memory(configs, elm))


def test_train_refuses_before_writing_anything(tmp_path, monkeypatch):
    monkeypatch.setenv(LIMIT, "1kB")
    config = RunConfig().replace("model", model="resnet", field="layer", width=3, steps=2)
    message = _error(ValueError, lambda: train(config, tmp_path / "run", progress=False))
    assert "more than the memory limit of 1 kB" in message
    assert not (tmp_path / "run" / "config.toml").exists()


def _huge_npz(path, shape=(50_000_000, 8)):
    """A `.npz` whose 'x' header claims `shape` float64 but holds no data: reading it would
    fail (or allocate gigabytes); only its header may be read."""
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        header, {"descr": "<f8", "fortran_order": False, "shape": shape}
    )
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("x.npy", header.getvalue())
        small = io.BytesIO()
        np.save(small, np.zeros(3))
        archive.writestr("y.npy", small.getvalue())
    return path


def test_npz_array_beyond_the_limit_is_refused_from_its_header(tmp_path, monkeypatch):
    path = _huge_npz(tmp_path / "huge.npz")
    monkeypatch.setenv(LIMIT, "1GB")
    message = _error(ValueError, lambda: load_file(path))
    assert message == (
        f"data file {str(path)!r}: array 'x' of shape (50000000, 8) and dtype float64 takes "
        "3.2 GB once read as float64, more than the memory limit of 1 GB "
        "(JAXODE_MEMORY_LIMIT=1GB); store a smaller array, or raise the limit with the "
        "environment variable "
        "JAXODE_MEMORY_LIMIT (e.g. JAXODE_MEMORY_LIMIT=4GB, or 'none' for no limit)."
    )
    assert "input file" in _error(ValueError, lambda: load_inputs(path, 8))


def test_npz_sizes_count_as_float64_and_small_files_load(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    path = tmp_path / "ints.npz"
    np.savez_compressed(path, x=np.zeros((1000, 2), np.int32), y=rng.normal(size=(1000, 1)))
    monkeypatch.setenv(LIMIT, "10kB")
    message = _error(ValueError, lambda: load_file(path))
    assert (
        "array 'x' of shape (1000, 2) and dtype int32 takes 16 kB once read as float64" in message
    )
    monkeypatch.setenv(LIMIT, "17kB")
    assert load_file(path, seed=1).sizes()["train"] == 600


# --- C. messages that named nothing -----------------------------------------------------


def _no_warnings(call):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return call()


def test_values_too_large_to_standardise_name_the_npz_column(tmp_path):
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(40, 3)), rng.normal(size=(40, 2))
    x[:, 1] = 1e200 * (1.0 + np.abs(x[:, 1]))
    path = tmp_path / "big.npz"
    np.savez(path, x=x, y=y)
    message = _no_warnings(lambda: _error(ValueError, lambda: load_file(path)))
    top = np.max(np.abs(x[:, 1]))
    assert message.startswith(f"data file {str(path)!r}, array 'x', column index 1 (input): ")
    assert f"reach {top:.3g} in magnitude" in message
    assert "rescale the column, e.g. divide it by 1e200" in message


def test_values_too_large_to_standardise_name_the_csv_column(tmp_path):
    rng = np.random.default_rng(1)
    table = rng.normal(size=(20, 3))
    table[:, 2] = 1e300
    table[0, 2] = -1e300
    path = tmp_path / "big.csv"
    np.savetxt(path, table, delimiter=",", header="a,b,y1", comments="")
    message = _no_warnings(lambda: _error(ValueError, lambda: load_file(path, seed=0)))
    assert f"data file {str(path)!r}, column 3 ('y1') (output): " in message
    assert "reach 1e+300 in magnitude" in message and "divide it by 1e300" in message


@pytest.mark.parametrize("split, name", [("val", "validation"), ("test", "test")])
def test_an_empty_stored_split_is_named_with_the_file(split, name, tmp_path):
    rng = np.random.default_rng(2)
    idx: dict[str, Any] = {
        "idx_train": np.arange(30),
        "idx_val": np.arange(30, 35),
        "idx_test": np.arange(35, 40),
    }
    idx[f"idx_{split}"] = np.arange(0)
    path = tmp_path / "split.npz"
    np.savez(path, x=rng.normal(size=(40, 3)), y=rng.normal(size=(40, 2)), **idx)
    message = _error(ValueError, lambda: load_file(path))
    assert message.startswith(
        f"data file {str(path)!r}: the stored {name} split 'idx_{split}' is empty; "
    )
    assert "or store no idx_* arrays to draw a seeded split" in message


def test_stored_indices_outside_the_rows_are_named(tmp_path):
    rng = np.random.default_rng(3)
    idx: dict[str, Any] = {
        "idx_train": np.arange(5, 41),
        "idx_val": np.arange(2),
        "idx_test": np.arange(2, 5),
    }
    path = tmp_path / "outside.npz"
    np.savez(path, x=rng.normal(size=(40, 3)), y=rng.normal(size=(40, 2)), **idx)
    message = _error(ValueError, lambda: load_file(path))
    assert "'idx_train' holds row index 40, outside [0, 40) (the file has 40 rows)" in message


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this system")
def test_a_fifo_is_not_a_regular_file(tmp_path):
    path = tmp_path / "pipe.npz"
    os.mkfifo(path)
    message = _error(ValueError, lambda: load_file(path))
    assert message.startswith(f"data file {str(path)!r} is not a regular file")
    assert "input file" in _error(ValueError, lambda: load_inputs(path, 2))


def test_a_directory_is_a_directory(tmp_path):
    path = tmp_path / "folder.csv"
    path.mkdir()
    assert f"data file {str(path)!r} is a directory" in _error(ValueError, lambda: load_file(path))


FINITE_FIELDS = [
    ("model", "t1", "a finite number > 0"),
    ("model", "rtol", "a finite number > 0"),
    ("model", "atol", "a finite number > 0"),
    ("model", "field_init_std", "a finite number > 0"),
    ("model", "basis_window", "a finite number > 0"),
    ("train", "learning_rate", "a finite number > 0"),
    ("train", "decay_factor", "a finite number > 0"),
    ("train", "clip_norm", "a finite number > 0"),
    ("train", "ridge", "a finite number > 0"),
    ("train", "divergence_factor", "a finite number > 1 or none"),
    ("train", "tikhonov", "a finite number >= 0"),
    ("train", "readout_tikhonov", "a finite number >= 0"),
    ("train", "gram", "a finite number >= 0"),
]


@pytest.mark.parametrize("section, name, allowed", FINITE_FIELDS)
@pytest.mark.parametrize("value", [math.inf, -math.inf, math.nan])
def test_float_settings_must_be_finite(section, name, allowed, value):
    message = _error(ValueError, lambda: RunConfig().replace(section, **{name: value}))
    assert message == f"{section}.{name} must be {allowed}, got {value!r}."


def test_cli_names_the_field_of_an_infinite_setting(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["train", "--t1", "inf", "--no-progress"]) == 2
    assert "model.t1 must be a finite number > 0, got inf." in capsys.readouterr().err
