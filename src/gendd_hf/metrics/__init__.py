"""Every accuracy the library reports: top-k per inference path, many / medium / few-shot top-1, and the packaged
`evaluate` module that scores them offline (`load_top_k_metric`); the statistics of per-image scores (paired bootstrap
intervals, calibration error, negative log-likelihood, AUROC)."""

from pathlib import Path

import evaluate

from .compute import TOP_K, LongTailMetrics, top1, top_k_metrics
from .long_tail import SHOT_GROUPS, class_counts, class_groups, shot_accuracy, shot_groups, shot_metrics
from .statistics import auroc, expected_calibration_error, negative_log_likelihood, paired_bootstrap, softmax
from .top_k_accuracy.top_k_accuracy import top_k_accuracy, true_class_rank


TOP_K_ACCURACY_PATH = str(Path(__file__).parent / "top_k_accuracy")
"""Folder of the `top_k_accuracy` metric module, for `evaluate.load(TOP_K_ACCURACY_PATH)`."""


def load_top_k_metric(**kwargs) -> evaluate.EvaluationModule:
    """Load the packaged top-k accuracy metric without the Hub (`evaluate.load("accuracy")` needs the network).

    Keyword arguments go to `evaluate.load` (for example `num_process`, `process_id` and `experiment_id` for
    distributed evaluation).
    """
    return evaluate.load(TOP_K_ACCURACY_PATH, **kwargs)


__all__ = [
    "SHOT_GROUPS",
    "TOP_K",
    "TOP_K_ACCURACY_PATH",
    "LongTailMetrics",
    "auroc",
    "class_counts",
    "class_groups",
    "expected_calibration_error",
    "load_top_k_metric",
    "negative_log_likelihood",
    "paired_bootstrap",
    "shot_accuracy",
    "shot_groups",
    "shot_metrics",
    "softmax",
    "top1",
    "top_k_accuracy",
    "top_k_metrics",
    "true_class_rank",
]
