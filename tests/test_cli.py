"""The `jaxode` command: train, evaluate and predict end to end on a tiny model; errors."""

import json

import numpy as np
import pytest
from helpers import TINY_FLAGS

import jaxode
from jaxode._cli import OPTIONS, build_parser, main

# float64 keeps the test session's x64 setting; resnet compiles fast. The configuration of
# tests/test_runs.py's TINY, so that conftest.py's compilation cache compiles the run's
# programs once for both files.
TINY = [*TINY_FLAGS, "--no-progress"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "run"
    assert main(["train", *TINY, "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def small_run_dir(tmp_path_factory):
    """TINY trained on a headerless CSV of 5 columns, the last 2 of them outputs
    (`--num-outputs 2`): 3 inputs, 2 outputs. The probe tests use it: the probes' answers do
    not depend on the number of outputs, but their plots draw one panel per output, and
    CDR's 72 made the report's plots the most expensive part of the CLI tests."""
    folder = tmp_path_factory.mktemp("cli-small")
    rng = np.random.default_rng(0)
    np.savetxt(folder / "nohead5.csv", rng.normal(size=(40, 5)), delimiter=",")
    out = folder / "run"
    argv = ["train", "--data", str(folder / "nohead5.csv"), "--num-outputs", "2", *TINY[2:]]
    argv[argv.index("--batch-size") + 1] = "6"
    assert main(argv + ["--out", str(out)]) == 0
    return out


def test_train_writes_metrics_that_match_the_model(run_dir, capsys):
    metrics = json.loads((run_dir / "metrics.json").read_text())
    trained = jaxode.load(run_dir)
    data = jaxode.load_cdr(0)
    x, y = data.arrays("test", normalised=False)
    p = trained.predict(x)
    assert metrics["test_physical_global"] == pytest.approx(
        np.linalg.norm(p - y) / np.linalg.norm(y), rel=1e-10
    )
    assert trained.config.model.width == 3 and trained.config.train.epochs == 3
    lines = (run_dir / "history.csv").read_text().splitlines()
    assert lines[0].startswith("step,epoch,train_loss") and len(lines) == 4


def test_evaluate_and_predict(run_dir, tmp_path, capsys):
    assert main(["evaluate", str(run_dir)]) == 0
    evaluation = json.loads((run_dir / "evaluation.json").read_text())
    metrics = json.loads((run_dir / "metrics.json").read_text())
    for key in ("test_global", "test_per_sample", "val_physical_global"):
        assert evaluation[key] == pytest.approx(metrics[key], rel=1e-9)
    assert f"{metrics['test_global']:.4f}" in capsys.readouterr().out
    x = jaxode.load_cdr(0).x[:5]
    np.savez(tmp_path / "inputs.npz", x=x)
    assert main(["predict", str(run_dir), str(tmp_path / "inputs.npz")]) == 0
    lines = (tmp_path / "inputs_predictions.csv").read_text().splitlines()
    assert lines[0] == ",".join(f"y{i}" for i in range(72))
    written = np.loadtxt(tmp_path / "inputs_predictions.csv", delimiter=",", skiprows=1)
    np.testing.assert_allclose(written, jaxode.load(run_dir).predict(x), rtol=1e-15)
    header = ",".join(f"x{i}" for i in range(x.shape[1]))
    np.savetxt(tmp_path / "inputs.csv", x, delimiter=",", header=header, comments="")
    out = tmp_path / "p.csv"
    assert main(["predict", str(run_dir), str(tmp_path / "inputs.csv"), "--output", str(out)]) == 0
    np.testing.assert_allclose(np.loadtxt(out, delimiter=",", skiprows=1), written, rtol=1e-15)
    # an existing output is kept unless --force
    before = out.read_bytes()
    np.savetxt(tmp_path / "other.csv", 2 * x, delimiter=",", header=header, comments="")
    assert main(["predict", str(run_dir), str(tmp_path / "other.csv"), "--output", str(out)]) == 2
    assert "exists; pass --force" in capsys.readouterr().err and out.read_bytes() == before
    argv = ["predict", str(run_dir), str(tmp_path / "other.csv"), "--output", str(out), "--force"]
    assert main(argv) == 0
    np.testing.assert_allclose(
        np.loadtxt(out, delimiter=",", skiprows=1), jaxode.load(run_dir).predict(2 * x), rtol=1e-15
    )
    np.savez(tmp_path / "wide.npz", x=np.zeros((2, 3)))
    assert main(["predict", str(run_dir), str(tmp_path / "wide.npz")]) == 2
    assert "has 3 columns but the model takes 55 inputs" in capsys.readouterr().err


def test_config_file_and_override(tmp_path):
    config = jaxode.RunConfig().replace("model", basis="monomial", degree=2)
    path = tmp_path / "c.toml"
    path.write_text(config.to_toml())
    from jaxode._cli import _config_from_args

    args = build_parser().parse_args(["train", "--config", str(path), "--degree", "4"])
    built = _config_from_args(args)
    assert built.model.basis == "monomial" and built.model.degree == 4
    assert built.train == jaxode.TrainConfig()


@pytest.mark.parametrize(
    "argv, message",
    [
        (["train", "--basis", "hermite"], "invalid choice: 'hermite'"),
        (["train", "--epochs", "many"], "invalid int value: 'many'"),
        (["train", "--config", "missing.toml"], "--config file 'missing.toml' does not exist"),
        (["train", "--data", "nope.npz", "--no-progress"], "data file 'nope.npz' does not exist"),
        (["train", "--data", "mnist", "--no-progress"], "unknown data set 'mnist'"),
        (["train", "--width", "0"], "model.width must be an integer > 0"),
        (["evaluate", "nowhere"], "not a run directory"),
        (["train", "--resume", "somewhere", "--lr", "1"], "drop --lr"),
    ],
)
def test_errors_are_one_line_and_non_zero(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    try:
        code = main(argv)
    except SystemExit as exit:
        code = exit.code
    err = capsys.readouterr().err
    assert code != 0
    assert message in err and len(err.strip().splitlines()) == 1


def test_unknown_config_key_names_valid_keys(tmp_path, capsys):
    path = tmp_path / "bad.toml"
    path.write_text("[model]\nbasiz = 'legendre'\n")
    assert main(["train", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert "unknown key(s) ['basiz'] in [model]" in err and "basis" in err


def test_help_documents_every_option(capsys):
    with pytest.raises(SystemExit) as exit:
        main(["train", "--help"])
    assert exit.value.code == 0
    text = capsys.readouterr().out
    for flag, *_ in OPTIONS:
        assert flag in text
    for flag in ("--config", "--out", "--resume", "--no-progress"):
        assert flag in text


def test_probe_report_in_both_precisions(small_run_dir, tmp_path):
    run_dir = small_run_dir
    assert main(["probe", str(run_dir), "--out", str(tmp_path / "p64")]) == 0
    report = json.loads((tmp_path / "p64" / "report.json").read_text())
    r64 = report["ray_limit"]
    assert r64["precision"] == "float64" and not any("float32" in n for n in r64["notes"])
    assert report["plots"] == ["rays.png", "limit_map.png", "weight_norms.png"]
    assert all((tmp_path / "p64" / name).is_file() for name in report["plots"])
    # The run's surrogate has a tanh opening: along every direction d its limit is the rest of
    # the net at the saturated opening sign(W d) (where no unit is nearly orthogonal to d).
    verdicts = np.asarray(r64["verdicts"])
    assert report["ray_limit_summary"] == {"CONSTANT_EXP": verdicts.size}
    model = jaxode.load(run_dir).model
    directions = np.asarray(report["limit_map"]["directions"])
    alphas = directions @ np.asarray(model.opening.weight).T
    inside = np.min(np.abs(alphas), axis=1) > 1e-3
    assert inside.sum() >= 32
    expected = np.stack(
        [np.asarray(model.readout(model.dynamics(np.sign(a)))) for a in alphas[inside]]
    )
    np.testing.assert_allclose(
        np.asarray(r64["limit"], dtype=float)[0, inside], expected, atol=1e-8
    )

    # The CLI switches JAX to 32 bits in-process for this run (conftest restores x64 afterwards).
    assert (
        main(["probe", str(run_dir), "--precision", "float32", "--out", str(tmp_path / "p32")]) == 0
    )
    r32 = json.loads((tmp_path / "p32" / "report.json").read_text())["ray_limit"]
    assert r32["precision"] == "float32" and any("float32" in n for n in r32["notes"])


def _bad_files(tmp_path):
    rng = np.random.default_rng(0)
    (tmp_path / "ragged.csv").write_text("1,2,3\n4,5,6\n7,8\n")
    (tmp_path / "empty.csv").write_text("")
    np.savez(tmp_path / "empty.npz")
    x = rng.normal(size=(30, 4))
    x[7, 1] = np.nan
    np.savetxt(tmp_path / "nan.csv", x, delimiter=",", header="a,b,y0,y1", comments="")
    np.savetxt(tmp_path / "nohead.csv", rng.normal(size=(30, 4)), delimiter=",")


@pytest.mark.parametrize(
    "name, message",
    [
        ("ragged.csv", "line 3: 2 values, but line 1 (the first row) has 3"),
        ("empty.csv", "is empty (no data rows)"),
        ("empty.npz", "holds no arrays"),
        ("nan.csv", "line 9, column 2 ('b'): value nan is NaN/inf"),
        ("nohead.csv", "`--num-outputs N` on the command line"),
    ],
)
def test_bad_data_files_are_one_line_errors_and_leave_no_run(name, message, tmp_path, capsys):
    _bad_files(tmp_path)
    out = tmp_path / "run"
    code = main(["train", "--data", str(tmp_path / name), "--out", str(out), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_num_outputs_is_reachable_from_the_cli(small_run_dir):
    # small_run_dir: `jaxode train` on a headerless 5-column CSV with `--num-outputs 2`
    trained = jaxode.load(small_run_dir)
    assert (trained.model.in_size, trained.model.out_size) == (3, 2)
    assert trained.config.data.num_outputs == 2


def test_predict_names_the_line_of_a_nan_input(run_dir, tmp_path, capsys):
    x = jaxode.load_cdr(0).x[:4].copy()
    x[2, 5] = np.inf
    np.savetxt(tmp_path / "in.csv", x, delimiter=",")
    assert main(["predict", str(run_dir), str(tmp_path / "in.csv")]) == 2
    err = capsys.readouterr().err
    assert "line 3" in err and "NaN/inf" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "in_predictions.csv").exists()


def test_probe_says_on_the_console_when_it_skipped_plots(
    small_run_dir, tmp_path, monkeypatch, capsys
):
    import jaxode._probes._report as report_module

    monkeypatch.setattr(report_module, "_load_pyplot", lambda: None)
    assert main(["probe", str(small_run_dir), "--out", str(tmp_path / "p")]) == 0
    printed = capsys.readouterr().out
    report = json.loads((tmp_path / "p" / "report.json").read_text())
    skipped = report["plots_skipped"]
    assert skipped and report["plots"] == []
    assert f"plots skipped ({', '.join(skipped)}): matplotlib is not installed" in printed
    assert sorted(p.name for p in (tmp_path / "p").iterdir()) == ["report.json"]


@pytest.mark.parametrize(
    "setting, expected",
    [(None, "xdg/jaxode/jax"), ("elsewhere", "elsewhere"), ("off", None), ("OFF", None)],
)
def test_the_command_turns_the_compilation_cache_on_where_the_environment_says(
    setting, expected, tmp_path, monkeypatch
):
    import jax

    from jaxode._process import use_compilation_cache

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    if setting is None:
        monkeypatch.delenv("JAXODE_COMPILATION_CACHE", raising=False)
    elif setting == "elsewhere":
        monkeypatch.setenv("JAXODE_COMPILATION_CACHE", str(tmp_path / setting))
    else:
        monkeypatch.setenv("JAXODE_COMPILATION_CACHE", setting)
    updates = {}
    monkeypatch.setattr(jax.config, "update", lambda name, value: updates.__setitem__(name, value))
    use_compilation_cache()
    if expected is None:
        assert updates == {}
    else:
        assert updates == {
            "jax_compilation_cache_dir": str(tmp_path / expected),
            "jax_persistent_cache_min_compile_time_secs": 0.0,
        }
