"""Sampling teacher-feature tokens with diffusers' schedulers: scheduler choice by name and the guided loop.

This module travels with saved models (``trust_remote_code``), so it imports only torch, diffusers and its
siblings.
"""

import torch
from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler

from .configuration_gendd import NOISE_SCHEDULES, SAMPLERS
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
    raise ValueError(f"Unknown sampler {sampler!r}; choose one of {list(SAMPLERS)}.")


def uses_learned_variance(scheduler) -> bool:
    return getattr(scheduler.config, "variance_type", None) == "learned_range"


def clamp_denoised(eps, sample, alpha_prod, low, high):
    """Clamp the predicted `x_0` to `[low, high]` and return the epsilon that predicts the clamped `x_0`.

    With `x_0 = (x_t - sqrt(1 - abar) eps) / sqrt(abar)` (DDPM Eq. 15), an epsilon error at the first respaced
    step (t = 999 of the cosine schedule, sqrt(abar) ~ 5e-5) is amplified ~2e4 times; clamping to the range of
    the training targets bounds it, for every epsilon-based scheduler alike.
    """
    x_start = (sample - (1 - alpha_prod).sqrt() * eps) / alpha_prod.sqrt()
    x_start = torch.maximum(torch.minimum(x_start, high), low)
    return (sample - alpha_prod.sqrt() * x_start) / (1 - alpha_prod).sqrt()


def guided_output(head, sample: torch.Tensor, timestep: torch.Tensor, condition: torch.Tensor,
                  guidance_scale: float) -> torch.Tensor:
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


@torch.no_grad()
def sample_tokens(
    head,
    condition: torch.Tensor,
    null_condition: torch.Tensor,
    scheduler,
    num_inference_steps: int,
    guidance_scale: float,
    num_samples: int,
    generator: torch.Generator | None = None,
    clip_range: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> torch.Tensor:
    """Run the reverse chain for every (sample, draw, token) at once.

    Args:
        head (`DiffusionHead`): the denoiser.
        condition (`torch.Tensor` of shape `(B, n, w)`): `head.embed_condition(z)`.
        null_condition (`torch.Tensor` of shape `(n, w)`): the dropped condition, `head.embed_condition(0)`.
        scheduler: from `make_scheduler`; its `set_timesteps` is called here.
        guidance_scale (`float`): 1.0 runs the conditional branch only; otherwise both branches share one
            head call per step.
        generator (`torch.Generator`, *optional*): the only source of noise, for reproducible samples.
        clip_range (`tuple` of two `(n, k)` tensors, *optional*): per-coordinate bounds of the predicted `x_0`.

    Returns:
        `torch.Tensor` of shape `(B, num_samples, n, k)`.
    """
    batch, num_tokens, _ = condition.shape
    k = head.token_dim
    shape = (batch, num_samples, num_tokens, k)
    sample = torch.randn(shape, generator=generator, device=condition.device, dtype=condition.dtype)
    sample = sample * scheduler.init_noise_sigma
    condition = branch_conditions(condition, null_condition, guidance_scale)
    learned_variance = uses_learned_variance(scheduler)
    scheduler.set_timesteps(num_inference_steps, device=condition.device)
    for t in scheduler.timesteps:
        model_input = scheduler.scale_model_input(sample, t)
        output = guided_output(head, model_input, t, condition, guidance_scale)
        if clip_range is not None:
            alpha_prod = scheduler.alphas_cumprod[int(t)].to(sample.device, sample.dtype)
            eps = clamp_denoised(output[..., :k], sample, alpha_prod, *clip_range)
            output = torch.cat([eps, output[..., k:]], dim=-1)
        if not learned_variance:
            output = output[..., :k]
        step = scheduler.step(output.reshape(-1, output.shape[-1]), t, sample.reshape(-1, k), generator=generator)
        sample = step.prev_sample.reshape(shape)
    return sample


def branch_conditions(condition: torch.Tensor, null_condition: torch.Tensor, guidance_scale: float) -> torch.Tensor:
    """`(B, n, w)` -> `(B, 1, n, w)`, shared by the draws; stacked with the null condition `(2, B, 1, n, w)` when
    guided (branch 0 conditional, branch 1 unconditional)."""
    condition = condition.unsqueeze(1)
    if guidance_scale == 1.0:
        return condition
    return torch.stack([condition, null_condition.expand_as(condition)])
