"""Energy of one span of work, from CodeCarbon's offline tracker, labelled by where it came from.

CodeCarbon (``OfflineEmissionsTracker``) decides per component how it gets power:

* CPU: Intel RAPL counters when ``/sys/class/powercap/intel-rapl`` is readable (a measurement);
  otherwise its ``cpu_load`` mode — a TDP constant from its CPU table (or a generic 85 W) scaled
  by the CPU load — or a plain TDP constant. Containers and VMs usually hide RAPL.
* GPU: NVIDIA's NVML energy counters through ``pynvml`` (a measurement) when ``nvidia-smi``
  and ``pynvml`` work.
* RAM: always its RAM power model (an estimate from memory size).

We read which one the tracker actually used *after* stopping it (``tracker._hardware``: the
``CPU`` object's ``_mode`` and whether a ``GPU`` object is present) and label the figure:

==============================  ===================================================================
``measured-rapl``               CPU energy from RAPL counters
``measured-nvml``               GPU energy from NVML
``estimated-codecarbon-tdp``    CPU power from CodeCarbon's TDP constant × load (no counter)
``estimated-green-algorithms``  CodeCarbon could not run; our estimate from runtime and a profile
``none``                        energy tracking was switched off
==============================  ===================================================================

When both a GPU and a CPU figure contribute, the labels are joined with ``+``, estimated parts
first, e.g. ``estimated-codecarbon-tdp+measured-nvml``: the figure is measured only if every part
is, and a check of the prefix alone errs on the side of "estimated". RAM is always CodeCarbon's estimate; the note
gives its share. A constant is never labelled as measured.
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .green import DEFAULT_TABLE, green_algorithms, match_cpu_profile, match_gpu_profile

__all__ = [
    "EnergyReading",
    "EnergyTracker",
    "rapl_status",
    "nvml_status",
    "prime_energy_tracker",
    "SOURCES",
]

log = logging.getLogger(__name__)

SOURCES = (
    "measured-rapl",
    "measured-nvml",
    "measured-powermetrics",
    "measured-powergadget",
    "estimated-codecarbon-tdp",
    "estimated-green-algorithms",
    "none",
)

_RAPL_DIR = "/sys/class/powercap/intel-rapl"
_warned: set[str] = set()


@dataclass
class EnergyReading:
    """Energy of one span: total kWh, its source label and a human-readable note."""

    kwh: float
    source: str
    note: str
    components: dict[str, float] = field(default_factory=dict)  # "cpu"/"gpu"/"ram" -> kWh


def rapl_status(rapl_dir: str = _RAPL_DIR) -> tuple[bool, str]:
    """Whether Intel RAPL energy counters are readable here, and why not.

    >>> ok, why = rapl_status("/nonexistent")
    >>> ok, "does not exist" in why
    (False, True)
    """
    base = Path(rapl_dir)
    if not base.exists():
        return False, (
            f"RAPL not readable: {rapl_dir} does not exist (no powercap driver exposed; usual in "
            "containers, VMs and non-Intel/AMD CPUs)"
        )
    files = sorted(base.glob("intel-rapl:*/energy_uj")) + sorted(base.glob("energy_uj"))
    if not files:
        return False, f"RAPL not readable: no energy_uj counters under {rapl_dir}"
    try:
        files[0].read_text()
    except PermissionError:
        return False, (
            f"RAPL not readable: permission denied on {files[0]} (since Linux 5.10 only root can read it; "
            "`sudo chmod -R a+r /sys/class/powercap/intel-rapl` allows it)"
        )
    except OSError as exc:
        return False, f"RAPL not readable: {files[0]}: {exc}"
    return True, f"RAPL readable at {rapl_dir}"


def nvml_status() -> tuple[bool, str]:
    """Whether NVIDIA's NVML can be initialised here, and why not (no GPU, no driver, no pynvml)."""
    try:
        import pynvml  # type: ignore[import-not-found]
    except ImportError:
        return False, "NVML unavailable: the pynvml package is not installed"
    try:
        pynvml.nvmlInit()
        n = pynvml.nvmlDeviceGetCount()
    except Exception as exc:  # pynvml.NVMLError and driver problems
        return False, f"NVML unavailable: {exc}"
    if n == 0:
        return False, "NVML unavailable: no NVIDIA GPU found"
    return True, f"NVML sees {n} GPU(s)"


