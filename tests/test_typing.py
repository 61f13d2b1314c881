"""Typing: the version comes from the installed metadata, the package ships `py.typed`, and
the jaxtyping annotations of the public surface hold at run time (jaxtyping's import hook
with beartype, on a chosen subset of the suite run in a subprocess)."""

import importlib.metadata
import os
import pathlib
import subprocess
import sys
import tomllib

import pytest

import jaxode

ROOT = pathlib.Path(__file__).resolve().parent.parent
HOOKED = os.environ.get("JAXODE_TYPECHECK") == "1"

# The first entry is not collected by a plain run (its name is not test_*.py): it proves the hook is
# on, so it runs under the hook only. Then fast tests that call the public signatures (bases and
# projection, layers and fields, the models, the surrogate trained into a run directory): under the
# hook every annotated function and Module of jaxode they reach is checked, internals included
# (about 20 s). Left out for good reason are the tests of jaxode's own argument checks
# (`test_field_errors`, `test_bad_arguments_name_the_argument`, `test_dynamics_argument_errors`,
# `test_surrogate_shapes_and_input_errors`, the end of `test_change_basis_of_a_trained_model`): they
# pass a wrongly typed argument on purpose and match jaxode's message, which the checker pre-empts
# with its own TypeCheckError. Left out for time: the time-series run
# (`test_spiral_run_metrics_match_an_independent_integration`, 7-25 s; it passes under the hook).
# The probes are covered by three fast tests (ray_limit, limit_map on top of it, and
# minimal_ode_along_rays; about 3 s): their annotations take lists and NumPy (ArrayLike) and NumPy
# integer codes, as the code does.
SUBSET = [
    "tests/typecheck_hook.py::test_the_hook_checks_shapes_of_public_functions",
    "tests/test_fields.py::test_time_varying_linear_init_is_constant_in_time",
    "tests/test_fields.py::test_time_varying_linear_matches_numpy",
    "tests/test_fields.py::test_fields_match_their_formulas",
    "tests/test_fields.py::test_antisymmetric_linear_part_has_eigenvalues_with_real_part_minus_gamma",
    "tests/test_fields.py::test_unconstrained_per_step_weights_count",
    "tests/test_bases.py::test_polynomial_values_match_numpy",
    "tests/test_bases.py::test_legendre_classical_normalisation_and_fourier_values",
    "tests/test_bases.py::test_time_derivative_is_finite_and_exact_at_the_ends_and_inside",
    "tests/test_bases.py::test_projection_is_exact_when_target_contains_source",
    "tests/test_bases.py::test_projection_rejects_wrong_coefficient_shape",
    "tests/test_bases.py::test_l2_in_time_equals_integral",
    "tests/test_bases.py::test_step_j_uses_piece_j_for_every_step_count_up_to_1000",
    "tests/test_models.py::test_max_steps_raises_or_returns_status",
    "tests/test_runs.py::test_iterations_and_evaluation_cadence_in_steps",
    "tests/test_probes_rays.py::test_closed_form_example_both_directions",
    "tests/test_probes_maps.py::test_limit_map_matches_sign_pattern_formula",
    "tests/test_probes_minimal_ode.py::test_tanh_neuron_satisfies_riccati_pooled_over_hidden_biases",
]


def test_version_is_the_installed_metadata():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert jaxode.__version__ == importlib.metadata.version("jaxode")
    assert jaxode.__version__ == pyproject["project"]["version"]
    # pyproject.toml keeps the only version string
    assert pyproject["project"]["version"] not in (ROOT / "jaxode" / "__init__.py").read_text()


def test_the_package_ships_py_typed():
    package = pathlib.Path(jaxode.__file__).resolve().parent
    assert (package / "py.typed").is_file()
    files = importlib.metadata.files("jaxode") or []
    if any(str(f).startswith("jaxode/") for f in files):  # a regular (not editable) install
        assert any(str(f) == "jaxode/py.typed" for f in files)


def test_the_public_surface_passes_under_the_type_checker():
    """`SUBSET` with jaxtyping's import hook and beartype (tests/conftest.py installs it
    before jaxode is imported when JAXODE_TYPECHECK=1)."""
    if HOOKED:
        pytest.skip("already running under the hook")
    env = dict(os.environ, JAXODE_TYPECHECK="1")
    command = [sys.executable, "-m", "pytest", "-q", "-rA", "-p", "no:cacheprovider", *SUBSET]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    report = done.stdout + done.stderr
    assert done.returncode == 0, report[-6000:]
    assert f"PASSED {SUBSET[0]}" in report, report[-3000:]  # the hook was on
    assert " skipped" not in report.splitlines()[-1], report[-3000:]
