"""`medapt search` (cut-point search) and `medapt similarity` (per-unit SVCCA / PWCCA / CKA)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ._output import add_experiment_args, add_format_option, emit_json, emit_table

_METHODS = ("ttl", "probe", "svcca", "lwft")


def register(sub) -> None:
    p = sub.add_parser("search", help="find where to cut the backbone for the target task (TruncatedTL)",
                       description="Search the cut point of the backbone on the target task of CONFIG (its search: "
                       "section, or the defaults): ttl = fine-tune TTL@k at every stage end, then inside the best "
                       "stage (Peng et al.); probe = one frozen forward pass and a linear probe at every cut point, "
                       "then fine-tune the best TTL@k; svcca = fine-tune once, cut where SVCCA to the pretrained "
                       "model falls to chance; lwft = one more trainable unit while validation improves. Writes "
                       "search.csv, figures and report.html in the run directory (default runs/<name>-search); steps are reused, and a "
                       "directory searched before keeps its earlier methods.")
    add_experiment_args(p, "experiment YAML with a target task (examples/search.yaml)")
    p.add_argument("--method", action="append", choices=_METHODS, metavar="METHOD",
                   help="ttl | probe | svcca | lwft (repeatable; default: search.methods of CONFIG, else probe)")
    p.add_argument("--no-report", action="store_true", help="skip report.html")
    add_format_option(p)
    p.set_defaults(func=_search, log_info=True)

    p = sub.add_parser("similarity", help="SVCCA / PWCCA / CKA per unit between two models on the same images",
                       description="Compare two models of one backbone (e.g. ImageNet weights and a DAPT or fine-tuned "
                       "model from a run's steps/*/<hash>/weights.safetensors) unit by unit on the same images, in "
                       "float64 (centre, SVD to 99 % variance, CCA). Prints one row per cut point and method.")
    p.add_argument("--backbone", required=True, help="timm name (e.g. resnet50) or torchvision:<name>")
    p.add_argument("--a", required=True, metavar="WEIGHTS",
                   help="imagenet | embedded | random | a medapt weights.safetensors")
    p.add_argument("--b", required=True, metavar="WEIGHTS", help="the second model's weights (same forms)")
    p.add_argument("--images", required=True,
                   help="a .npy array (N, 3, H, W) normalised for the backbone, or a prepared dataset folder "
                   "(<data.root>/<name>-<hash>, e.g. .medapt-cache/data/phantom-<hash>)")
    p.add_argument("--split", default="train,val",
                   help="prepared dataset: the splits whose images are used (default train,val)")
    p.add_argument("--methods", default="svcca,pwcca,cka", help="comma-separated: svcca, pwcca, cka (default all)")
    p.add_argument("--max-images", type=int, default=2000, help="at most this many images (default 2000)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--out", help="also write the table to this CSV file")
    add_format_option(p)
    p.set_defaults(func=_similarity)


def _search(args: argparse.Namespace) -> int:
    from ..suite.search import run_search

    res = run_search(args.config, args.method, out=args.out, overrides=args.override, force=args.force,
                     report=not args.no_report)
    if args.format == "json":
        emit_json(res)
        return 0
    emit_table([[m, s, res["cut_points"][m]] for m, s in res["chosen"].items()], ["method", "chosen", "cut point"])
    print(f"\nsearch.csv: {res['search_csv']}" + (f"\nreport: {res['report']}" if res["report"] else "")
          + f"\n{res['seconds']} s; run directory: {res['run_dir']}")
    return 0


def _load_images(path: str, split: str, max_images: int):
    import numpy as np

    from ..errors import ConfigError

    p = Path(path)
    if p.is_dir():
        from ..data import load_prepared

        ds = load_prepared(p)
        rows = np.sort(np.concatenate([ds.indices(s.strip()) for s in split.split(",") if s.strip()]))
        images = ds.images
    elif p.suffix == ".npy" and p.is_file():
        images = np.load(p, mmap_mode="r")
        if images.ndim != 4 or images.shape[1] != 3:
            raise ConfigError(f"{p}: images must be (N, 3, H, W), got shape {images.shape}")
        rows = np.arange(len(images))
    else:
        raise ConfigError(f"--images {path!r} is neither a .npy file nor a prepared dataset folder")
    if len(rows) > max_images:
        rows = np.sort(np.random.default_rng(0).choice(rows, max_images, replace=False))
    return np.asarray(images[rows], dtype=np.float32)


def _similarity(args: argparse.Namespace) -> int:
    from .. import similarity as sim
    from ..atomic import atomic_write_csv

    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    for m in methods:
        sim.METHODS.get(m)
    images = _load_images(args.images, args.split, args.max_images)
    a = sim.load_model(args.backbone, args.a, image_size=images.shape[-1])
    b = sim.load_model(args.backbone, args.b, image_size=images.shape[-1])
    table = sim.compare_models(a, b, images, methods, batch_size=args.batch_size)
    if args.out:
        atomic_write_csv(table, Path(args.out))
    if args.format == "json":
        emit_json(table.to_dict("records"))
    else:
        emit_table([[r.cut_point, r.unit, r.method, f"{r.value:.4f}", r.dims_a, r.dims_b, r.n, r.note]
                    for r in table.itertuples()], ["k", "unit", "method", "value", "dims a", "dims b", "n", "note"])
    return 0
