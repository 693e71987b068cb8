"""The formulas of GenDD as pure functions: split tokenization, distribution contraction, guidance and
the improved-DDPM hybrid loss (epsilon MSE + variational bound on the learned variance).

This module travels with saved models (``trust_remote_code``), so it imports only torch.
"""

import math

import torch
import torch.nn.functional as F


def split_tokens(features: torch.Tensor, token_dim: int) -> torch.Tensor:
    """Split Tokenization (GenDD Sec. 2): cut `(..., d)` features into `(..., d // token_dim, token_dim)`.

    Token `i` is `features[..., i * token_dim:(i + 1) * token_dim]`.
    """
    dim = features.shape[-1]
    if dim % token_dim != 0:
        raise ValueError(
            f"feature dim {dim} is not divisible by token_dim={token_dim}; choose a token_dim that divides it."
        )
    return features.reshape(*features.shape[:-1], dim // token_dim, token_dim)


def merge_tokens(tokens: torch.Tensor) -> torch.Tensor:
    """Inverse of `split_tokens`: `(..., n, k)` -> `(..., n * k)`."""
    return tokens.flatten(-2)


def contract(
    features: torch.Tensor, labels: torch.Tensor, class_centres: torch.Tensor, contraction: float
) -> torch.Tensor:
    """Distribution Contraction (GenDD Sec. 4): `(1 - lambda) * f + lambda * (y @ W)`.

    Args:
        features (`torch.Tensor` of shape `(B, d_t)`): teacher features `f`.
        labels (`torch.Tensor`): hard labels `(B,)` (integers) or soft labels / teacher probabilities `(B, C)`.
        class_centres (`torch.Tensor` of shape `(C, d_t)`): the teacher classifier's weight `W`.
        contraction (`float`): `lambda` in [0, 1]; 0 leaves `f` unchanged (unsupervised).
    """
    if contraction == 0.0:
        return features
    if labels.dim() == 1:
        centres = class_centres[labels]
    else:
        centres = labels.to(class_centres.dtype) @ class_centres
    return (1.0 - contraction) * features + contraction * centres.to(features.dtype)


def apply_guidance(eps_cond: torch.Tensor, eps_uncond: torch.Tensor, guidance_scale: float) -> torch.Tensor:
    """Classifier-free guidance: `eps_uncond + s * (eps_cond - eps_uncond)`."""
    return eps_uncond + guidance_scale * (eps_cond - eps_uncond)


def normal_kl(mean1, logvar1, mean2, logvar2) -> torch.Tensor:
    """KL(N(mean1, exp(logvar1)) || N(mean2, exp(logvar2))), elementwise, in nats."""
    return 0.5 * (-1.0 + logvar2 - logvar1 + torch.exp(logvar1 - logvar2) + (mean1 - mean2) ** 2 * torch.exp(-logvar2))


def _approx_standard_normal_cdf(x: torch.Tensor) -> torch.Tensor:
    # The tanh approximation used by the improved-DDPM decoder term (Nichol & Dhariwal, 2021).
    return 0.5 * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3))))


def discretized_gaussian_log_likelihood(x: torch.Tensor, means: torch.Tensor, log_scales: torch.Tensor) -> torch.Tensor:
    """Log-likelihood of `x` under a Gaussian discretised into bins of width 2/255 on [-1, 1] (the t = 0 decoder
    term of improved DDPM, kept as in the GenDD/MAR reference). Elementwise, in nats."""
    centered = x - means
    inv_std = torch.exp(-log_scales)
    cdf_plus = _approx_standard_normal_cdf(inv_std * (centered + 1.0 / 255.0))
    cdf_min = _approx_standard_normal_cdf(inv_std * (centered - 1.0 / 255.0))
    log_cdf_plus = torch.log(cdf_plus.clamp(min=1e-12))
    log_one_minus_cdf_min = torch.log((1.0 - cdf_min).clamp(min=1e-12))
    log_cdf_delta = torch.log((cdf_plus - cdf_min).clamp(min=1e-12))
    return torch.where(x < -0.999, log_cdf_plus, torch.where(x > 0.999, log_one_minus_cdf_min, log_cdf_delta))


def training_betas(noise_schedule: str = "cosine", num_train_timesteps: int = 1000) -> torch.Tensor:
    """The training chain's `beta_t` in float64, as improved DDPM builds them: `"cosine"`, `beta_t = min(1 -
    abar(t + 1) / abar(t), 0.999)` with `abar(t) = cos((t / T + 0.008) / 1.008 * pi / 2)^2` (Nichol & Dhariwal
    Eq. 17); `"linear"`, evenly spaced from 1e-4 to 0.02 (scaled by 1000 / T).

    diffusers' schedulers hold the same values in float32, which moves the loss at t = 999 by 1.2e-5 of its value
    against the reference (its fixture in tests/test_parity_fixture.py); the loss takes these.
    """
    if noise_schedule == "cosine":

        def alpha_bar(t):
            return math.cos((t / num_train_timesteps + 0.008) / 1.008 * math.pi / 2) ** 2

        betas = [min(1 - alpha_bar(t + 1) / alpha_bar(t), 0.999) for t in range(num_train_timesteps)]
        return torch.tensor(betas, dtype=torch.float64, device="cpu")
    if noise_schedule == "linear":
        scale = 1000 / num_train_timesteps
        return torch.linspace(scale * 1e-4, scale * 0.02, num_train_timesteps, dtype=torch.float64, device="cpu")
    raise ValueError(f"Unknown noise_schedule {noise_schedule!r}; choose 'cosine' or 'linear'.")


