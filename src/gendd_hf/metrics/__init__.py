"""Evaluation metrics that work offline: `evaluate` modules shipped inside the package."""

from pathlib import Path

import evaluate

from .top_k_accuracy.top_k_accuracy import top_k_accuracy


TOP_K_ACCURACY_PATH = str(Path(__file__).parent / "top_k_accuracy")
"""Folder of the `top_k_accuracy` metric module, for `evaluate.load(TOP_K_ACCURACY_PATH)`."""


def load_top_k_metric(**kwargs) -> evaluate.EvaluationModule:
    """Load the packaged top-k accuracy metric without the Hub (`evaluate.load("accuracy")` needs the network).

    Keyword arguments go to `evaluate.load` (for example `num_process`, `process_id` and `experiment_id` for
    distributed evaluation).
    """
    return evaluate.load(TOP_K_ACCURACY_PATH, **kwargs)


__all__ = ["TOP_K_ACCURACY_PATH", "load_top_k_metric", "top_k_accuracy"]
