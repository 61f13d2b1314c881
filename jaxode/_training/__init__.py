"""Training: configuration, losses, regularisers, metrics, the engine (trainers, samplers,
stopping, evaluation, checkpointing, placements), and run directories."""

from ._build import (
    build_model as build_model,
    build_settings as build_settings,
    build_trainer as build_trainer,
    evaluation_data as evaluation_data,
    load_data as load_data,
)
from ._choices import CHOICES as CHOICES
from ._config import (
    PRESETS as PRESETS,
    RECORDING_ONLY as RECORDING_ONLY,
    DataConfig as DataConfig,
    ModelConfig as ModelConfig,
    RunConfig as RunConfig,
    TrainConfig as TrainConfig,
    is_time_series as is_time_series,
    preset as preset,
    presets as presets,
)
from ._domain import DomainCheck as DomainCheck, TrainingDomain as TrainingDomain
from ._ensemble import (
    Ensemble as Ensemble,
    calibrate_cohort as calibrate_cohort,
    calibration_record as calibration_record,
    evaluate_ensemble as evaluate_ensemble,
    load as load,
    load_ensemble as load_ensemble,
    train_ensemble as train_ensemble,
)
from ._fit import FitResult as FitResult, fit as fit, fit_cohort as fit_cohort
from ._gnvpro import (
    GNvproResult as GNvproResult,
    VarProObjective as VarProObjective,
    fit_gnvpro as fit_gnvpro,
    split_readout as split_readout,
)
from ._gnvpro_trainer import GNvproTrainer as GNvproTrainer, iteration_cost as iteration_cost
from ._ignored import ignored_settings as ignored_settings, normalised as normalised
from ._losses import (
    AbstractLoss as AbstractLoss,
    L1Loss as L1Loss,
    MSELoss as MSELoss,
    RelativeL2Loss as RelativeL2Loss,
)
from ._members import MemberRecord as MemberRecord
from ._memory import (
    check_memory as check_memory,
    members_within_limit as members_within_limit,
)
from ._metrics import (
    error_metrics as error_metrics,
    global_relative_error as global_relative_error,
    mean_relative_error as mean_relative_error,
    ridge_readout as ridge_readout,
    ridge_warm_start as ridge_warm_start,
)
from ._minibatch import MinibatchTrainer as MinibatchTrainer
from ._placement import (
    AbstractPlacement as AbstractPlacement,
    Sharded as Sharded,
    SharedSolve as SharedSolve,
    SingleDevice as SingleDevice,
    Vmapped as Vmapped,
)
from ._regularisers import (
    AbstractRegulariser as AbstractRegulariser,
    GramRegulariser as GramRegulariser,
    TikhonovRegulariser as TikhonovRegulariser,
)
from ._run import (
    TrainedSurrogate as TrainedSurrogate,
    evaluate_model as evaluate_model,
    load_run as load_run,
    train as train,
    train_cohort as train_cohort,
)
from ._rundir import (
    BASIS_FIELDS as BASIS_FIELDS,
    CHECKPOINT as CHECKPOINT,
    COHORT_FIELDS as COHORT_FIELDS,
    CONFIG as CONFIG,
    ERROR as ERROR,
    EVALUATION as EVALUATION,
    HISTORY as HISTORY,
    HORIZON_FIELDS as HORIZON_FIELDS,
    METRICS as METRICS,
    MODEL as MODEL,
    NORMALISATION as NORMALISATION,
    PLOT as PLOT,
    RUN_FILES as RUN_FILES,
    CohortDir as CohortDir,
    CohortLayout as CohortLayout,
    RunDir as RunDir,
    check_cohort as check_cohort,
    cohort_key as cohort_key,
    cohort_layout as cohort_layout,
    padded_degree as padded_degree,
)
from ._sampling import (
    AbstractSampler as AbstractSampler,
    EpochSampler as EpochSampler,
    ReplacementSampler as ReplacementSampler,
)
from ._save import save_run as save_run
from ._settings import (
    Checkpointing as Checkpointing,
    Evaluation as Evaluation,
    Stopping as Stopping,
)
from ._status import Status as Status
from ._summary import (
    MAX_COHORT as MAX_COHORT,
    parse_seeds as parse_seeds,
    summarise as summarise,
    summary_table as summary_table,
)
from ._trainer import (
    AbstractRun as AbstractRun,
    AbstractTrainer as AbstractTrainer,
    Evaluated as Evaluated,
    Outcome as Outcome,
    Problem as Problem,
)
