"""Hand-computed cases for the formulas of GenDD (split tokenization, contraction, guidance, hybrid loss)."""

import math

import pytest
import torch

from gendd_hf.diffusion import (
    HybridDiffusionLoss,
    apply_guidance,
    contract,
    discretized_gaussian_log_likelihood,
    merge_tokens,
    normal_kl,
    split_tokens,
    training_betas,
)
from gendd_hf.sampling import make_scheduler


def test_split_and_merge_tokens():
    features = torch.arange(16.0).reshape(2, 8)
    tokens = split_tokens(features, 4)
    assert tokens.shape == (2, 2, 4)
    assert tokens[0, 1].tolist() == [4.0, 5.0, 6.0, 7.0]
    assert tokens[1, 0].tolist() == [8.0, 9.0, 10.0, 11.0]
    assert torch.equal(merge_tokens(tokens), features)


def test_split_tokens_rejects_non_divisible_dim():
    with pytest.raises(ValueError, match="not divisible by token_dim=3"):
        split_tokens(torch.zeros(1, 8), 3)


W = torch.tensor([[0.0, 2.0], [4.0, 0.0]])  # two class centres in a 2-d teacher space
F0 = torch.tensor([[1.0, 0.0]])


def test_contraction_hard_label():
    # 0.5 * [1, 0] + 0.5 * W[1] = [2.5, 0]
    assert contract(F0, torch.tensor([1]), W, 0.5).tolist() == [[2.5, 0.0]]


def test_contraction_soft_label():
    # y @ W = 0.25 * [0, 2] + 0.75 * [4, 0] = [3, 0.5]; 0.5 * [1, 0] + 0.5 * [3, 0.5] = [2, 0.25]
    assert contract(F0, torch.tensor([[0.25, 0.75]]), W, 0.5).tolist() == [[2.0, 0.25]]


def test_contraction_endpoints():
    assert torch.equal(contract(F0, torch.tensor([0]), W, 0.0), F0)
    assert contract(F0, torch.tensor([0]), W, 1.0).tolist() == [[0.0, 2.0]]


def test_contraction_teacher_softmax_form():
    # Teacher logits f @ W.T = [0, 4]; p = softmax = [1 / (1 + e^4), e^4 / (1 + e^4)].
    p1 = math.exp(4) / (1 + math.exp(4))
    probs = (F0 @ W.T).softmax(-1)
    out = contract(F0, probs, W, 0.9)
    expected = [0.1 * 1 + 0.9 * (4 * p1), 0.9 * (2 * (1 - p1))]
    assert out[0].tolist() == pytest.approx(expected, rel=1e-6)


def test_guidance_combination():
    eps_c, eps_u = torch.tensor([3.0, -1.0]), torch.tensor([1.0, 1.0])
    assert apply_guidance(eps_c, eps_u, 2.0).tolist() == [5.0, -3.0]
    assert torch.equal(apply_guidance(eps_c, eps_u, 1.0), eps_c)
    assert torch.equal(apply_guidance(eps_c, eps_u, 0.0), eps_u)


@pytest.mark.parametrize("source", ["diffusers", "training_betas"])
def test_cosine_schedule_endpoints(source):
    betas = make_scheduler("ddpm").betas.double() if source == "diffusers" else training_betas("cosine", 1000)
    alpha_bar = lambda t: math.cos((t / 1000 + 0.008) / 1.008 * math.pi / 2) ** 2  # noqa: E731
    assert betas[0].item() == pytest.approx(1 - alpha_bar(1) / alpha_bar(0), rel=1e-5)
    assert betas[500].item() == pytest.approx(1 - alpha_bar(501) / alpha_bar(500), rel=1e-5)
    assert betas[-1].item() == pytest.approx(0.999)  # clipped, as in improved DDPM
    assert len(betas) == 1000


def test_respacing_1000_to_64():
    scheduler = make_scheduler("ddpm")
    scheduler.set_timesteps(64)
    expected = [round(i * 999 / 63) for i in reversed(range(64))]
    assert scheduler.timesteps.tolist() == expected
    assert expected[:3] == [999, 983, 967] and expected[-1] == 0
    # A respaced step uses beta = 1 - abar[t] / abar[t_prev] between the kept timesteps.
    abar = scheduler.alphas_cumprod
    beta = 1 - abar[999] / abar[983]
    posterior = (1 - abar[983]) / (1 - abar[999]) * beta
    assert scheduler.previous_timestep(999) == 983
    assert scheduler._get_variance(999, torch.tensor(1.0)).item() == pytest.approx(math.log(beta), rel=1e-5)
    assert scheduler._get_variance(999, torch.tensor(-1.0)).item() == pytest.approx(math.log(posterior), rel=1e-5)


def test_training_betas_are_the_float64_schedules():
    cosine = training_betas("cosine", 1000)
    assert cosine.dtype == torch.float64
    # abar(999) = prod(1 - beta): the 0.999 cap leaves ~2.4e-9, the value that makes the first sampling step fragile.
    assert torch.prod(1 - cosine).item() == pytest.approx(2.4287e-9, rel=1e-3)
    assert torch.allclose(cosine, make_scheduler("ddpm").betas.double(), rtol=1e-6)
    linear = training_betas("linear", 500)
    assert linear[0].item() == pytest.approx(2e-4) and linear[-1].item() == pytest.approx(0.04) and len(linear) == 500
    with pytest.raises(ValueError, match="noise_schedule"):
        training_betas("sigmoid")