def _warn_once(key: str, msg: str) -> None:
    if key not in _warned:
        _warned.add(key)
        log.warning(msg)
    else:
        log.debug(msg)


def _cpu_model() -> str | None:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or None


def _describe_cpu_constant(hw: Any) -> str:
    """Where CodeCarbon's CPU power constant came from, in words."""
    tdp, model = getattr(hw, "_tdp", None), getattr(hw, "_model", "?")
    if getattr(hw, "_is_generic_tdp", False):
        return f"generic CPU power constant {tdp} W (CPU {model!r} not matched)"
    try:
        from codecarbon.core.cpu import DEFAULT_POWER_PER_CORE
        from codecarbon.core.util import count_cpus

        threads = count_cpus()
        if tdp is not None and abs(float(tdp) - threads * DEFAULT_POWER_PER_CORE) < 1e-9:
            return (
                f"CPU power constant {tdp} W = its default {DEFAULT_POWER_PER_CORE} W/thread × {threads} threads "
                f"(CPU {model!r} not in its table)"
            )
    except Exception:  # pragma: no cover - CodeCarbon internals changed
        pass
    return f"CPU power constant {tdp} W from its table for {model!r}"


def prime_energy_tracker(background: bool = True) -> threading.Thread | None:
    """Do CodeCarbon's one-off CPU lookup (about 1 s: a fuzzy match of the CPU name against its
    table) now, in a background thread by default, so the first :class:`PhaseMeter` starts fast.

    Call it once at the start of a run, e.g. while data is being prepared. Safe to skip.
    """

    def work() -> None:
        try:
            from codecarbon.core import cpu
            from codecarbon.core.hardware_cache import get_cached_tdp

            logging.getLogger("codecarbon").setLevel(logging.ERROR)
            get_cached_tdp(cpu)
        except Exception as exc:  # pragma: no cover - optional speed-up only
            log.debug("prime_energy_tracker: %s", exc)

    if not background:
        work()
        return None
    t = threading.Thread(target=work, name="medapt-codecarbon-prime", daemon=True)
    t.start()
    return t


