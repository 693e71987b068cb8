"""Long-tailed subsets and many/medium/few-shot accuracy, as defined for ImageNet-LT and CIFAR-LT."""

import math
from collections.abc import Mapping, Sequence

import numpy as np
from datasets import ClassLabel, Dataset


SHOT_GROUPS = ("many", "medium", "few")


def _labels_and_num_classes(dataset: Dataset, label_column: str) -> tuple[np.ndarray, int]:
    if label_column not in dataset.column_names:
        raise ValueError(
            f"label_column {label_column!r} is not a column of the dataset; available: {dataset.column_names}."
        )
    labels = np.asarray(dataset.with_format("numpy")[label_column], dtype=np.int64)
    feature = dataset.features[label_column]
    num_classes = feature.num_classes if isinstance(feature, ClassLabel) else int(labels.max()) + 1
    return labels, num_classes


def long_tailed_class_counts(n_max: int, num_classes: int, imbalance_ratio: float) -> list[int]:
    """Exponential profile n_c = floor(n_max * ratio^(-c / (C - 1))): class 0 keeps n_max, the last n_max / ratio."""
    if num_classes < 2:
        raise ValueError(f"a long-tailed profile needs at least 2 classes, got {num_classes}.")
    # The small epsilon keeps exact products such as 6000 * 100^-1 = 60 from flooring to 59.
    return [
        max(1, math.floor(n_max * imbalance_ratio ** (-c / (num_classes - 1)) + 1e-9)) for c in range(num_classes)
    ]


def make_long_tailed(
    dataset: Dataset,
    imbalance_ratio: float = 100,
    label_column: str = "label",
    seed: int = 0,
    n_max: int | None = None,
) -> Dataset:
    """Subsample a labeled dataset into a long-tailed one (the CIFAR-LT / ImageNet-LT protocol).

    Class c keeps n_c = floor(n_max * imbalance_ratio^(-c / (C - 1))) examples, where n_max defaults to the size of
    the smallest class (so every class can supply its quota; for a balanced dataset it is the per-class count).
    Which examples are kept is drawn with `seed`; the kept examples stay in their original order.

    Args:
        dataset (`datasets.Dataset`): map-style dataset with integer labels 0..C-1.
        imbalance_ratio (`float`, *optional*, defaults to 100): n_0 / n_{C-1}, at least 1.
        label_column (`str`, *optional*, defaults to `"label"`): the column holding class ids.
        seed (`int`, *optional*, defaults to 0): seed of the per-class draw.
        n_max (`int`, *optional*): size of the head class, at most the smallest class's size (ImageNet-LT: 1280).

    Returns:
        `datasets.Dataset`: the selected rows.
    """
    if imbalance_ratio < 1:
        raise ValueError(f"imbalance_ratio must be >= 1 (n_max / n_min), got {imbalance_ratio}.")
    labels, num_classes = _labels_and_num_classes(dataset, label_column)
    available = np.bincount(labels, minlength=num_classes)
    if available.min() == 0:
        raise ValueError(f"classes {np.flatnonzero(available == 0).tolist()} have no examples to subsample.")
    if n_max is None:
        n_max = int(available.min())
    elif not 1 <= n_max <= available.min():
        raise ValueError(f"n_max={n_max} must lie in [1, {available.min()}] (the smallest class's size).")
    quotas = long_tailed_class_counts(n_max, num_classes, imbalance_ratio)
    rng = np.random.default_rng(seed)
    keep = [rng.permutation(np.flatnonzero(labels == c))[:quota] for c, quota in enumerate(quotas)]
    return dataset.select(np.sort(np.concatenate(keep)))


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


def shot_accuracy(
    predictions: Sequence[int], references: Sequence[int], class_groups: Sequence[str]
) -> Mapping[str, float]:
    """Top-1 accuracy per shot group and overall.

    A group's accuracy is the mean of its classes' accuracies (classes absent from `references` are skipped),
    as in the ImageNet-LT evaluation; a group with no evaluated class gives NaN. "overall" is the plain
    fraction of correct predictions.

    Args:
        predictions (`Sequence[int]`): predicted class ids.
        references (`Sequence[int]`): true class ids.
        class_groups (`Sequence[str]`): the group of each class, e.g. from [`shot_groups`].

    Returns:
        `dict` with float keys "many", "medium", "few" and "overall".
    """
    predictions = np.asarray(predictions)
    references = np.asarray(references)
    if predictions.shape != references.shape:
        raise ValueError(f"predictions {predictions.shape} and references {references.shape} differ in shape.")
    unknown = set(class_groups) - set(SHOT_GROUPS)
    if unknown:
        raise ValueError(f"class_groups holds {sorted(unknown)}; each entry must be one of {SHOT_GROUPS}.")
    correct = predictions == references
    class_accuracy = {c: correct[references == c].mean() for c in np.unique(references)}
    result = {}
    for group in SHOT_GROUPS:
        accuracies = [acc for c, acc in class_accuracy.items() if class_groups[c] == group]
        result[group] = float(np.mean(accuracies)) if accuracies else float("nan")
    result["overall"] = float(correct.mean())
    return result


__all__ = ["SHOT_GROUPS", "long_tailed_class_counts", "make_long_tailed", "shot_accuracy", "shot_groups"]
