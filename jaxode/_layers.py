"""Linear layers whose weight and bias are expansions in a time basis."""

import math
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float, PRNGKeyArray

from ._bases import AbstractTimeBasis


def check_size(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"`{name}` must be an integer >= 1, got {value!r}.")


def check_vector(name: str, x: Array, size: int) -> None:
    """Raises a `ValueError` naming `name` unless `x` has shape `(size,)`."""
    if jnp.shape(x) != (size,):
        raise ValueError(
            f"`{name}` must have shape ({size},), got {jnp.shape(x)}; "
            "for a batch use jax.vmap or the model's batched method."
        )


class TimeVaryingLinear(eqx.Module):
    """Affine map $x \\mapsto W(t) x + b(t)$ with $W(t) = \\sum_k W_k \\phi_k(t)$.

    At initialisation $W_0, b_0$ follow the usual uniform layer initialisation
    ($\\pm 1/\\sqrt{\\text{in}}$) and all higher coefficients are zero, so the layer starts
    constant in time.

    **Arguments:**

    - `in_size`, `out_size`: input and output sizes.
    - `basis`: the time basis of both weight and bias.
    - `use_bias`: whether to include $b(t)$.
    - `key`: a `jax.random` key (keyword only).
    - `dtype`: parameter dtype; default float32, or float64 when x64 is enabled.
    """

    weight: Float[Array, "num_basis out_size in_size"]
    bias: Float[Array, "num_basis out_size"] | None
    basis: AbstractTimeBasis
    in_size: int = eqx.field(static=True)
    out_size: int = eqx.field(static=True)

    def __init__(
        self,
        in_size: int,
        out_size: int,
        basis: AbstractTimeBasis,
        use_bias: bool = True,
        *,
        key: PRNGKeyArray,
        dtype=None,
    ):
        check_size("in_size", in_size)
        check_size("out_size", out_size)
        if not isinstance(basis, AbstractTimeBasis):
            raise TypeError(f"`basis` must be an AbstractTimeBasis, got {type(basis).__name__}.")
        dtype = jnp.zeros(()).dtype if dtype is None else dtype
        wkey, bkey = jax.random.split(key)
        bound = 1.0 / math.sqrt(in_size)
        zeros = (basis.num_basis - 1,)
        w0 = jax.random.uniform(wkey, (1, out_size, in_size), dtype, -bound, bound)
        self.weight = jnp.concatenate([w0, jnp.zeros(zeros + (out_size, in_size), dtype)])
        if use_bias:
            b0 = jax.random.uniform(bkey, (1, out_size), dtype, -bound, bound)
            self.bias = jnp.concatenate([b0, jnp.zeros(zeros + (out_size,), dtype)])
        else:
            self.bias = None
        self.basis = basis
        self.in_size = in_size
        self.out_size = out_size

    def weight_at(self, t: Float[ArrayLike, ""]) -> Float[Array, "out_size in_size"]:
        """$W(t)$."""
        return jnp.tensordot(self.basis(t).astype(self.weight.dtype), self.weight, axes=1)

    def bias_at(self, t: Float[ArrayLike, ""]) -> Float[Array, " out_size"]:
        """$b(t)$, or zeros when the layer has no bias."""
        if self.bias is None:
            return jnp.zeros((self.out_size,), self.weight.dtype)
        return self.basis(t).astype(self.bias.dtype) @ self.bias

    def __call__(
        self, t: Float[ArrayLike, ""], x: Float[ArrayLike, " in_size"]
    ) -> Float[Array, " out_size"]:
        phi = self.basis(t).astype(self.weight.dtype)
        out = jnp.tensordot(phi, self.weight, axes=1) @ x
        if self.bias is not None:
            out = out + phi @ self.bias
        return out


Activation = Callable[[Array], Array]
