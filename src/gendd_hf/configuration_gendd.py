"""Configuration of GenDD students: the model (`GenDDConfig`) and how it samples (`GenDDSamplingConfig`). Defaults are
the paper's (arXiv 2507.14503) and the official code's."""

import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields, replace

from transformers import PretrainedConfig
from transformers.utils import cached_file


# Diffusers schedulers running a reverse chain, and "mean", the one-step estimate of the conditional mean.
CHAIN_SAMPLERS = ("ddpm", "ddim", "dpm_solver")
SAMPLERS = (*CHAIN_SAMPLERS, "mean")
NOISE_SCHEDULES = {"cosine": "squaredcos_cap_v2", "linear": "linear"}
INFERENCE_PATHS = ("sampled", "probe")
PROJECTION_PATH = "projection"
"""Name of stage 1's inference path, `classify_features(feature_projection(z))`, in metric names."""
SAMPLING_CONFIG_NAME = "sampling_config.json"


def _raise_unless(ok: bool, owner: str, field: str, value, allowed: str) -> None:
    if not ok:
        raise ValueError(f"{owner}.{field}={value!r} is invalid: {allowed}.")


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True)
class GenDDSamplingConfig:
    r"""
    How a [`GenDDForImageClassification`] samples teacher features: the model's `sampling_config`, saved as
    `sampling_config.json` beside `config.json` (in the spirit of transformers' `GenerationConfig` and diffusers'
    scheduler configs). `generate_features` and the sampled path of `forward` read it; each call may override it, and
    `from_pretrained(..., sampling_config={...})` (also `pipeline(..., model_kwargs={"sampling_config": {...}})`)
    replaces fields of the saved one.

    Args:
        sampler (`str`, *optional*, defaults to `"ddpm"`):
            `"ddpm"` (the paper's), `"ddim"` or `"dpm_solver"` (DPM-Solver++): diffusers schedulers running
            `num_inference_steps` steps; or `"mean"`: one head call that estimates the conditional mean of the
            teacher feature (what the `num_samples` average approximates), ignoring `num_inference_steps` and
            `num_samples`.
        num_inference_steps (`int`, *optional*, defaults to 64):
            Sampling steps (the 1000-step chain respaced).
        guidance_scale (`float`, *optional*, defaults to 2.0):
            Classifier-free guidance scale `s`; 1.0 disables guidance.
        num_samples (`int`, *optional*, defaults to 5):
            Independent feature samples averaged before the teacher classifier.
        seed (`int`, *optional*, defaults to 0):
            Seed of the sampling noise when no `generator` is given. Each image then draws its noise from its own
            generator, seeded from this seed and the image's pixels (`sampling.content_seeds`): draws are independent
            across images, as in the official sampler, and an image's prediction is the same on every call, whatever
            its batch and batch mates.
        mean_timestep (`int`, *optional*, defaults to 700):
            Noise level of the `"mean"` sampler: the head's `x_0` prediction at this timestep is the estimate. Lower
            values pull the estimate toward the centre of the targets' range, higher ones amplify the head's epsilon
            error by `1 / sqrt(abar_t)`.
        clamp_first_step (`bool`, *optional*, defaults to `True`):
            Clamp the predicted `x_0` of the first step of a chain sampler, and only that one, to the per-coordinate
            range of the training targets (recorded by the model in training). The respaced chain starts at
            t = 999 of the cosine schedule, where sqrt(abar) ~ 5e-5 amplifies an epsilon error ~2e4 times; there a
            well-trained head predicts `E[x_0 | z]`, which lies inside that range, so the clamp changes nothing
            and sampling is the reference's exactly (measured: identical to 4 decimals with the exact epsilon of
            Gaussian targets). An under-trained head's chain diverges without it (synthetic conditional Gaussians,
            1,000 steps: mean error 1,099 without, 0.053 with); on the three Fashion-MNIST bench students it raised
            sampled top-1 by +1.80, +0.75 and +0.35 points (2,000 images, same noise). `False` samples exactly as
            the reference. See docs/parity.md.
    """

    sampler: str = "ddpm"
    num_inference_steps: int = 64
    guidance_scale: float = 2.0
    num_samples: int = 5
    seed: int = 0
    mean_timestep: int = 700
    clamp_first_step: bool = True

    def __post_init__(self):
        def check(field, ok, allowed):
            _raise_unless(ok, "GenDDSamplingConfig", field, getattr(self, field), allowed)

        check("sampler", self.sampler in SAMPLERS, f"use one of {list(SAMPLERS)}")
        for field in ("num_inference_steps", "num_samples"):
            check(field, _is_int(getattr(self, field)) and getattr(self, field) >= 1, "use an integer >= 1")
        check(
            "guidance_scale",
            isinstance(self.guidance_scale, (int, float)) and self.guidance_scale >= 0.0,
            "use a value >= 0 (1.0 disables guidance)",
        )
        check("seed", _is_int(self.seed) and self.seed >= 0, "use an integer >= 0")
        check("mean_timestep", _is_int(self.mean_timestep) and self.mean_timestep >= 0, "use an integer >= 0")
        check("clamp_first_step", isinstance(self.clamp_first_step, bool), "use True or False")

    def update(self, **overrides) -> "GenDDSamplingConfig":
        """A copy with the fields of `overrides` that are not `None` replaced."""
        unknown = set(overrides) - {field.name for field in fields(self)}
        if unknown:
            raise ValueError(
                f"GenDDSamplingConfig has no field {sorted(unknown)}; its fields are "
                f"{[field.name for field in fields(self)]}."
            )
        return replace(self, **{name: value for name, value in overrides.items() if value is not None})

    def to_dict(self) -> dict:
        return asdict(self)

    def save_pretrained(self, save_directory: str | os.PathLike) -> None:
        os.makedirs(save_directory, exist_ok=True)
        with open(os.path.join(save_directory, SAMPLING_CONFIG_NAME), "w", encoding="utf-8") as file:
            json.dump(self.to_dict(), file, indent=2, sort_keys=True)
            file.write("\n")

    @classmethod
    def from_pretrained(
        cls, pretrained_model_name_or_path: str | os.PathLike, **hub_kwargs
    ) -> "GenDDSamplingConfig | None":
        """The `sampling_config.json` of a local folder or a Hub repo (`hub_kwargs` as for `from_pretrained`:
        `revision`, `token`, `cache_dir`, `local_files_only`, `subfolder`...); `None` when it has none."""
        path = cached_file(
            pretrained_model_name_or_path,
            SAMPLING_CONFIG_NAME,
            _raise_exceptions_for_missing_entries=False,
            **hub_kwargs,
        )
        if path is None:
            return None
        fix = (
            "Write it again (model.sampling_config.save_pretrained(folder), or download it again), or delete it to "
            "sample with the defaults and the sampling fields of config.json."
        )
        with open(path, encoding="utf-8") as file:
            text = file.read()
        try:
            values = json.loads(text)
        except json.JSONDecodeError as error:
            problem = "is empty" if not text.strip() else f"is not valid JSON ({error})"
            raise ValueError(f"The sampling config {path} {problem}. {fix}") from error
        if not isinstance(values, dict):
            raise ValueError(f"The sampling config {path} holds a {type(values).__name__}, not a JSON object. {fix}")
        try:
            return cls(**values)
        except TypeError as error:
            raise ValueError(f"{path} is not a GenDD sampling config ({error}). {fix}") from error

    @classmethod
    def from_model_config(cls, config: PretrainedConfig) -> "GenDDSamplingConfig":
        """The defaults, with the sampling fields that folders saved before `sampling_config.json` existed kept in
        their `config.json`."""
        legacy = {field.name: getattr(config, field.name) for field in fields(cls) if hasattr(config, field.name)}
        return cls(**legacy)


