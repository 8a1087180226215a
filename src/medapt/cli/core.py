"""`medapt strategies`, `medapt params`, `medapt pretrain`."""

from __future__ import annotations

import argparse

from ._output import add_experiment_args, add_format_option, emit_json, emit_table, registry_choices


#: printed under the PyTorch counts: why they differ from the paper's Table 1
PARAMS_NOTE = ("PyTorch counting (timm/torchvision): the ResNet convolutions have no biases, and BatchNorm running "
               "mean/variance are buffers, not parameters. Mehmood et al.'s Table 1 counts Keras's ResNet50, whose "
               "convolutions have biases and whose BatchNorm moving statistics count as non-trainable parameters "
               "(ResNet50: +26,560 biases, +53,120 statistics); `medapt params --keras` counts that way.")

_PARAMS_EPILOG = """Mehmood et al., Table 1 (Keras ResNet50, binary head): DA 23,589,761 total, 2,049 / 23,483,521
trainable. PyTorch (timm) ResNet50 has no conv biases and keeps BatchNorm statistics as buffers:
  medapt params --backbone resnet50 --strategy DA            # 23,510,081; 2,049 / 23,456,961
  medapt params --backbone resnet50 --strategy DA --keras    # 23,589,761; 2,049 / 23,483,521
"""


