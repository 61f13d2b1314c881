"""Bundled, generated (DCR) and user data sets, and the spiral ODE task."""

from ._bundled import (
    BUNDLED as BUNDLED,
    TIME_SERIES as TIME_SERIES,
    load_cdr as load_cdr,
    load_dataset as load_dataset,
    load_elm as load_elm,
)
from ._core import PROTOCOLS as PROTOCOLS, Affine as Affine, Dataset as Dataset
from ._dcr import load_dcr as load_dcr
from ._readers import load_inputs as load_inputs
from ._spiral import (
    TrajectoryData as TrajectoryData,
    spiral as spiral,
    spiral_batch as spiral_batch,
    spiral_rate as spiral_rate,
)
from ._user import load_file as load_file
