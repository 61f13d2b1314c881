"""Tests run in float64: accuracy claims are checked where rounding does not hide them.

Compiled programs go to JAX's persistent compilation cache (a folder under the system's
temporary directory, or JAXODE_COMPILATION_CACHE), so the many tests that train the same small
models compile each program once; results do not depend on it.

Randomness is deterministic: `getkey` starts from a fixed seed (override it with the
environment variable JAXODE_TEST_SEED to explore other draws). Tests of the float32 tier
(`tests/test_float32.py`) carry the `float32` marker: `pytest -m float32` runs them alone.
"""

import os
import tempfile

# JAXODE_TYPECHECK=1: jaxtyping's import hook checks every annotated function and Module of
# jaxode at run time with beartype (tests/test_typing.py runs a subset of the suite so). It
# must be installed before jaxode is first imported, hence here, before anything else.
if os.environ.get("JAXODE_TYPECHECK") == "1":
    import jaxtyping

    # PEP 484's numeric tower, as static checkers read `float`: an int is a float.
    jaxtyping.install_import_hook(
        "jaxode", "beartype.beartype(conf=beartype.BeartypeConf(is_pep484_tower=True))"
    )

import jax
import pytest

jax.config.update("jax_enable_x64", True)
# Subprocesses (CLI tests) read the same folder through the environment.
_CACHE = os.environ.setdefault(
    "JAXODE_COMPILATION_CACHE", os.path.join(tempfile.gettempdir(), "jaxode-tests-jax-cache")
)
jax.config.update("jax_compilation_cache_dir", _CACHE)
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.2)

DEFAULT_SEED = 20240601


# The longest tests first: pytest-xdist hands tests out in collection order, and a long test
# collected last keeps one worker busy while the other has nothing left to do.
_LONG_FIRST = (
    "test_readme.py",
    "test_devices.py",
    "test_sweeps.py",
    "test_examples.py",
    "test_typing.py",
    "test_trajectories.py",
    "test_gradients.py",
)


def pytest_collection_modifyitems(config, items):
    rank = {name: k for k, name in enumerate(_LONG_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "float32: runs with x64 off, in the float32 precision users get by default"
    )


def seed_of_getkey() -> int:
    """The seed of `getkey`: DEFAULT_SEED unless JAXODE_TEST_SEED is set."""
    return int(os.environ.get("JAXODE_TEST_SEED", DEFAULT_SEED))


@pytest.fixture
def getkey():
    """A function returning fresh PRNG keys from a fixed seed, printed for reproduction."""
    seed = seed_of_getkey()
    print(f"test seed: {seed} (rerun with JAXODE_TEST_SEED={seed})")
    key = jax.random.PRNGKey(seed)

    def next_key():
        nonlocal key
        key, sub = jax.random.split(key)
        return sub

    return next_key


@pytest.fixture(autouse=True)
def _float64_for_every_test():
    """The CLI may switch precision in-process (`--precision float32`); no test leaks it."""
    jax.config.update("jax_enable_x64", True)
    yield
    jax.config.update("jax_enable_x64", True)


@pytest.fixture
def float32():
    """Turns x64 off for one test (after the autouse float64 fixture, which restores it):
    build arrays and models inside the test, after this fixture has run."""
    jax.config.update("jax_enable_x64", False)
    yield
