"""What a new user reads during and after a first run (issue 26): compilation announced and
kept out of the progress bar's rate, compile and training times apart, which parameters were
kept and why, run names that tell runs apart, one order of units."""

import json
import re
import time

import jax
import optax
from helpers import TINY_FLAGS

import jaxode
import jaxode._training._loop as loop
from jaxode._cli import main

# tests/test_runs.py's configuration, without --no-progress.
TINY = TINY_FLAGS


def test_compilation_is_announced_before_the_bar_and_timed_apart(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", *TINY, "--out", str(out)]) == 0
    captured = capsys.readouterr()
    announced = re.search(r"compiling the training program.* \.\.\. (\d+\.\d) s\n", captured.err)
    assert announced is not None, captured.err
    assert captured.err.index("compiling") < captured.err.index("step")  # before the bar
    metrics = json.loads((out / "metrics.json").read_text())
    assert float(announced[1]) >= metrics["compile_time"] - 0.05
    rate = metrics["steps"] / metrics["train_time"]
    assert (
        f"time: compiling {metrics['compile_time']:.1f} s, training {metrics['train_time']:.1f} s "
        f"for {metrics['steps']} steps ({rate:.1f} steps/s)"
    ) in captured.out


def test_the_bar_starts_after_compilation(monkeypatch):
    events = []
    bar = loop.progress_bar

    def recording_bar(*args, **kwargs):
        events.append(("bar", time.perf_counter()))
        return bar(*args, **kwargs)

    announce = loop.announced_compilation

    def recording_compilation(shown):
        class Timed:
            def __enter__(self):
                self.inner = announce(shown)
                self.inner.__enter__()

            def __exit__(self, *exc):
                time.sleep(0.2)  # a compilation of some length
                events.append(("compiled", time.perf_counter()))
                return self.inner.__exit__(*exc)

        return Timed()

    monkeypatch.setattr(loop, "progress_bar", recording_bar)
    monkeypatch.setattr(loop, "announced_compilation", recording_compilation)
    x, y = jax.numpy.ones((16, 2)), jax.numpy.ones((16, 1))
    model = jaxode.build_model(
        jaxode.RunConfig.from_dict({"model": {"model": "resnet", "field": "layer", "width": 3}}),
        2,
        1,
        key=jax.random.PRNGKey(0),
    )
    jaxode.fit(model, (x, y), optax.adam(1e-3), key=jax.random.PRNGKey(1), steps=4, batch_size=8)
    assert [name for name, _ in events] == ["compiled", "bar"]
    assert events[1][1] >= events[0][1]


def test_a_finished_run_says_which_parameters_it_kept(tmp_path):
    config = jaxode.RunConfig.from_dict(
        {
            "data": {"dataset": "cdr"},
            "model": {"model": "resnet", "field": "layer", "width": 3, "steps": 2, "degree": 1},
            "train": {"epochs": 3, "batch_size": 100, "precision": "float64"},
        }
    )
    _, result, _ = jaxode.train(config, tmp_path / "run", progress=False)
    best = [row for row in result.history if row["step"] == result.best_step][0]
    assert result.message == (
        f"finished {result.steps} steps; kept the parameters of step {result.best_step}, the "
        f"lowest validation error ({best['val_global']:.4g}, relative, normalised units)."
    )
    assert best["val_global"] == min(row["val_global"] for row in result.history)


def test_default_run_names_tell_model_and_optimiser_apart(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["train", *TINY, "--no-progress"]) == 0
    [run] = (tmp_path / "runs").iterdir()
    assert re.fullmatch(r"cdr-resnet-legendre-\d{8}-\d{6}", run.name)
    assert main(["train", *TINY, "--no-progress", "--seeds", "0-1"]) == 0
    names = sorted(p.name for p in (tmp_path / "runs").iterdir())
    assert re.fullmatch(r"cdr-resnet-legendre-seeds-\d{8}-\d{6}", names[1])
    summary = capsys.readouterr().out.split("mean +- sample std over 2 seeds:")[1]
    # Normalised units first, as in the table of a single run.
    assert summary.index("test_global") < summary.index("test_physical_global")


def test_messages_name_python_arguments_from_python_and_options_from_the_command(tmp_path, capsys):
    out = tmp_path / "taken"
    out.mkdir()
    (out / "config.toml").write_text("")
    config = jaxode.RunConfig()
    try:
        jaxode.train(config, out, progress=False)
    except FileExistsError as error:
        from_python = str(error)
    assert "pass resume=True to continue it or choose another run_dir" in from_python
    assert "--" not in from_python
    assert main(["train", *TINY, "--out", str(out)]) == 2
    from_command = capsys.readouterr().err
    assert "pass --resume to continue it or choose another --out" in from_command


def test_loading_a_run_does_not_repeat_the_window_warning_its_training_gave(tmp_path):
    import warnings

    config = jaxode.RunConfig.from_dict(
        {
            "data": {"dataset": "cdr"},
            "model": {"model": "resnet", "field": "layer", "width": 3, "steps": 2, "degree": 1},
            "train": {"epochs": 1, "batch_size": 100, "precision": "float64"},
        }
    ).replace("model", t1=2.0, basis_window=1.0)
    with warnings.catch_warnings(record=True) as trained:
        warnings.simplefilter("always")
        jaxode.train(config, tmp_path / "run", progress=False)
    assert any(issubclass(w.category, jaxode.BasisWindowWarning) for w in trained)
    with warnings.catch_warnings():
        warnings.simplefilter("error", jaxode.BasisWindowWarning)
        jaxode.load(tmp_path / "run")
