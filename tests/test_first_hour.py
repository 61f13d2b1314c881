"""What a user meets in the first hour (issue 26): a basis window that does not cover the
integration interval, installing on a GPU, `jaxode compare`, the sweep report's log axes, the
package's `__all__` and the documentation site's code blocks."""

import ast
import json
import pathlib
import re
import tomllib
import warnings

import equinox as eqx
import jax
import numpy as np
import pytest

import jaxode
from jaxode._runs_table import compare_runs, format_comparison
from jaxode._sweeps._report import _figure, _save

ROOT = pathlib.Path(__file__).resolve().parent.parent

# --- item 4: a basis window that does not cover [t0, t1] -----------------------------------

# P_3 at the point t = 5 maps to on the window [0, 1]: x = 2 tau - 1 = 9, so (5 * 9^3 - 3 * 9) / 2.
P3_AT_T5 = np.polynomial.legendre.legval(2.0 * 5.0 - 1.0, [0, 0, 0, 1])


def _no_window_warning(build):
    with warnings.catch_warnings():
        warnings.simplefilter("error", jaxode.BasisWindowWarning)
        return build()


def _models(basis, t1, t0=0.0):
    """A NeuralODE, a ResNet and a HamiltonianNet over fields of `basis`, on [t0, t1]."""
    key = jax.random.PRNGKey(0)
    return {
        "node": lambda: jaxode.NeuralODE(jaxode.MLPField(2, 3, basis, key=key), t1=t1, t0=t0),
        "resnet": lambda: jaxode.ResNet(jaxode.LayerField(2, basis, key=key), t1, 4, t0),
        "hamiltonian": lambda: jaxode.HamiltonianNet(
            jaxode.HamiltonianField(2, basis, key=key), t1, 4, t0
        ),
    }


def test_the_number_quoted_is_legendre_p3_at_the_mapped_point():
    assert P3_AT_T5 == 1809.0
    np.testing.assert_allclose(jaxode.LegendreBasis(3)(5.0)[3], P3_AT_T5)


@pytest.mark.parametrize("kind", ["node", "resnet", "hamiltonian"])
def test_a_model_past_its_basis_window_warns_naming_t1_the_window_and_clamp(kind):
    with pytest.warns(jaxode.BasisWindowWarning) as caught:
        _models(jaxode.LegendreBasis(3), t1=5.0)[kind]()
    assert len(caught) == 1
    message = str(caught[0].message)
    assert message.startswith(
        "`t1` = 5 lies outside the window [0, 1] of the field's LegendreBasis, which has "
        "clamp=False: outside its window a basis keeps evaluating its formula, and the largest "
        f"of its functions reaches {P3_AT_T5:.4g} at t = 5 (1 at the ends of the window)."
    )
    assert "LegendreBasis(..., t0=0, t1=5)" in message and "clamp=True" in message
    assert "category=jaxode.BasisWindowWarning" in message
    assert caught[0].filename == __file__  # points at the line that built the model


def test_a_window_that_starts_after_t0_warns_naming_t0():
    with pytest.warns(
        jaxode.BasisWindowWarning, match=r"^`t0` = 0 lies outside the window \[1, 2\]"
    ):
        _models(jaxode.ChebyshevBasis(2, t0=1.0, t1=2.0), t1=2.0)["resnet"]()


@pytest.mark.parametrize("kind", ["node", "resnet", "hamiltonian"])
@pytest.mark.parametrize(
    "basis",
    [
        jaxode.LegendreBasis(3, clamp=True),  # weights frozen outside the window: legitimate
        jaxode.LegendreBasis(3, t1=5.0),  # the window is the interval
        jaxode.MonomialBasis(3, t0=-1.0, t1=10.0),  # the window covers the interval
        jaxode.ConstantBasis(),  # constant outside its window whatever `clamp` says
        jaxode.PiecewiseConstantBasis(4),
    ],
    ids=["clamped", "same-window", "wider-window", "constant", "piecewise"],
)
def test_a_clamped_or_covering_basis_is_accepted_silently(kind, basis):
    model = _no_window_warning(_models(basis, t1=5.0)[kind])
    assert model.t1 == 5.0


