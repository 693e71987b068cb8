"""Shared fixtures: tiny GenDD models that run in milliseconds on the CPU."""

import pytest
import torch

from gendd_hf import GenDDConfig, GenDDForImageClassification, GenDDSamplingConfig


def tiny_config(**overrides) -> GenDDConfig:
    """A 1-channel `test_resnet` student (96-d feature), a 32-d teacher space cut into four 8-d tokens."""
    kwargs = dict(
        student_name="test_resnet",
        student_kwargs={"in_chans": 1},
        teacher_feature_dim=32,
        token_dim=8,
        head_width=32,
        head_depth=2,
        diffusion_batch_mul=2,
        id2label={0: "cat", 1: "dog", 2: "fox"},
    )
    kwargs.update(overrides)
    return GenDDConfig(**kwargs)


TINY_SAMPLING = dict(num_inference_steps=8, num_samples=2)


def tiny_model(seed: int = 0, sampling: dict | None = None, **overrides) -> GenDDForImageClassification:
    """`tiny_config(**overrides)` with random teacher classifier and head, sampling 8 steps x 2 samples unless
    `sampling` says otherwise."""
    torch.manual_seed(seed)
    model = GenDDForImageClassification(tiny_config(**overrides))
    model.sampling_config = GenDDSamplingConfig(**{**TINY_SAMPLING, **(sampling or {})})
    model.set_teacher_classifier(torch.randn(3, 32), torch.randn(3))
    # Non-zero head outputs, so that sampling exercises every branch (the head starts at zero).
    for parameter in model.head.parameters():
        parameter.data.add_(0.05 * torch.randn_like(parameter))
    return model


@pytest.fixture
def model():
    return tiny_model()
