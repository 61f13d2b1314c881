"""Ablation sweeps: a declared grid of run configurations, trained as cohorts, resumable."""

from ._command import add_parser as add_parser, report_parser as report_parser
from ._executors import (
    AbstractExecutor as AbstractExecutor,
    LocalExecutor as LocalExecutor,
    RayExecutor as RayExecutor,
)
from ._plan import SweepPlan as SweepPlan, make_plan as make_plan
from ._report import sweep_report as sweep_report
from ._spec import Cell as Cell, SweepSpec as SweepSpec
from ._sweep import sweep as sweep
