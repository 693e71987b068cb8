"""Sampling teacher-feature tokens: diffusers' schedulers chosen by name and the guided loop, the one-step
conditional-mean estimate, and the cost of each in head evaluations.

This module travels with saved models (``trust_remote_code``), so it imports only torch, diffusers and its
siblings.
"""

import hashlib
from collections.abc import Sequence

import torch
from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler
from diffusers.utils.torch_utils import randn_tensor

from .configuration_gendd import CHAIN_SAMPLERS, NOISE_SCHEDULES, SAMPLERS
from .diffusion import apply_guidance


def make_scheduler(
    sampler: str = "ddpm", num_train_timesteps: int = 1000, noise_schedule: str = "cosine", learn_sigma: bool = True
):
    """A fresh diffusers scheduler for the training chain (`"ddpm"`, `"ddim"` or `"dpm_solver"`).

    DDPM uses "linspace" spacing, which respaces 1000 -> 64 steps exactly as improved DDPM does
    (`round(i * 999 / 63)`) and, with a learned variance, the "learned_range" variance. DDIM uses "trailing"
    spacing so that its fixed stride matches the steps it takes; DDIM and DPM-Solver++ use the epsilon half only.
    Clipping and thresholding stay off: features are not images in [-1, 1].
    """
    common = dict(
        num_train_timesteps=num_train_timesteps,
        beta_schedule=NOISE_SCHEDULES[noise_schedule],
        prediction_type="epsilon",
    )
    # Schedule tables are built on the CPU even under a meta-device context (from_pretrained's empty init).
    with torch.device("cpu"):
        if sampler == "ddpm":
            variance_type = "learned_range" if learn_sigma else "fixed_small"
            return DDPMScheduler(**common, variance_type=variance_type, clip_sample=False, timestep_spacing="linspace")
        if sampler == "ddim":
            return DDIMScheduler(**common, clip_sample=False, set_alpha_to_one=True, timestep_spacing="trailing")
        if sampler == "dpm_solver":
            return DPMSolverMultistepScheduler(**common, algorithm_type="dpmsolver++", solver_order=2)
    raise ValueError(f"No scheduler for sampler {sampler!r}; choose one of {list(CHAIN_SAMPLERS)}.")


def uses_learned_variance(scheduler) -> bool:
    return getattr(scheduler.config, "variance_type", None) == "learned_range"


def head_evaluations_per_image(
    sampler: str, num_inference_steps: int, guidance_scale: float, num_samples: int, num_tokens: int
) -> int:
    """Head rows evaluated to classify one image: one row is one token of one draw of one branch at one step.

    A chain sampler costs `num_inference_steps x branches x num_samples x num_tokens` (branches = 2 with
    guidance, `guidance_scale != 1`); the paper's setting (64 steps, guidance 2, 5 samples) costs 640 rows per
    token. `"mean"` costs `branches x num_tokens`. The probe path costs none.
    """
    if sampler not in SAMPLERS:
        raise ValueError(f"Unknown sampler {sampler!r}; choose one of {list(SAMPLERS)}.")
    branches = 1 if guidance_scale == 1.0 else 2
    if sampler == "mean":
        return branches * num_tokens
    return num_inference_steps * branches * num_samples * num_tokens


def predict_x_start(eps: torch.Tensor, sample: torch.Tensor, alpha_prod: torch.Tensor) -> torch.Tensor:
    """`x_0 = (x_t - sqrt(1 - abar) eps) / sqrt(abar)` (DDPM Eq. 15)."""
    return (sample - (1 - alpha_prod).sqrt() * eps) / alpha_prod.sqrt()


