"""Configuration of GenDD students. Defaults are the paper's (arXiv 2507.14503); see `GenDDConfig`."""

from transformers import PretrainedConfig

# Diffusers schedulers running a reverse chain, and "mean", the one-step estimate of the conditional mean.
CHAIN_SAMPLERS = ("ddpm", "ddim", "dpm_solver")
SAMPLERS = (*CHAIN_SAMPLERS, "mean")
NOISE_SCHEDULES = {"cosine": "squaredcos_cap_v2", "linear": "linear"}
INFERENCE_PATHS = ("sampled", "probe")

# Named overrides of the paper's defaults. "cpu" narrows the diffusion head (width 1024 is a GPU setting).
PRESETS = {
    "paper": {},
    "cpu": {"head_width": 256, "diffusion_batch_mul": 4},
}


class GenDDConfig(PretrainedConfig):
    r"""
    Configuration of a [`GenDDForImageClassification`]: a timm student backbone, a diffusion head that samples
    teacher features conditioned on the student feature, and the frozen teacher classifier.

    Args:
        student_name (`str`, *optional*, defaults to `"resnet18"`):
            timm architecture of the student backbone (built with `pretrained=False`, `num_classes=0`).
        student_kwargs (`dict`, *optional*):
            Extra `timm.create_model` arguments for the student, e.g. `{"in_chans": 1}`.
        teacher_feature_dim (`int`, *optional*, defaults to 512):
            `d_t`, width of the teacher's pooled penultimate feature; must be divisible by `token_dim`.
        token_dim (`int`, *optional*, defaults to 64):
            `k`, size of one token of split tokenization.
        head_width (`int`, *optional*, defaults to 1024):
            Hidden width of the diffusion head.
        head_depth (`int`, *optional*, defaults to 3):
            Number of adaLN residual blocks of the diffusion head.
        num_train_timesteps (`int`, *optional*, defaults to 1000):
            Length of the training diffusion chain.
        noise_schedule (`str`, *optional*, defaults to `"cosine"`):
            `"cosine"` (Nichol & Dhariwal) or `"linear"`.
        learn_sigma (`bool`, *optional*, defaults to `True`):
            Learn the variance with the improved-DDPM hybrid loss ("learned range").
        cond_drop_prob (`float`, *optional*, defaults to 0.2):
            Probability of zeroing the student condition in training (classifier-free guidance).
        contraction (`float`, *optional*, defaults to 0.9):
            `lambda` of distribution contraction, in [0, 1]; 0 is the unsupervised setting.
        feature_mixup_beta (`float`, *optional*, defaults to 1.0):
            Beta(a, a) parameter of feature mixup; 0 disables it (as with image-level mixup/cutmix).
        diffusion_batch_mul (`int`, *optional*, defaults to 10):
            Times each (sample, token) row is repeated with its own timestep and noise in training.
        num_inference_steps (`int`, *optional*, defaults to 64):
            Sampling steps (the 1000-step chain respaced).
        guidance_scale (`float`, *optional*, defaults to 2.0):
            Classifier-free guidance scale `s`; 1.0 disables guidance.
        num_samples (`int`, *optional*, defaults to 5):
            Independent feature samples averaged before the teacher classifier.
        sampler (`str`, *optional*, defaults to `"ddpm"`):
            `"ddpm"` (the paper's), `"ddim"` or `"dpm_solver"` (DPM-Solver++): diffusers schedulers running
            `num_inference_steps` steps; or `"mean"`: one head call that estimates the conditional mean of the
            teacher feature (what the `num_samples` average approximates), ignoring `num_inference_steps` and
            `num_samples`. Setting `sampler="mean"` alone turns a saved model into a fast one.
        mean_timestep (`int`, *optional*, defaults to 700):
            Noise level of the `"mean"` sampler: the head's `x_0` prediction at this timestep is the estimate. Lower
            values pull the estimate toward the centre of the targets' range, higher ones amplify the head's epsilon
            error by `1 / sqrt(abar_t)`; 500-800 measured best on synthetic data (cosine schedule).
        clamp_first_step (`bool`, *optional*, defaults to `True`):
            Clamp the predicted `x_0` of the first step of a chain sampler, and only that one, to the per-coordinate
            range of the training targets (recorded by the model in training). The respaced chain starts at
            t = 999 of the cosine schedule, where sqrt(abar) ~ 5e-5 amplifies an epsilon error ~2e4 times; there a
            well-trained head predicts `E[x_0 | z]`, which lies inside that range, so the clamp changes nothing
            and sampling is the reference's exactly (measured: identical to 4 decimals with the exact epsilon of
            Gaussian targets). An under-trained head's chain diverges without it (synthetic conditional Gaussians,
            1,000 steps: mean error 1,099 without, 0.053 with); on Fashion-MNIST it moved sampled top-1 by +0.2
            points (74.2 -> 74.4, 500 images). `False` samples exactly as the reference. See docs/parity.md.
        inference_path (`str`, *optional*, defaults to `"sampled"`):
            What `forward` returns as `logits` in eval mode: `"sampled"` (teacher classifier on sampled
            features) or `"probe"` (the student's linear probe, one forward pass).
    """

    model_type = "gendd"

    def __init__(
        self,
        student_name: str = "resnet18",
        student_kwargs: dict | None = None,
        teacher_feature_dim: int = 512,
        token_dim: int = 64,
        head_width: int = 1024,
        head_depth: int = 3,
        num_train_timesteps: int = 1000,
        noise_schedule: str = "cosine",
        learn_sigma: bool = True,
        cond_drop_prob: float = 0.2,
        contraction: float = 0.9,
        feature_mixup_beta: float = 1.0,
        diffusion_batch_mul: int = 10,
        num_inference_steps: int = 64,
        guidance_scale: float = 2.0,
        num_samples: int = 5,
        sampler: str = "ddpm",
        mean_timestep: int = 700,
        clamp_first_step: bool = True,
        inference_path: str = "sampled",
        **kwargs,
    ):
        self.student_name = student_name
        self.student_kwargs = {} if student_kwargs is None else student_kwargs
        self.teacher_feature_dim = teacher_feature_dim
        self.token_dim = token_dim
        self.head_width = head_width
        self.head_depth = head_depth
        self.num_train_timesteps = num_train_timesteps
        self.noise_schedule = noise_schedule
        self.learn_sigma = learn_sigma
        self.cond_drop_prob = cond_drop_prob
        self.contraction = contraction
        self.feature_mixup_beta = feature_mixup_beta
        self.diffusion_batch_mul = diffusion_batch_mul
        self.num_inference_steps = num_inference_steps
        self.guidance_scale = guidance_scale
        self.num_samples = num_samples
        self.sampler = sampler
        self.mean_timestep = mean_timestep
        self.clamp_first_step = clamp_first_step
        self.inference_path = inference_path
        super().__init__(**kwargs)
        self.validate()

    @classmethod
    def from_preset(cls, preset: str, **kwargs) -> "GenDDConfig":
        """Build a config from a named preset of `PRESETS` (`"paper"`, `"cpu"`), with `kwargs` on top."""
        if preset not in PRESETS:
            raise ValueError(f"Unknown GenDD preset {preset!r}; choose one of {sorted(PRESETS)}.")
        return cls(**{**PRESETS[preset], **kwargs})

    @property
    def num_tokens(self) -> int:
        """`n = d_t / k`, tokens per teacher feature."""
        return self.teacher_feature_dim // self.token_dim

    @property
    def in_chans(self) -> int:
        return self.student_kwargs.get("in_chans", 3)

    def validate(self):
        """Raise `ValueError` naming the field, its value and what is allowed."""

        def check(field, ok, allowed):
            if not ok:
                raise ValueError(f"GenDDConfig.{field}={getattr(self, field)!r} is invalid: {allowed}.")

        def positive_int(field):
            value = getattr(self, field)
            check(field, isinstance(value, int) and not isinstance(value, bool) and value >= 1, "use an integer >= 1")

        check("student_kwargs", isinstance(self.student_kwargs, dict), "use a dict of timm.create_model arguments")
        for field in ("teacher_feature_dim", "token_dim", "head_width", "head_depth", "num_train_timesteps",
                      "diffusion_batch_mul", "num_inference_steps", "num_samples"):
            positive_int(field)
        check(
            "token_dim",
            self.teacher_feature_dim % self.token_dim == 0,
            f"it must divide teacher_feature_dim={self.teacher_feature_dim} (split tokenization); "
            f"e.g. use a power of two that divides it",
        )
        check("num_inference_steps", self.num_inference_steps <= self.num_train_timesteps,
              f"use at most num_train_timesteps={self.num_train_timesteps}")
        check("mean_timestep", isinstance(self.mean_timestep, int) and not isinstance(self.mean_timestep, bool)
              and 0 <= self.mean_timestep < self.num_train_timesteps,
              f"use an integer in [0, num_train_timesteps={self.num_train_timesteps})")
        check("noise_schedule", self.noise_schedule in NOISE_SCHEDULES, f"use one of {sorted(NOISE_SCHEDULES)}")
        check("sampler", self.sampler in SAMPLERS, f"use one of {list(SAMPLERS)}")
        check("inference_path", self.inference_path in INFERENCE_PATHS, f"use one of {list(INFERENCE_PATHS)}")
        for field in ("learn_sigma", "clamp_first_step"):
            check(field, isinstance(getattr(self, field), bool), "use True or False")
        check("contraction", 0.0 <= self.contraction <= 1.0, "lambda must lie in [0, 1] (0.9 in the paper)")
        check("cond_drop_prob", 0.0 <= self.cond_drop_prob < 1.0, "use a probability in [0, 1)")
        check("feature_mixup_beta", self.feature_mixup_beta >= 0.0, "use a value >= 0 (0 disables feature mixup)")
        check("guidance_scale", self.guidance_scale >= 0.0, "use a value >= 0 (1.0 disables guidance)")


__all__ = ["GenDDConfig"]
