"""Cut-point search cost: the one-pass probe vs TruncatedTL's two-stage fine-tuning search (issue 12).

Runs, on the same prepared data, ``medapt search --method probe`` (one frozen forward pass, a
linear probe at every cut point; no fine-tuning) and ``medapt search --method ttl`` (fine-tune
``TTL@k`` at every stage end, then inside the best stage) at a small epoch budget, and prints one
JSON object:

* ``probe_seconds``, ``ttl_seconds`` and ``probe_vs_ttl_speedup`` — wall time of each search
  (data preparation excluded: it is done once, before either is timed);
* ``chosen`` — the chosen cut point of each method run (``--all`` adds svcca and lwft);
* ``spearman_probe_vs_finetune`` — Spearman correlation between the probe's scores and the
  fine-tuned validation scores over the cut points both evaluated (a finding, not a target), with
  ``n_common`` and both score lists.

Default: ResNet50 with ImageNet weights (downloaded by timm unless cached), 224 px, phantom data.
``--quick``: the embedded ImageNet EfficientNet-Lite0 (offline), 64 px, 16 images per class,
1 epoch — a few minutes at most on 2 idle cores.

Usage: python benchmarks/search.py [--quick] [--all] [--backbone resnet50] [--weights imagenet]
       [--image-size 224] [--n-per-class 40] [--epochs 3] [--device cpu] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import pandas as pd
import yaml
from scipy.stats import spearmanr

from medapt.suite.search import run_search


def config(root: Path, a: argparse.Namespace, **search) -> dict:
    return {
        "name": "bench-search", "seeds": [0], "strategies": ["ImageNet"],
        "backbone": {"name": a.backbone, "weights": a.weights},
        "schedule": {"epochs": {"finetune": a.epochs}},
        "engine": {"device": a.device},
        "data": {"image_size": a.image_size, "root": str(root / "data"),
                 "split": {"train": 0.6, "val": 0.2, "test": 0.2, "seed": 0},
                 "targets": {"tumor_type": {"dataset": {"format": "phantom", "task": "tumor_type",
                                                         "n_per_class": a.n_per_class}}}},
        "downstream": {"heads": ["model1"], "epochs": 1},
        "cost": {"track_energy": False, "inference": True, "inference_repeats": 1},
        "search": {"run_chosen": False, **search},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="EfficientNet-Lite0 (embedded weights), 64 px, 1 epoch")
    ap.add_argument("--all", action="store_true", help="also run the svcca and lwft searches")
    ap.add_argument("--backbone", default="resnet50")
    ap.add_argument("--weights", default="imagenet")
    ap.add_argument("--image-size", type=int, default=224)
    ap.add_argument("--n-per-class", type=int, default=40)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--keep", help="keep the run directories here (default: a temporary folder)")
    a = ap.parse_args()
    if a.quick:
        a.backbone, a.weights, a.image_size, a.n_per_class, a.epochs = "tf_efficientnet_lite0", "embedded", 64, 16, 1
    tmp = tempfile.TemporaryDirectory()
    root = Path(a.keep) if a.keep else Path(tmp.name)
    root.mkdir(parents=True, exist_ok=True)

    def search(name: str, method: str, **spec) -> tuple[dict, float]:
        path = root / f"{name}.yaml"
        path.write_text(yaml.safe_dump(config(root, a, methods=[method], **spec)))
        t0 = time.perf_counter()
        res = run_search(path, method, out=root / name, report=False, progress=False, force=True)
        return res, time.perf_counter() - t0

    search("warmup", "probe", probe_finetune=False, cut_points=[1])  # prepares the data once, loads the weights
    probe, t_probe = search("probe", "probe", probe_finetune=False)
    ttl, t_ttl = search("ttl", "ttl")
    chosen = {"probe": probe["cut_points"]["probe"], "ttl": ttl["cut_points"]["ttl"]}
    seconds = {"probe": round(t_probe, 2), "ttl": round(t_ttl, 2)}
    if a.all:
        for m in ("svcca", "lwft"):
            r, t = search(m, m)
            chosen[m], seconds[m] = r["cut_points"][m], round(t, 2)
    p = pd.read_csv(root / "probe" / "search.csv").set_index("cut_point")["probe_score"]
    f = pd.read_csv(root / "ttl" / "search.csv").set_index("cut_point")["val_score"].dropna()
    common = sorted(set(p.index) & set(f.index))
    rho = spearmanr(p[common], f[common]).statistic if len(common) >= 3 else float("nan")
    out = {
        "backbone": a.backbone, "weights": a.weights, "image_size": a.image_size,
        "images": 3 * a.n_per_class, "finetune_epochs": a.epochs, "device": a.device,
        "cut_points_probed": int(len(p)), "ttl_candidates_finetuned": int(len(f)),
        "probe_seconds": seconds["probe"], "ttl_seconds": seconds["ttl"],
        "probe_vs_ttl_speedup": round(t_ttl / t_probe, 2), "seconds": seconds, "chosen": chosen,
        "spearman_probe_vs_finetune": None if rho != rho else round(float(rho), 3), "n_common": len(common),
        "probe_scores": {int(k): round(float(p[k]), 4) for k in common},
        "finetune_scores": {int(k): round(float(f[k]), 4) for k in common},
        "machine": platform.processor() or platform.machine(),
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
