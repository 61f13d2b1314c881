"""Ablation sweeps: a declared grid of run configurations, trained as cohorts, resumable."""

from ._command import add_parser as add_parser, report_parser as report_parser
from ._executors import (
    AbstractExecutor as AbstractExecutor,
    LocalExecutor as LocalExecutor,
    RayExecutor as RayExecutor,
)
from ._plan import SweepPlan as SweepPlan, make_plan as make_plan
from ._pruning import AbstractPruning as AbstractPruning, Halving as Halving
from ._report import sweep_report as sweep_report
from ._search import (
    AbstractDistribution as AbstractDistribution,
    AbstractSearchSampler as AbstractSearchSampler,
    Choice as Choice,
    IntRange as IntRange,
    LogUniform as LogUniform,
    RandomSampler as RandomSampler,
    Search as Search,
    TPESampler as TPESampler,
    Uniform as Uniform,
)
from ._search_run import run_search as run_search
from ._spec import Cell as Cell, SweepSpec as SweepSpec
from ._sweep import sweep as sweep