OFFICIAL_SAMPLING = {
    "the official ImageNet evaluation (sh/imagenet_eval_*.sh: 64 steps, 5 samples)": GenDDSamplingConfig(),
    "the official CIFAR evaluation (sh/evaluate.sh: the CIFAR model's 100 steps, 5 samples)": GenDDSamplingConfig(
        num_inference_steps=100
    ),
}
"""The official code's sampling settings (DDPM, guidance 2.0): GenDD_imagenet/models/diff_model.py samples with 64
steps, GenDD_cifar/models/diff_model.py with 100; both evaluation scripts average `--num_sampling 5` samples."""


def official_sampling_name(sampling: GenDDSamplingConfig) -> str | None:
    """Which official setting `sampling`'s sampler, steps, guidance and samples are (a key of `OFFICIAL_SAMPLING`);
    `None` if neither."""
    keys = ("sampler", "num_inference_steps", "guidance_scale", "num_samples")
    for name, official in OFFICIAL_SAMPLING.items():
        if all(getattr(sampling, key) == getattr(official, key) for key in keys):
            return name
    return None


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
            Probability of dropping the student condition of a training row (classifier-free guidance).
        contraction (`float`, *optional*, defaults to 0.9):
            `lambda` of distribution contraction, in [0, 1]; 0 is the unsupervised setting.
        feature_mixup_beta (`float`, *optional*, defaults to 1.0):
            Beta(a, a) parameter of feature mixup; 0 disables it (as with image-level mixup/cutmix).
        diffusion_batch_mul (`int`, *optional*, defaults to 10):
            Times each (sample, token) row is repeated with its own timestep and noise in training.
        inference_path (`str`, *optional*, defaults to `"sampled"`):
            What `forward` returns as `logits` in eval mode: `"sampled"` (teacher classifier on sampled
            features, as the model's `sampling_config` says) or `"probe"` (the student's linear probe, one forward
            pass).
        pretrained_cfg (`dict`, *optional*):
            timm's data config of the run's evaluation transform (`input_size`, `interpolation`, `mean`, `std`,
            `crop_pct`, `crop_mode`). It makes `config.json` also the config of transformers'
            `TimmWrapperImageProcessor`, so `AutoImageProcessor` and `pipeline("image-classification")` preprocess
            exactly as the evaluation did. Filled from the student's timm defaults when not given.
        temperatures (`dict`, *optional*):
            Temperature of each inference path, `{"probe": T, "sampled": T}`, fitted after training on held-out images
            (`gendd_hf.calibration.calibrate_model`): `forward` divides that path's logits by it in eval mode, so that
            their softmax (the scores of `pipeline("image-classification")`) is a calibrated probability; the top-1
            never changes. A path without one has 1.0 (models saved before temperatures existed).

    How the model samples (sampler, steps, guidance, samples, seed) is the model's `sampling_config`
    ([`GenDDSamplingConfig`], saved as `sampling_config.json`), not part of this config.
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
        inference_path: str = "sampled",
        pretrained_cfg: dict | None = None,
        temperatures: dict | None = None,
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
        self.inference_path = inference_path
        # As JSON holds it (lists, not tuples), so that a saved config loads back equal.
        self.pretrained_cfg = None if pretrained_cfg is None else json.loads(json.dumps(dict(pretrained_cfg)))
        self.temperatures = dict(temperatures or {})
        # AutoImageProcessor reads the processor class from config.json, beside `pretrained_cfg`.
        kwargs.setdefault("image_processor_type", "TimmWrapperImageProcessor")
        super().__init__(**kwargs)
        self.validate()

    @classmethod
    def from_teacher(cls, teacher, class_names: Sequence[str] | None = None, **kwargs) -> "GenDDConfig":
        """A config sized by `teacher` (a `TimmTeacher`, or anything with `feature_dim` and `num_classes`): its feature
        width as `teacher_feature_dim` and its classes as labels, named by `class_names` when given; `kwargs` (any
        other field) on top."""
        labels = {"id2label": dict(enumerate(class_names))} if class_names else {"num_labels": teacher.num_classes}
        return cls(teacher_feature_dim=teacher.feature_dim, **labels, **kwargs)

    @classmethod
    def get_config_dict(cls, pretrained_model_name_or_path, **kwargs) -> tuple[dict, dict]:
        """`PretrainedConfig.get_config_dict`, refusing the config of another model type: transformers only warns,
        and `GenDDForImageClassification.from_pretrained` would then build a random student and a zero teacher
        classifier from, e.g., a ViT folder."""
        config_dict, kwargs = super().get_config_dict(pretrained_model_name_or_path, **kwargs)
        found = config_dict.get("model_type", cls.model_type)
        if found != cls.model_type:
            raise ValueError(
                f"{pretrained_model_name_or_path} holds a {found!r} model, not a GenDD model (model_type "
                f"{cls.model_type!r}), and would load as a random student with a zero teacher classifier. Load it "
                "with the class of its own type (e.g. transformers.AutoModelForImageClassification), or give a "
                "folder saved by GenDDForImageClassification.save_pretrained (a GenDD training run's output_dir)."
            )
        return config_dict, kwargs

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
            _raise_unless(ok, "GenDDConfig", field, getattr(self, field), allowed)

        check("student_kwargs", isinstance(self.student_kwargs, dict), "use a dict of timm.create_model arguments")
        for field in (
            "teacher_feature_dim",
            "token_dim",
            "head_width",
            "head_depth",
            "num_train_timesteps",
            "diffusion_batch_mul",
        ):
            check(field, _is_int(getattr(self, field)) and getattr(self, field) >= 1, "use an integer >= 1")
        check(
            "token_dim",
            self.teacher_feature_dim % self.token_dim == 0,
            f"it must divide teacher_feature_dim={self.teacher_feature_dim} (split tokenization); "
            f"e.g. use a power of two that divides it",
        )
        check("noise_schedule", self.noise_schedule in NOISE_SCHEDULES, f"use one of {sorted(NOISE_SCHEDULES)}")
        check("inference_path", self.inference_path in INFERENCE_PATHS, f"use one of {list(INFERENCE_PATHS)}")
        check("learn_sigma", isinstance(self.learn_sigma, bool), "use True or False")
        check("contraction", 0.0 <= self.contraction <= 1.0, "lambda must lie in [0, 1] (0.9 in the paper)")
        check("cond_drop_prob", 0.0 <= self.cond_drop_prob < 1.0, "use a probability in [0, 1)")
        check("feature_mixup_beta", self.feature_mixup_beta >= 0.0, "use a value >= 0 (0 disables feature mixup)")
        check(
            "temperatures",
            all(
                path in INFERENCE_PATHS and isinstance(t, (int, float)) and t > 0
                for path, t in self.temperatures.items()
            ),
            f"give a positive temperature per inference path, keys from {list(INFERENCE_PATHS)}",
        )
        check(
            "pretrained_cfg",
            self.pretrained_cfg is None or "input_size" in self.pretrained_cfg,
            "give timm's data config, with an 'input_size' (channels, height, width)",
        )


__all__ = ["OFFICIAL_SAMPLING", "GenDDConfig", "GenDDSamplingConfig", "official_sampling_name"]