def clamp_denoised(eps, sample, alpha_prod, low, high):
    """Clamp the predicted `x_0` to `[low, high]` and return the epsilon that predicts the clamped `x_0`.

    With `x_0 = (x_t - sqrt(1 - abar) eps) / sqrt(abar)` (DDPM Eq. 15), an epsilon error at the first respaced
    step (t = 999 of the cosine schedule, sqrt(abar) ~ 5e-5) is amplified ~2e4 times; clamping that step's `x_0` to
    the range of the training targets bounds it, for every epsilon-based scheduler alike.
    """
    x_start = predict_x_start(eps, sample, alpha_prod).clamp(low, high)
    return (sample - alpha_prod.sqrt() * x_start) / (1 - alpha_prod).sqrt()


def guided_output(
    head, sample: torch.Tensor, timestep: torch.Tensor, condition: torch.Tensor, guidance_scale: float
) -> torch.Tensor:
    """One head call on `sample` `(B, S, n, k)` at one timestep, with classifier-free guidance.

    `condition` is `(B, 1, n, w)`, or `(2, B, 1, n, w)` (conditional, unconditional) when guided: both branches
    share the call, and the adaLN modulations are computed once per (branch, sample, token), not per draw. The
    guided epsilon is combined by `apply_guidance`; the variance values come from the conditional branch, as in
    the reference sampler.
    """
    output = head(sample, timestep, condition)
    if guidance_scale == 1.0:
        return output
    k = head.token_dim
    eps = apply_guidance(output[0, ..., :k], output[1, ..., :k], guidance_scale)
    return torch.cat([eps, output[0, ..., k:]], dim=-1)


def content_seeds(rows: torch.Tensor, seed: int) -> list[int]:
    """One noise seed per row of `rows` (an image, or a student feature): a 64-bit BLAKE2b digest of the row's bytes
    keyed with `seed`. Different images draw independent noise (the official sampler's draws are independent too),
    while an image draws the same noise alone or in any batch, on every call: its prediction is reproducible."""
    rows = rows.detach().to("cpu").contiguous()
    key = str(seed).encode()
    return [
        int.from_bytes(
            hashlib.blake2b(row.view(torch.uint8).numpy().tobytes(), digest_size=8, key=key).digest(), "little"
        )
        for row in rows
    ]


def image_generators(seeds: Sequence[int], device: torch.device) -> list[torch.Generator]:
    """One generator per image, seeded with its seed (`content_seeds`): an image's noise does not depend on its
    batch."""
    return [torch.Generator(device).manual_seed(seed) for seed in seeds]