class HybridDiffusionLoss(torch.nn.Module):
    """The training objective of the GenDD diffusion head: `L_simple + L_vb` (improved DDPM, Eq. 16).

    `L_simple` is the MSE between the true and predicted noise; with a learned variance (`learn_sigma=True`,
    "learned range": the head's second half `v` in [-1, 1] interpolates log beta_t and log beta~_t, Eq. 15),
    `L_vb` is the variational bound term in bits with the predicted mean detached, so it only trains the variance.
    Schedule buffers are derived in float64 from `betas` (`training_betas`) and kept in float32, as the reference does.
    """

    def __init__(self, betas: torch.Tensor, learn_sigma: bool = True):
        super().__init__()
        self.learn_sigma = learn_sigma
        # On the CPU even under a meta-device context (from_pretrained's empty init): these are computed, not loaded.
        with torch.device("cpu"):
            self._register_schedule(betas.double().cpu())

    def _register_schedule(self, betas: torch.Tensor) -> None:
        alphas_cumprod = torch.cumprod(1.0 - betas, dim=0)
        alphas_cumprod_prev = torch.cat([alphas_cumprod.new_ones(1), alphas_cumprod[:-1]])
        # beta~_t, the variance of q(x_{t-1} | x_t, x_0) (DDPM Eq. 7); clipped at t = 0 where it is 0.
        posterior_variance = betas * (1.0 - alphas_cumprod_prev) / (1.0 - alphas_cumprod)
        posterior_log_variance = torch.log(torch.cat([posterior_variance[1:2], posterior_variance[1:]]))
        buffers = {
            "sqrt_alphas_cumprod": alphas_cumprod.sqrt(),
            "sqrt_one_minus_alphas_cumprod": (1.0 - alphas_cumprod).sqrt(),
            "sqrt_recip_alphas_cumprod": (1.0 / alphas_cumprod).sqrt(),
            "sqrt_recipm1_alphas_cumprod": (1.0 / alphas_cumprod - 1.0).sqrt(),
            "log_betas": torch.log(betas),
            "posterior_log_variance_clipped": posterior_log_variance,
            "posterior_mean_coef1": betas * alphas_cumprod_prev.sqrt() / (1.0 - alphas_cumprod),
            "posterior_mean_coef2": (1.0 - alphas_cumprod_prev) * (1.0 - betas).sqrt() / (1.0 - alphas_cumprod),
        }
        for name, value in buffers.items():
            self.register_buffer(name, value.float(), persistent=False)

    def _at(self, name: str, timesteps: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        return getattr(self, name)[timesteps].unsqueeze(-1).to(like.dtype)

    def q_sample(self, x_start: torch.Tensor, timesteps: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """Forward process `x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps` (DDPM Eq. 4)."""
        return (
            self._at("sqrt_alphas_cumprod", timesteps, x_start) * x_start
            + self._at("sqrt_one_minus_alphas_cumprod", timesteps, x_start) * noise
        )

    def q_posterior_mean(self, x_start, x_t, timesteps) -> torch.Tensor:
        """Mean of q(x_{t-1} | x_t, x_0) (DDPM Eq. 7)."""
        return (
            self._at("posterior_mean_coef1", timesteps, x_t) * x_start
            + self._at("posterior_mean_coef2", timesteps, x_t) * x_t
        )

    def model_log_variance(self, variance_values: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        """Learned-range log variance: `frac * log beta_t + (1 - frac) * log beta~_t`, `frac = (v + 1) / 2`."""
        frac = (variance_values + 1.0) / 2.0
        max_log = self._at("log_betas", timesteps, variance_values)
        min_log = self._at("posterior_log_variance_clipped", timesteps, variance_values)
        return frac * max_log + (1.0 - frac) * min_log

    def vb_terms(self, eps, variance_values, x_start, x_t, timesteps) -> torch.Tensor:
        """Per-row variational bound in bits: KL for t > 0, the discretised decoder NLL at t = 0."""
        pred_x_start = (
            self._at("sqrt_recip_alphas_cumprod", timesteps, x_t) * x_t
            - self._at("sqrt_recipm1_alphas_cumprod", timesteps, x_t) * eps
        )
        model_mean = self.q_posterior_mean(pred_x_start, x_t, timesteps)
        model_log_variance = self.model_log_variance(variance_values, timesteps)
        true_mean = self.q_posterior_mean(x_start, x_t, timesteps)
        true_log_variance = self._at("posterior_log_variance_clipped", timesteps, x_t)
        kl = normal_kl(true_mean, true_log_variance, model_mean, model_log_variance).mean(-1) / math.log(2.0)
        decoder_nll = -discretized_gaussian_log_likelihood(
            x_start, means=model_mean, log_scales=0.5 * model_log_variance
        ).mean(-1) / math.log(2.0)
        return torch.where(timesteps == 0, decoder_nll, kl)

    def forward(self, model_output, x_start, x_t, timesteps, noise) -> torch.Tensor:
        """Per-row loss `(...,)` for head output `(..., k)` or `(..., 2k)` (epsilon, then variance values)."""
        if self.learn_sigma:
            eps, variance_values = model_output.chunk(2, dim=-1)
        else:
            eps, variance_values = model_output, None
        loss = F.mse_loss(eps, noise, reduction="none").mean(-1)
        if variance_values is not None:
            # The mean is detached so that L_vb trains only the variance (improved DDPM Sec. 3.1).
            loss = loss + self.vb_terms(eps.detach(), variance_values, x_start, x_t, timesteps)
        return loss
