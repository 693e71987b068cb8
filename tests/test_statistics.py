"""Statistics of per-image scores (gendd_hf.metrics.statistics), each on a case small enough to compute by hand."""

import math

import numpy as np
import pytest

from gendd_hf.metrics import auroc, expected_calibration_error, negative_log_likelihood, paired_bootstrap, softmax


def test_paired_bootstrap_of_two_images_by_hand():
    # Differences (1, 0): a resample's mean is 0, 0.5 or 1 with probabilities 1/4, 1/2, 1/4, so the 2.5th and
    # 97.5th percentiles of 10,000 resamples are 0 and 1; the observed difference is 0.5.
    result = paired_bootstrap([1, 0], [0, 0], num_resamples=10_000, seed=3)
    assert result == {"difference": 0.5, "low": 0.0, "high": 1.0, "images": 2}


def test_paired_bootstrap_pairs_the_images():
    # Each method alone is right on half the images, but both on the same ones: every paired resample has difference
    # 0, where an unpaired comparison of two 50% accuracies would give an interval of about +-0.14 at N = 200.
    correct = np.tile([1, 0], 100)
    assert paired_bootstrap(correct, correct.copy()) == {"difference": 0.0, "low": 0.0, "high": 0.0, "images": 200}


def test_paired_bootstrap_width_matches_the_normal_approximation():
    # Differences +1 on 30 images, -1 on 10, 0 on 160: mean 0.1, sd sqrt(0.2 - 0.01) = 0.4359, standard error
    # 0.4359 / sqrt(200) = 0.0308, so a 95% interval of about 0.1 -+ 1.96 * 0.0308 = (0.0396, 0.1604).
    a = np.r_[np.ones(30), np.zeros(10), np.ones(80), np.zeros(80)]
    b = np.r_[np.zeros(30), np.ones(10), np.ones(80), np.zeros(80)]
    result = paired_bootstrap(a, b, num_resamples=4000, seed=1)
    assert result["difference"] == pytest.approx(0.1)
    assert result["low"] == pytest.approx(0.0396, abs=0.008) and result["high"] == pytest.approx(0.1604, abs=0.008)
    assert paired_bootstrap(a, b, num_resamples=4000, seed=1) == result  # seeded


def test_paired_bootstrap_refuses_unpaired_arrays():
    with pytest.raises(ValueError, match="same images"):
        paired_bootstrap([1, 0, 1], [1, 0])


def test_negative_log_likelihood_and_softmax_by_hand():
    logits = np.array([[0.0, math.log(3.0)], [math.log(3.0), 0.0]])
    # softmax: (1/4, 3/4) and (3/4, 1/4); labels 1 and 1 -> -(log 3/4 + log 1/4) / 2.
    assert softmax(logits) == pytest.approx(np.array([[0.25, 0.75], [0.75, 0.25]]))
    assert negative_log_likelihood(logits, [1, 1]) == pytest.approx(-(math.log(0.75) + math.log(0.25)) / 2)
    # Temperature 2: logits halved, p = sqrt(3) / (1 + sqrt(3)) for the larger one.
    p = math.sqrt(3) / (1 + math.sqrt(3))
    assert negative_log_likelihood(logits, [1, 0], temperature=2.0) == pytest.approx(-math.log(p))


def test_expected_calibration_error_by_hand():
    probabilities = np.array([[0.9, 0.1], [0.9, 0.1], [0.35, 0.65], [0.35, 0.65], [0.2, 0.8]])
    labels = [0, 1, 1, 0, 1]
    # Bins of 0.1: (0.8, 0.9] holds 0.9, 0.9 (one right: |0.5 - 0.9| = 0.4); (0.6, 0.7] holds 0.65, 0.65 (one right:
    # |0.5 - 0.65| = 0.15); (0.7, 0.8] holds 0.8 (right: |1 - 0.8| = 0.2). ECE = (2 * 0.4 + 2 * 0.15 + 0.2) / 5.
    assert expected_calibration_error(probabilities, labels, num_bins=10) == pytest.approx(1.3 / 5)
    # One bin: |accuracy 3/5 - mean confidence (0.9 + 0.9 + 0.65 + 0.65 + 0.8) / 5|.
    assert expected_calibration_error(probabilities, labels, num_bins=1) == pytest.approx(abs(0.6 - 3.9 / 5))


def test_auroc_by_hand():
    # Positives score 0.35 and 0.8, negatives 0.1 and 0.4: of the 4 pairs, 3 put the positive above.
    assert auroc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]) == pytest.approx(0.75)
    # A tie counts one half: pairs (2 vs 1) above, (1 vs 1) tied -> (1 + 0.5) / 2.
    assert auroc([1.0, 2.0, 1.0], [0, 1, 1]) == pytest.approx(0.75)
    assert math.isnan(auroc([0.3, 0.4], [1, 1]))
