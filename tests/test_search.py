"""A sweep spec's [search] (issue 27): trials drawn from distributions over configuration fields,
asked for in batches that train as cohorts, told their validation errors, recorded in
search.csv; a resumed search asks for the same trials (random) or goes on with its stored
Optuna study (TPE)."""

import csv
import math

import numpy as np
import pytest

import jaxode
from jaxode._sweeps._search import Choice, IntRange, LogUniform, RandomSampler, Uniform

SPEC = """
name = "search"
[base.data]
dataset = "elm"
[base.model]
model = "resnet"
field = "layer"
width = 3
steps = 2
[base.train]
iterations = 20
eval_every_iterations = 10
batch_size = 16
[search]
sampler = "{sampler}"
seed = 3
trials = 8
batch = 4
[search.space]
"train.learning_rate" = {{ log-uniform = [1e-4, 3e-2] }}
"model.degree" = {{ int = [1, 3] }}
"model.basis" = {{ choice = ["monomial", "legendre"] }}
"""


def _spec(sampler="random", extra=""):
    return jaxode.SweepSpec.from_toml(SPEC.format(sampler=sampler) + extra)


def _results(out) -> dict:
    with open(out / "results.csv", newline="") as f:
        return {row["cell"]: row for row in csv.DictReader(f)}


def test_a_random_search_trains_its_trials_and_tells_their_validation_errors(tmp_path):
    records = jaxode.run_search(_spec(), tmp_path / "a", progress=False)
    assert [r["trial"] for r in records] == list(range(8))
    table = _results(tmp_path / "a")
    for record in records:
        assert 1e-4 <= record["train.learning_rate"] <= 3e-2
        assert record["model.degree"] in (1, 2, 3)
        assert record["model.basis"] in ("monomial", "legendre")
        row = table[record["cell"]]
        assert float(row["train.learning_rate"]) == record["train.learning_rate"]
        assert (row["model.basis"], int(row["model.degree"])) == (
            record["model.basis"],
            record["model.degree"],
        )
        assert record["state"] == "complete"
        assert record["value"] == pytest.approx(float(row["val_global"]), rel=1e-12)
    # The trials depend on the seed and their number, not on the batches that asked for them.
    space = _spec().search.space
    at_once = RandomSampler(seed=3).open(None, "search", space).ask(8)
    assert [(n, v) for n, v in at_once] == [(r["trial"], {f: r[f] for f in space}) for r in records]
    # Learning rates spread over the decades (log-uniform): 8 draws span at least one.
    rates = np.log10([r["train.learning_rate"] for r in records])
    assert rates.max() - rates.min() > 1.0


def test_a_resumed_random_search_asks_for_the_same_trials(tmp_path):
    out = tmp_path / "out"
    first = jaxode.run_search(_spec(), out, progress=False)
    for record in first[4:]:  # the second batch killed before it finished
        (out / "cells" / record["cell"] / "metrics.json").unlink()
    (out / "search.csv").unlink()
    resumed = jaxode.run_search(_spec(), out, progress=False)
    assert [(r["trial"], r["cell"], r["state"]) for r in resumed] == [
        (r["trial"], r["cell"], r["state"]) for r in first
    ]
    for a, b in zip(resumed, first):
        assert a["value"] == pytest.approx(b["value"], rel=1e-6)


def test_tpe_asks_each_batch_after_the_last_was_told_and_resumes_its_study(tmp_path):
    import optuna

    out = tmp_path / "out"
    # A search killed after asking for its first batch: four trials running, none told.
    out.mkdir()
    study = optuna.create_study(
        study_name="search", storage=f"sqlite:///{out / 'search.db'}", direction="minimize"
    )
    distributions = {f: d.optuna() for f, d in _spec("tpe").search.space.items()}
    asked = [study.ask(distributions).params for _ in range(4)]
    records = jaxode.run_search(_spec("tpe"), out, progress=False)
    assert [r["trial"] for r in records] == list(range(8))
    # The four trials asked before the kill are trained and told, not asked anew.
    for record, params in zip(records[:4], asked):
        assert {f: record[f] for f in params} == params
    trials = optuna.load_study(study_name="search", storage=f"sqlite:///{out / 'search.db'}")
    finished = trials.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    assert len(finished) == 8
    first_told = max(t.datetime_complete for t in finished[:4])
    assert all(t.datetime_start >= first_told for t in finished[4:])
    values = {t.number: t.value for t in finished}
    assert all(values[r["trial"]] == pytest.approx(r["value"]) for r in records)


def test_a_search_with_halving_records_the_pruned_trials(tmp_path):
    pruning = '\n[pruning]\nkind = "halving"\nfirst_rung = 10\nreduction = 2\n'
    records = jaxode.run_search(_spec(extra=pruning), tmp_path / "out", progress=False)
    states = [r["state"] for r in records]
    # Each batch of 4 (one cohort) keeps 2 at its one rung (step 10 of 20).
    assert states.count("pruned") == 4 and states.count("complete") == 4
    for record in records:
        assert record["steps"] == (10 if record["state"] == "pruned" else 20)
        assert math.isfinite(record["value"])


