"""The cost meter around one training phase or step, and the run directory's ``costs.csv``.

A :class:`PhaseMeter` records wall time, images, FLOPs, parameters, cache use and energy of one
phase or step and turns them into one ``costs.csv`` row (columns as in ``docs/run-directory.md``)::

    with PhaseMeter(strategy="DA_L1SB", step="pretrain", phase="phase2", device=dev) as m:
        m.set_params(*count_params(model))
        m.set_cache(True, "cut point 16 (after layer4.1)")
        m.add_flops(cache_build_flops)                        # the one forward pass over the data
        m.set_flops_per_image(training_flops_per_image(tail, example))
        for epoch in ...: ...; m.add_images(len(batch))
    rows.append(m.row())
    write_costs_csv(rows, run_dir / "costs.csv")
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from ..atomic import atomic_write_csv
from ..errors import CostError
from .energy import EnergyReading, EnergyTracker
from .green import DEFAULT_TABLE

__all__ = ["PhaseMeter", "COST_COLUMNS", "write_costs_csv", "read_costs_csv"]

log = logging.getLogger(__name__)

#: ``costs.csv`` columns, in order (docs/run-directory.md).
COST_COLUMNS: tuple[str, ...] = (
    "strategy",
    "seed",
    "step",
    "phase",
    "seconds",
    "images",
    "flops_per_image",
    "flops_total",
    "kwh",
    "energy_source",
    "energy_note",
    "params_total",
    "params_trainable",
    "cached",
    "cache_note",
    "shared_by",
    "reused_seconds",
    "reused_flops",
    "standalone_seconds",
    "standalone_flops",
    "standalone_kwh",
    "resumes",
)


class PhaseMeter:
    """Context manager around one training phase or step: wall time, images, FLOPs, energy.

    Args:
        strategy: strategy name (for a shared step: the first strategy that needs it).
        step: ``"pretrain"``, ``"extract"``, ``"head"``, …
        phase: phase name for ``pretrain`` (``"phase1"``…), else the step detail.
        seed: suite seed. Default 0.
        device: where the work runs; CUDA is synchronised before reading the clock, and with
            ``cuda:N`` only GPU N's energy is tracked.
        track_energy: run CodeCarbon's offline tracker (default). ``False`` gives
            ``kwh = NaN`` and ``energy_source = "none"``.
        output_dir: where CodeCarbon may write its own ``emissions.csv`` (default: nowhere).
        tracking_mode: CodeCarbon's ``"process"`` (default) or ``"machine"``.
        country_iso_code: CodeCarbon's offline location (does not change kWh). Default ``"USA"``.
        energy_table: Green Algorithms constant table of the fallback estimate when CodeCarbon
            cannot run (``"v1.1"``, the default, or ``"latest"``); named in ``energy_note``.

    ``flops_total = images × flops_per_image + added FLOPs``. ``__exit__`` never raises because
    of the energy tracker; an exception inside the block propagates after the meter stops.

    Work this step reused instead of doing — a frozen-prefix cache another step built — is
    recorded with :meth:`add_reused` (its seconds and FLOPs when it was built), so the row also
    says what the step would cost **alone** (``standalone_*`` = own + reused; the reused work's
    energy prorated by this step's own energy per second). A strategy's standalone cost is then the
    sum over all its steps, whatever order the suite ran them in.
    """

    def __init__(
        self,
        *,
        strategy: str,
        step: str,
        phase: str,
        seed: int = 0,
        device: str | torch.device = "cpu",
        track_energy: bool = True,
        output_dir: Path | None = None,
        tracking_mode: str = "process",
        country_iso_code: str = "USA",
        energy_table: str = DEFAULT_TABLE,
    ):
        self.strategy = str(strategy)
        self.step = str(step)
        self.phase = str(phase)
        self.seed = int(seed)
        self.device = torch.device(device)
        self.track_energy = bool(track_energy)
        self.output_dir = output_dir
        self.tracking_mode = tracking_mode
        self.country_iso_code = country_iso_code
        self.energy_table = str(energy_table)
        self.images = 0
        self.flops_per_image = 0.0
        self.extra_flops = 0.0
        self.params_total: int | None = None
        self.params_trainable: int | None = None
        self.cached = False
        self.cache_note = ""
        self.shared_by: list[str] = [self.strategy]
        self.reused_seconds = 0.0
        self.reused_flops = 0.0
        self.seconds: float | None = None
        self.energy: EnergyReading | None = None
        self.resumes = 0  # earlier sessions of this phase (interrupted, then resumed from a checkpoint)
        self._prior = {"seconds": 0.0, "images": 0, "extra_flops": 0.0}
        self._t0: float | None = None
        self._tracker: EnergyTracker | None = None

    # ---------------------------------------------------------------- context manager
    def __enter__(self) -> PhaseMeter:
        if self.track_energy:
            self._tracker = EnergyTracker(
                device=self.device,
                output_dir=self.output_dir,
                tracking_mode=self.tracking_mode,
                country_iso_code=self.country_iso_code,
                table=self.energy_table,
            )
            self._tracker.start()
        self._sync()
        self._t0 = time.perf_counter()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._sync()
        self.seconds = time.perf_counter() - (self._t0 if self._t0 is not None else time.perf_counter())
        if self._tracker is not None:
            try:
                self.energy = self._tracker.stop(self.seconds)
            except Exception as err:  # never let accounting break training
                self.energy = EnergyReading(math.nan, "none", f"energy tracker failed: {err}")
        else:
            self.energy = EnergyReading(math.nan, "none", "energy tracking switched off (track_energy=False)")
        log.info(
            "cost %s/%s/%s: %.2f s, %d images, %.3g FLOPs, %s kWh (%s)",
            self.strategy, self.step, self.phase, self.seconds, self.images, self.flops_total,
            f"{self.energy.kwh:.3g}", self.energy.source,
        )

    def _sync(self) -> None:
        if self.device.type == "cuda" and torch.cuda.is_available():
            torch.cuda.synchronize(self.device)

    # ---------------------------------------------------------------- recording
    def set_params(self, total: int, trainable: int) -> None:
        """Total and trainable parameters of the model in this phase."""
        if int(trainable) > int(total) or int(trainable) < 0:
            raise CostError(f"set_params: trainable ({trainable}) must be between 0 and total ({total}).")
        self.params_total, self.params_trainable = int(total), int(trainable)

    def set_cache(self, cached: bool, note: str) -> None:
        """Whether the frozen-prefix cache was used, and the cut point or why not."""
        self.cached, self.cache_note = bool(cached), str(note)

    def set_shared_by(self, strategies: list[str]) -> None:
        """Strategies that reuse this step's result (default: this strategy only)."""
        self.shared_by = [str(s) for s in strategies]

    def add_images(self, n: int) -> None:
        """Count ``n`` images that went through the running part (call once per batch)."""
        if int(n) < 0:
            raise CostError(f"add_images: n must be >= 0, got {n}.")
        self.images += int(n)

    def add_flops(self, flops: float) -> None:
        """Add FLOPs outside the per-image training cost (e.g. the one cache-building forward pass)."""
        if not math.isfinite(float(flops)) or flops < 0:
            raise CostError(f"add_flops: flops must be a finite number >= 0, got {flops!r}.")
        self.extra_flops += float(flops)

    def set_flops_per_image(self, flops: float) -> None:
        """Training FLOPs per image (forward + backward) of the part that runs."""
        if not math.isfinite(float(flops)) or flops < 0:
            raise CostError(f"set_flops_per_image: flops must be a finite number >= 0, got {flops!r}.")
        self.flops_per_image = float(flops)

    def add_reused(self, seconds: float, flops: float) -> None:
        """Work another step did that this one reused (e.g. building a frozen-prefix cache): it is
        not in this step's time, but in what the step would cost alone."""
        if not (math.isfinite(float(seconds)) and seconds >= 0 and math.isfinite(float(flops)) and flops >= 0):
            raise CostError(f"add_reused: seconds and flops must be finite and >= 0, got {seconds!r}, {flops!r}.")
        self.reused_seconds += float(seconds)
        self.reused_flops += float(flops)

    def checkpoint(self, images: int) -> dict[str, Any]:
        """What the phase has cost so far (earlier sessions included), for the training checkpoint:
        ``images`` counted by the caller since this session started."""
        now = time.perf_counter() - (self._t0 if self._t0 is not None else time.perf_counter())
        return {"seconds": self._prior["seconds"] + now, "images": self._prior["images"] + self.images + int(images),
                "extra_flops": self._prior["extra_flops"] + self.extra_flops, "resumes": self.resumes}

    def resume(self, saved: dict[str, Any] | None) -> None:
        """Continue from a checkpoint's :meth:`checkpoint` figures: they are added to this session's
        (seconds, images, FLOPs; energy prorated by seconds) and ``resumes`` counts one more."""
        if not saved:
            return
        self._prior = {"seconds": float(saved.get("seconds", 0.0)), "images": int(saved.get("images", 0)),
                       "extra_flops": float(saved.get("extra_flops", 0.0))}
        self.resumes = int(saved.get("resumes", 0)) + 1

    @property
    def flops_total(self) -> float:
        return (self._prior["images"] + self.images) * self.flops_per_image + self.extra_flops + self._prior["extra_flops"]

    def row(self) -> dict[str, Any]:
        """One ``costs.csv`` row (keys exactly :data:`COST_COLUMNS`). Call after the ``with`` block."""
        if self.seconds is None or self.energy is None:
            raise CostError(f"PhaseMeter.row() for {self.strategy}/{self.step}/{self.phase} called before the meter stopped.")
        seconds, kwh, note = self.seconds + self._prior["seconds"], self.energy.kwh, self.energy.note
        if self.resumes:  # earlier sessions: measured time and work; their energy at this session's rate
            kwh = kwh * seconds / self.seconds if self.seconds > 0 else kwh
            note = (f"{note}; " if note else "") + (f"resumed {self.resumes}x: the earlier sessions' "
                                                    f"{self._prior['seconds']:.1f} s are charged at this session's "
                                                    "energy per second")
        return {
            "strategy": self.strategy,
            "seed": self.seed,
            "step": self.step,
            "phase": self.phase,
            "seconds": seconds,
            "images": self.images + self._prior["images"],
            "flops_per_image": self.flops_per_image,
            "flops_total": self.flops_total,
            "kwh": kwh,
            "energy_source": self.energy.source,
            "energy_note": note,
            "params_total": self.params_total,
            "params_trainable": self.params_trainable,
            "cached": self.cached,
            "cache_note": self.cache_note,
            "shared_by": ";".join(self.shared_by),
            "reused_seconds": self.reused_seconds,
            "reused_flops": self.reused_flops,
            "standalone_seconds": seconds + self.reused_seconds,
            "standalone_flops": self.flops_total + self.reused_flops,
            # the reused work's energy at this step's own rate (same machine): kWh per second × seconds
            "standalone_kwh": (kwh * (seconds + self.reused_seconds) / seconds if seconds > 0 else kwh),
            "resumes": self.resumes,
        }


def write_costs_csv(rows: list[dict], path: Path) -> None:
    """Write ``costs.csv`` atomically (:mod:`medapt.atomic`: a temporary file beside it, then renamed).

    Every row must have exactly the :data:`COST_COLUMNS` keys; they are written in that order.
    """
    path = Path(path)
    rows = [r if "resumes" in r else {**r, "resumes": 0} for r in rows]  # cost.json written before the column
    for i, r in enumerate(rows):
        missing = [c for c in COST_COLUMNS if c not in r]
        extra = [k for k in r if k not in COST_COLUMNS]
        if missing or extra:
            raise CostError(
                f"costs.csv row {i} ({r.get('strategy')}/{r.get('step')}/{r.get('phase')}): "
                f"missing columns {missing}, unknown columns {extra}; use PhaseMeter.row() to build rows."
            )
    atomic_write_csv(pd.DataFrame(list(rows), columns=list(COST_COLUMNS)), path)


def read_costs_csv(path: Path) -> pd.DataFrame:
    """Read a ``costs.csv``; checks the columns and restores the types (``cached`` as bool,
    notes as strings, counts as nullable integers)."""
    path = Path(path)
    if not path.is_file():
        raise CostError(f"No costs table at {path}: expected the costs.csv of a medapt run directory.")
    try:
        df = pd.read_csv(path, keep_default_na=True)
    except (ValueError, OSError) as exc:
        raise CostError(f"Cannot read {path}: {exc}. Re-run the run or delete the file.") from exc
    missing = [c for c in COST_COLUMNS if c not in df.columns]
    if missing:
        raise CostError(f"{path} lacks columns {missing}; expected {list(COST_COLUMNS)}.")
    for c in ("strategy", "step", "phase", "energy_source", "energy_note", "cache_note", "shared_by"):
        df[c] = df[c].fillna("").astype(str)
    for c in ("seed", "images", "params_total", "params_trainable"):
        df[c] = pd.to_numeric(df[c], errors="coerce").astype("Int64")
    for c in ("seconds", "flops_per_image", "flops_total", "kwh"):
        df[c] = pd.to_numeric(df[c], errors="coerce").astype(float)
    df["cached"] = df["cached"].map(lambda v: str(v).strip().lower() in ("true", "1", "yes"))
    return df[list(COST_COLUMNS)]
