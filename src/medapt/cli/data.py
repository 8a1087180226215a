"""Data commands: ``medapt prepare``, ``medapt inspect-data``, ``medapt phantom preview``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ._output import add_format_option, add_set_option, emit_json, emit_table, registry_choices


def register(sub) -> None:
    p = sub.add_parser(
        "prepare",
        help="read the datasets of an experiment's `data:` section into the prepared-data cache",
        description="Read every dataset of CONFIG's `data:` section (source, targets, external sets) "
        "once into float16 memory-mapped arrays + a manifest, split by patient. Re-running with "
        "the same inputs and settings reuses the prepared folders.",
    )
    p.add_argument("config", type=Path, help="experiment YAML file with a `data:` section")
    p.add_argument("--out", type=Path, default=None, help="folder for prepared datasets (default: data.root)")
    p.add_argument("--mean", type=float, nargs="+", default=None, help="normalisation mean (default: the config's backbone, else ImageNet)")
    p.add_argument("--std", type=float, nargs="+", default=None, help="normalisation std (default: the config's backbone, else ImageNet)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_format_option(p)
    p.set_defaults(func=_prepare)

    p = sub.add_parser(
        "inspect-data",
        help="summarise a data source without writing anything",
        description="Read a source as `prepare` would and print the number of images, counts per "
        "class, patients, image sizes and every skipped or problematic file with its reason.",
        epilog="examples:\n  medapt inspect-data folder data/kaggle_bttc -o ignore=[no_tumor]\n"
        "  medapt inspect-data brats MICCAI_BraTS2020_TrainingData --format json\n"
        "  medapt inspect-data phantom -o task=grade -o n_per_class=20",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("source_format", choices=registry_choices("medapt.data", "READERS", "data format"), metavar="FORMAT",
                   help="the reader (data format): %(choices)s")
    p.add_argument("path", nargs="?", default=None, help="file or folder (not used by phantom)")
    add_set_option(p, "reader option (YAML value), repeatable, e.g. -o modality=t1ce", dest="opt", old=("--opt",))
    add_format_option(p)
    p.set_defaults(func=_inspect)

    p = sub.add_parser("phantom", help="the built-in phantom dataset")
    psub = p.add_subparsers(dest="phantom_command", metavar="COMMAND")
    q = psub.add_parser("preview", help="write a labelled grid of phantom images (PNG)")
    q.add_argument("--task", required=True, choices=registry_choices("medapt.data.spec", "PHANTOM_CLASSES", "phantom task"),
                   metavar="TASK", help="the phantom task: %(choices)s")
    q.add_argument("--n", type=int, default=8, help="images per class (default 8)")
    q.add_argument("--shift", action="store_true", help="the external-cohort variant")
    q.add_argument("--seed", type=int, default=0)
    q.add_argument("--size", type=int, default=64, help="image size in pixels (default 64)")
    q.add_argument("--out-file", dest="out", type=Path, default=None, metavar="FILE", help="output PNG (required)")
    q.add_argument("--out", dest="out", type=Path, help=argparse.SUPPRESS)  # the old spelling
    q.set_defaults(func=_preview)
    q = psub.add_parser("csv", help="write a small multi-label dataset: PNG images + a CheXpert-style label CSV",
                        description="Phantom slices as PNG files and labels.csv (Path, Patient, Abnormal, Neoplastic, "
                        "Vascular, Degenerative, Inflammatory: 1 / 0 / -1 uncertain / blank), for the csv reader's "
                        "multi-label path (examples/multilabel.yaml). Synthetic; not chest X-rays.")
    q.add_argument("out", type=Path, help="output folder (images/ and labels.csv are written in it)")
    q.add_argument("--n", type=int, default=40, help="images per disease class (default 40)")
    q.add_argument("--size", type=int, default=64, help="image size in pixels (default 64)")
    q.add_argument("--seed", type=int, default=0)
    q.add_argument("--uncertain", type=float, default=0.1, help="fraction of labels written as -1 (default 0.1)")
    q.set_defaults(func=_phantom_csv)
    q = psub.add_parser("images", help="write phantom images as PNG files, a folder per class (for `medapt predict`)")
    q.add_argument("out_dir", type=Path, metavar="DIR", help="output folder (DIR/<class>/<class>_<i>.png)")
    q.add_argument("--task", required=True, choices=registry_choices("medapt.data.spec", "PHANTOM_CLASSES", "phantom task"),
                   metavar="TASK", help="the phantom task: %(choices)s")
    q.add_argument("--n", type=int, default=4, help="images per class (default 4)")
    q.add_argument("--shift", action="store_true", help="the external-cohort variant")
    q.add_argument("--seed", type=int, default=1000, help="default 1000: other patients than a run's seed-0 phantoms")
    q.add_argument("--size", type=int, default=64, help="image size in pixels (default 64)")
    q.set_defaults(func=_phantom_images)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def _prepare(args) -> int:
    from ..suite.prepare import prepare_experiment_data

    prepared = prepare_experiment_data(args.config, root=args.out, mean=args.mean, std=args.std,
                                       progress=not args.no_progress and sys.stderr.isatty())
    rows = []
    for name, ds in prepared.items():
        m = ds.meta
        rows.append({
            "dataset": name, "path": str(ds.path), "n": len(ds), "task_type": ds.task_type,
            "classes": m["class_counts"], "splits": m["split_counts"], "n_patients": m["n_patients"],
            "skipped": len(m["skipped"]), "digest": ds.digest,
        })
    if args.format == "json":
        emit_json(rows)
    else:
        emit_table(
            [[r["dataset"], r["n"], ", ".join(f"{k} {v}" for k, v in r["classes"].items()),
              ", ".join(f"{k} {v}" for k, v in r["splits"].items()), r["n_patients"] or "-", r["skipped"], r["path"]]
             for r in rows],
            ["dataset", "images", "classes", "splits", "patients", "skipped", "folder"],
        )
    return 0


def _parse_opts(opts: list[str]) -> dict:
    import yaml

    from ..errors import ConfigError

    out = {}
    for o in opts:
        if "=" not in o:
            raise ConfigError(f"-o {o!r}: expected KEY=VALUE, e.g. -o modality=t1ce")
        k, v = o.split("=", 1)
        try:
            out[k.strip()] = yaml.safe_load(v) if v.strip() else v
        except yaml.YAMLError:
            out[k.strip()] = v
    return out


def _inspect(args) -> int:
    from ..data import inspect_source, parse_dataset_spec
    from ..errors import ConfigError

    d = {"format": args.source_format, **_parse_opts(args.opt)}
    if args.path is not None:
        d["path"] = args.path
    elif args.source_format != "phantom":
        raise ConfigError(f"inspect-data {args.source_format} needs a PATH (file or folder)")
    summary = inspect_source(parse_dataset_spec(d))
    if args.format == "json":
        emit_json(summary)
        return 0
    print(f"format {summary['format']} ({summary['task_type']}): {summary['n_images']} images, "
          f"{summary['n_patients'] if summary['n_patients'] is not None else 'no'} patient ids")
    if summary["patient_id_collisions"]:
        print("patient ids written in more than one way, treated as one patient each: " + "; ".join(
            f"{' = '.join(v)}" for v in summary["patient_id_collisions"].values()))
    emit_table([[c, n] for c, n in summary["classes"].items()], ["class", "images"])
    sizes = ", ".join(f"{k} ({v})" for k, v in list(summary["image_sizes"].items())[:8])
    print(f"image sizes: {sizes or '-'}")
    if summary["skipped"]:
        print(f"skipped {summary['n_skipped']} ({summary['n_bad']} bad):")
        for s in summary["skipped"][:50]:
            print(f"  {'BAD ' if s['bad'] else ''}{s['file']}: {s['reason']}")
        if len(summary["skipped"]) > 50:
            print(f"  … {len(summary['skipped']) - 50} more (use --format json for all)")
    return 0


def _preview(args) -> int:
    from ..data.preview import phantom_preview
    from ..errors import ConfigError

    if args.out is None:
        raise ConfigError("phantom preview needs --out-file FILE.png")

    out = phantom_preview(args.task, args.out, n=args.n, shift=args.shift, seed=args.seed, size=args.size)
    print(f"wrote {out}")
    return 0


def _phantom_csv(args) -> int:
    from ..data.phantom_csv import write_phantom_csv

    csv = write_phantom_csv(args.out, n_per_class=args.n, size=args.size, seed=args.seed, uncertain=args.uncertain)
    print(f"wrote {csv} and {args.out / 'images'}")
def _phantom_images(args) -> int:
    from ..data.phantom_files import write_phantom_images

    files = write_phantom_images(args.task, args.out_dir, n=args.n, shift=args.shift, seed=args.seed, size=args.size)
    print(f"wrote {len(files)} PNG files under {args.out_dir}")
    return 0
