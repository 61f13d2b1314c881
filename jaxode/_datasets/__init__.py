"""Bundled, generated (DCR) and user data sets, and the spiral ODE task."""

from ._bundled import BUNDLED as BUNDLED
from ._bundled import PROTOCOLS as PROTOCOLS
from ._bundled import load_cdr as load_cdr
from ._bundled import load_dataset as load_dataset
from ._bundled import load_elm as load_elm
from ._core import Affine as Affine
from ._core import Dataset as Dataset
from ._dcr import load_dcr as load_dcr
from ._readers import load_inputs as load_inputs
from ._spiral import TrajectoryData as TrajectoryData
from ._spiral import spiral as spiral
from ._spiral import spiral_batch as spiral_batch
from ._spiral import spiral_rate as spiral_rate
from ._user import load_file as load_file
