"""Temperature scaling (gendd_hf.calibration): the fit on logits, the per-sample logits of the sampled path."""

import math

import pytest
import torch

from gendd_hf.calibration import fit_temperature, path_logits_of_images
from helpers import tiny_model


def test_fit_temperature_by_hand():
    # Four images with logits (0, 2), three of class 1: the likelihood is best where softmax gives class 1 the
    # probability 3/4, i.e. 2 / T = log 3.
    logits = torch.tensor([[0.0, 2.0]] * 4)
    assert fit_temperature(logits, torch.tensor([1, 1, 1, 0])) == pytest.approx(2 / math.log(3), rel=1e-5)


def test_fit_temperature_recovers_the_temperature_that_drew_the_labels():
    generator = torch.Generator().manual_seed(0)
    logits = 3.0 * torch.randn(20_000, 5, generator=generator)
    labels = torch.multinomial((logits / 2.5).softmax(-1), 1, generator=generator).squeeze(1)
    assert fit_temperature(logits, labels) == pytest.approx(2.5, rel=0.04)


def test_sample_logits_average_to_the_sampled_path():
    model = tiny_model().eval()
    pixels = torch.randn(5, 1, 16, 16, generator=torch.Generator().manual_seed(1))
    logits, sample_logits = path_logits_of_images(model, pixels, "sampled", return_sample_logits=True)
    assert sample_logits.shape == (5, model.sampling_config.num_samples, 3)
    with torch.no_grad():
        expected = model.path_logits(model.extract_features(pixels), "sampled")
    assert torch.allclose(logits, expected, rtol=1e-4) and torch.allclose(sample_logits.mean(1), logits, rtol=1e-4)
    assert not torch.allclose(sample_logits[:, 0], sample_logits[:, 1])  # the samples differ
    with pytest.raises(ValueError, match="sampled"):
        path_logits_of_images(model, pixels, "probe", return_sample_logits=True)
