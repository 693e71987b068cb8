import math

import evaluate
import huggingface_hub
import pytest
import torch

from gendd_hf.metrics import TOP_K_ACCURACY_PATH, load_top_k_metric, top_k_accuracy


# True classes ranked 1st, 2nd, 3rd and 4th of 6 classes.
LOGITS = [
    [5.0, 1.0, 0.0, 0.0, 0.0, 0.0],
    [1.0, 5.0, 0.5, 0.0, 0.0, 0.0],
    [3.0, 2.0, 1.0, 0.0, -1.0, -2.0],
    [0.0, 1.0, 2.0, 3.0, 4.0, 5.0],
]
LABELS = [0, 0, 2, 2]


def test_top_k_accuracy_hand_computed():
    result = top_k_accuracy(LOGITS, LABELS, k=(1, 2, 3, 4, 5))
    assert result == {"top1": 0.25, "top2": 0.5, "top3": 0.75, "top4": 1.0, "top5": 1.0}


def test_top_k_accuracy_accepts_tensors_and_single_k():
    assert top_k_accuracy(torch.tensor(LOGITS), torch.tensor(LABELS), k=2) == {"top2": 0.5}


def test_ties_count_against_the_prediction():
    # Row 0: true class tied with one other for the top score -> wrong at k=1, right at k=2.
    # Row 1: a constant classifier gets no top-1 credit but is right once k covers every class.
    logits = [[2.0, 2.0, 0.0], [1.0, 1.0, 1.0]]
    assert top_k_accuracy(logits, [1, 0], k=(1, 2, 3)) == {"top1": 0.0, "top2": 0.5, "top3": 1.0}


def test_nan_score_for_true_class_is_wrong():
    logits = [[math.nan, 0.0, 1.0], [0.0, 1.0, 2.0]]
    assert top_k_accuracy(logits, [0, 2], k=(1, 3)) == {"top1": 0.5, "top3": 0.5}


def test_k_at_least_num_classes_is_one():
    logits = [[0.0, 1.0, 2.0], [2.0, 1.0, 0.0]]
    assert top_k_accuracy(logits, [0, 2], k=(1, 3, 5)) == {"top1": 0.0, "top3": 1.0, "top5": 1.0}


@pytest.mark.parametrize(
    "logits, labels, k, message",
    [
        (LOGITS, LABELS, 0, "positive int"),
        (LOGITS, LABELS, (), "positive int"),
        (LOGITS, [0, 1], 1, "shape"),
        ([0.1, 0.2], [0], 1, "shape"),
        (LOGITS, [0, 0, 6, 0], 1, r"\[0, 6\)"),
    ],
)
def test_bad_inputs_raise(logits, labels, k, message):
    with pytest.raises(ValueError, match=message):
        top_k_accuracy(logits, labels, k=k)


def test_evaluate_module_loads_offline_and_matches_function(monkeypatch, tmp_path):
    # Both libraries read their offline switches at import: patch the values so any network call would raise.
    monkeypatch.setattr(evaluate.config, "HF_EVALUATE_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    metric = evaluate.load(TOP_K_ACCURACY_PATH, cache_dir=str(tmp_path))
    assert isinstance(metric, evaluate.Metric)
    assert metric.compute(predictions=LOGITS, references=LABELS) == {"top1": 0.25, "top5": 1.0}
    assert metric.compute(predictions=LOGITS, references=LABELS, k=(2, 3)) == {"top2": 0.5, "top3": 0.75}


def test_load_top_k_metric_accumulates_batches(tmp_path):
    metric = load_top_k_metric(cache_dir=str(tmp_path))
    metric.add_batch(predictions=LOGITS[:2], references=LABELS[:2])
    metric.add_batch(predictions=LOGITS[2:], references=LABELS[2:])
    assert metric.compute(k=(1, 3)) == top_k_accuracy(LOGITS, LABELS, k=(1, 3))
