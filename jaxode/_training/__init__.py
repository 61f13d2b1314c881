"""Training engine: configuration, losses, regularisers, metrics, the fit loop and run
directories."""

from ._build import build_model as build_model
from ._checkpoint import load_checkpoint as load_checkpoint
from ._checkpoint import save_checkpoint as save_checkpoint
from ._config import DataConfig as DataConfig
from ._config import ModelConfig as ModelConfig
from ._config import RunConfig as RunConfig
from ._config import TrainConfig as TrainConfig
from ._config import preset as preset
from ._config import presets as presets
from ._fit import FitResult as FitResult
from ._fit import epoch_order as epoch_order
from ._fit import fit as fit
from ._fit import fit_cohort as fit_cohort
from ._losses import AbstractLoss as AbstractLoss
from ._losses import L1Loss as L1Loss
from ._losses import MSELoss as MSELoss
from ._losses import RelativeL2Loss as RelativeL2Loss
from ._metrics import global_relative_error as global_relative_error
from ._metrics import mean_relative_error as mean_relative_error
from ._metrics import ridge_readout as ridge_readout
from ._metrics import ridge_warm_start as ridge_warm_start
from ._regularisers import AbstractRegulariser as AbstractRegulariser
from ._regularisers import GramRegulariser as GramRegulariser
from ._regularisers import TikhonovRegulariser as TikhonovRegulariser
from ._run import TrainedSurrogate as TrainedSurrogate
from ._run import evaluate_model as evaluate_model
from ._run import load as load
from ._run import train as train
from ._run import train_cohort as train_cohort