def test_a_model_built_while_a_program_is_traced_is_checked_where_it_can_be():
    field = jaxode.MLPField(2, 3, jaxode.LegendreBasis(3), key=jax.random.PRNGKey(0))
    # filter_jit keeps the basis' floats static: the check and its numbers still work.
    build = eqx.filter_jit(lambda f: jaxode.NeuralODE(f, t1=5.0).field.inner.weight)
    with pytest.warns(jaxode.BasisWindowWarning, match=f"reaches {P3_AT_T5:.4g} at t = 5"):
        build(field)
    # jax.jit traces the window itself (and `clamp`): nothing is known to check, nothing fails.
    traced = jax.jit(lambda f: jaxode.NeuralODE(f, t1=5.0).field.inner.basis.t1)
    assert _no_window_warning(lambda: traced(field)) == 1.0


def test_extrapolating_on_purpose_is_silenced_by_the_category():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warnings.filterwarnings("ignore", category=jaxode.BasisWindowWarning)
        _models(jaxode.LegendreBasis(3), t1=5.0)["node"]()


def test_the_extrapolation_probe_reaches_past_the_window_without_a_warning():
    from jaxode import probes

    field = jaxode.MLPField(2, 3, jaxode.LegendreBasis(2), key=jax.random.PRNGKey(0))
    dynamics = jaxode.NeuralODE(field, t1=1.0)
    result = _no_window_warning(
        lambda: probes.trajectory_extrapolation(
            dynamics,
            np.array([[0.5, -0.5]]),
            probes.HarmonicOscillator(),
            t_train=1.0,
            t_ext=4.0,
            num_times=9,
        )
    )
    assert result.succeeded.all() and result.t_ext == 4.0


def _config(**model):
    return jaxode.RunConfig.from_dict(
        {
            "model": dict(
                model="node", basis="legendre", degree=3, t1=5.0, width=2, hidden=3, **model
            )
        }
    )


def test_the_run_configuration_warns_once_in_its_own_names():
    with pytest.warns(jaxode.BasisWindowWarning) as caught:
        jaxode.build_model(_config(basis_window=1.0), 3, 2, key=jax.random.PRNGKey(0))
    assert len(caught) == 1  # the model's own warning is not repeated
    message = str(caught[0].message)
    assert message.startswith(
        "model.t1 = 5 integrates past the basis window [0, 1] that model.basis_window = 1 "
        "sets, with model.clamp = false: outside its window the legendre basis keeps evaluating "
        f"its formula, and the largest of its functions reaches {P3_AT_T5:.4g} at t = 5"
    )
    assert "set model.basis_window = none" in message and "model.clamp = true" in message
    assert caught[0].filename == __file__


@pytest.mark.parametrize(
    "model", [dict(basis_window=1.0, clamp=True), dict(basis_window=None), dict(basis_window=5.0)]
)
def test_the_run_configuration_accepts_clamped_or_covering_windows(model):
    built = _no_window_warning(
        lambda: jaxode.build_model(_config(**model), 3, 2, key=jax.random.PRNGKey(0))
    )
    assert built.dynamics.t1 == 5.0


# --- item 8: GPU install ----------------------------------------------------------------------


def test_the_cuda12_extra_installs_jax_for_cuda12_and_the_docs_say_how():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["optional-dependencies"]["cuda12"] == ["jax[cuda12]>=0.4.30"]
    assert "jax>=0.4.30" in project["dependencies"]  # the same floor as the CPU build
    guide = (ROOT / "docs" / "getting-started.md").read_text()
    section = guide.split("## On a GPU", 1)[1].split("\n## ", 1)[0]
    for text in (
        'pip install ".[cuda12]"',
        'python -c "import jax; print(jax.devices())"',
        "XLA_PYTHON_CLIENT_PREALLOCATE=false",
        "XLA_PYTHON_CLIENT_MEM_FRACTION",
        "JAXODE_MEMORY_LIMIT",
        "--batch-size",
        "--seeds",
        "shared_solve=True",
        "devices=n",
    ):
        assert text in section, text
    assert "(docs/getting-started.md#on-a-gpu)" in (ROOT / "README.md").read_text()


