"""`GenDDTrainingArguments`: the Trainer's arguments plus the method, the stage and GenDD's optimisation settings."""

import os
import warnings
from dataclasses import dataclass, field

import torch
from transformers import TrainingArguments
from transformers.utils import logging

from .configuration_gendd import INFERENCE_PATHS, PROJECTION_PATH, SAMPLERS
from .losses import DKD_DEFAULTS, GENDD_METHODS, METHODS, UNSUPERVISED_METHODS


STAGES = ("main", "pretrain")
"""`pretrain`: GenDD's stage 1 (student -> linear projection -> frozen teacher classifier, cross-entropy);
`main`: the method itself (stage 2 of GenDD)."""

logger = logging.get_logger(__name__)


@dataclass
class GenDDTrainingArguments(TrainingArguments):
    r"""
    [`~transformers.TrainingArguments`] for [`GenDDTrainer`]: the distillation method, the stage, and the
    optimisation settings of the GenDD paper (arXiv 2507.14503). Parsed from the command line by
    `HfArgumentParser`, like any `TrainingArguments`.

    Defaults that differ from `TrainingArguments`: `lr_scheduler_type="cosine"` (transformers' per-step cosine after
    `warmup_steps`; the recipes set the official per-epoch schedules through `lr_scheduler_kwargs`, see
    `gendd_hf.schedules`), `weight_decay=0.05`, `max_grad_norm=0` (no clipping, as the GenDD code),
    `remove_unused_columns=False` (the raw `image` column must reach the collator) and
    `ddp_find_unused_parameters=False` (the trainer freezes what a method does not use). Where torch finds no
    accelerator, `dataloader_pin_memory` is switched off (pinned memory only speeds up copies to one, and torch warns
    about it on every data loader otherwise), and a run of several processes (`accelerate launch --multi_gpu`,
    `torchrun`: `WORLD_SIZE` > 1) sets `use_cpu`, so that they train as one over gloo; without it each process would
    train alone, into the same `output_dir`.

    In the main stage, AdamW's beta2 follows a cosine from `adam_beta2_start` to `adam_beta2_end` over training
    (`adam_beta2` is overridden at every step; optimizers without betas are left alone); stage 1 keeps `adam_beta2`
    (0.999), as the GenDD code's stage 1 does.
    """

    method: str = field(default="gendd", metadata={"help": "Distillation method.", "choices": list(METHODS)})
    stage: str = field(
        default="main",
        metadata={
            "help": "'pretrain' (stage 1: projection to the teacher space + cross-entropy) or 'main'.",
            "choices": list(STAGES),
        },
    )
    init_from: str | None = field(
        default=None,
        metadata={"help": "Folder of a GenDD model (e.g. saved by stage 1) whose student weights start training."},
    )
    kd_temperature: float = field(
        default=4.0, metadata={"help": "Softening temperature T of the `kd` and `kl_unsup` losses."}
    )
    dkd_defaults: str = field(
        default="imagenet",
        metadata={"help": "Published DKD settings the dkd_* options default to.", "choices": sorted(DKD_DEFAULTS)},
    )
    dkd_alpha: float | None = field(default=None, metadata={"help": "DKD weight of TCKD (default: dkd_defaults's)."})
    dkd_beta: float | None = field(default=None, metadata={"help": "DKD weight of NCKD (default: dkd_defaults's)."})
    dkd_temperature: float | None = field(default=None, metadata={"help": "DKD temperature (default: dkd_defaults's)."})
    dkd_warmup_epochs: float | None = field(
        default=None, metadata={"help": "Epochs over which the DKD loss ramps in (default: dkd_defaults's)."}
    )
    adam_beta2_start: float = field(
        default=0.95,
        metadata={"help": "AdamW beta2 at the first step (0.95 in the official CIFAR code, 0.96 in the ImageNet one)."},
    )
    adam_beta2_end: float = field(default=0.999, metadata={"help": "AdamW beta2 at the last step (cosine ramp)."})
    head_weight_decay: float = field(
        default=0.0,
        metadata={
            "help": "Weight decay of the diffusion head (0 in GenDD; its condition LayerNorm takes weight_decay)."
        },
    )
    eval_inference_paths: list[str] = field(
        default_factory=lambda: list(INFERENCE_PATHS),
        metadata={
            "help": "GenDD paths scored by evaluate(): 'sampled' and/or 'probe' (baselines: 'probe' only).",
            "choices": list(INFERENCE_PATHS),
        },
    )
    eval_num_inference_steps: int | None = field(
        default=None, metadata={"help": "Sampling steps in evaluation (default: the model's sampling_config)."}
    )
    eval_guidance_scale: float | None = field(
        default=None, metadata={"help": "Guidance scale in evaluation (default: the model's sampling_config)."}
    )
    eval_num_samples: int | None = field(
        default=None, metadata={"help": "Feature samples averaged per image in evaluation (default: the model's)."}
    )
    eval_sampler: str | None = field(
        default=None, metadata={"help": f"Sampler in evaluation, one of {list(SAMPLERS)} (default: the model's)."}
    )
    eval_seed: int | None = field(
        default=None,
        metadata={"help": "Seed of the sampling noise in evaluation (default: the model's sampling seed)."},
    )
    one_pass: bool = field(
        default=False,
        metadata={
            "help": "After GenDD training, refit the probe to the sampled path (one sample per image, up to "
            "10,000 training images (gendd_hf.one_pass), so the probe path and export_student() give the "
            "sampled path's answer in one student forward pass."
        },
    )
    one_pass_guidance_scale: float | None = field(
        default=None, metadata={"help": "Guidance scale of the sampled path one_pass distils (default: the model's)."}
    )
    teacher_features_column: str = field(
        default="teacher_features",
        metadata={"help": "Batch key of precomputed teacher features; when present the teacher is not run."},
    )
    teacher_logits_column: str = field(
        default="teacher_logits",
        metadata={"help": "Batch key of precomputed teacher logits (computed from the features when absent)."},
    )
    lr_scheduler_type: str = field(
        default="cosine",
        metadata={
            "help": "Learning-rate schedule. The recipes use the official per-epoch ones through "
            "lr_scheduler_kwargs (gendd_hf.schedules): ImageNet and CC3M a cosine after warmup_epochs down to min_lr "
            "1e-6, CIFAR-100 step decay (constant_with_warmup) at epochs 150/180/210 after warmup_epochs. Without "
            "those kwargs, transformers' per-step schedule."
        },
    )
    weight_decay: float = field(
        default=0.05,
        metadata={
            "help": "AdamW weight decay of every trained parameter outside the diffusion head (norms and biases "
            "too, as in the GenDD code)."
        },
    )
    max_grad_norm: float = field(
        default=0.0, metadata={"help": "Gradient clipping norm; 0 (the default) clips nothing, as the GenDD code."}
    )
    remove_unused_columns: bool = field(
        default=False, metadata={"help": "Keep False for image data: the collator needs the raw image column."}
    )
    ddp_find_unused_parameters: bool | None = field(
        default=False, metadata={"help": "False: parameters a method does not use are frozen, none is unused."}
    )
    resume_from_checkpoint: str | None = field(
        default=None,
        metadata={
            "help": "A checkpoint-N folder to resume training from, or 'latest' (or 'true') for the latest one "
            "in output_dir."
        },
    )
    channels_last: bool = field(
        default=False,
        metadata={
            "help": "Train with the student, an online teacher and the images in the channels-last memory format "
            "(convolutions in NHWC: faster for CNN students on GPUs, with --bf16 above all)."
        },
    )

    def __post_init__(self):
        # torch.accelerator (torch >= 2.6) is what the DataLoader checks; before it, pinning needed CUDA.
        accelerator = getattr(torch, "accelerator", torch.cuda)
        world_size = int(os.environ.get("WORLD_SIZE", "1"))
        if world_size > 1 and not self.use_cpu and not accelerator.is_available():
            # Before the parent's __post_init__, which sets up the process group from use_cpu.
            logger.info(f"{world_size} processes and no accelerator: use_cpu=True, they train together over gloo.")
            self.use_cpu = True
        super().__post_init__()
        if not accelerator.is_available():
            self.dataloader_pin_memory = False
        # Without push_to_hub the Trainer ignores them; hub_model_id still names the repo of a "hub" resume.
        resumes_from_hub = str(self.resume_from_checkpoint or "").lower().startswith("hub")
        hub_flags = [
            f"{name}={value!r}"
            for name, value, default in (
                ("hub_model_id", None if resumes_from_hub else self.hub_model_id, None),
                ("hub_strategy", str(self.hub_strategy.value), "every_save"),
            )
            if value != default
        ]
        if hub_flags and not self.push_to_hub:
            warnings.warn(
                f"{' and '.join(hub_flags)} given without push_to_hub: nothing will be pushed to the Hub. Add "
                "--push_to_hub (push_to_hub=True) to push, or drop the hub flags.",
                UserWarning,
                stacklevel=2,
            )

        def check(name, ok, allowed):
            if not ok:
                raise ValueError(f"GenDDTrainingArguments.{name}={getattr(self, name)!r} is invalid: {allowed}.")

        check("method", self.method in METHODS, f"use one of {list(METHODS)}")
        check("stage", self.stage in STAGES, f"use one of {list(STAGES)}")
        check("kd_temperature", self.kd_temperature > 0, "use a temperature > 0")
        check("dkd_defaults", self.dkd_defaults in DKD_DEFAULTS, f"use one of {sorted(DKD_DEFAULTS)}")
        for name in ("dkd_alpha", "dkd_beta"):
            check(name, getattr(self, name) is None or getattr(self, name) >= 0, "use a weight >= 0")
        for name in ("dkd_temperature", "dkd_warmup_epochs"):
            check(name, getattr(self, name) is None or getattr(self, name) > 0, "use a value > 0")
        for name in ("adam_beta2_start", "adam_beta2_end"):
            check(name, 0.0 <= getattr(self, name) < 1.0, "use a value in [0, 1)")
        check("head_weight_decay", self.head_weight_decay >= 0, "use a value >= 0")
        check(
            "eval_inference_paths",
            len(self.eval_inference_paths) > 0 and set(self.eval_inference_paths) <= set(INFERENCE_PATHS),
            f"use a non-empty subset of {list(INFERENCE_PATHS)}",
        )
        for name in ("eval_num_inference_steps", "eval_num_samples"):
            check(name, getattr(self, name) is None or getattr(self, name) >= 1, "use an integer >= 1 or None")
        check(
            "eval_guidance_scale",
            self.eval_guidance_scale is None or self.eval_guidance_scale >= 0,
            "use a value >= 0 or None",
        )
        check(
            "eval_sampler",
            self.eval_sampler is None or self.eval_sampler in SAMPLERS,
            f"use one of {list(SAMPLERS)} or None",
        )
        check(
            "one_pass",
            not self.one_pass or (self.method in GENDD_METHODS and self.stage == "main"),
            f"one_pass distils the diffusion head: use it with method in {list(GENDD_METHODS)} and stage='main'",
        )
        check(
            "one_pass_guidance_scale",
            self.one_pass_guidance_scale is None or self.one_pass_guidance_scale >= 0,
            "use a value >= 0 or None",
        )

    @property
    def uses_labels(self) -> bool:
        """Whether training needs labels (all methods except the unsupervised ones)."""
        return self.method not in UNSUPERVISED_METHODS

    @property
    def uses_teacher_outputs(self) -> bool:
        """Whether training needs the teacher's features/logits per batch (the teacher model or stored outputs).

        `ce` needs none; stage 1 needs them only without labels (its target is then the teacher's softmax).
        """
        if self.stage == "pretrain":
            return not self.uses_labels
        return self.method != "ce"

    @property
    def uses_teacher_classifier(self) -> bool:
        """Whether the model's copy of the teacher classifier is used (GenDD and stage 1)."""
        return self.stage == "pretrain" or self.method in GENDD_METHODS

    @property
    def trainable_modules(self) -> tuple[str, ...]:
        """Top-level modules of `GenDDForImageClassification` that this method and stage train; the rest is frozen."""
        if self.stage == "pretrain":
            return ("student", "feature_projection")
        if self.method in GENDD_METHODS:
            return ("student", "head", "probe")
        return ("student", "probe")

    @property
    def inference_paths(self) -> tuple[str, ...]:
        """Paths scored by `evaluate()`: stage 1's projection, the baselines' probe, or `eval_inference_paths`."""
        if self.stage == "pretrain":
            return (PROJECTION_PATH,)
        if self.method in GENDD_METHODS:
            return tuple(self.eval_inference_paths)
        return ("probe",)

    @property
    def dkd_kwargs(self) -> dict[str, float]:
        """`dkd_loss` keyword arguments: `dkd_defaults`'s published values with the `dkd_*` options on top."""
        overrides = {
            "alpha": self.dkd_alpha,
            "beta": self.dkd_beta,
            "temperature": self.dkd_temperature,
            "warmup_epochs": self.dkd_warmup_epochs,
        }
        return {**DKD_DEFAULTS[self.dkd_defaults], **{k: v for k, v in overrides.items() if v is not None}}


__all__ = ["STAGES", "GenDDTrainingArguments"]
