"""Long-tailed subsets and many/medium/few-shot accuracy, as defined for ImageNet-LT and CIFAR-LT."""

import math

import numpy as np
from datasets import ClassLabel, Dataset


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
    return [max(1, math.floor(n_max * imbalance_ratio ** (-c / (num_classes - 1)) + 1e-9)) for c in range(num_classes)]


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


__all__ = ["long_tailed_class_counts", "make_long_tailed"]
