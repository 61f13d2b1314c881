"""jaxode: continuous-time neural networks with time-parameterized weights, in JAX."""

from ._bases import (
    AbstractTimeBasis as AbstractTimeBasis,
    ChebyshevBasis as ChebyshevBasis,
    ConstantBasis as ConstantBasis,
    FourierBasis as FourierBasis,
    LegendreBasis as LegendreBasis,
    MonomialBasis as MonomialBasis,
    PiecewiseConstantBasis as PiecewiseConstantBasis,
)
from ._counting import EvaluationCounter as EvaluationCounter, EvaluationCounts as EvaluationCounts
from ._fields import (
    AbstractField as AbstractField,
    AntisymmetricField as AntisymmetricField,
    HamiltonianField as HamiltonianField,
    LayerField as LayerField,
    MLPField as MLPField,
)
from ._layers import TimeVaryingLinear as TimeVaryingLinear
from ._models import (
    AbstractDynamics as AbstractDynamics,
    HamiltonianNet as HamiltonianNet,
    NeuralODE as NeuralODE,
    ResNet as ResNet,
    Trajectory as Trajectory,
)
from ._paradigms import (
    AbstractParadigm as AbstractParadigm,
    DiscretizeThenOptimize as DiscretizeThenOptimize,
    OptimizeThenDiscretize as OptimizeThenDiscretize,
)
from ._projection import (
    basis_matrix as basis_matrix,
    condition_number as condition_number,
    l2_in_time as l2_in_time,
    project_coefficients as project_coefficients,
    projection_matrix as projection_matrix,
)
from ._surrogate import (
    Surrogate as Surrogate,
    count_dynamics_parameters as count_dynamics_parameters,
    count_parameters as count_parameters,
)

__version__ = "0.1.0"
