"""Ablation sweeps: a declared grid of run configurations, trained as cohorts, resumable."""

from ._executors import AbstractExecutor as AbstractExecutor
from ._executors import LocalExecutor as LocalExecutor
from ._executors import RayExecutor as RayExecutor
from ._plan import SweepPlan as SweepPlan
from ._plan import make_plan as make_plan
from ._report import sweep_report as sweep_report
from ._spec import Cell as Cell
from ._spec import SweepSpec as SweepSpec
from ._sweep import sweep as sweep
