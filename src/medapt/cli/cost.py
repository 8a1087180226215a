"""``medapt energy``: the Green Algorithms estimate of a computation's energy and carbon."""

from __future__ import annotations

import argparse

from ._output import add_format_option, emit_json, emit_table

_EPILOG = """\
energy = runtime × (count × power per core × usage + memory GB × W/GB) × PUE; CO2e = energy ×
carbon intensity (Lannelongue et al., Green Algorithms, 2021). Example, Mehmood et al. Appendix B
(DA_L1SB, 67.93 kWh; the default table v1.1 is the one the paper used):
  medapt energy --hardware tpu-v2 --memory-gb 35 --runtime 154:37.967
The later constants (TPU v2 280 W, 0.08 W/GB, PUE 1.56) give 68.22 kWh for the same runtime:
  medapt energy --hardware tpu-v2 --memory-gb 35 --runtime 154:37.967 --table latest
"""


def register(sub) -> None:
    p = sub.add_parser(
        "energy",
        help="estimate energy (kWh) and carbon (gCO2e) from a runtime, the Green Algorithms way",
        description="Estimate the energy and carbon of a computation from its runtime and a declared "
        "hardware profile, with the Green Algorithms formula and versioned constant tables.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--hardware", metavar="NAME", help="hardware profile, e.g. tpu-v2, tesla-v100, any-cpu (--list)")
    p.add_argument("--runtime", metavar="H:MM|HOURS", help="wall time as hours:minutes (154:37.967, 2:30) or decimal hours (2.5)")
    p.add_argument("--table", default=None, metavar="VERSION",
                   help="constant table: v1.1 (default; the constants of Mehmood et al.'s Table B1) or latest")
    p.add_argument("--count", type=int, default=1, help="CPU cores, or GPUs/TPUs (default: 1)")
    p.add_argument("--memory-gb", type=float, default=0.0, help="memory available in GB (default: 0)")
    p.add_argument("--pue", type=float, default=None, help="power usage effectiveness (default: the table's, 1.67 in v1.1)")
    p.add_argument("--usage", type=float, default=1.0, help="core usage factor in (0, 1] (default: 1)")
    p.add_argument("--carbon-intensity", type=float, default=None, metavar="G_PER_KWH",
                   help="gCO2e per kWh (default: the table's world average, 475)")
    p.add_argument("--list", action="store_true", help="list the hardware profiles of the table and exit")
    add_format_option(p)
    p.set_defaults(func=_energy, _parser=p)


def _energy(args) -> int:
    from ..cost.green import DEFAULT_TABLE, green_algorithms, hardware_profiles, load_table, parse_runtime

    table = args.table or DEFAULT_TABLE
    if args.list:
        load_table(table)  # unknown table -> error listing the known ones
        profiles = sorted(hardware_profiles(table).values(), key=lambda h: (h.kind, h.name))
        if args.format == "json":
            emit_json([{"name": h.name, "model": h.model, "kind": h.kind, "tdp_per_core_w": h.tdp_per_core_w,
                        "cores": h.cores} for h in profiles])
        else:
            emit_table([(h.name, h.kind, h.model, h.tdp_per_core_w, h.cores or "") for h in profiles],
                       ["name", "kind", "model", "W per core/device", "cores"])
        return 0
    missing = [o for o, v in (("--hardware", args.hardware), ("--runtime", args.runtime)) if v is None]
    if missing:
        args._parser.error("the following arguments are required: " + ", ".join(missing) + " (or --list)")
    est = green_algorithms(
        parse_runtime(args.runtime),
        hardware=args.hardware,
        count=args.count,
        usage=args.usage,
        memory_gb=args.memory_gb,
        pue=args.pue,
        table=table,
        carbon_intensity=args.carbon_intensity,
    )
    d = est.to_dict()
    d["runtime"] = args.runtime
    if args.format == "json":
        emit_json(d)
    else:
        print(f"kwh     {est.kwh:.2f}")
        print(f"co2e_g  {est.co2e_g:.0f}")
        print(
            f"({est.model}: {est.count} × {est.tdp_per_core_w:g} W × usage {est.usage:g} + {est.memory_gb:g} GB × "
            f"{est.memory_power_w_per_gb:g} W/GB = {est.power_w:.2f} W; × {est.runtime_h:.4f} h × PUE {est.pue:g}; "
            f"{est.carbon_intensity:g} gCO2e/kWh; table {est.table})"
        )
    return 0
