"""Training paradigms: how gradients of a neural ODE are computed."""

import abc

import diffrax
import equinox as eqx


class AbstractParadigm(eqx.Module):
    """A way of differentiating through an ODE solve, turned into a Diffrax adjoint."""

    @abc.abstractmethod
    def adjoint(self) -> diffrax.AbstractAdjoint:
        """The Diffrax adjoint that implements this paradigm."""


class DiscretizeThenOptimize(AbstractParadigm):
    """Differentiate through the solver's own steps (fixed or adaptive): the exact gradient of
    the discrete model, memory traded for recomputation by checkpointing.

    **Arguments:**

    - `checkpoints`: number of checkpoints of `diffrax.RecursiveCheckpointAdjoint`; `None` picks
      it from `max_steps`.
    """

    checkpoints: int | None = None

    def adjoint(self):
        return diffrax.RecursiveCheckpointAdjoint(checkpoints=self.checkpoints)


class OptimizeThenDiscretize(AbstractParadigm):
    """Continuous adjoint: solve the adjoint ODE backwards in time (Chen et al. 2018).

    Memory is constant in the number of steps; the gradient approximates the true one to the
    tolerance of the backward solve.

    **Arguments:**

    - `solver`, `stepsize_controller`: for the backward solve; `None` reuses the forward ones.

    **References:** R. T. Q. Chen, Y. Rubanova, J. Bettencourt, D. Duvenaud, "Neural Ordinary
    Differential Equations", NeurIPS 2018.
    """

    solver: diffrax.AbstractSolver | None = None
    stepsize_controller: diffrax.AbstractStepSizeController | None = None

    def adjoint(self):
        options = {}
        if self.solver is not None:
            options["solver"] = self.solver
        if self.stepsize_controller is not None:
            options["stepsize_controller"] = self.stepsize_controller
        return diffrax.BacksolveAdjoint(**options)


def as_adjoint(paradigm: "AbstractParadigm | diffrax.AbstractAdjoint") -> diffrax.AbstractAdjoint:
    if isinstance(paradigm, AbstractParadigm):
        return paradigm.adjoint()
    if isinstance(paradigm, diffrax.AbstractAdjoint):
        return paradigm
    raise TypeError(
        "`paradigm` must be a jaxode paradigm (DiscretizeThenOptimize(), OptimizeThenDiscretize())"
        f" or a diffrax adjoint, got {type(paradigm).__name__}."
    )