@torch.no_grad()
def sample_tokens(
    head,
    condition: torch.Tensor,
    null_condition: torch.Tensor,
    scheduler,
    num_inference_steps: int,
    guidance_scale: float,
    num_samples: int,
    generator: torch.Generator | list[torch.Generator] | None = None,
    first_step_range: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> torch.Tensor:
    """Run the reverse chain for every (sample, draw, token) at once.

    Args:
        head (`DiffusionHead`): the denoiser.
        condition (`torch.Tensor` of shape `(B, n, w)`): `head.embed_condition(condition_norm(z))`.
        null_condition (`torch.Tensor` of shape `(n, w)`): the dropped condition, `head.null_condition()`.
        scheduler: from `make_scheduler`; its `set_timesteps` is called here.
        guidance_scale (`float`): 1.0 runs the conditional branch only; otherwise both branches share one
            head call per step.
        generator (`torch.Generator` or a list of `B` of them, *optional*): the only source of noise. A list gives
            each image its own (`image_generators`: an image's samples do not depend on its batch); one generator
            draws the batch's noise at once, as diffusers pipelines do.
        first_step_range (`tuple` of two `(n, k)` tensors, *optional*): per-coordinate bounds of the first step's
            predicted `x_0` (`GenDDSamplingConfig.clamp_first_step`); later steps are never clamped.

    Returns:
        `torch.Tensor` of shape `(B, num_samples, n, k)`.
    """
    batch, num_tokens, _ = condition.shape
    k = head.token_dim
    shape = (batch, num_samples, num_tokens, k)
    # The scheduler steps on `(B, num_samples * n * k)`, so that its noise is drawn per image from a list of
    # generators; with a learned variance its model output is `[epsilon | variance values]` along that axis.
    flat = (batch, num_samples * num_tokens * k)
    sample = randn_tensor(flat, generator=generator, device=condition.device, dtype=condition.dtype).reshape(shape)
    sample = sample * scheduler.init_noise_sigma
    condition = branch_conditions(condition, null_condition, guidance_scale)
    learned_variance = uses_learned_variance(scheduler)
    scheduler.set_timesteps(num_inference_steps, device=condition.device)
    for index, t in enumerate(scheduler.timesteps):
        model_input = scheduler.scale_model_input(sample, t)
        output = guided_output(head, model_input, t, condition, guidance_scale)
        eps = output[..., :k]
        if index == 0 and first_step_range is not None:
            alpha_prod = scheduler.alphas_cumprod[int(t)].to(sample.device, sample.dtype)
            eps = clamp_denoised(eps, sample, alpha_prod, *first_step_range)
        model_output = eps.reshape(flat)
        if learned_variance:
            model_output = torch.cat([model_output, output[..., k:].reshape(flat)], dim=1)
        step = scheduler.step(model_output, t, sample.reshape(flat), generator=generator)
        sample = step.prev_sample.reshape(shape)
    return sample


def branch_conditions(condition: torch.Tensor, null_condition: torch.Tensor, guidance_scale: float) -> torch.Tensor:
    """`(B, n, w)` -> `(B, 1, n, w)`, shared by the draws; stacked with the null condition `(2, B, 1, n, w)` when
    guided (branch 0 conditional, branch 1 unconditional)."""
    condition = condition.unsqueeze(1)
    if guidance_scale == 1.0:
        return condition
    return torch.stack([condition, null_condition.expand_as(condition)])


@torch.no_grad()
def estimate_mean_tokens(
    head,
    condition: torch.Tensor,
    null_condition: torch.Tensor,
    alphas_cumprod: torch.Tensor,
    timestep: int,
    guidance_scale: float,
    centre: torch.Tensor,
) -> torch.Tensor:
    """One-step estimate of the conditional mean `E[x_0 | z]` of the tokens, from one (guided) head call.

    The head's `x_0` prediction at noise level `t` is Tweedie's estimate `E[x_0 | x_t, z]`, and averaging it over
    `x_t ~ q(x_t | z)` gives `E[x_0 | z]` exactly (the law of total expectation): the quantity that the average of
    `num_samples` features approximates, and all that the linear teacher classifier needs. `q(x_t | z)` is
    approximated by `N(sqrt(abar) c, (1 - abar) I)` around a centre `c`, and the prediction is taken at its mean
    `x_t = sqrt(abar) c`. For Gaussian targets `N(mu, s^2)` this is exact up to a pull toward `c` by the factor
    `abar s^2 / (abar s^2 + 1 - abar)`, small when `s^2` (the spread of the feature given the student) is;
    `t` trades that pull against the `1 / sqrt(abar)` amplification of the head's epsilon error, which makes
    `t` near 999 useless (the reason the chains, which start there, clamp their first step).

    Args:
        condition (`torch.Tensor` of shape `(B, n, w)`), null_condition (`(n, w)`): as for `sample_tokens`.
        alphas_cumprod (`torch.Tensor` of shape `(T,)`): `abar_t` of the training chain.
        timestep (`int`): the noise level `t`.
        centre (`torch.Tensor` broadcastable to `(n, k)`): `c`.

    Returns:
        `torch.Tensor` of shape `(B, 1, n, k)`.
    """
    batch, num_tokens, _ = condition.shape
    alpha_prod = alphas_cumprod[timestep].to(condition.device, condition.dtype)
    sample = (alpha_prod.sqrt() * centre).to(condition.dtype).expand(batch, 1, num_tokens, head.token_dim)
    timesteps = torch.tensor(timestep, device=condition.device)
    condition = branch_conditions(condition, null_condition, guidance_scale)
    eps = guided_output(head, sample, timesteps, condition, guidance_scale)[..., : head.token_dim]
    return predict_x_start(eps, sample, alpha_prod)
