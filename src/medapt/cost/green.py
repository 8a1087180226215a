"""The Green Algorithms energy estimator, with its versioned constant tables.

Energy in kWh from a runtime and a declared hardware profile, the way the Green Algorithms
calculator does it (Lannelongue, Grealey & Inouye, *Green Algorithms: Quantifying the Carbon
Footprint of Computation*, Advanced Science 2021)::

    E (kWh) = t (h) × (n_cores × P_core (W) × usage + memory (GB) × P_mem (W/GB)) × PUE / 1000
    CO2e (g) = E × carbon intensity (gCO2e/kWh)

The constants (TDP per core of CPUs, GPUs and TPUs, memory power, default PUE, carbon intensity)
change between versions of the calculator, so they ship as versioned JSON tables in
``medapt/cost/tables/``: ``v1.1`` (TPU v2 = 250 W, 0.3725 W/GB, PUE 1.67 — the constants behind
Mehmood et al.'s Appendix B, and the default, :data:`DEFAULT_TABLE`, so that the paper's Table B1
is reproduced without options) and ``latest`` (a later snapshot: TPU v2 = 280 W, 0.08 W/GB,
PUE 1.56; for DA's 215:56.988 h of Table B1 it gives 95.27 kWh instead of the paper's 94.86 —
the higher TPU power and the lower memory power and PUE nearly cancel). Nothing here is measured; every figure is an estimate, labelled as one and with the table
version it used.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass
from functools import lru_cache
from importlib import resources
from typing import Any

from ..errors import CostError, UnknownNameError

__all__ = [
    "EnergyEstimate",
    "HardwareProfile",
    "green_algorithms",
    "parse_runtime",
    "format_runtime",
    "table_versions",
    "load_table",
    "hardware_profiles",
    "get_hardware",
    "match_cpu_profile",
    "match_gpu_profile",
    "DEFAULT_TABLE",
]

#: the table that reproduces Mehmood et al.'s Table B1; ``cost.energy_table`` in an experiment
DEFAULT_TABLE = "v1.1"
_TABLE_PREFIX = "green_algorithms_"
RUNTIME_FORMAT = ("H:MM[.frac] (hours:minutes, fractional minutes allowed, e.g. 154:37.967) or decimal hours "
                  "(e.g. 2.5 = 2:30)")


@dataclass(frozen=True)
class HardwareProfile:
    """One row of a hardware table: a CPU (power per core) or an accelerator (power per device)."""

    name: str  # lookup key, e.g. "tpu-v2", "xeon-gold-6148", "any-cpu"
    model: str  # the name as the Green Algorithms table spells it
    kind: str  # "cpu", "gpu", "tpu" or "soc" (a system on chip, e.g. Apple M-series: power per device)
    tdp_per_core_w: float  # for CPUs per core, for GPUs/TPUs per device
    tdp_w: float | None = None
    cores: int | None = None
    source: str = ""


@dataclass(frozen=True)
class EnergyEstimate:
    """The result of :func:`green_algorithms` with every constant that went into it."""

    kwh: float
    co2e_g: float
    hardware: str
    table: str
    power_w: float  # draw before PUE: count × P_core × usage + memory × P_mem
    pue: float
    runtime_h: float
    count: int
    usage: float
    memory_gb: float
    tdp_per_core_w: float
    memory_power_w_per_gb: float
    carbon_intensity: float
    model: str = ""
    kind: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _slug(s: str) -> str:
    s = re.sub(r"\((r|tm)\)", "", s.lower())
    return re.sub(r"[^a-z0-9]+", "-", s).strip("-")


def table_versions() -> list[str]:
    """Versions of the constant tables shipped with the package (e.g. ``["latest", "v1.1"]``)."""
    files = resources.files("medapt.cost") / "tables"
    out = []
    for f in files.iterdir():
        n = f.name
        if n.startswith(_TABLE_PREFIX) and n.endswith(".json"):
            out.append(n[len(_TABLE_PREFIX) : -len(".json")])
    return sorted(out)


@lru_cache(maxsize=None)
def load_table(version: str = DEFAULT_TABLE) -> dict[str, Any]:
    """The raw constant table ``version`` (a dict; see ``medapt/cost/tables/*.json``)."""
    versions = table_versions()
    if version not in versions:
        raise UnknownNameError(
            "Green Algorithms table", version, versions, hint="Known tables: " + ", ".join(versions) + "."
        )
    path = resources.files("medapt.cost") / "tables" / f"{_TABLE_PREFIX}{version}.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:  # pragma: no cover - a broken install
        raise CostError(f"Cannot read the packaged constant table {path}: {exc}. Reinstall medapt.") from exc


def hardware_profiles(table: str = DEFAULT_TABLE) -> dict[str, HardwareProfile]:
    """All hardware of a table, by lookup name."""
    return {h["name"]: HardwareProfile(**h) for h in load_table(table)["hardware"]}


def _strip_vendor(slug: str) -> str:
    return re.sub(r"^(nvidia|amd|intel|google)-", "", slug)


def get_hardware(name: str, table: str = DEFAULT_TABLE) -> HardwareProfile:
    """Look a hardware profile up by name (case, spaces and vendor prefix do not matter).

    ``"tpu-v2"``, ``"TPU v2"``, ``"TPU2"``, ``"NVIDIA Tesla T4"`` and ``"tesla-t4"`` all work.
    Raises :class:`~medapt.errors.UnknownNameError` listing the known names.
    """
    profiles = hardware_profiles(table)
    key = _slug(name)
    candidates = {key, _strip_vendor(key), re.sub(r"^tpu-?(\d)", r"tpu-v\1", key)}
    for p in profiles.values():
        keys = {p.name, _slug(p.model), _strip_vendor(p.name)}
        if candidates & keys:
            return p
    names = sorted(profiles)
    raise UnknownNameError(
        "hardware",
        name,
        names,
        hint=f"Known in table {table}: " + ", ".join(names) + ". `medapt energy --list` shows their TDPs.",
    )


def match_cpu_profile(cpu_model: str | None, table: str = DEFAULT_TABLE) -> tuple[HardwareProfile, str]:
    """The table's CPU profile for a CPU model string as the OS reports it, and a note.

    ``"Intel(R) Xeon(R) Gold 6148 CPU @ 2.40GHz"`` matches ``xeon-gold-6148``. A model that no
    table row matches (virtual CPUs often report just ``"Intel(R) Xeon(R) Processor"``) gets the
    table's ``any-cpu`` profile, and the note says so.
    """
    return _match_profile(cpu_model, "cpu", table, _slug, "W/core")


def match_gpu_profile(gpu_name: str | None, table: str = DEFAULT_TABLE) -> tuple[HardwareProfile, str]:
    """Like :func:`match_cpu_profile` for a GPU name (``torch.cuda.get_device_name()``)."""
    return _match_profile(gpu_name, "gpu", table, lambda n: _strip_vendor(_slug(n)), "W")


def _match_profile(name: str | None, kind: str, table: str, slug, unit: str) -> tuple[HardwareProfile, str]:
    """The longest table row of ``kind`` whose name stands in ``slug(name)``, else ``any-<kind>``."""
    profiles = [p for p in hardware_profiles(table).values() if p.kind == kind and p.name != f"any-{kind}"]
    default = hardware_profiles(table)[f"any-{kind}"]
    what = kind.upper()
    if name:
        s = "-" + slug(name) + "-"
        # longest match first so "core-i9-10900kf" wins over "core-i9-10900k"
        for p in sorted(profiles, key=lambda p: -len(p.name)):
            if f"-{_strip_vendor(p.name)}-" in s:
                return p, f"{what} {name!r} matched profile {p.name} ({p.tdp_per_core_w} {unit}, table {table})"
    return default, (
        f"{what} {name or 'unknown'!r} is not in table {table}; used its default profile "
        f"'any-{kind}' ({default.tdp_per_core_w} {unit})"
    )


_RUNTIME_RE = re.compile(r"^\s*(\d+):(\d{1,2}(?:\.\d*)?)\s*$")
_HOURS_RE = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*$")


def parse_runtime(s: str) -> float:
    """Parse a Green Algorithms runtime ``"H:MM[.frac]"`` (hours:minutes), or decimal hours ``"2.5"``, into hours.

    Minutes may carry a fraction, as in Mehmood et al.'s Appendix B: ``"154:37.967"`` is
    154 h 37.967 min = 154.63278 h. Raises :class:`~medapt.errors.CostError` showing the
    expected format when the string does not parse or the minutes are 60 or more.

    >>> round(parse_runtime("1:30"), 3)
    1.5
    """
    m = _RUNTIME_RE.match(str(s))
    if not m and _HOURS_RE.match(str(s)):  # decimal hours: "2.5" = 2:30
        return float(s)
    if not m:
        raise CostError(f"Cannot parse runtime {s!r}: expected {RUNTIME_FORMAT}.")
    hours, minutes = int(m.group(1)), float(m.group(2))
    if minutes >= 60:
        raise CostError(
            f"Cannot parse runtime {s!r}: minutes must be below 60 (got {minutes:g}); expected {RUNTIME_FORMAT}."
        )
    return hours + minutes / 60.0


def format_runtime(hours: float) -> str:
    """Inverse of :func:`parse_runtime`: ``1.5`` → ``"1:30.000"``."""
    h = int(hours)
    return f"{h}:{(hours - h) * 60:06.3f}"


def _check(name: str, value: float, lo: float, hi: float = math.inf, lo_open: bool = False) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise CostError(f"{name} must be a number, got {value!r}.") from None
    bad = not math.isfinite(v) or v > hi or (v <= lo if lo_open else v < lo)
    if bad:
        rng = f"{'>' if lo_open else '>='} {lo:g}" + ("" if hi == math.inf else f" and <= {hi:g}")
        raise CostError(f"{name} must be {rng}, got {value!r}.")
    return v


def green_algorithms(
    runtime_h: float,
    *,
    hardware: str,
    count: int = 1,
    usage: float = 1.0,
    memory_gb: float = 0.0,
    pue: float | None = None,
    table: str = DEFAULT_TABLE,
    carbon_intensity: float | None = None,
) -> EnergyEstimate:
    """Energy and carbon of a computation, estimated with the Green Algorithms formula.

    Args:
        runtime_h: wall time in hours (see :func:`parse_runtime` for ``"H:MM.frac"`` strings).
        hardware: a name from the table (``"tpu-v2"``, ``"tesla-v100"``, ``"xeon-gold-6148"``,
            ``"any-cpu"``…; ``medapt energy --list``).
        count: number of CPU cores (for a CPU profile) or of devices (GPU/TPU). Default 1.
        usage: core usage factor in (0, 1]. Default 1.0 (the calculator's default).
        memory_gb: memory available to the job in GB, at the table's W/GB. Default 0.
        pue: power usage effectiveness; default the table's value for an unknown data centre
            (1.67 in v1.1, 1.56 in latest). Pass 1.0 for a personal computer.
        table: constant table version, ``"v1.1"`` (default: :data:`DEFAULT_TABLE`, the constants of
            Mehmood et al.'s Table B1) or ``"latest"``.
        carbon_intensity: gCO2e/kWh; default the table's world average (475).

    Returns:
        :class:`EnergyEstimate` with ``kwh``, ``co2e_g`` and every constant used.

    Example (Mehmood et al., Appendix B, DA_L1SB: 67.93 kWh):

    >>> e = green_algorithms(parse_runtime("154:37.967"), hardware="tpu-v2", table="v1.1", memory_gb=35)
    >>> round(e.kwh, 2)
    67.93
    """
    t = load_table(table)
    hw = get_hardware(hardware, table)
    runtime_h = _check("runtime_h", runtime_h, 0.0)
    if isinstance(count, bool) or int(count) != count or count < 1:
        raise CostError(f"count must be a whole number >= 1 (cores for a CPU, devices for a GPU/TPU), got {count!r}.")
    usage = _check("usage", usage, 0.0, 1.0, lo_open=True)
    memory_gb = _check("memory_gb", memory_gb, 0.0)
    pue = t["pue"]["unknown"] if pue is None else _check("pue", pue, 1.0)
    ci = t["carbon_intensity_g_per_kwh"]["WORLD"] if carbon_intensity is None else _check(
        "carbon_intensity", carbon_intensity, 0.0
    )
    mem_w = t["memory_power_w_per_gb"]
    power_w = int(count) * hw.tdp_per_core_w * usage + memory_gb * mem_w
    kwh = runtime_h * power_w * pue / 1000.0
    return EnergyEstimate(
        kwh=kwh,
        co2e_g=kwh * ci,
        hardware=hw.name,
        table=t["version"],
        power_w=power_w,
        pue=float(pue),
        runtime_h=runtime_h,
        count=int(count),
        usage=usage,
        memory_gb=memory_gb,
        tdp_per_core_w=hw.tdp_per_core_w,
        memory_power_w_per_gb=mem_w,
        carbon_intensity=float(ci),
        model=hw.model,
        kind=hw.kind,
    )
