"""jaxode: continuous-time neural networks with time-parameterized weights, in JAX."""

from ._bases import (
    AbstractPolynomialBasis as AbstractPolynomialBasis,
    AbstractTimeBasis as AbstractTimeBasis,
    ChebyshevBasis as ChebyshevBasis,
    ConstantBasis as ConstantBasis,
    FourierBasis as FourierBasis,
    LegendreBasis as LegendreBasis,
    MonomialBasis as MonomialBasis,
    PiecewiseConstantBasis as PiecewiseConstantBasis,
)
from ._counting import EvaluationCounter as EvaluationCounter, EvaluationCounts as EvaluationCounts
from ._datasets import (
    Affine as Affine,
    Dataset as Dataset,
    TrajectoryData as TrajectoryData,
    load_cdr as load_cdr,
    load_dataset as load_dataset,
    load_dcr as load_dcr,
    load_elm as load_elm,
    load_file as load_file,
    spiral as spiral,
    spiral_batch as spiral_batch,
)
from ._fields import (
    AbstractField as AbstractField,
    AntisymmetricField as AntisymmetricField,
    HamiltonianField as HamiltonianField,
    LayerField as LayerField,
    MLPField as MLPField,
)
from ._layers import TimeVaryingLinear as TimeVaryingLinear
from ._locks import FolderInUse as FolderInUse
from ._models import (
    AbstractDynamics as AbstractDynamics,
    HamiltonianNet as HamiltonianNet,
    NeuralODE as NeuralODE,
    ResNet as ResNet,
    Trajectory as Trajectory,
    skip_value_checks as skip_value_checks,
)
from ._paradigms import (
    AbstractParadigm as AbstractParadigm,
    DiscretizeThenOptimize as DiscretizeThenOptimize,
    OptimizeThenDiscretize as OptimizeThenDiscretize,
)
from ._projection import (
    basis_matrix as basis_matrix,
    change_basis as change_basis,
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
from ._sweeps import (
    AbstractExecutor as AbstractExecutor,
    Cell as Cell,
    LocalExecutor as LocalExecutor,
    RayExecutor as RayExecutor,
    SweepPlan as SweepPlan,
    SweepSpec as SweepSpec,
    make_plan as make_plan,
    sweep as sweep,
    sweep_report as sweep_report,
)
from ._training import (
    AbstractLoss as AbstractLoss,
    AbstractPlacement as AbstractPlacement,
    AbstractRegulariser as AbstractRegulariser,
    AbstractRun as AbstractRun,
    AbstractSampler as AbstractSampler,
    AbstractTrainer as AbstractTrainer,
    Checkpointing as Checkpointing,
    CohortDir as CohortDir,
    DataConfig as DataConfig,
    EpochSampler as EpochSampler,
    Evaluated as Evaluated,
    Evaluation as Evaluation,
    FitResult as FitResult,
    GNvproResult as GNvproResult,
    GNvproTrainer as GNvproTrainer,
    GramRegulariser as GramRegulariser,
    L1Loss as L1Loss,
    MemberRecord as MemberRecord,
    MinibatchTrainer as MinibatchTrainer,
    ModelConfig as ModelConfig,
    MSELoss as MSELoss,
    Outcome as Outcome,
    Problem as Problem,
    RelativeL2Loss as RelativeL2Loss,
    ReplacementSampler as ReplacementSampler,
    RunConfig as RunConfig,
    RunDir as RunDir,
    Sharded as Sharded,
    SharedSolve as SharedSolve,
    SingleDevice as SingleDevice,
    Status as Status,
    Stopping as Stopping,
    TikhonovRegulariser as TikhonovRegulariser,
    TrainConfig as TrainConfig,
    TrainedSurrogate as TrainedSurrogate,
    VarProObjective as VarProObjective,
    Vmapped as Vmapped,
    build_model as build_model,
    evaluate_model as evaluate_model,
    fit as fit,
    fit_cohort as fit_cohort,
    fit_gnvpro as fit_gnvpro,
    global_relative_error as global_relative_error,
    load as load,
    mean_relative_error as mean_relative_error,
    preset as preset,
    presets as presets,
    ridge_readout as ridge_readout,
    ridge_warm_start as ridge_warm_start,
    split_readout as split_readout,
    train as train,
    train_cohort as train_cohort,
)
from ._trajectories import (
    ClockField as ClockField,
    TrajectoryModel as TrajectoryModel,
    cube as cube,
)
from ._version import __version__ as __version__
