"""`compute_metrics` of [`GenDDTrainer`]: per inference path, top-1/top-5 and, on long-tailed data, the many /
medium / few-shot top-1. Every accuracy the library reports (trainer, recipes, bench, fast sampling) is scored by
`true_class_rank`, so ties count the same way everywhere."""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from transformers import EvalPrediction

from .long_tail import shot_metrics
from .top_k_accuracy.top_k_accuracy import top_k_accuracy


TOP_K = (1, 5)


def top_k_metrics(eval_prediction: EvalPrediction, paths: Sequence[str]) -> dict[str, float]:
    """`{path}_top1` and `{path}_top5` for each inference path, from the tuple of per-path logits."""
    predictions = eval_prediction.predictions
    predictions = predictions if isinstance(predictions, tuple) else (predictions,)
    if len(predictions) != len(paths):
        raise ValueError(f"Got {len(predictions)} logits arrays for the inference paths {list(paths)}.")
    return {
        f"{path}_{name}": value
        for path, logits in zip(paths, predictions)
        for name, value in top_k_accuracy(logits, eval_prediction.label_ids, TOP_K).items()
    }


@dataclass
class LongTailMetrics:
    """`compute_metrics` on long-tailed data: top-1/top-5 per path plus the many / medium / few-shot top-1
    (`eval_probe_many_top1`, ...). Build it from the training set::

        trainer = GenDDTrainer(..., compute_metrics=LongTailMetrics(class_groups(train), args.inference_paths))
    """

    groups: Sequence[str]
    paths: Sequence[str]

    def __call__(self, eval_prediction: EvalPrediction) -> Mapping[str, float]:
        return {**top_k_metrics(eval_prediction, self.paths), **shot_metrics(eval_prediction, self.groups, self.paths)}


def top1(logits, labels) -> float:
    """Top-1 of one set of logits, a fraction, scored as `top_k_metrics` scores it (the bench's tables)."""
    return top_k_accuracy(logits, labels, 1)["top1"]


__all__ = ["TOP_K", "LongTailMetrics", "top1", "top_k_metrics"]
