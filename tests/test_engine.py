"""The engine's objects: the object form of `fit` is the keyword form, bit for bit; bad
settings are refused by name; GNvpro's members go through the one host loop (a failed start is
a status, an interrupt between members leaves the next one unstarted); a resumed cohort member
that had stopped reports how it stopped."""

import equinox as eqx
import jax
import numpy as np
import optax
import pytest
from helpers import array_leaves as _leaves, regression_data

import jaxode


def _resnet(seed):
    k1, k2 = jax.random.split(jax.random.PRNGKey(seed))
    field = jaxode.MLPField(3, 5, jaxode.LegendreBasis(2), key=k1)
    return jaxode.Surrogate(2, 2, jaxode.ResNet(field, 1.0, 4), key=k2)


def test_the_object_form_is_the_keyword_form_bit_for_bit(tmp_path):
    x, y = regression_data(48)
    train, val = (x[:40], y[:40]), (x[40:], y[40:])
    key = jax.random.PRNGKey(3)
    keyword = jaxode.fit(
        _resnet(0), train, optax.adam(1e-2), key=key, val=val, steps=12, batch_size=8,
        sampling="replacement", eval_every=4, patience=5, clip_norm=1.0, loss=None,
        count_evaluations=False, checkpoint_dir=tmp_path / "a",
    )  # fmt: skip
    trainer = jaxode.MinibatchTrainer(
        optax.adam(1e-2), steps=12, batch_size=8, sampler=jaxode.ReplacementSampler(),
        clip_norm=1.0,
    )  # fmt: skip
    objects = jaxode.fit(
        _resnet(0), train, trainer, key=key, val=val,
        stopping=jaxode.Stopping(patience=5),
        evaluation=jaxode.Evaluation(every=4, count_evaluations=False),
        checkpointing=jaxode.Checkpointing(tmp_path / "b"),
        placement=jaxode.SingleDevice(),
    )  # fmt: skip
    assert keyword.status == objects.status == "completed" and objects.steps == 12
    for a, b in zip(_leaves(keyword.model), _leaves(objects.model)):
        np.testing.assert_array_equal(a, b)
    strip = lambda rows: [{k: v for k, v in r.items() if k != "wall_time"} for r in rows]
    assert strip(keyword.history) == strip(objects.history)
    assert (tmp_path / "a" / "history.csv").read_text().count("\n") == 4
    assert (tmp_path / "b" / "checkpoint.eqx").is_file()


@pytest.mark.parametrize(
    "build, message",
    [
        (lambda: jaxode.Stopping(divergence_factor=1.0), "`divergence_factor` must be > 1"),
        (lambda: jaxode.Stopping(patience=0), "`patience` must be an integer >= 1"),
        (lambda: jaxode.Evaluation(every=0), "`every` must be an integer >= 1"),
        (
            lambda: jaxode.Evaluation(count_evaluations=True, count_every=None),
            "`count_every` must be an integer >= 1",
        ),
        (lambda: jaxode.Checkpointing(resume=True), "`resume=True` needs `checkpoint_dir`"),
        (lambda: jaxode.MinibatchTrainer(optax.adam(1e-2)), "exactly one of `epochs` and `steps`"),
        (
            lambda: jaxode.GNvproTrainer(iterations=2, ridge=0.0),
            "`ridge` must be a finite number > 0",
        ),
        (lambda: jaxode.GNvproTrainer(iterations=2, tikhonov=-1.0), "`tikhonov` must be"),
        (lambda: jaxode.GNvproTrainer(), "exactly one of `iterations` and `passes`"),
    ],
)
def test_bad_settings_are_refused_by_name(build, message):
    with pytest.raises(ValueError, match=message):
        build()


def test_settings_take_what_the_keyword_form_took():
    assert float(jaxode.Stopping(divergence_factor=np.float32(10.0)).divergence_factor) == 10.0
    assert jaxode.Evaluation(count_evaluations=False, count_every=None).count_every is None
    with pytest.raises(TypeError, match="`loss` must be an AbstractLoss"):
        jaxode.MinibatchTrainer(optax.adam(1e-2), steps=1, loss=None)


