import math

import evaluate
import huggingface_hub
import numpy as np
import pytest
import torch
from transformers import EvalPrediction

from gendd_hf.metrics import (
    TOP_K_ACCURACY_PATH,
    LongTailMetrics,
    load_top_k_metric,
    shot_accuracy,
    shot_groups,
    shot_metrics,
    top_k_accuracy,
)


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


def one_hot(predictions, num_classes):
    """Logits whose top-1 is `predictions`."""
    return np.eye(num_classes)[predictions]


# ---- many / medium / few-shot accuracy (ImageNet-LT)
def test_shot_groups_imagenet_lt_thresholds():
    assert shot_groups([500, 101, 100, 20, 19, 0]) == ["many", "many", "medium", "medium", "few", "few"]
    assert shot_groups([6, 5, 2], many=5, few=3) == ["many", "medium", "few"]
    with pytest.raises(ValueError, match="few"):
        shot_groups([1], many=10, few=20)


def test_shot_accuracy_hand_computed():
    result = shot_accuracy(one_hot([0, 0, 0, 1, 1, 0, 0], 3), [0, 0, 0, 0, 1, 1, 2], ["many", "medium", "few"])
    assert result == pytest.approx({"many": 3 / 4, "medium": 1 / 2, "few": 0.0, "overall": 4 / 7})
    # A group averages its classes' accuracies (1.0 and 0.0), not its examples (4 of 5 right).
    result = shot_accuracy(one_hot([0, 0, 0, 0, 0, 2], 3), [0, 0, 0, 0, 1, 2], ["many", "many", "few"])
    assert result["many"] == pytest.approx(0.5) and result["few"] == 1.0
    assert math.isnan(result["medium"]) and result["overall"] == pytest.approx(5 / 6)
    # Ties count against the prediction, as in top_k_accuracy: a constant classifier is right nowhere.
    assert shot_accuracy(np.zeros((3, 2)), [0, 1, 1], ["many", "few"]) == {
        "many": 0.0,
        "medium": pytest.approx(float("nan"), nan_ok=True),
        "few": 0.0,
        "overall": 0.0,
    }
    with pytest.raises(ValueError, match="differ in length"):
        shot_accuracy(one_hot([0, 1], 2), [0], ["many", "many"])
    with pytest.raises(ValueError, match=r"\['rare'\]"):
        shot_accuracy(one_hot([0], 1), [0], ["rare"])


def test_shot_metrics_hand_computed():
    # Classes: 0 many, 1 medium, 2 few. Probe: class 0 right 2/2, class 1 right 1/2, class 2 right 0/2.
    labels = np.array([0, 0, 1, 1, 2, 2])
    probe = np.eye(3)[[0, 0, 1, 0, 0, 1]]
    sampled = np.eye(3)[[0, 1, 1, 1, 2, 2]]  # 1/2, 2/2, 2/2
    prediction = EvalPrediction(predictions=(sampled, probe), label_ids=labels)
    groups = ["many", "medium", "few"]
    assert shot_metrics(prediction, groups, ("sampled", "probe")) == {
        "sampled_many_top1": 0.5,
        "sampled_medium_top1": 1.0,
        "sampled_few_top1": 1.0,
        "probe_many_top1": 1.0,
        "probe_medium_top1": 0.5,
        "probe_few_top1": 0.0,
    }
    metrics = LongTailMetrics(groups, ("sampled", "probe"))(prediction)
    assert metrics["probe_top1"] == pytest.approx(3 / 6)
    assert metrics["sampled_top1"] == pytest.approx(5 / 6)
    assert metrics["probe_few_top1"] == 0.0
    with pytest.raises(ValueError, match="2 logits arrays"):
        shot_metrics(prediction, groups, ("probe",))
