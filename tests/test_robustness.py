"""What a careful tester does to a run or a sweep: two processes on one folder, damaged files
written byte by byte, failed solves, hand-edited configurations, kill -9 mid-write. Each case
failed before the fix it keeps (issue 25)."""

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import pytest
from helpers import TINY_FLAGS

import jaxode
from jaxode._cli import main
from jaxode._files import atomic_write_bytes, load_checkpoint, save_checkpoint
from jaxode._runs_table import runs_table
from jaxode._sweeps._report import read_results

# tests/test_runs.py's configuration: the compilation cache compiles its programs once.
TINY = [*TINY_FLAGS, "--no-progress"]
PYTHON = [sys.executable, "-m", "jaxode._cli"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("robust") / "run"
    assert main(["train", *TINY, "--out", str(out)]) == 0
    return out


@pytest.fixture
def run(trained, tmp_path):
    """A fresh copy of the trained run, to damage."""
    return shutil.copytree(trained, tmp_path / "run")


def _error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err  # one line, no traceback
    return err


def _holding(folder):
    """A process that holds `folder`'s lock until it is killed (it prints once it does)."""
    code = (
        "import sys, time\nfrom jaxode._locks import folder_lock\n"
        f"with folder_lock({str(folder)!r}):\n    print('held', flush=True)\n    time.sleep(600)\n"
    )
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    return holder


# --- 1. Two processes on one run directory ----------------------------------------------------


def test_a_run_directory_another_process_holds_is_refused_naming_it(tmp_path, capsys):
    out = tmp_path / "run"
    holder = _holding(out)
    try:
        assert main(["train", *TINY, "--out", str(out)]) == 2
        err = _error(capsys)
        assert f"is in use by process {holder.pid} on" in err
        assert not (out / "config.toml").exists()
    finally:
        holder.kill()
        holder.wait()
    # The lock of a killed process is no lock (kill -9 leaves its file behind).
    assert (out / ".jaxode.lock").exists()
    assert main(["train", *TINY, "--out", str(out)]) == 0
    assert not (out / ".jaxode.lock").exists()


def test_two_trainings_on_one_out_give_one_whole_run(tmp_path):
    out = tmp_path / "same"
    seeds = {0: "40", 1: "60"}
    processes = {
        seed: subprocess.Popen(
            [*PYTHON, "train", *TINY, "--out", str(out), "--seed", str(seed), "--epochs", epochs],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for seed, epochs in seeds.items()
    }
    outputs = {seed: p.communicate(timeout=300) for seed, p in processes.items()}
    codes = {seed: p.returncode for seed, p in processes.items()}
    assert sorted(codes.values()) == [0, 2], outputs
    winner = next(seed for seed, code in codes.items() if code == 0)
    loser_err = outputs[1 - winner][1]
    assert "is in use by process" in loser_err or "already holds a run" in loser_err
    config = jaxode.RunConfig.from_toml((out / "config.toml").read_text())
    assert (config.train.seed, config.train.epochs) == (winner, int(seeds[winner]))
    history = (out / "history.csv").read_text().splitlines()
    assert len(history) - 1 == int(seeds[winner])  # one evaluation per epoch, all the winner's


def test_a_cohort_folder_another_process_holds_is_refused(tmp_path, capsys):
    out = tmp_path / "cohort"
    holder = _holding(out)
    try:
        assert main(["train", *TINY, "--seeds", "0-1", "--out", str(out)]) == 2
        assert f"cohort folder {str(out)!r} is in use by process {holder.pid}" in _error(capsys)
        assert not (out / "cohort.json").exists()
    finally:
        holder.kill()
        holder.wait()


# --- 2. and 3. Sweeps ------------------------------------------------------------------------

SPEC = """
name = "{name}"
[base.model]
model = "resnet"
field = "layer"
width = 3
steps = 2
degree = 1
[base.train]
epochs = 2
batch_size = 100
precision = "float64"
[grid]
train.seed = {seeds}
"""


def _sweep_spec(tmp_path, name, seeds):
    path = tmp_path / f"{name}.toml"
    path.write_text(SPEC.format(name=name, seeds=seeds))
    return path


def test_two_sweeps_on_one_folder_keep_every_row(tmp_path):
    out = tmp_path / "sweep"
    specs = [_sweep_spec(tmp_path, "a", [0, 1]), _sweep_spec(tmp_path, "b", [2, 3])]
    processes = [
        subprocess.Popen(
            [*PYTHON, "sweep", str(spec), "--out", str(out), "--no-progress"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for spec in specs
    ]
    for process in processes:
        assert process.wait(timeout=300) == 0, process.communicate()[1]
    rows = read_results(out)
    assert sorted(row["train.seed"] for row in rows) == [0, 1, 2, 3]
    assert all(row["status"] == "completed" for row in rows)


def test_a_cell_another_process_trains_is_left_to_it(tmp_path):
    spec = _sweep_spec(tmp_path, "held", [0, 1])
    out = tmp_path / "sweep"
    cells = jaxode.SweepSpec.from_file(spec).cells()
    holder = _holding(out / "cells" / cells[1].key)
    try:
        rows = jaxode.sweep(spec, out, progress=False)
    finally:
        holder.kill()
        holder.wait()
    assert [row["status"] for row in rows] == ["completed", "busy"]
    assert f"in use by process {holder.pid}" in rows[1]["message"]
    assert [row["cell"] for row in read_results(out)] == [cells[0].key]
    again = jaxode.sweep(spec, out, progress=False)
    assert [row["status"] for row in again] == ["completed", "completed"]


def test_a_failed_cell_another_process_retries_is_not_moved(tmp_path):
    spec = _sweep_spec(tmp_path, "retried", [0])
    out = tmp_path / "sweep"
    [row] = jaxode.sweep(spec, out, progress=False)
    table = (out / "results.csv").read_text()
    (out / "results.csv").write_text(table.replace(",completed,", ",error,", 1))
    holder = _holding(out / row["run_dir"])
    try:
        [again] = jaxode.sweep(spec, out, retry_failed=True, progress=False)
    finally:
        holder.kill()
        holder.wait()
    assert again["status"] == "busy" and f"process {holder.pid}" in again["message"]
    assert not list((out / "cells").glob("*.attempt-*"))  # the other process's folder stays


def test_a_damaged_cell_record_is_a_failed_row_not_a_crash(tmp_path):
    spec = _sweep_spec(tmp_path, "damaged", [0, 1])
    out = tmp_path / "sweep"
    first = jaxode.sweep(spec, out, progress=False)
    metrics = out / first[0]["run_dir"] / "metrics.json"
    metrics.write_bytes(metrics.read_bytes()[:40])
    (out / "results.csv").unlink()  # the sweep now rebuilds its rows from the cells
    rows = jaxode.sweep(spec, out, progress=False)
    assert rows[0]["status"] == "error" and "is damaged (not valid JSON" in rows[0]["message"]
    assert rows[1]["status"] == "completed"
    retried = jaxode.sweep(spec, out, retry_failed=True, progress=False)
    assert retried[0]["status"] == "completed"
    assert retried[0]["test_global"] == pytest.approx(first[0]["test_global"], rel=1e-12)


def test_a_sweep_never_writes_into_a_folder_of_other_files(tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "thesis.tex").write_text("years of work")
    with pytest.raises(FileExistsError, match="holds files but no sweep"):
        jaxode.sweep(_sweep_spec(tmp_path, "x", [0]), out, progress=False)
    assert sorted(p.name for p in out.iterdir()) == ["thesis.tex"]


# --- 4. Damaged or foreign files ---------------------------------------------------------------


def test_non_utf8_config_files_are_one_line_errors(run, tmp_path, capsys):
    config = tmp_path / "bad.toml"
    config.write_bytes(b"[train]\nepochs = 3 # \xff\xfe\n")
    assert main(["train", "--config", str(config), "--out", str(tmp_path / "x")]) == 2
    assert "--config file" in (err := _error(capsys)) and "is not UTF-8 text (byte 0xff" in err
    (run / "config.toml").write_bytes(b"\xff" + (run / "config.toml").read_bytes())
    assert main(["evaluate", str(run)]) == 2
    assert "run configuration" in (err := _error(capsys)) and "is not UTF-8" in err


def test_a_missing_normalisation_names_the_file(run, capsys):
    (run / "normalisation.json").unlink()
    assert main(["evaluate", str(run)]) == 2
    assert "normalisation.json' does not exist; restore it" in _error(capsys)


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda data: data[:8] + b"\xff" * 8 + data[16:], "its header is truncated or not JSON"),
        (lambda data: data[:12], "truncated within its header"),
        (lambda data: data[:-7], "bytes of its parameters (truncated"),
        (lambda data: data[:-1] + bytes([data[-1] ^ 1]), "do not match their checksum"),
        (lambda data: b"PK" + data[2:], "is not a jaxode checkpoint"),
    ],
)
def test_damaged_models_are_named_by_evaluate_and_runs(run, capsys, damage, message):
    model = run / "model.eqx"
    model.write_bytes(damage(model.read_bytes()))
    assert main(["evaluate", str(run)]) == 2
    assert message in _error(capsys)
    rows, _ = runs_table(run.parent)
    assert any(message in note for note in rows[0]["notes"])


def test_a_truncated_checkpoint_stops_a_resume_with_one_line(run, capsys):
    (run / "model.eqx").unlink()
    (run / "metrics.json").unlink()
    checkpoint = run / "checkpoint.eqx"
    checkpoint.write_bytes(checkpoint.read_bytes()[:-100])
    assert main(["train", "--resume", str(run)]) == 2
    assert "checkpoint.eqx' is damaged" in _error(capsys)


@pytest.mark.parametrize(
    "listing, message",
    [
        (b'{"seeds": [0, 1], "memb', "is damaged (not valid JSON"),
        (b'{"seeds": [0, 1]}', "it needs 'seeds' (integers) and 'members'"),
        (b'{"seeds": [0], "members": ["../../etc"]}', "it needs 'seeds' (integers) and"),
    ],
)
def test_a_damaged_cohort_listing_is_one_line(tmp_path, capsys, listing, message):
    cohort = tmp_path / "cohort"
    cohort.mkdir()
    (cohort / "cohort.json").write_bytes(listing)
    assert main(["train", "--resume", str(cohort)]) == 2
    assert message in _error(capsys)


def test_a_non_utf8_results_table_is_one_line_in_sweep_report(tmp_path, capsys):
    (tmp_path / "results.csv").write_bytes(b"cell,status\n\xff\xfe,completed\n")
    assert main(["sweep", "report", str(tmp_path)]) == 2
    assert "results table" in (err := _error(capsys)) and "is not UTF-8" in err


# --- 6. Every solve failed ----------------------------------------------------------------------


def test_a_run_none_of_whose_solves_succeeded_has_failed(tmp_path):
    config = jaxode.RunConfig.from_dict(
        {
            "data": {"dataset": "cdr"},
            "model": {"width": 3, "hidden": 4, "degree": 1, "solver": "euler", "steps": 4},
            "train": {"iterations": 3, "eval_every_iterations": 3, "batch_size": 100},
        }
    ).replace("model", max_steps=1)
    _, result, metrics = jaxode.train(config, tmp_path / "run", progress=False)
    assert result.status == "solver_failed"
    assert "the ODE solve failed in every one of the 3 batches" in result.message
    history = (tmp_path / "run" / "history.csv").read_text().splitlines()
    header, row = history[0].split(","), history[1].split(",")
    # Validation over failed solves is no number to select a model on.
    assert row[header.index("val_global")] == "inf"
    assert metrics["best_step"] == 0
    # Out of patience rather than steps, with no limit on failed batches: failed all the same.
    patient = config.replace("train", patience=1, max_failed_batches=None, iterations=9)
    _, result, _ = jaxode.train(patient, tmp_path / "patient", progress=False)
    assert result.status == "solver_failed" and result.steps == 3  # at the first evaluation
    assert "the ODE solve failed in every one of the 3 batches" in result.message


# --- 7. A configuration changed behind a run's back ------------------------------------------


def _interrupted_and_edited(run, old: str, new: str) -> str:
    """Makes `run` an interrupted run whose config.toml says `new` for `old`; returns the
    configuration as it was."""
    (run / "model.eqx").unlink()
    (run / "metrics.json").unlink()
    text = (run / "config.toml").read_text()
    (run / "config.toml").write_text(text.replace(old, new))
    return text


def test_a_structural_edit_is_named_too_and_settings_a_version_adds_are_not_changes(run, capsys):
    _interrupted_and_edited(run, "width = 3", "width = 5")
    assert main(["train", "--resume", str(run)]) == 2
    assert "model.width: 3 then, 5 now" in _error(capsys)
    from jaxode._training._members import _check_identity

    stored = {"train.learning_rate": 0.003, "train.dropped": 1}
    _check_identity("c", stored, {"train.learning_rate": 0.003, "train.added": None})
    with pytest.raises(ValueError, match=r"\(train.learning_rate: 0.003 then, 0.01 now\)"):
        _check_identity("c", stored, {"train.learning_rate": 0.01, "train.added": None})


def test_a_hand_edited_configuration_is_refused_on_resume(run, capsys):
    text = _interrupted_and_edited(run, "learning_rate = 0.003", "learning_rate = 0.01")
    assert main(["train", "--resume", str(run)]) == 2
    assert "train.learning_rate: 0.003 then, 0.01 now" in _error(capsys)
    (run / "config.toml").write_text(text)
    assert main(["train", "--resume", str(run)]) == 0


# --- 13. 15. 16. Full disks, stale temporary files, impossible folders ------------------------


def test_a_full_disk_names_the_file_and_keeps_the_previous_one(tmp_path, monkeypatch):
    target = tmp_path / "metrics.json"
    target.write_text("previous")

    def full(descriptor):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OSError, match=r"cannot write .*metrics.json.* no space left on device"):
        atomic_write_bytes(target, b"new")
    assert target.read_text() == "previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json"]