def test_fit_names_what_it_was_given_wrongly():
    x, y = regression_data(48)
    with pytest.raises(TypeError, match="`model` must be a jaxode.Surrogate"):
        jaxode.fit("model", (x, y), jaxode.MinibatchTrainer(optax.adam(1e-2), steps=1), key=None)
    with pytest.raises(TypeError, match="pass `keys`"):
        jaxode.fit([_resnet(0)], (x, y), optax.adam(1e-2), key=jax.random.PRNGKey(0), steps=1)
    with pytest.raises(ValueError, match="SingleDevice\\(\\) trains one model, got 2"):
        jaxode.fit(
            [_resnet(0), _resnet(1)], (x, y),
            jaxode.MinibatchTrainer(optax.adam(1e-2), steps=1, batch_size=8),
            keys=[jax.random.PRNGKey(0)] * 2, placement=jaxode.SingleDevice(),
        )  # fmt: skip
    with pytest.raises(ValueError, match="one after another on one device"):
        jaxode.fit(
            [_resnet(0)] * 2, (x, y), jaxode.GNvproTrainer(iterations=2),
            placement=jaxode.Sharded(1),
        )  # fmt: skip


def test_a_gnvpro_start_that_is_not_finite_is_a_status_and_no_step_ran():
    x, y = regression_data(48)
    broken = jax.tree_util.tree_map(
        lambda a: a * np.nan if eqx.is_inexact_array(a) else a, _resnet(0)
    )
    result = jaxode.fit(broken, (x, y), jaxode.GNvproTrainer(iterations=2))
    assert result.status == "diverged" and "not finite at iteration 0" in result.message
    assert result.training_started is None and result.compile_time == 0.0
    assert result.num_traces == 1 and result.history == []


def test_an_interrupt_as_a_gnvpro_member_ends_leaves_the_next_one_unstarted(tmp_path):
    x, y = regression_data(48)

    def stop(k, row):
        if k == 0 and row["step"] == 2:  # member 0's last row
            raise KeyboardInterrupt

    results = jaxode.fit(
        [_resnet(0), _resnet(1)], (x, y), jaxode.GNvproTrainer(iterations=2),
        checkpointing=jaxode.Checkpointing([tmp_path / "0", tmp_path / "1"]), callback=stop,
    )  # fmt: skip
    assert results[0].status == "completed" and results[0].steps == 2
    assert results[1].status == "interrupted" and results[1].num_traces == 0
    assert results[1].message == "interrupted before this member started; a resume starts it."
    assert not (tmp_path / "1").exists()
    resumed = jaxode.fit(
        [_resnet(0), _resnet(1)], (x, y), jaxode.GNvproTrainer(iterations=2),
        checkpointing=jaxode.Checkpointing([tmp_path / "0", tmp_path / "1"], resume=True),
    )  # fmt: skip
    assert [r.status for r in resumed] == ["completed", "completed"]
    assert resumed[0].num_traces == 0 and resumed[1].num_traces == 1
    for a, b in zip(_leaves(results[0].model), _leaves(resumed[0].model)):
        np.testing.assert_array_equal(a, b)


def test_a_resumed_member_that_had_stopped_early_says_why(tmp_path):
    x, y = regression_data(48)
    train, val = (x[:40], y[:40]), (x[40:], y[40:])
    models = [_resnet(0), _resnet(1)]
    keys = [jax.random.PRNGKey(5), jax.random.PRNGKey(6)]
    directories = [tmp_path / "0", tmp_path / "1"]
    trainer = jaxode.MinibatchTrainer(optax.adam(0.3), steps=60, batch_size=8)
    settings = dict(
        val=val,
        keys=keys,
        stopping=jaxode.Stopping(patience=1),
        evaluation=jaxode.Evaluation(every=5, count_evaluations=False),
    )
    first = jaxode.fit(
        models, train, trainer, checkpointing=jaxode.Checkpointing(directories), **settings
    )
    stopped = [k for k, r in enumerate(first) if r.status == "early_stopped"]
    assert stopped, [r.status for r in first]
    again = jaxode.fit(
        models, train, trainer,
        checkpointing=jaxode.Checkpointing(directories, resume=True), **settings,
    )  # fmt: skip
    for k in stopped:
        assert again[k].status == "early_stopped"
        assert again[k].message == first[k].message
        assert again[k].message.startswith("no validation improvement in 1 evaluations")
