"""Catalogues the tests parametrize over."""

import diffrax
import jax.numpy as jnp

import jaxode


def all_bases(t0=0.0, t1=1.0):
    return [
        jaxode.ConstantBasis(t0=t0, t1=t1),
        jaxode.MonomialBasis(3, t0=t0, t1=t1),
        jaxode.LegendreBasis(3, t0=t0, t1=t1),
        jaxode.LegendreBasis(2, t0=t0, t1=t1, orthonormal=True),
        jaxode.ChebyshevBasis(4, t0=t0, t1=t1),
        jaxode.FourierBasis(2, t0=t0, t1=t1),
        jaxode.PiecewiseConstantBasis(5, t0=t0, t1=t1),
    ]


def all_fields(width, basis, key):
    return [
        jaxode.LayerField(width, basis, key=key),
        jaxode.MLPField(width, 7, basis, key=key),
        jaxode.HamiltonianField(width, basis, key=key),
        jaxode.AntisymmetricField(width, basis, gamma=0.1, key=key),
    ]


def all_paradigms():
    return [
        jaxode.DiscretizeThenOptimize(),
        jaxode.OptimizeThenDiscretize(),
        diffrax.RecursiveCheckpointAdjoint(),
    ]


def randomize(module, key, scale=0.5):
    """Fills every floating-point array of `module` with random values, so that higher basis
    coefficients (zero at initialisation) take part in the checks."""
    import equinox as eqx
    import jax

    params, static = eqx.partition(module, eqx.is_inexact_array)
    leaves, treedef = jax.tree_util.tree_flatten(params)
    keys = jax.random.split(key, len(leaves))
    leaves = [scale * jax.random.normal(k, x.shape, x.dtype) for k, x in zip(keys, leaves)]
    return eqx.combine(jax.tree_util.tree_unflatten(treedef, leaves), static)


def as_float64(x):
    return jnp.asarray(x, dtype=jnp.float64)


def regression_data(n=40, seed=0):
    """`(x, y)`: n inputs in [-1, 1]^2 and two smooth outputs of them, a small training set."""
    import numpy as np

    rng = np.random.default_rng(seed)
    x = rng.uniform(-1, 1, size=(n, 2))
    return x, np.stack([np.sin(2 * x[:, 0]) * x[:, 1], np.cos(x[:, 0] + x[:, 1])], axis=1)


def array_leaves(model) -> list:
    """The floating-point arrays of `model`, as NumPy arrays, in tree order."""
    import equinox as eqx
    import jax
    import numpy as np

    return [
        np.asarray(a) for a in jax.tree_util.tree_leaves(eqx.filter(model, eqx.is_inexact_array))
    ]


# The command-line flags of a tiny run (a ResNet of width 3 on CDR, float64, 3 epochs): tests
# that train through the CLI share it, so the compilation cache compiles its programs once.
TINY_FLAGS = [
    "--data",
    "cdr",
    "--model",
    "resnet",
    "--field",
    "layer",
    "--width",
    "3",
    "--steps",
    "2",
    "--degree",
    "1",
    "--epochs",
    "3",
    "--batch-size",
    "100",
    "--precision",
    "float64",
]