def test_writes_a_killed_holder_left_are_removed_by_the_next_holder(tmp_path):
    code = textwrap.dedent(
        f"""
        import os
        from jaxode._files import atomic_write_bytes
        from jaxode._locks import folder_lock
        def stop(descriptor):
            os.kill(os.getpid(), 9)
        os.fsync = stop
        with folder_lock({str(tmp_path)!r}):
            atomic_write_bytes({str(tmp_path / "history.csv")!r}, b"step\\n1\\n")
        """
    )
    killed = subprocess.run([sys.executable, "-c", code])
    assert killed.returncode == -signal.SIGKILL
    [left] = tmp_path.glob(".history.csv.*.tmp")
    from jaxode._locks import folder_lock

    with folder_lock(tmp_path):
        assert not left.exists()


def test_a_refused_folder_keeps_every_file_it_held(tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "data.txt").write_text("x")
    (out / ".notes.tmp").write_text("y")  # another program's temporary file
    with pytest.raises(FileExistsError, match="holds files but no run"):
        jaxode.train(jaxode.RunConfig(), out, progress=False)
    assert sorted(p.name for p in out.iterdir()) == [".notes.tmp", "data.txt"]


def test_a_file_system_without_locks_warns_and_other_lock_errors_name_the_folder(
    tmp_path, monkeypatch
):
    import errno

    import jaxode._locks as locks

    def unsupported(descriptor):
        raise OSError(errno.ENOLCK, "No locks available")

    descriptors = len(os.listdir("/proc/self/fd"))
    monkeypatch.setattr(locks, "_try_lock", unsupported)
    with pytest.warns(UserWarning, match="cannot lock files"):
        with locks.folder_lock(tmp_path / "a"):
            pass

    def broken(descriptor):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(locks, "_try_lock", broken)
    refused = r"cannot lock the folder .*/b' \(.jaxode.lock\): input/output error"
    with pytest.raises(OSError, match=refused):
        with locks.folder_lock(tmp_path / "b"):
            pass
    assert len(os.listdir("/proc/self/fd")) == descriptors  # none leaked