@pytest.mark.parametrize(
    "space, message",
    [
        ('"train.learning_rate" = { normal = [0, 1] }', "must be one of"),
        ('"train.speed" = { uniform = [0, 1] }', "not a configuration field"),
        ('"train.learning_rate" = { log-uniform = [0, 1] }', "positive low end"),
        ('"model.degree" = { int = [3, 1] }', "low < high"),
    ],
)
def test_bad_search_tables_name_what_to_fix(space, message):
    text = SPEC.format(sampler="random").split("[search.space]")[0] + "[search.space]\n" + space
    with pytest.raises(ValueError, match=message):
        jaxode.SweepSpec.from_toml(text)


def test_a_search_and_axes_are_refused_together_and_samplers_are_checked():
    with pytest.raises(ValueError, match="either by axes"):
        jaxode.SweepSpec.from_toml(SPEC.format(sampler="random") + "[grid]\ntrain.seed = [0, 1]\n")
    with pytest.raises(ValueError, match="search.sampler must be one of"):
        jaxode.SweepSpec.from_toml(SPEC.format(sampler="grid"))
    with pytest.raises(ValueError, match="run it with `run_search`|train it with `run_search`"):
        jaxode.sweep(_spec(), "unused", progress=False)


def test_distributions_draw_in_their_ranges_with_the_right_law():
    rng = np.random.default_rng(0)
    logs = np.log([LogUniform(1e-4, 1e-1).sample(rng) for _ in range(4000)])
    # Uniform in the logarithm: mean and std of U(log 1e-4, log 1e-1).
    low, high = np.log(1e-4), np.log(1e-1)
    assert logs.mean() == pytest.approx((low + high) / 2, abs=0.06)
    assert logs.std() == pytest.approx((high - low) / np.sqrt(12), rel=0.03)
    ints = [IntRange(1, 4).sample(rng) for _ in range(4000)]
    assert set(ints) == {1, 2, 3, 4} and abs(ints.count(4) / 4000 - 0.25) < 0.03
    picks = [Choice(("a", "b")).sample(rng) for _ in range(4000)]
    assert abs(picks.count("a") / 4000 - 0.5) < 0.03
    assert all(0.5 <= Uniform(0.5, 0.7).sample(rng) <= 0.7 for _ in range(100))
    study = RandomSampler(seed=1).open(None, "x", {"a": Uniform(0, 1)})
    assert study.ask(2) != RandomSampler(seed=2).open(None, "x", {"a": Uniform(0, 1)}).ask(2)


def test_the_report_of_a_search_lists_its_best_trials_by_validation(tmp_path):
    pruning = '\n[pruning]\nkind = "halving"\nfirst_rung = 10\nreduction = 2\n'
    out = tmp_path / "out"
    records = jaxode.run_search(_spec(extra=pruning), out, progress=False)
    written = jaxode.sweep_report(out)["files"]
    assert {p.name for p in written} >= {"search.md", "search_progress.png", "search_axes.png"}
    text = (out / "report" / "search.md").read_text()
    spent = sum(r["steps"] for r in records)
    assert text.startswith(f"# Search: 8 trials (4 complete, 4 pruned), {spent} member-steps")
    complete = sorted((r for r in records if r["state"] == "complete"), key=lambda r: r["value"])
    table = [line for line in text.splitlines() if line.startswith("| ") and "trial" not in line][
        1:
    ]
    assert [int(line.split("|")[1]) for line in table] == [r["trial"] for r in complete]
    assert f"| {complete[0]['trial']} | {complete[0]['value']:.4f} |" in table[0]


def test_the_command_runs_a_search_and_its_dry_run_prints_the_space(tmp_path, capsys):
    from jaxode._cli import main

    path = tmp_path / "search.toml"
    path.write_text(SPEC.format(sampler="random").replace("trials = 8", "trials = 4"))
    assert main(["sweep", str(path), "--dry-run", "--no-progress"]) == 0
    plan = capsys.readouterr().out
    assert "search 'search': 4 trials in batches of 4 (RandomSampler, seed 3)" in plan
    assert "train.learning_rate: LogUniform(low=0.0001, high=0.03)" in plan
    assert "the first batch (as the random sampler draws it): sweep 'search': 4 cells" in plan
    out = tmp_path / "out"
    assert main(["sweep", str(path), "--out", str(out), "--no-progress"]) == 0
    records = jaxode.run_search(_spec().__class__.from_file(path), out, progress=False)
    best = min(records, key=lambda r: r["value"])
    printed = capsys.readouterr().out
    assert (
        f"4 trials: 4 complete; best val_global {best['value']:.4g} (trial {best['trial']}"
        in printed
    )


def test_a_plan_lists_few_member_values_and_counts_many():
    from jaxode._sweeps._plan import _listed

    assert _listed([0.1, 0.2, 0.1]) == "0.1, 0.2"
    assert _listed([1e-4 * k for k in range(1, 21)]) == "20 values from 0.0001 to 0.002"
    assert _listed(["static", "legendre"]) == "static, legendre"
