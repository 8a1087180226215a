"""The experiment suite: config, planner, steps, executors, and `medapt run`."""

from .experiment import Experiment, experiment_from_dict, load_experiment
from .planner import Plan, plan_experiment
from .run import RunResult, collect_tables, environment, run_experiment
from .steps import Step, StepStore

__all__ = ["Experiment", "experiment_from_dict", "load_experiment", "Plan", "plan_experiment", "RunResult",
           "collect_tables", "environment", "run_experiment", "Step", "StepStore"]
