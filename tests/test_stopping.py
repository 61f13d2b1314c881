"""Training that cannot run away or lie: failed solves, divergence and interrupts stop with
messages that say what happened and what is on disk; history is written as training goes."""

import json
import math

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxode
from jaxode._training import fit
from jaxode._training._progress import progress_bar


def _resnet(seed=0):
    k1, k2 = jax.random.split(jax.random.PRNGKey(seed))
    field = jaxode.MLPField(3, 5, jaxode.LegendreBasis(2), key=k1)
    return jaxode.Surrogate(2, 2, jaxode.ResNet(field, 1.0, 4), key=k2)


def _failing_node(seed=0):
    """Every solve fails: two steps cannot reach t1 at rtol 1e-12."""
    k1, k2 = jax.random.split(jax.random.PRNGKey(seed))
    field = jaxode.MLPField(3, 5, jaxode.LegendreBasis(2), key=k1)
    controller = diffrax.PIDController(rtol=1e-12, atol=1e-14)
    dynamics = jaxode.NeuralODE(field, 1.0, stepsize_controller=controller, max_steps=2)
    return jaxode.Surrogate(2, 2, dynamics, key=k2)


def _data(n=48):
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, size=(n, 2))
    return x, np.stack([np.sin(2 * x[:, 0]) * x[:, 1], np.cos(x[:, 0] + x[:, 1])], axis=1)


def _finite(model) -> bool:
    leaves = jax.tree_util.tree_leaves(eqx.filter(model, eqx.is_inexact_array))
    return all(bool(np.all(np.isfinite(np.asarray(a)))) for a in leaves)


@pytest.mark.parametrize("clip_norm", [None, 1.0])
def test_consecutive_failed_solves_stop_with_the_step_and_the_remedy(tmp_path, clip_norm):
    x, y = _data()
    result = fit(
        _failing_node(),
        (x, y),
        optax.adam(1e-2),
        key=jax.random.PRNGKey(1),
        steps=50,
        batch_size=8,
        clip_norm=clip_norm,
        max_failed_batches=3,
        checkpoint_dir=tmp_path,
        count_evaluations=False,
    )
    assert result.status == "solver_failed"
    assert result.steps == 3 and result.failed_batches == 3 and result.solver_failures == 24
    assert "3 consecutive batches (steps 1 to 3; the solver reached `max_steps`)" in result.message
    assert (
        "no checkpoint had been written yet (the first evaluation is at step 6)" in result.message
    )
    assert "raise max_steps" in result.message
    assert ("enable gradient clipping" in result.message) == (clip_norm is None)
    assert not (tmp_path / "checkpoint.eqx").exists()


def test_exploding_validation_error_stops_and_returns_the_best(tmp_path):
    x, y = _data()
    # four careful steps (one evaluation), then steps so large the error explodes while finite
    optimiser = optax.sgd(lambda step: jnp.where(step < 4, 1e-2, 3.0))
    result = fit(
        _resnet(),
        (x[:32], y[:32]),
        optimiser,
        key=jax.random.PRNGKey(2),
        val=(x[32:], y[32:]),
        steps=40,
        batch_size=8,
        eval_every=4,
        checkpoint_dir=tmp_path,
        count_evaluations=False,
    )
    assert result.status == "diverged"
    history = result.history
    assert [row["step"] for row in history] == [4, 8]
    assert history[1]["val_global"] > 100 * history[0]["val_global"]
    assert math.isfinite(history[1]["val_global"])
    assert "validation error exploded" in result.message
    assert "at step 8" in result.message and "checkpoint (step 4)" in result.message
    assert result.checkpoint_step == 4 and result.best_step == 4
    p = np.asarray(result.model.predict(jnp.asarray(x[32:])))
    assert jaxode.global_relative_error(p, y[32:]) == pytest.approx(
        history[0]["val_global"], rel=1e-9
    )
    # the exploded row is on record in history.csv
    assert len((tmp_path / "history.csv").read_text().splitlines()) == 3


def test_nan_before_the_first_evaluation_claims_no_checkpoint(tmp_path):
    x, y = _data()
    optimiser = optax.scale_by_schedule(lambda step: jnp.where(step < 1, -1e-2, -jnp.inf))
    result = fit(
        _resnet(),
        (x, y),
        optimiser,
        key=jax.random.PRNGKey(3),
        epochs=3,
        batch_size=12,
        clip_norm=1.0,
        checkpoint_dir=tmp_path,
        count_evaluations=False,
    )
    assert result.status == "diverged" and result.steps == 2
    assert "NaN/inf at step 2" in result.message
    assert "no checkpoint had been written yet" in result.message
    assert "already clipped at norm 1" in result.message
    assert "enable gradient clipping" not in result.message
    assert result.checkpoint_step is None and not any(tmp_path.iterdir())
    assert _finite(result.model)


def test_history_is_on_disk_at_every_evaluation_with_lf_line_endings(tmp_path):
    x, y = _data()
    seen = []

    def read(row):
        seen.append((tmp_path / "history.csv").read_bytes())

    fit(
        _resnet(),
        (x[:32], y[:32]),
        optax.adam(1e-2),
        key=jax.random.PRNGKey(4),
        val=(x[32:], y[32:]),
        epochs=3,
        batch_size=8,
        checkpoint_dir=tmp_path,
        callback=read,
        count_evaluations=False,
    )
    assert [text.count(b"\n") for text in seen] == [2, 3, 4]  # header + one row per evaluation
    assert all(b"\r" not in text for text in seen)
    rows = seen[-1].decode().splitlines()
    assert rows[0].split(",")[:3] == ["step", "epoch", "train_loss"]
    assert [int(r.split(",")[0]) for r in rows[1:]] == [4, 8, 12]


