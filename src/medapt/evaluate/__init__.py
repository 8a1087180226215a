"""Downstream evaluation (DESIGN §5): heads on frozen features, per-epoch metrics, summaries, tests.

* :func:`train_head` — Model 1 / Model 2 / linear heads (Mehmood et al.) trained with Adam on
  frozen features, metrics after every epoch on every evaluation split.
* :func:`roc_auc`, :func:`auprc`, :func:`accuracy` — binary, macro one-vs-rest multiclass and
  mean per-label multi-label metrics (scikit-learn underneath).
* :func:`summarize`, :func:`external_dip`, :func:`aggregate_seeds`, :func:`paired_ttest` — pure
  pandas summaries of the ``metrics.csv`` long table.
* :func:`delong_test` — two models on one test set (DeLong et al. 1988).
* :func:`bootstrap_auc_ci` — one model on one test set: percentile bootstrap over test images
  (over patients when ids are given). Across seeds, :func:`t_interval`.
"""

from __future__ import annotations

from .bootstrap import bootstrap_auc_ci
from .delong import delong_test
from .heads import HEADS, HeadResult, build_head, train_head
from .metrics import METRICS, TASK_TYPES, UndefinedMetricWarning, accuracy, auprc, per_label_auc, roc_auc
from .summary import METRIC_COLUMNS, aggregate_seeds, external_dip, paired_ttest, summarize, t_interval

__all__ = [
    "HEADS",
    "METRICS",
    "METRIC_COLUMNS",
    "TASK_TYPES",
    "HeadResult",
    "UndefinedMetricWarning",
    "accuracy",
    "aggregate_seeds",
    "auprc",
    "bootstrap_auc_ci",
    "build_head",
    "delong_test",
    "external_dip",
    "paired_ttest",
    "per_label_auc",
    "roc_auc",
    "summarize",
    "t_interval",
    "train_head",
]
