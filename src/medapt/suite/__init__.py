"""The experiment suite: config, step kinds, planners, executors, and `medapt run` (docs/architecture.md)."""

from .experiment import Experiment, experiment_from_dict, load_experiment
from .graph import Plan, Step
from .kinds import KINDS, StepKind
from .planners import PLANNERS, Planner, extend_plan, plan_experiment
from .run import RunResult, environment, resolve_runtime, run_experiment
from .store import StepStore
from .tables import collect_tables

__all__ = ["Experiment", "experiment_from_dict", "load_experiment", "Plan", "Step", "KINDS", "StepKind", "PLANNERS",
           "Planner", "extend_plan", "plan_experiment", "RunResult", "environment", "resolve_runtime", "run_experiment",
           "StepStore", "collect_tables"]