def test_interrupt_names_the_checkpoint_a_resume_restarts_from(tmp_path):
    x, y = _data()

    def stop(row):
        if row["step"] == 8:
            raise KeyboardInterrupt

    def run(directory, callback=None):
        return fit(
            _resnet(),
            (x, y),
            optax.adam(1e-2),
            key=jax.random.PRNGKey(5),
            epochs=4,
            batch_size=12,
            checkpoint_dir=directory,
            callback=callback,
            count_evaluations=False,
        )

    result = run(tmp_path, stop)
    assert result.status == "interrupted"
    assert (
        result.message == "interrupted at step 8; a resume restarts from the checkpoint at step 8."
    )
    no_checkpoint = run(None, stop)
    assert "nothing to resume from" in no_checkpoint.message


def test_replacement_sampling_draws_each_batch_from_the_key_and_step(tmp_path):
    replacement, epochs = jaxode.ReplacementSampler(), jaxode.EpochSampler()
    batch = lambda sampler, step, n, size: np.asarray(sampler.indices(key, step, n, size))
    key = jax.random.PRNGKey(6)
    for step in (0, 5, 123):
        expected = np.asarray(jax.random.randint(jax.random.fold_in(key, step), (7,), 0, 10))
        np.testing.assert_array_equal(batch(replacement, step, 10, 7), expected)
    drawn = np.concatenate([batch(replacement, s, 10, 7) for s in range(40)])
    assert len(np.unique(drawn)) == 10 and any(
        len(np.unique(batch(replacement, s, 10, 7))) < 7 for s in range(40)
    )  # with replacement: some batch repeats a sample
    order = np.asarray(jax.random.permutation(jax.random.fold_in(key, 1), 10))
    # two batches per epoch: steps 2 and 3 are the halves of epoch 1's permutation
    np.testing.assert_array_equal(batch(epochs, 2, 10, 5), order[:5])
    np.testing.assert_array_equal(batch(epochs, 3, 10, 5), order[5:])


def test_replacement_sampling_resumes_bit_identically(tmp_path):
    x, y = _data()

    def run(directory, callback=None, resume=False):
        return fit(
            _resnet(),
            (x[:32], y[:32]),
            optax.adam(1e-2),
            key=jax.random.PRNGKey(7),
            val=(x[32:], y[32:]),
            steps=18,
            batch_size=5,
            sampling="replacement",
            eval_every=6,
            checkpoint_dir=directory,
            callback=callback,
            resume=resume,
            count_evaluations=False,
        )

    def stop(row):
        if row["step"] == 12:
            raise KeyboardInterrupt

    straight = run(tmp_path / "a")
    assert run(tmp_path / "b", stop).status == "interrupted"
    resumed = run(tmp_path / "b", resume=True)
    leaves = lambda m: jax.tree_util.tree_leaves(eqx.filter(m, eqx.is_inexact_array))
    for a, b in zip(leaves(straight.model), leaves(resumed.model)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert [r["val_global"] for r in resumed.history] == [r["val_global"] for r in straight.history]


def test_progress_timer_continues_across_a_resume(capsys, monkeypatch):
    import sys

    bar = progress_bar(100, 40, True, elapsed=250.0)
    assert bar.format_dict["elapsed"] == pytest.approx(250.0, abs=5.0)
    bar.close()
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)
    plain = progress_bar(100, 40, True, elapsed=250.0)
    plain.set_postfix_str("loss 1")
    assert "step 40/100 [250s]" in capsys.readouterr().err


def test_fit_rejects_bad_stopping_arguments():
    x, y = _data()
    for kwargs, message in (
        (dict(max_failed_batches=0), "`max_failed_batches` must be an integer >= 1"),
        (dict(divergence_factor=1.0), "`divergence_factor` must be > 1"),
        (dict(sampling="bootstrap"), "`sampling` must be one of"),
    ):
        with pytest.raises(ValueError, match=message):
            fit(_resnet(), (x, y), optax.adam(1e-2), key=jax.random.PRNGKey(0), steps=1, **kwargs)


def test_metrics_json_is_strict_json(tmp_path):
    from jaxode._files import json_text

    text = json_text({"a": float("nan"), "b": [1.0, float("inf")], "c": {"d": 2.5}})

    def refuse(name):
        raise AssertionError(f"non-standard JSON constant {name}")

    assert json.loads(text, parse_constant=refuse) == {"a": None, "b": [1.0, None], "c": {"d": 2.5}}


def test_interrupts_during_a_program_with_callbacks_arrive_after_it():
    import os
    import signal

    from jaxode._training._signals import interrupts_held

    reached, seen = [], []
    previous = signal.signal(signal.SIGTERM, lambda number, frame: seen.append(number))
    try:
        with interrupts_held():
            os.kill(os.getpid(), signal.SIGTERM)
            # a host callback running while the signal arrives finishes undisturbed
            jax.debug.callback(lambda: reached.append(True))
            jax.effects_barrier()
            reached.append("end of block")
            assert seen == []
        assert reached == [True, "end of block"] and seen == [signal.SIGTERM]
    finally:
        signal.signal(signal.SIGTERM, previous)
    # Python's own SIGINT handler, whatever an earlier test in this process installed (Ray does)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            with interrupts_held():
                os.kill(os.getpid(), signal.SIGINT)
                reached.append("after SIGINT")
    finally:
        signal.signal(signal.SIGINT, previous)
    assert reached[-1] == "after SIGINT"
