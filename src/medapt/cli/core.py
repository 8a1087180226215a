"""`medapt strategies`, `medapt params`, `medapt pretrain`."""

from __future__ import annotations

import argparse

from ._output import add_experiment_args, add_format_option, emit_json, emit_table


def register(sub) -> None:
    from ..strategies import BN_POLICIES

    p = sub.add_parser("strategies", help="list the strategy catalogue",
                       description="List every registered strategy with its family, what it keeps of the backbone "
                       "and its phases (data: source = DAPT task, target = each downstream task; trainable units, "
                       "learning rate, epochs), then the parametric families (FAMILY@k). Defaults follow the papers.")
    p.add_argument("--strategies-file", help="also load user strategies from this YAML file")
    add_format_option(p)
    p.set_defaults(func=_strategies)

    p = sub.add_parser("params", help="parameter counts of a strategy on a backbone",
                       description="Build the model a strategy trains (no weights loaded) and print its total "
                       "parameters and the trainable parameters of each phase (Table 1 of Mehmood et al.).")
    p.add_argument("--backbone", required=True, help="timm name (e.g. resnet50) or torchvision:<name>")
    p.add_argument("--strategy", required=True, help="strategy name or FAMILY@k (`medapt strategies` lists them)")
    p.add_argument("--classes", type=int, default=1, help="head outputs: 1 for a binary task, C for C classes (default 1)")
    p.add_argument("--bn", choices=list(BN_POLICIES), default="frozen", help="BatchNorm policy (default frozen)")
    p.add_argument("--image-size", type=int, default=224, help="input size; only a flatten head depends on it (default 224)")
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


def _params(args: argparse.Namespace) -> int:
    from ..strategies import params_report

    _load_user(args)
    rep = params_report(args.backbone, args.strategy, n_outputs=args.classes, bn_policy=args.bn,
                        image_size=args.image_size)
    if args.format == "json":
        emit_json(rep)
        return 0
    print(f"{rep['strategy']} on {rep['backbone']} ({rep['n_outputs']} output(s), BN {rep['bn_policy']})")
    emit_table([["total", f"{rep['total']:,}"]] + [[p["name"], f"{p['trainable']:,}"] for p in rep["phases"]],
               ["", "parameters (trainable per phase)"])
    return 0


def _pretrain(args: argparse.Namespace) -> int:
    from ..suite import run_experiment

    result = run_experiment(args.config, out=args.out, overrides=args.override, force=args.force, only="pretrain")
    print(f"pre-training done: {result.run_dir}")
    return 0