class EnergyTracker:
    """Start/stop wrapper around CodeCarbon's ``OfflineEmissionsTracker`` that never raises.

    Args:
        device: the device the work runs on; for ``cuda:N`` only GPU ``N`` is tracked.
        output_dir: where CodeCarbon may write its own ``emissions.csv``; ``None`` (default)
            writes nothing anywhere.
        country_iso_code: for CodeCarbon's offline carbon intensity (energy does not depend on it).
        tracking_mode: ``"process"`` (default: CPU and RAM of this process and its children, right
            on a shared machine) or ``"machine"``.
        table: Green Algorithms constant table of the fallback estimate (default
            :data:`~medapt.cost.green.DEFAULT_TABLE`, ``v1.1``); the ``energy_note`` names it.

    The first tracker in a process costs about a second (CodeCarbon probes the hardware once and
    caches it); later ones start in milliseconds.
    """

    def __init__(
        self,
        *,
        device: str | torch.device = "cpu",
        output_dir: Path | None = None,
        country_iso_code: str = "USA",
        tracking_mode: str = "process",
        table: str = DEFAULT_TABLE,
    ):
        self.device = torch.device(device)
        self.output_dir = Path(output_dir) if output_dir is not None else None
        self.country_iso_code = country_iso_code
        self.tracking_mode = tracking_mode
        self.table = table
        self._tracker: Any = None
        self._error: str | None = None
        self._t0: float | None = None
        self.start_seconds = 0.0

    def start(self) -> None:
        self._t0 = time.perf_counter()
        try:
            self._tracker = self._make_tracker()
            self._tracker.start()
        except Exception as exc:  # CodeCarbon missing, misconfigured, or failing to probe
            self._error = f"{type(exc).__name__}: {exc}"
            self._tracker = None
        self.start_seconds = time.perf_counter() - self._t0
        log.debug("energy tracker started in %.3f s", self.start_seconds)

    def _make_tracker(self) -> Any:
        from codecarbon import OfflineEmissionsTracker

        # CodeCarbon logs INFO lines from its constructor before applying log_level
        logging.getLogger("codecarbon").setLevel(logging.ERROR)

        kwargs: dict[str, Any] = dict(
            country_iso_code=self.country_iso_code,
            log_level="error",
            tracking_mode=self.tracking_mode,
            allow_multiple_runs=True,
        )
        if self.output_dir is not None:
            self.output_dir.mkdir(parents=True, exist_ok=True)
            kwargs.update(output_dir=str(self.output_dir), output_methods=["csv"])
        else:
            # nothing written anywhere, in particular no emissions.csv in the working directory
            kwargs.update(output_dir=tempfile.gettempdir(), output_methods=[])
        if self.device.type == "cuda" and self.device.index is not None:
            kwargs["gpu_ids"] = [self.device.index]
        try:
            return OfflineEmissionsTracker(**kwargs)
        except TypeError:  # CodeCarbon < 3 has save_to_file instead of output_methods
            save = bool(kwargs.pop("output_methods"))
            return OfflineEmissionsTracker(save_to_file=save, **kwargs)

    def stop(self, seconds: float | None = None) -> EnergyReading:
        """Stop and return the reading; falls back to a Green Algorithms estimate on failure."""
        elapsed = seconds if seconds is not None else (time.perf_counter() - (self._t0 or time.perf_counter()))
        tr = self._tracker
        data = None
        if tr is not None:
            try:
                tr.stop()
                data = getattr(tr, "final_emissions_data", None)
            except Exception as exc:  # pragma: no cover - CodeCarbon's stop() already suppresses
                self._error = f"{type(exc).__name__}: {exc}"
        if data is None:
            why = self._error or "CodeCarbon returned no data (its start() failed silently)"
            return self._fallback(elapsed, f"CodeCarbon could not run ({why})")
        try:
            return self._classify(tr, data)
        except Exception as exc:  # pragma: no cover - CodeCarbon internals changed
            return self._fallback(elapsed, f"could not read CodeCarbon's tracker state ({exc})")

    # ------------------------------------------------------------------ classification
    def _classify(self, tr: Any, data: Any) -> EnergyReading:
        hardware = list(getattr(tr, "_hardware", []) or [])
        comps = {
            "cpu": float(data.cpu_energy or 0.0),
            "gpu": float(data.gpu_energy or 0.0),
            "ram": float(data.ram_energy or 0.0),
        }
        kwh = float(data.energy_consumed or 0.0)
        measured: list[str] = []
        estimated: list[str] = []
        notes: list[str] = []
        for hw in hardware:
            kind = type(hw).__name__
            if kind == "CPU":
                mode = getattr(hw, "_mode", "?")
                if mode in ("intel_rapl", "windows_emi"):
                    measured.append("measured-rapl")
                    notes.append(f"CPU {comps['cpu']:.3g} kWh measured by RAPL")
                elif mode == "intel_power_gadget":
                    measured.append("measured-powergadget")
                    notes.append(f"CPU {comps['cpu']:.3g} kWh measured by Intel Power Gadget")
                else:
                    estimated.append("estimated-codecarbon-tdp")
                    ok, why = rapl_status()
                    reason = why if not ok else "RAPL readable but CodeCarbon did not use it"
                    notes.append(
                        f"CPU {comps['cpu']:.3g} kWh estimated by CodeCarbon ({mode} mode: "
                        f"{_describe_cpu_constant(hw)} × {self.tracking_mode} CPU load, avg "
                        f"{float(data.cpu_power or 0):.3g} W); {reason}"
                    )
                    _warn_once(
                        "cpu-tdp",
                        f"energy: {reason}. CPU energy is CodeCarbon's TDP-based estimate "
                        "(energy_source 'estimated-codecarbon-tdp'), not a measurement.",
                    )
            elif kind == "GPU":
                measured.append("measured-nvml")
                notes.append(f"GPU {comps['gpu']:.3g} kWh measured by NVML (avg {float(data.gpu_power or 0):.3g} W)")
            elif kind == "AppleSiliconChip":
                if "measured-powermetrics" not in measured:
                    measured.append("measured-powermetrics")
                notes.append(f"{getattr(hw, 'chip_part', 'chip')} measured by powermetrics")
            elif kind == "RAM":
                notes.append(
                    f"RAM {comps['ram']:.3g} kWh estimated by CodeCarbon's RAM power model "
                    f"(avg {float(data.ram_power or 0):.3g} W)"
                )
        if self.device.type == "cuda" and "measured-nvml" not in measured:
            ok, why = nvml_status()
            notes.append(f"GPU energy not included: {why}")
            _warn_once("nvml", f"energy: work runs on {self.device} but GPU energy is not measured: {why}")
        # estimated parts first: a sum that includes an estimate reads as an estimate even to a
        # reader that only checks the prefix ("measured-…")
        labels = estimated + measured
        source = "+".join(labels) if labels else "estimated-codecarbon-tdp"
        note = "; ".join(notes) + f"; CodeCarbon {self._cc_version()} offline, {self.tracking_mode} mode, PUE 1"
        return EnergyReading(kwh=kwh, source=source, note=note, components=comps)

    @staticmethod
    def _cc_version() -> str:
        try:
            from codecarbon import __version__

            return str(__version__)
        except Exception:  # pragma: no cover
            return "?"

    def _fallback(self, seconds: float, why: str) -> EnergyReading:
        """Green Algorithms estimate from wall time and a declared profile of this machine."""
        table = self.table
        cpu_profile, cpu_note = match_cpu_profile(_cpu_model(), table)
        cores = max(1, min(torch.get_num_threads(), os.cpu_count() or 1))
        try:
            import psutil

            mem_gb = psutil.Process().memory_info().rss / 1e9
        except Exception:  # pragma: no cover - psutil ships with CodeCarbon
            mem_gb = 0.0
        hours = max(seconds, 0.0) / 3600.0
        est = green_algorithms(hours, hardware=cpu_profile.name, count=cores, memory_gb=mem_gb, pue=1.0, table=table)
        kwh = est.kwh
        parts = [f"{cores} core(s) × {cpu_profile.tdp_per_core_w} W, usage 1, {mem_gb:.2f} GB × "
                 f"{est.memory_power_w_per_gb} W/GB, PUE 1"]
        comps = {"cpu": hours * cores * cpu_profile.tdp_per_core_w / 1000.0, "ram": hours * mem_gb * est.memory_power_w_per_gb / 1000.0}
        if self.device.type == "cuda" and torch.cuda.is_available():
            name = torch.cuda.get_device_name(self.device)
            gpu_profile, gpu_note = match_gpu_profile(name, table)
            g = green_algorithms(hours, hardware=gpu_profile.name, count=1, pue=1.0, table=table)
            kwh += g.kwh
            comps["gpu"] = g.kwh
            parts.append(gpu_note)
        note = f"{why}; Green Algorithms estimate (table {table}): {cpu_note}; " + "; ".join(parts)
        _warn_once("fallback", f"energy: {why}; using the Green Algorithms estimate (estimated-green-algorithms)")
        return EnergyReading(kwh=kwh, source="estimated-green-algorithms", note=note, components=comps)
