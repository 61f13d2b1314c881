"""Tests run in float64: accuracy claims are checked where rounding does not hide them."""

import os
import random

import jax
import pytest

jax.config.update("jax_enable_x64", True)


@pytest.fixture
def getkey():
    """A function returning fresh PRNG keys from a seed printed for reproduction."""
    seed = int(os.environ.get("JAXODE_TEST_SEED", random.randrange(2**31)))
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
