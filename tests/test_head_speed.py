"""The diffusion head's shared computations must give the per-row baseline's loss and gradients exactly (up to float
rounding), in training and at sampling shapes; the benchmark must run and report both implementations."""

import pytest
import torch

from gendd_hf.bench import head_speed
from gendd_hf.bench.head_speed import HeadBenchShapes, build_head, make_batch, training_loss


SHAPES = HeadBenchShapes(
    batch_size=3,
    student_dim=12,
    teacher_feature_dim=24,
    token_dim=8,
    diffusion_batch_mul=4,
    head_width=32,
    head_depth=2,
)


def _loss_and_grads(baseline: bool):
    head, loss_fn = build_head(SHAPES, seed=0)
    batch = make_batch(SHAPES, seed=1)
    student_features = batch["student_features"].requires_grad_()
    loss = training_loss(head, loss_fn, {**batch, "student_features": student_features}, baseline=baseline)
    loss.backward()
    grads = {name: parameter.grad for name, parameter in head.named_parameters()}
    return loss, grads, student_features.grad


def test_shared_head_matches_the_per_row_baseline_in_loss_and_gradients():
    loss, grads, feature_grad = _loss_and_grads(baseline=False)
    base_loss, base_grads, base_feature_grad = _loss_and_grads(baseline=True)
    assert torch.allclose(loss, base_loss, rtol=1e-6, atol=1e-7)
    assert grads.keys() == base_grads.keys()
    for name, grad in grads.items():
        assert grad is not None and grad.abs().sum() > 0, name
        assert torch.allclose(grad, base_grads[name], rtol=1e-4, atol=1e-7), name
    assert torch.allclose(feature_grad, base_feature_grad, rtol=1e-4, atol=1e-7)


def test_repeats_use_their_own_timesteps():
    # The batch draws an independent timestep for every (sample, token, repeat) row, as GenDD's training does.
    batch = make_batch(SHAPES, seed=1)
    assert batch["timesteps"].shape == (3, 3, 4)
    assert len(torch.unique(batch["timesteps"])) > 30


def test_broadcast_sampling_call_equals_the_fully_expanded_call():
    # At sampling the timestep is one scalar and the condition has no draw axis: the modulations are computed per
    # (branch, sample, token) and broadcast over the draws. The result must be the per-row computation's.
    head, _ = build_head(SHAPES, seed=0)
    generator = torch.Generator().manual_seed(2)
    noisy = torch.randn(3, 5, 3, 8, generator=generator)  # (B, draws, n, k)
    condition = torch.randn(2, 3, 1, 3, 32, generator=generator)  # (branches, B, 1, n, w)
    with torch.no_grad():
        broadcast = head(noisy, torch.tensor(417), condition)
        expanded = head(
            noisy.expand(2, -1, -1, -1, -1), torch.full((2, 3, 5, 3), 417), condition.expand(-1, -1, 5, -1, -1)
        )
    assert broadcast.shape == (2, 3, 5, 3, 16)
    assert torch.allclose(broadcast, expanded, atol=1e-6)


def test_benchmark_times_both_implementations(capsys):
    result = head_speed.benchmark(SHAPES, repeats=2, warmup=0)
    assert len(result["times"]["baseline"]) == len(result["times"]["gendd_head"]) == 2
    ratios = [b / g for b, g in zip(result["times"]["baseline"], result["times"]["gendd_head"])]
    assert result["speedup"] == pytest.approx(sum(ratios) / 2)
    assert result["shapes"]["rows"] == 3 * 3 * 4
    printed = head_speed.main(["--small", "--repeats", "1"])
    out = capsys.readouterr().out
    assert "baseline (per-row" in out and "speedup" in out and printed["shapes"]["head_width"] == 128
