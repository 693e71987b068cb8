"""Train a timm classifier with cross-entropy (a teacher, or a student baseline) and save it as a timm model folder.

Training goes through `GenDDTrainer` with `method="ce"`, the trainer of every distillation method, so that a teacher
gets the same optimizers, schedules, precision and checkpoints as the students distilled from it.
`recipes/train_teacher.py` and the Fashion-MNIST benchmark's teacher (`gendd_hf.bench.fashion_mnist`) train with it.
"""

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

import timm
import torch
from timm.models import save_for_hf
from torch import nn
from transformers import set_seed
from transformers.trainer_utils import TrainOutput

from .configuration_gendd import GenDDConfig
from .modeling_gendd import GenDDForImageClassification
from .trainer import GenDDTrainer
from .training_args import GenDDTrainingArguments


# `method="ce"` never uses the diffusion head, but every GenDD model has one: the smallest valid head.
UNUSED_HEAD = {"teacher_feature_dim": 1, "token_dim": 1, "head_width": 1, "head_depth": 1}


class TrainedClassifier(NamedTuple):
    """What [`train_timm_classifier`] returns."""

    classifier: nn.Module  # the trained timm classifier, in eval mode on the CPU
    trainer: GenDDTrainer  # to evaluate, log or save more
    train_output: TrainOutput  # `trainer.train()`'s, with the training metrics


def check_cross_entropy_args(training_args: GenDDTrainingArguments) -> None:
    """Refuse the arguments of another method or stage: [`train_timm_classifier`] trains with cross-entropy only."""
    if training_args.method != "ce" or training_args.stage != "main":
        raise ValueError(
            f"A timm classifier trains with cross-entropy only: drop --method {training_args.method} and --stage "
            f"{training_args.stage} (use train_cifar100.py / train_imagenet.py to distil)."
        )


def timm_data_config(architecture: str, **timm_kwargs) -> dict:
    """timm's preprocessing of `architecture` built with `timm_kwargs`, for the transforms of the datasets given to
    [`train_timm_classifier`]. It builds the network to read it, with the global random state restored after, so that
    the classifier trained next starts from the same initialisation as without this call."""
    with torch.random.fork_rng(devices=[]):
        model = timm.create_model(architecture, pretrained=False, num_classes=0, **timm_kwargs)
    return timm.data.resolve_model_data_config(model)


def train_timm_classifier(
    architecture: str,
    label_names: Sequence[str],
    training_args: GenDDTrainingArguments,
    train_dataset,
    eval_dataset=None,
    *,
    timm_kwargs: Mapping | None = None,
    unused_head: Mapping[str, int] = UNUSED_HEAD,
    **trainer_kwargs,
) -> TrainedClassifier:
    """Train `timm.create_model(architecture, num_classes=len(label_names), **timm_kwargs)` from scratch with
    cross-entropy.

    The network is the student of a GenDD model trained by `GenDDTrainer` with `training_args` (`method="ce"`,
    `stage="main"`), its linear probe the classifier, from `training_args.resume_from_checkpoint` when set. Its
    initialisation comes from `training_args.seed` (set here, before the model is built: torch seeds every new process
    at random), so a seed gives one classifier. Nothing is evaluated or saved: the caller does, with the returned
    trainer and [`save_timm_classifier`].

    Args:
        architecture (`str`): the timm model name.
        label_names (`Sequence[str]`): the class names, by label index.
        training_args (`GenDDTrainingArguments`): the trainer's arguments.
        train_dataset, eval_dataset: rows of `pixel_values` and `labels`, as `GenDDTrainer` takes them.
        timm_kwargs (`Mapping`, *optional*): `timm.create_model` arguments other than `num_classes`.
        unused_head (`Mapping[str, int]`, defaults to `UNUSED_HEAD`): the sizes of the GenDD model's diffusion head,
            which cross-entropy does not train. Its initialisation draws from the random state before the probe's,
            so another size gives another classifier: a caller keeps the sizes its classifiers were trained with.
        trainer_kwargs: passed to `GenDDTrainer` (`mixup_fn`, `data_collator`, `compute_metrics`, ...).
    """
    check_cross_entropy_args(training_args)
    set_seed(training_args.seed)
    config = GenDDConfig(
        student_name=architecture,
        student_kwargs=dict(timm_kwargs or {}),
        id2label=dict(enumerate(label_names)),
        **unused_head,
    )
    model = GenDDForImageClassification(config)
    trainer = GenDDTrainer(
        model, training_args, train_dataset=train_dataset, eval_dataset=eval_dataset, **trainer_kwargs
    )
    output = trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
    return TrainedClassifier(model.to_timm_classifier(), trainer, output)


def save_timm_classifier(
    classifier: nn.Module, output_dir: str | os.PathLike, label_names: Sequence[str], data_config: Mapping
) -> Path:
    """Save a timm classifier as a timm model folder: `model.safetensors` and timm's `config.json` with the label
    names and the preprocessing `data_config`, which `TimmTeacher.from_timm("local-dir:<output_dir>")` and the
    recipes' `--teacher_name local-dir:<output_dir>` load. Returns the weights' path."""
    save_for_hf(
        classifier,
        str(output_dir),
        model_config={"label_names": list(label_names)},
        data_config=dict(data_config),
        safe_serialization=True,
    )
    return Path(output_dir) / "model.safetensors"


__all__ = [
    "UNUSED_HEAD",
    "TrainedClassifier",
    "check_cross_entropy_args",
    "save_timm_classifier",
    "timm_data_config",
    "train_timm_classifier",
]