# --- item 9: compare, sweep report axes, __all__, code blocks ----------------------------------


def _run(path: pathlib.Path, seed: int, started: float) -> pathlib.Path:
    path.mkdir()
    config = jaxode.RunConfig.from_dict({"train": {"seed": seed}})
    (path / "config.toml").write_text(config.to_toml())
    metrics = dict(status="completed", message="done", test_global=0.1 + seed, steps=10)
    (path / "metrics.json").write_text(json.dumps({**metrics, "training_started": started}))
    return path


def test_compare_leaves_the_start_time_out_of_the_metrics(tmp_path):
    runs = [_run(tmp_path / "a", 0, 1.7e9), _run(tmp_path / "b", 1, 1.7e9 + 60.0)]
    comparison = compare_runs(runs)
    assert [name for name, _ in comparison.metrics] == ["status", "test_global", "steps"]
    text = format_comparison(comparison)
    assert "training_started" not in text and "test_global" in text


def _tick_labels(values, log_y=True, tmp_path=None) -> tuple[str, list[str]]:
    fig, axes = _figure()
    axes[0].errorbar(range(len(values)), values, yerr=[0.0] * len(values), marker="o")
    _save(fig, axes, tmp_path / "plot.png", [], log_y=log_y)
    ticks = axes[0].get_yticklabels() + axes[0].get_yticklabels(minor=True)
    return axes[0].get_yscale(), [t.get_text() for t in ticks if t.get_text()]


def test_errors_within_a_decade_get_plain_decimal_tick_labels(tmp_path):
    scale, labels = _tick_labels([0.2824, 0.2838, 0.2831], tmp_path=tmp_path)
    assert scale == "linear" and labels
    assert all(re.fullmatch(r"0\.28\d\d", label) for label in labels), labels
    assert {"0.2824", "0.2838"} <= set(labels)


def test_errors_over_several_decades_keep_a_log_axis(tmp_path):
    scale, labels = _tick_labels([1e-3, 2e-2, 0.5], tmp_path=tmp_path)
    assert scale == "log" and any("10^{-2}" in label for label in labels)


def _public_imports(path: pathlib.Path) -> list[str]:
    tree = ast.parse(path.read_text())
    return [
        alias.asname or alias.name
        for node in tree.body
        if isinstance(node, ast.ImportFrom)
        for alias in node.names
        if not (alias.asname or alias.name).startswith("_")
    ]


def test_all_lists_every_public_name_the_package_imports_sorted():
    imported = _public_imports(ROOT / "jaxode" / "__init__.py")
    assert jaxode.__all__ == sorted(imported)
    assert len(set(jaxode.__all__)) == len(jaxode.__all__)
    namespace: dict = {}
    exec("from jaxode import *", namespace)
    assert set(namespace) - {"__builtins__"} == set(imported)


def test_code_blocks_and_signatures_wrap_instead_of_scrolling():
    config = (ROOT / "mkdocs.yml").read_text()  # YAML: its extra_css list read as text
    sheets = re.findall(r"^extra_css:\n((?:  - .+\n)+)", config, flags=re.M)
    assert sheets
    css = "".join((ROOT / "docs" / line.strip()[2:]).read_text() for line in sheets[0].splitlines())
    rule = re.search(r"([^{}]+)\{([^}]*white-space:\s*pre-wrap[^}]*)\}", css)
    assert rule is not None
    assert ".md-typeset pre > code" in rule[1] and ".doc-signature code" in rule[1]
    assert "overflow-wrap: anywhere" in rule[2]
