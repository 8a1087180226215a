"""The phase-based training engine with the frozen-prefix cache, and the runtime it runs on."""

from .augment import AUGMENTATIONS, augmenter
from .cache import CachePlan, build_prefix_cache, plan_cache, prefix_problems, state_digest
from .engine import (TASK_TYPES, EngineConfig, PhaseFlops, PhaseResult, RunningPart, class_weight_vector, loss_for,
                     phase_flops, train_phase)
from .runtime import PRECISIONS, Runtime, available_devices, isolated_rng, resolve_device, seed_everything
from .validate import MONITOR_METRIC, predict

__all__ = ["AUGMENTATIONS", "augmenter", "CachePlan", "build_prefix_cache", "plan_cache", "prefix_problems",
           "state_digest", "MONITOR_METRIC", "TASK_TYPES", "EngineConfig", "PhaseFlops", "PhaseResult", "RunningPart",
           "class_weight_vector", "loss_for", "phase_flops", "predict", "train_phase", "PRECISIONS", "Runtime",
           "available_devices", "isolated_rng", "resolve_device", "seed_everything"]
