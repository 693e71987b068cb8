"""Statistics of per-image scores: the paired bootstrap confidence interval of an accuracy difference, calibration
(expected calibration error, negative log-likelihood) and error detection (AUROC).

Inputs are NumPy arrays or anything `np.asarray` takes (torch tensors on the CPU included); results are floats.
"""

import numpy as np


def paired_bootstrap(
    correct_a,
    correct_b,
    num_resamples: int = 10_000,
    confidence: float = 0.95,
    seed: int = 0,
    chunk: int = 500,
) -> dict[str, float]:
    """Accuracy of `a` minus accuracy of `b` on the same images, with a percentile bootstrap confidence interval:
    images are resampled with replacement, the same draw for both, so the interval is that of a paired comparison.

    Args:
        correct_a, correct_b (array of shape `(N,)`): 1 where the method's top-1 is right, 0 where it is wrong, on the
            same N images in the same order.
        num_resamples (`int`, *optional*, defaults to 10,000): bootstrap resamples.
        confidence (`float`, *optional*, defaults to 0.95): coverage of the interval.
        seed (`int`, *optional*, defaults to 0): seed of the resampling.
        chunk (`int`, *optional*, defaults to 500): resamples drawn at once (memory: `chunk * N` indices).

    Returns:
        `{"difference", "low", "high", "images"}`: the observed difference of the two accuracies (fractions) and the
        interval's bounds.
    """
    a, b = np.asarray(correct_a, dtype=np.float64), np.asarray(correct_b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1 or len(a) == 0:
        raise ValueError(
            f"Give two equally long, non-empty 1-D arrays of the same images; got {a.shape} and {b.shape}."
        )
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence={confidence} must lie in (0, 1).")
    differences = a - b
    rng = np.random.default_rng(seed)
    means = []
    for start in range(0, num_resamples, chunk):
        indices = rng.integers(0, len(differences), size=(min(chunk, num_resamples - start), len(differences)))
        means.append(differences[indices].mean(axis=1))
    tail = 100 * (1 - confidence) / 2
    low, high = np.percentile(np.concatenate(means), [tail, 100 - tail])
    return {"difference": float(differences.mean()), "low": float(low), "high": float(high), "images": len(a)}


def softmax(logits, temperature: float = 1.0) -> np.ndarray:
    """Row-wise softmax of `logits / temperature`, computed stably."""
    scaled = np.asarray(logits, dtype=np.float64) / temperature
    scaled = scaled - scaled.max(axis=-1, keepdims=True)
    exp = np.exp(scaled)
    return exp / exp.sum(axis=-1, keepdims=True)


def negative_log_likelihood(logits, labels, temperature: float = 1.0) -> float:
    """Mean of `-log softmax(logits / temperature)[label]` over the images."""
    scaled = np.asarray(logits, dtype=np.float64) / temperature
    top = scaled.max(axis=-1, keepdims=True)
    log_norm = (top + np.log(np.exp(scaled - top).sum(axis=-1, keepdims=True)))[:, 0]
    labels = np.asarray(labels)
    return float(np.mean(log_norm - scaled[np.arange(len(labels)), labels]))


def expected_calibration_error(probabilities, labels, num_bins: int = 15) -> float:
    """ECE of the top-1 confidence: images binned by their maximum probability into `num_bins` equal-width bins of
    (0, 1] (a bin holds confidences in `(lower, upper]`), then `sum_b |accuracy_b - mean confidence_b| * n_b / N`
    (Guo et al., 2017).

    Args:
        probabilities (array of shape `(N, C)`): class probabilities (e.g. `softmax(logits)`).
        labels (array of shape `(N,)`): true classes.
        num_bins (`int`, *optional*, defaults to 15): bins of the confidence.
    """
    probabilities = np.asarray(probabilities, dtype=np.float64)
    confidence = probabilities.max(axis=-1)
    correct = probabilities.argmax(axis=-1) == np.asarray(labels)
    bins = np.clip(np.ceil(confidence * num_bins).astype(int) - 1, 0, num_bins - 1)
    error = 0.0
    for b in np.unique(bins):
        members = bins == b
        error += abs(correct[members].mean() - confidence[members].mean()) * members.sum()
    return float(error / len(confidence))


def auroc(scores, positives) -> float:
    """Area under the ROC curve: the probability that a random positive scores above a random negative, a tie
    counting one half (the Mann-Whitney U statistic over the product of the two counts).

    Args:
        scores (array of shape `(N,)`): higher means "more likely positive".
        positives (array of shape `(N,)`): booleans, the true class of each item.

    Returns:
        The AUROC; NaN when all items are positive or all negative.
    """
    scores, positives = np.asarray(scores, dtype=np.float64), np.asarray(positives, dtype=bool)
    num_pos, num_neg = int(positives.sum()), int((~positives).sum())
    if num_pos == 0 or num_neg == 0:
        return float("nan")
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores))
    sorted_scores = scores[order]
    # Average ranks (1-based) over runs of tied scores.
    starts = np.flatnonzero(np.r_[True, sorted_scores[1:] != sorted_scores[:-1]])
    ends = np.r_[starts[1:], len(scores)]
    for start, end in zip(starts, ends):
        ranks[order[start:end]] = (start + 1 + end) / 2
    u = ranks[positives].sum() - num_pos * (num_pos + 1) / 2
    return float(u / (num_pos * num_neg))


__all__ = ["auroc", "expected_calibration_error", "negative_log_likelihood", "paired_bootstrap", "softmax"]