def register(sub) -> None:
    p = sub.add_parser("strategies", help="list the strategy catalogue",
                       description="List every registered strategy with its family, what it keeps of the backbone "
                       "and its phases (data: source = DAPT task, target = each downstream task; trainable units, "
                       "learning rate, epochs), then the parametric families (FAMILY@k). Defaults follow the papers.")
    p.add_argument("--strategies-file", help="also load user strategies from this YAML file")
    p.add_argument("--backbone", metavar="NAME",
                   help="also show what each strategy keeps and trains on this backbone (its unit names and output "
                   "stride): how 'first blocks' and 'last sub-blocks' map onto the backbone's family")
    add_format_option(p)
    p.set_defaults(func=_strategies)

    p = sub.add_parser("params", help="parameter counts of a strategy on a backbone",
                       description="Build the model a strategy trains (no weights loaded) and print its total "
                       "parameters and the trainable parameters of each phase (Table 1 of Mehmood et al.). "
                       "PyTorch counts by default; --keras counts as Keras does (the paper's Table 1).",
                       epilog=_PARAMS_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backbone", required=True, help="timm name (e.g. resnet50) or torchvision:<name>")
    p.add_argument("--strategy", required=True, help="strategy name or FAMILY@k (`medapt strategies` lists them)")
    p.add_argument("--classes", type=int, default=1, help="head outputs: 1 for a binary task, C for C classes (default 1)")
    p.add_argument("--bn", choices=registry_choices("medapt.strategies", "BN_POLICIES", "BN policy"), default="frozen",
                   metavar="POLICY", help="BatchNorm policy: %(choices)s (default frozen)")
    p.add_argument("--image-size", type=int, default=224, help="input size; only a flatten head depends on it (default 224)")
    p.add_argument("--keras", action="store_true",
                   help="count as Keras does, as in the paper's Table 1: conv biases added, BatchNorm moving "
                   "mean/variance counted as non-trainable parameters")
    p.add_argument("--strategies-file", help="also load user strategies from this YAML file")
    add_format_option(p)
    p.set_defaults(func=_params)

    p = sub.add_parser("pretrain", help="run the DAPT phases of the configured strategies on the source task",
                       description="Prepare the source dataset and run every pre-training phase of the strategies "
                       "in CONFIG (shared phases once), writing checkpoints, weights and a per-phase log under "
                       "the run directory. `medapt run` does this and the downstream evaluation.")
    add_experiment_args(p)
    p.set_defaults(func=_pretrain, log_info=True)


def _load_user(args: argparse.Namespace) -> None:
    if getattr(args, "strategies_file", None):
        from ..strategies import load_yaml

        load_yaml(args.strategies_file)


def _strategies(args: argparse.Namespace) -> int:
    from ..strategies import STRATEGIES

    _load_user(args)
    from ..strategies import describe_keep

    items = [s.to_dict() for _, s in STRATEGIES.items()]
    families = STRATEGIES.families()
    if args.backbone:
        return _mapping(args, [strat for _, strat in STRATEGIES.items()])
    if args.format == "json":
        emit_json({"strategies": items, "families": [{"name": f"{f}@k", "description": d} for f, d in families.items()]})
        return 0
    rows = []
    for (_, strat), s in zip(STRATEGIES.items(), items):
        phases = "; ".join(f"{p['name']} ({p['data']}): {p['trainable']} lr={p['lr']:g} x{p['epochs']}"
                           for p in s["phases"]) or "-"
        rows.append([s["name"], s["family"], describe_keep(strat), phases])
    emit_table(rows, ["name", "family", "keeps", "phases"])
    if families:
        print("\nfamilies (k = a cut point of the backbone, e.g. TTL@8):")
        emit_table([[f"{f}@k", d] for f, d in families.items()], ["name", "description"])
    return 0


def _mapping(args: argparse.Namespace, strategies) -> int:
    from ..strategies import mapping_on

    maps = [mapping_on(args.backbone, s) for s in strategies]
    if args.format == "json":
        emit_json(maps)
        return 0
    print(f"on {args.backbone} ({maps[0]['family']} family; units in forward order, output stride after the last kept unit)")
    rows = []
    for m in maps:
        keeps = (f"units 1..{m['n_units']} ({m['first_unit']} … {m['last_unit']}), stride {m['output_stride']}")
        trains = "; ".join(f"{p['name']}: " + (", ".join(p["units"]) if len(p["units"]) <= 3 else
                                               f"{p['units'][0]} … {p['units'][-1]} ({len(p['units'])} units)")
                           + " + head" if p["units"] else f"{p['name']}: head" for p in m["phases"]) or "-"
        rows.append([m["strategy"], m["keep"], keeps, trains])
    emit_table(rows, ["name", "keep", "keeps on this backbone", "trains"])
    return 0


def _params(args: argparse.Namespace) -> int:
    _load_user(args)
    if args.keras:
        from ..cost.keras_params import keras_params_report

        rep = keras_params_report(args.backbone, args.strategy, n_outputs=args.classes, bn_policy=args.bn)
    else:
        from ..strategies import params_report

        rep = params_report(args.backbone, args.strategy, n_outputs=args.classes, bn_policy=args.bn,
                            image_size=args.image_size)
        rep = {**rep, "convention": "pytorch", "note": PARAMS_NOTE}
    if args.format == "json":
        emit_json(rep)
        return 0
    print(f"{rep['strategy']} on {rep['backbone']} ({rep['n_outputs']} output(s), BN {rep['bn_policy']}, "
          f"{'Keras' if args.keras else 'PyTorch'} counting)")
    emit_table([["total", f"{rep['total']:,}"]] + [[p["name"], f"{p['trainable']:,}"] for p in rep["phases"]],
               ["", "parameters (trainable per phase)"])
    if "saving" in rep:
        print(f"saving: {rep['saving']:,} parameters ({rep['saving'] / rep['unreshaped_total']:.1%}) against the "
              f"unslimmed model's {rep['unreshaped_total']:,}")
    if args.keras:
        print(f"{rep['rule']}: PyTorch {rep['torch_total']:,} + {rep['conv_biases']:,} conv biases + "
              f"{rep['bn_statistics']:,} BatchNorm statistics.")
        if rep["note"]:
            print(f"Note: {rep['note']}.")
    else:
        print(PARAMS_NOTE)
    return 0


def _pretrain(args: argparse.Namespace) -> int:
    from ..suite import run_experiment

    result = run_experiment(args.config, out=args.out, overrides=args.override, force=args.force, only="pretrain")
    print(f"pre-training done: {result.run_dir}")
    return 0