def test_an_out_inside_a_file_is_one_line(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    assert main(["train", *TINY, "--out", str(tmp_path / "file" / "run")]) == 2
    assert "'file' is a file, not a folder" in _error(capsys).replace(str(tmp_path) + "/", "")


def test_locks_nest_in_one_process_and_refuse_another(tmp_path):
    from jaxode._locks import LOCK, FolderInUse, folder_lock

    with folder_lock(tmp_path / "a"):
        with folder_lock(tmp_path / "a"):
            pass
        assert (tmp_path / "a" / LOCK).exists()  # the outer block still holds it
    assert not (tmp_path / "a" / LOCK).exists()
    holder = _holding(tmp_path / "b")
    try:
        start = time.monotonic()
        with pytest.raises(FolderInUse, match=f"process {holder.pid}"):
            with folder_lock(tmp_path / "b"):
                pass
        assert time.monotonic() - start < 5  # refused at once, not after waiting
    finally:
        holder.kill()
        holder.wait()


def test_checkpoints_round_trip_their_header(tmp_path):
    import jax.numpy as jnp

    tree = {"a": jnp.arange(3.0), "b": jnp.ones((2, 2))}
    save_checkpoint(tmp_path / "c.eqx", {"step": 7}, tree)
    meta, loaded = load_checkpoint(tmp_path / "c.eqx", tree)
    assert meta == {"step": 7}
    assert json.dumps({k: v.tolist() for k, v in loaded.items()}) == json.dumps(
        {k: v.tolist() for k, v in tree.items()}
    )


@pytest.mark.parametrize(
    "flag, field",
    [("--field-init-std", "model.field_init_std"), ("--t1", "model.t1"), ("--lr", "train.")],
)
def test_a_bad_setting_is_led_by_the_flag_that_set_it(flag, field, tmp_path, capsys):
    assert main(["train", *TINY, flag, "inf", "--out", str(tmp_path / "run")]) == 2
    assert _error(capsys).startswith(f"jaxode train: error: {flag}: {field}")
