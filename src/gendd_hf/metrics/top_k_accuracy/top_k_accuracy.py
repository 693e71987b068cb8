"""Top-k accuracy from logits, as an `evaluate` metric module that loads offline with `evaluate.load(path)`.

This file is self-contained on purpose: `evaluate.load` copies it into its module cache and imports it there.
"""

from collections.abc import Sequence

import datasets
import evaluate
import torch


_DESCRIPTION = """
Top-k accuracy: the fraction of samples whose true class is among the k highest-scoring classes. Ties count
against the prediction: a sample is correct at k when fewer than k other classes score at least as high as the true
class, so a constant (collapsed) classifier does not get credit. Any k >= num_classes gives 1.0. A NaN score for the
true class counts as wrong.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `list` of `float`): per-sample class scores (logits or probabilities), shape (N, C).
    references (`list` of `int`): true class indices in [0, C), shape (N,).
    k (`int` or `tuple` of `int`, *optional*, defaults to (1, 5)): the k values to report.

Returns:
    `dict`: `{"top1": ..., "top5": ...}`, one key `top{k}` per k, each a fraction in [0, 1] like `accuracy`.

Example:
    >>> top_k = evaluate.load("path/to/top_k_accuracy")
    >>> top_k.compute(predictions=[[0.1, 0.7, 0.2], [0.5, 0.3, 0.2]], references=[2, 0], k=(1, 2))
    {'top1': 0.5, 'top2': 1.0}
"""


def true_class_rank(logits, labels) -> torch.Tensor:
    """Rank of each sample's true class among its scores (0: the top), ties and NaN counted against it.

    Accepts tensors, arrays or nested lists: `logits` (N, C), integer `labels` (N,) in [0, C). A sample is correct at
    k when its rank is below k, so every accuracy of the package (top-k, per shot group) scores ties the same way.
    """
    logits = torch.as_tensor(logits).float()
    labels = torch.as_tensor(labels, device=logits.device).long()
    if logits.ndim != 2 or labels.shape != logits.shape[:1] or logits.shape[0] == 0:
        raise ValueError(
            f"Expected non-empty logits of shape (N, C) and labels of shape (N,), got {tuple(logits.shape)} and "
            f"{tuple(labels.shape)}."
        )
    num_classes = logits.shape[1]
    if labels.min() < 0 or labels.max() >= num_classes:
        raise ValueError(f"labels must lie in [0, {num_classes}), got values from {labels.min()} to {labels.max()}.")
    target = logits.gather(1, labels[:, None])
    # Other classes scoring at least as high as the true class.
    rank = (logits >= target).sum(dim=1) - 1
    return torch.where(target.squeeze(1).isnan(), num_classes, rank)


def top_k_accuracy(logits, labels, k: int | Sequence[int] = (1, 5)) -> dict[str, float]:
    """Top-k accuracy of `logits` (N, C) against integer `labels` (N,), as fractions keyed `top{k}`.

    Accepts tensors, arrays or nested lists. Ties count against the prediction (see the module description).
    """
    ks = (k,) if isinstance(k, int) else tuple(k)
    if not ks or any(not isinstance(value, int) or isinstance(value, bool) or value < 1 for value in ks):
        raise ValueError(f"k must be a positive int or a sequence of positive ints, got {k!r}.")
    rank = true_class_rank(logits, labels)
    return {f"top{value}": (rank < value).float().mean().item() for value in ks}


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class TopKAccuracy(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Sequence(datasets.Value("float32")), "references": datasets.Value("int64")}
            ),
        )

    def _compute(self, predictions, references, k=(1, 5)):
        return top_k_accuracy(predictions, references, k)
