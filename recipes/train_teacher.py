"""Train a teacher (or a student baseline) with cross-entropy and save it as a timm classifier that GenDD distils from.

    python recipes/train_teacher.py --teacher_name cifar_resnet56 --output_dir outputs/cifar100-ce-resnet56
    python recipes/train_teacher.py --preset cifar100-ce-resnet56      # the same, from gendd_hf.presets

The defaults are the CIFAR-100 schedule of the distillation literature (CRD, DKD): 240 epochs of SGD (momentum 0.9,
batch 64, weight decay 5e-4) at lr 0.05 (pass --learning_rate 0.01 for ShuffleNet and MobileNet), x0.1 at epochs
150, 180 and 210. `--teacher_name` is the timm architecture to train, `--teacher_kwargs` its `timm.create_model`
arguments. The data arguments are those of the other recipes: any `--dataset_name`, its image and label columns found
automatically (CIFAR-100's `img` and `fine_label` among them) or named with `--image_column` / `--label_column`, its
splits named with `--train_split` / `--eval_split` (CIFAR-100's `test` by default).

The output folder is a timm model folder: `model.safetensors` holds the state dict of
`timm.create_model(teacher_name, num_classes=C, **teacher_kwargs)` (the trained backbone with its linear probe as the
classifier) and `config.json` timm's configuration with the preprocessing, so that
`TimmTeacher.from_timm(teacher_name, checkpoint_path="<output_dir>/model.safetensors")`, the distillation recipes'
`--teacher_checkpoint` and their `--teacher_name local-dir:<output_dir>` load it. Trainer checkpoints
(`checkpoint-N`) sit beside it for `--resume_from_checkpoint`.
"""

import sys
from pathlib import Path

# gendd_hf.recipe.format_recipe_help's text, printed before the imports below, which take seconds
HELP = Path(__file__).with_name("help") / f"{Path(__file__).stem}.txt"
if __name__ == "__main__" and {"-h", "--help"} & set(sys.argv[1:]) and HELP.is_file():
    sys.exit(print(HELP.read_text(), end=""))

import os
from collections.abc import Sequence

import timm
from datasets import ClassLabel
from timm.models import save_for_hf
from transformers import default_data_collator

from gendd_hf import GenDDConfig, GenDDForImageClassification, GenDDTrainer
from gendd_hf.teacher import timm_classifier
from gendd_hf.data import build_transforms, mixup_fn
from gendd_hf.presets import CIFAR100_DATA, KD_CIFAR_SCHEDULE
from gendd_hf.progress import quiet_library_bars_in_log_files
from gendd_hf.recipe import (
    RecipeArguments,
    load_recipe_datasets,
    parse_recipe_args,
    recipe_metrics,
    with_pixel_values,
)
from gendd_hf.training_args import GenDDTrainingArguments


DEFAULTS = {
    **CIFAR100_DATA,
    "teacher_name": "cifar_resnet56",
    **KD_CIFAR_SCHEDULE,
    "learning_rate": 0.05,
    "per_device_eval_batch_size": 256,
    "eval_strategy": "epoch",
    "save_strategy": "epoch",
    "save_total_limit": 2,
    "logging_steps": 50,
}
# `--method ce` never uses the diffusion head, but every GenDD model has one: the smallest valid head.
UNUSED_HEAD = {"teacher_feature_dim": 1, "token_dim": 1, "head_width": 1, "head_depth": 1}


def class_names(args: RecipeArguments, train) -> list[str]:
    """The class names of the training labels; their count must agree with `--teacher_kwargs`' `num_classes`."""
    label = (train.features or {}).get("label")
    if not isinstance(label, ClassLabel):
        raise ValueError(
            f"The 'label' column of {args.dataset_name!r} is not a ClassLabel ({label}); cast it with "
            "dataset.cast_column('label', ClassLabel(num_classes=C)) so that the class count is known."
        )
    requested = args.teacher_timm_kwargs.get("num_classes", label.num_classes)
    if requested != label.num_classes:
        raise ValueError(
            f"--teacher_kwargs asks for num_classes={requested} but {args.dataset_name!r} has {label.num_classes} "
            "classes; drop num_classes from --teacher_kwargs or train on the teacher's classes."
        )
    return list(label.names)


def save_timm_classifier(
    model: GenDDForImageClassification, output_dir: str | os.PathLike, data_config: dict, **timm_kwargs
) -> Path:
    """Save `model`'s student with its linear probe as the timm classifier `timm.create_model(student_name,
    num_classes=num_labels, **timm_kwargs)`: `model.safetensors` and timm's `config.json` in `output_dir`."""
    config = model.config
    classifier = timm_classifier(model, **timm_kwargs)
    model_config = {"label_names": [config.id2label[i] for i in range(config.num_labels)]}
    save_for_hf(classifier, str(output_dir), model_config=model_config, safe_serialization=True,
                data_config=data_config)
    return Path(output_dir) / "model.safetensors"


def train_teacher(args: RecipeArguments, training_args: GenDDTrainingArguments) -> GenDDTrainer:
    """Train `args.teacher_name` with cross-entropy on `args.dataset_name`, evaluate it, save it as a timm classifier
    in `training_args.output_dir`; returns the trainer."""
    if training_args.method != "ce" or training_args.stage != "main":
        raise ValueError(f"train_teacher.py trains with cross-entropy only: drop --method {training_args.method} and "
                         f"--stage {training_args.stage} (use train_cifar100.py / train_imagenet.py to distil).")
    # ---- data and model
    train, evaluation = load_recipe_datasets(args, training_args.data_seed or training_args.seed)
    names = class_names(args, train)
    compute_metrics = recipe_metrics(args, train, evaluation, len(names), training_args.inference_paths)
    timm_kwargs = {key: value for key, value in args.teacher_timm_kwargs.items() if key != "num_classes"}
    config = GenDDConfig(student_name=args.teacher_name, student_kwargs=timm_kwargs,
                         id2label=dict(enumerate(names)), **UNUSED_HEAD)
    model = GenDDForImageClassification(config)
    data_config = timm.data.resolve_model_data_config(model.student)
    if args.image_size is not None:
        data_config["input_size"] = (data_config["input_size"][0], args.image_size, args.image_size)
    train_transform = build_transforms(data_config, is_training=not args.no_augmentation, preset=args.augmentation)
    eval_transform = build_transforms(data_config, is_training=False, preset=args.augmentation)
    # ---- train, evaluate, save
    trainer = GenDDTrainer(
        model,
        training_args,
        mixup_fn=mixup_fn(len(names), args.mixup_alpha, args.cutmix_alpha, args.label_smoothing),
        train_dataset=with_pixel_values(train, train_transform),
        eval_dataset=None if evaluation is None else with_pixel_values(evaluation, eval_transform),
        data_collator=default_data_collator,
        compute_metrics=compute_metrics,
    )
    result = trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
    trainer.log_metrics("train", result.metrics)
    trainer.save_metrics("train", result.metrics)
    if evaluation is not None:
        metrics = trainer.evaluate()
        trainer.log_metrics("eval", metrics)
        trainer.save_metrics("eval", metrics)
    if trainer.is_world_process_zero():
        save_timm_classifier(model, training_args.output_dir, data_config, **timm_kwargs)
    return trainer


def main(argv: Sequence[str] | None = None) -> GenDDTrainer:
    args = parse_recipe_args(argv, DEFAULTS, script=Path(__file__).name)
    quiet_library_bars_in_log_files()
    return train_teacher(*args)


if __name__ == "__main__":
    main()
