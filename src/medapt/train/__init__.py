"""The phase-based training engine with the frozen-prefix cache."""

from .cache import CachePlan, build_prefix_cache, plan_cache, prefix_problems, state_digest
from .engine import TASK_TYPES, EngineConfig, PhaseResult, RunningPart, loss_for, train_phase
from .runtime import Runtime, resolve_device, seed_everything

__all__ = ["CachePlan", "build_prefix_cache", "plan_cache", "prefix_problems", "state_digest", "TASK_TYPES",
           "EngineConfig", "PhaseResult", "RunningPart", "loss_for", "train_phase", "Runtime", "resolve_device", "seed_everything"]
