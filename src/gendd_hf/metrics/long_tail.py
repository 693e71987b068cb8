"""Many / medium / few-shot accuracy, as ImageNet-LT reports it: classes grouped by their number of training
images, each group's accuracy the mean of its classes'."""

from collections.abc import Mapping, Sequence

import numpy as np
from datasets import ClassLabel, Dataset
from transformers import EvalPrediction

from .top_k_accuracy.top_k_accuracy import true_class_rank


SHOT_GROUPS = ("many", "medium", "few")


def shot_groups(train_class_counts: Sequence[int], many: int = 100, few: int = 20) -> list[str]:
    """Name each class's shot group from its number of training images, as ImageNet-LT does.

    "many": more than `many` images; "few": fewer than `few`; "medium": from `few` to `many` inclusive.

    Args:
        train_class_counts (`Sequence[int]`): training images per class, indexed by class id.
        many (`int`, *optional*, defaults to 100) / few (`int`, *optional*, defaults to 20): the thresholds.

    Returns:
        `list[str]`: "many", "medium" or "few" for each class.
    """
    if few > many:
        raise ValueError(f"few ({few}) must not exceed many ({many}).")
    return ["many" if n > many else "few" if n < few else "medium" for n in train_class_counts]


def shot_accuracy(logits, references: Sequence[int], class_groups: Sequence[str]) -> Mapping[str, float]:
    """Top-1 accuracy per shot group and overall, ties counted against the prediction (`true_class_rank`).

    A group's accuracy is the mean of its classes' accuracies (classes absent from `references` are skipped),
    as in the ImageNet-LT evaluation; a group with no evaluated class gives NaN. "overall" is the plain
    fraction of correct predictions.

    Args:
        logits (array of shape (N, C)): class scores.
        references (`Sequence[int]`): true class ids.
        class_groups (`Sequence[str]`): the group of each class, e.g. from [`shot_groups`].

    Returns:
        `dict` with float keys "many", "medium", "few" and "overall".
    """
    references = np.asarray(references)
    if len(logits) != len(references):
        raise ValueError(f"logits ({len(logits)} rows) and references ({len(references)}) differ in length.")
    unknown = set(class_groups) - set(SHOT_GROUPS)
    if unknown:
        raise ValueError(f"class_groups holds {sorted(unknown)}; each entry must be one of {SHOT_GROUPS}.")
    correct = (true_class_rank(logits, references) == 0).numpy()
    class_accuracy = {c: correct[references == c].mean() for c in np.unique(references)}
    result = {}
    for group in SHOT_GROUPS:
        accuracies = [acc for c, acc in class_accuracy.items() if class_groups[c] == group]
        result[group] = float(np.mean(accuracies)) if accuracies else float("nan")
    result["overall"] = float(correct.mean())
    return result


def class_counts(train: Dataset | Sequence[int], num_classes: int | None = None) -> np.ndarray:
    """Training images per class, from the training set (its `label` column) or its labels."""
    if isinstance(train, Dataset):
        feature = train.features.get("label")
        if feature is None:
            raise ValueError(f"The training set has no 'label' column (columns: {train.column_names}).")
        if num_classes is None and isinstance(feature, ClassLabel):
            num_classes = feature.num_classes
        train = train.with_format("numpy")["label"]
    labels = np.asarray(train, dtype=np.int64)
    return np.bincount(labels, minlength=num_classes or 0)


def class_groups(
    train: Dataset | Sequence[int], num_classes: int | None = None, many: int = 100, few: int = 20
) -> list[str]:
    """The shot group ("many", "medium", "few") of each class from its number of TRAINING images (more than 100,
    20 to 100, fewer than 20), as ImageNet-LT reports accuracy."""
    return shot_groups(class_counts(train, num_classes).tolist(), many=many, few=few)


def shot_metrics(eval_prediction: EvalPrediction, groups: Sequence[str], paths: Sequence[str]) -> dict[str, float]:
    """`{path}_{group}_top1` for each inference path and shot group: the mean per-class top-1 accuracy of the
    group's classes (NaN for a group with no class in the evaluation set)."""
    predictions = eval_prediction.predictions
    predictions = predictions if isinstance(predictions, tuple) else (predictions,)
    if len(predictions) != len(paths):
        raise ValueError(f"Got {len(predictions)} logits arrays for the inference paths {list(paths)}.")
    labels = np.asarray(eval_prediction.label_ids)
    metrics = {}
    for path, logits in zip(paths, predictions):
        accuracy = shot_accuracy(logits, labels, groups)
        metrics.update({f"{path}_{group}_top1": accuracy[group] for group in SHOT_GROUPS})
    return metrics


__all__ = ["SHOT_GROUPS", "class_counts", "class_groups", "shot_accuracy", "shot_groups", "shot_metrics"]
