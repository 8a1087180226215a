"""``medapt export`` and ``medapt predict``: a model out of the run directory, and scores for new images."""

from __future__ import annotations

import argparse
from pathlib import Path

from ._output import add_format_option, emit_json, emit_table

_EXPORT_EPILOG = """\
examples:
  medapt export demo-run --strategy DA --format timm --out-file export/DA.safetensors
  medapt export demo-run --strategy DA_L1SB --head model2 --task tumor_type --format onnx --out export/
  medapt export demo-run --strategy FTL --seed 1 --format torchscript --out-file ftl.pt
Beside the file, a JSON (its name + .json) holds the architecture, cut point, input size,
normalisation, class names and the line that loads it (timm.create_model / medapt.models.load /
onnxruntime). Strategies that only pre-train export with a downstream head (--head, default the
run's first) on --task (default the first); strategies that fine-tune export their own head.
"""

_PREDICT_EPILOG = """\
examples:
  medapt phantom images --task tumor_type --n 3 demo-images
  medapt predict export/DA.safetensors demo-images --out-file predictions.csv
  medapt predict export/DA.onnx scan.dcm more_scans/ --format json
Every input gives a row; a file that cannot be read is listed with status 'skipped' and why.
"""


def register(sub) -> None:
    p = sub.add_parser("export", help="export a strategy's model from a run (timm, TorchScript, ONNX)",
                       description="Write the model a strategy produced in RUN_DIR as a timm-loadable state dict "
                       "(timm's own key names), a TorchScript file or an ONNX file (dynamic batch size, checked "
                       "against torch with onnxruntime), with a JSON of its preprocessing and class names.",
                       epilog=_EXPORT_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dir", metavar="RUN_DIR", type=Path, help="the folder written by `medapt run --out`")
    p.add_argument("--strategy", required=True, help="a strategy of the run")
    p.add_argument("--seed", type=int, default=None, help="which seed (default: the run's first)")
    p.add_argument("--task", default=None, help="target task for the head (default: the run's first)")
    p.add_argument("--head", default=None, metavar="NAME",
                   help="'own' (the model's head) or a downstream head of the run, e.g. model1 (default: own for "
                   "strategies that fine-tune on the task, else the run's first downstream head)")
    p.add_argument("--format", dest="model_format", choices=["timm", "torchscript", "onnx"], default="timm",
                   help="timm: .safetensors with timm key names; torchscript: .pt; onnx: .onnx (default timm)")
    p.add_argument("--out", type=Path, default=None, metavar="DIR",
                   help="folder for <strategy>-seed<N>.<suffix> and its JSON (default: the current folder)")
    p.add_argument("--out-file", type=Path, default=None, metavar="FILE", help="the file to write (instead of --out)")
    p.set_defaults(func=_export)

    p = sub.add_parser("predict", help="score images (files, folders, DICOM) with an exported model",
                       description="Apply a model written by `medapt export` to image files, folders (searched "
                       "recursively) and DICOM files, with the preprocessing of its training data, and print or "
                       "write one row per image: predicted class, its probability, every class's probability.",
                       epilog=_PREDICT_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", type=Path, metavar="MODEL", help="exported .safetensors, .pt or .onnx (its JSON beside it)")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files, folders, DICOM files")
    p.add_argument("--out", type=Path, default=None, metavar="DIR", help="write DIR/predictions.csv")
    p.add_argument("--out-file", type=Path, default=None, metavar="FILE", help="write this CSV file")
    p.add_argument("--batch-size", type=int, default=32)
    add_format_option(p)
    p.set_defaults(func=_predict)


def _export(args: argparse.Namespace) -> int:
    from ..deploy import export_model
    from ..errors import ConfigError

    if args.out is not None and args.out_file is not None:
        raise ConfigError("give --out DIR or --out-file FILE, not both")
    res = export_model(args.run_dir, args.strategy, fmt=args.model_format, out_file=args.out_file,
                       out_dir=args.out, seed=args.seed, task=args.task, head=args.head)
    m = res.metadata
    print(f"wrote {res.path} ({args.model_format}) and {res.metadata_path}")
    print(f"  {m['strategy']} seed {m['seed']}, {m['head_used']}; classes {m['classes']}; input "
          f"{m['input_size'][1]}x{m['input_size'][2]}, mean {m['mean']}, std {m['std']}")
    if "onnx_check" in m:
        print(f"  onnxruntime vs torch: max abs difference {m['onnx_check']['max_abs_diff_vs_torch']:.2e}")
    print(f"  load: {m['load']}")
    return 0


def _predict(args: argparse.Namespace) -> int:
    from ..atomic import atomic_write_text
    from ..deploy import predict, predictions_frame
    from ..errors import ConfigError

    if args.out is not None and args.out_file is not None:
        raise ConfigError("give --out DIR or --out-file FILE, not both")
    rows = predict(args.model, args.images, batch_size=args.batch_size)
    df = predictions_frame(rows)
    target = args.out_file if args.out_file is not None else (args.out / "predictions.csv" if args.out else None)
    if target is not None:
        atomic_write_text(target, df.to_csv(index=False))
    if args.format == "json":
        emit_json(df.to_dict(orient="records"))
    else:
        emit_table([[r["file"] + (f" [{r['frame']}]" if r["frame"] != "" else ""), r["status"], r["prediction"],
                     f"{r['score']:.3f}" if r["status"] == "ok" else "", r["reason"]] for r in df.astype(object).fillna("").to_dict("records")],
                   ["file", "status", "prediction", "score", "note"])
        skipped = int((df["status"] == "skipped").sum())
        print(f"\n{len(df) - skipped} scored, {skipped} skipped" + (f"; wrote {target}" if target else ""))
    return 0
