"""Asymptotic probes: how trained models behave far outside their training domain.

Usage: `from jaxode import probes`; every probe returns a small result object that prints as a
table and converts to JSON (`as_dict`, `to_json`).
"""

from ._probes._common import (
    CONSTANT_EXP as CONSTANT_EXP,
    EXP_GROWTH as EXP_GROWTH,
    LINEAR as LINEAR,
    OSCILLATORY as OSCILLATORY,
    POLY as POLY,
    UNRESOLVED as UNRESOLVED,
    verdict_name as verdict_name,
)
from ._probes._distance import (
    ErrorDistanceResult as ErrorDistanceResult,
    error_vs_distance as error_vs_distance,
)
from ._probes._extrapolation import (
    ExtrapolationResult as ExtrapolationResult,
    relative_error as relative_error,
    symmetric_mape as symmetric_mape,
    trajectory_extrapolation as trajectory_extrapolation,
)
from ._probes._laws import (
    AbstractLaw as AbstractLaw,
    DampedOscillator as DampedOscillator,
    ExponentialDecay as ExponentialDecay,
    ExponentialGrowth as ExponentialGrowth,
    FreeFall as FreeFall,
    HarmonicOscillator as HarmonicOscillator,
    LogisticGrowth as LogisticGrowth,
    Lorenz63 as Lorenz63,
    LotkaVolterra as LotkaVolterra,
    Roessler as Roessler,
    largest_lyapunov_exponent as largest_lyapunov_exponent,
)
from ._probes._maps import LimitMapResult as LimitMapResult, limit_map as limit_map
from ._probes._minimal_ode import (
    MinimalODEResult as MinimalODEResult,
    minimal_ode as minimal_ode,
    minimal_ode_along_rays as minimal_ode_along_rays,
)
from ._probes._rays import RayLimitResult as RayLimitResult, ray_limit as ray_limit
from ._probes._report import probe_report as probe_report
from ._probes._slopes import (
    OscillationResult as OscillationResult,
    SlopeResult as SlopeResult,
    asymptotic_slope as asymptotic_slope,
    tail_oscillations as tail_oscillations,
)
from ._probes._spectrum import (
    TailSpectrumResult as TailSpectrumResult,
    tail_spectrum as tail_spectrum,
)
from ._probes._weights import (
    WeightAsymptoticsResult as WeightAsymptoticsResult,
    coefficient_asymptotics as coefficient_asymptotics,
    weight_asymptotics as weight_asymptotics,
)
