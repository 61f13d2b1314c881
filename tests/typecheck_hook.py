"""Run by tests/test_typing.py under jaxtyping's import hook (JAXODE_TYPECHECK=1), never by a
plain run (the file name is not collected): the hook refuses wrong shapes and types at the
public surface."""

import diffrax
import jax.numpy as jnp
import jaxtyping
import numpy as np
import pytest

import jaxode


def test_the_hook_checks_shapes_of_public_functions(getkey):
    # NumPy would broadcast (5, 2) against (5, 1) and return a number; the annotation
    # (both "n out") refuses it.
    with pytest.raises(jaxtyping.TypeCheckError, match="parameter 'targets'"):
        jaxode.global_relative_error(np.ones((5, 2)), np.ones((5, 1)))
    # A Module's method: `t` is a scalar time.
    layer = jaxode.TimeVaryingLinear(3, 2, jaxode.LegendreBasis(1), key=getkey())
    with pytest.raises(jaxtyping.TypeCheckError, match="parameter 't'"):
        layer.weight_at(jnp.zeros(4))
    # A Module's fields, checked when it is built: `states` has a time and a state axis.
    with pytest.raises(jaxtyping.TypeCheckError, match="parameter 'states'"):
        jaxode.Trajectory(
            ts=jnp.zeros(3),
            states=jnp.zeros(3),
            final=jnp.zeros(2),
            result=diffrax.RESULTS.successful,
            num_steps=jnp.zeros((), int),
            num_accepted_steps=jnp.zeros((), int),
            num_rejected_steps=jnp.zeros((), int),
        )
