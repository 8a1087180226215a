"""Cost accounting: parameters, FLOPs, wall time and energy per phase, measured and estimated.

* :class:`PhaseMeter` — around every training phase / step; one ``costs.csv`` row each.
* :func:`count_flops`, :func:`training_flops_per_image`, :func:`count_params` — FLOPs counted by
  ``torch.utils.flop_counter.FlopCounterMode`` on the part that actually runs.
* :func:`green_algorithms`, :func:`parse_runtime` — the Green Algorithms estimator with versioned
  constant tables (reproduces Mehmood et al.'s Appendix B with table ``v1.1``).
* :func:`inference_cost`, :func:`throughput_probe`, :func:`project_seconds` — inference cost of
  a final model, and the measured-throughput projection behind ``medapt run --dry-run``.

See ``docs/cost.md``.
"""

from .energy import SOURCES, EnergyReading, EnergyTracker, nvml_status, prime_energy_tracker, rapl_status
from .flops import (
    count_flops,
    count_params,
    inference_cost,
    project_seconds,
    throughput_probe,
    training_flops_per_image,
)
from .green import (
    EnergyEstimate,
    HardwareProfile,
    format_runtime,
    get_hardware,
    green_algorithms,
    hardware_profiles,
    load_table,
    match_cpu_profile,
    match_gpu_profile,
    parse_runtime,
    table_versions,
)
from .meter import COST_COLUMNS, PhaseMeter, read_costs_csv, write_costs_csv

__all__ = [
    "PhaseMeter",
    "COST_COLUMNS",
    "write_costs_csv",
    "read_costs_csv",
    "count_flops",
    "count_params",
    "training_flops_per_image",
    "inference_cost",
    "throughput_probe",
    "project_seconds",
    "EnergyEstimate",
    "HardwareProfile",
    "green_algorithms",
    "parse_runtime",
    "format_runtime",
    "get_hardware",
    "hardware_profiles",
    "load_table",
    "table_versions",
    "match_cpu_profile",
    "match_gpu_profile",
    "EnergyReading",
    "EnergyTracker",
    "SOURCES",
    "rapl_status",
    "nvml_status",
    "prime_energy_tracker",
]