def test_normal_kl_hand_value():
    # KL(N(0, 1) || N(1, 1)) = 1/2; KL(N(0, 1) || N(0, e^2)) = 0.5 * (-1 + 2 + e^-2)
    zero = torch.tensor(0.0)
    assert normal_kl(zero, zero, torch.tensor(1.0), zero).item() == pytest.approx(0.5)
    assert normal_kl(zero, zero, zero, torch.tensor(2.0)).item() == pytest.approx(0.5 * (1 + math.exp(-2)))


def test_discretized_gaussian_log_likelihood_hand_value():
    # Bin of width 2/255 around the mean of N(0, 1): probability ~ (2/255) * phi(0).
    value = discretized_gaussian_log_likelihood(torch.tensor(0.0), torch.tensor(0.0), torch.tensor(0.0))
    assert value.item() == pytest.approx(math.log(2 / 255 / math.sqrt(2 * math.pi)), abs=1e-3)


def _loss_case(learn_sigma):
    loss = HybridDiffusionLoss(training_betas(), learn_sigma=learn_sigma)
    torch.manual_seed(0)
    x_start, noise = torch.randn(4, 3), torch.randn(4, 3)
    timesteps = torch.tensor([5, 100, 500, 999])
    return loss, x_start, noise, timesteps, loss.q_sample(x_start, timesteps, noise)


def test_q_sample_formula():
    loss, x_start, noise, timesteps, x_t = _loss_case(True)
    abar = make_scheduler("ddpm").alphas_cumprod[timesteps].unsqueeze(-1)
    assert torch.allclose(x_t, abar.sqrt() * x_start + (1 - abar).sqrt() * noise, atol=1e-6)


def test_hybrid_loss_fixed_variance_is_epsilon_mse():
    loss, x_start, noise, timesteps, x_t = _loss_case(False)
    eps = torch.zeros_like(noise)
    assert torch.allclose(loss(eps, x_start, x_t, timesteps, noise), (noise**2).mean(-1))


def test_hybrid_loss_is_zero_for_perfect_prediction():
    # The exact noise gives the true posterior mean; v = -1 gives the true posterior variance, so MSE = KL = 0.
    loss, x_start, noise, timesteps, x_t = _loss_case(True)
    output = torch.cat([noise, -torch.ones_like(noise)], dim=-1)
    assert torch.allclose(loss(output, x_start, x_t, timesteps, noise), torch.zeros(4), atol=1e-4)
    # v = +1 picks beta_t instead: the KL is then positive where beta_t and beta~_t differ (small t), and only
    # the variance values get its gradient.
    output = torch.cat([noise, torch.ones_like(noise)], dim=-1).requires_grad_()
    value = loss(output, x_start, x_t, timesteps, noise)
    assert (value[:2] > 0).all()
    value.sum().backward()
    assert torch.all(output.grad[:, :3] == 0) and output.grad[:2, 3:].abs().sum() > 0


def test_learned_range_log_variance_interpolates():
    loss = HybridDiffusionLoss(training_betas())
    t = torch.tensor([10])
    scheduler = make_scheduler("ddpm")
    beta = scheduler.betas[10]
    abar, abar_prev = scheduler.alphas_cumprod[10], scheduler.alphas_cumprod[9]
    posterior = beta * (1 - abar_prev) / (1 - abar)
    assert loss.model_log_variance(torch.ones(1, 1), t).item() == pytest.approx(math.log(beta), rel=1e-5)
    assert loss.model_log_variance(-torch.ones(1, 1), t).item() == pytest.approx(math.log(posterior), rel=1e-4)
    midpoint = loss.model_log_variance(torch.zeros(1, 1), t).item()
    assert midpoint == pytest.approx(0.5 * (math.log(beta) + math.log(posterior)), rel=1e-4)


def test_variational_bound_does_not_train_the_mean():
    # With the mean detached in L_vb, epsilon gets the same gradient with or without a learned variance.
    grads = []
    for learn_sigma in (False, True):
        loss, x_start, noise, timesteps, x_t = _loss_case(learn_sigma)
        eps = torch.full_like(noise, 0.3).requires_grad_()
        output = torch.cat([eps, torch.full_like(noise, 0.5)], dim=-1) if learn_sigma else eps
        loss(output, x_start, x_t, timesteps, noise).sum().backward()
        grads.append(eps.grad)
    assert torch.allclose(grads[0], grads[1])


def test_clamp_denoised_keeps_in_range_predictions_and_clamps_the_rest():
    from gendd_hf.sampling import clamp_denoised

    alpha_prod = torch.tensor(0.25)  # sqrt(abar) = 0.5, sqrt(1 - abar) = sqrt(0.75)
    x_start = torch.tensor([0.5, 4.0])
    eps = torch.tensor([1.0, -1.0])
    sample = 0.5 * x_start + 0.75**0.5 * eps
    low, high = torch.tensor([-1.0, -1.0]), torch.tensor([1.0, 1.0])
    clamped = clamp_denoised(eps, sample, alpha_prod, low, high)
    assert clamped[0].item() == pytest.approx(1.0, abs=1e-6)  # x_0 = 0.5 is in range: eps unchanged
    # x_0 = 4 is clamped to 1: eps' = (x_t - 0.5 * 1) / sqrt(0.75)
    assert clamped[1].item() == pytest.approx((sample[1].item() - 0.5) / 0.75**0.5, rel=1e-6)
