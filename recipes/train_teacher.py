"""Train a teacher (or a student baseline) with cross-entropy and save it as a timm classifier that GenDD distils from.

    python recipes/train_teacher.py --teacher_name cifar_resnet56 --output_dir outputs/cifar100-ce-resnet56
    python recipes/train_teacher.py --preset cifar100-ce-resnet56      # the same, from gendd_hf.cli.presets

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


# gendd_hf.cli.format_recipe_help's text, printed before the imports below, which take seconds
HELP = Path(__file__).with_name("help") / f"{Path(__file__).stem}.txt"
if __name__ == "__main__" and sys.argv[1:] in (["-h"], ["--help"]) and HELP.is_file():
    sys.exit(print(HELP.read_text(), end=""))

from collections.abc import Sequence

from datasets import ClassLabel
from transformers import default_data_collator

from gendd_hf import GenDDTrainer
from gendd_hf.cli import (
    OutputDirLock,
    RecipeArguments,
    load_recipe_datasets,
    parse_recipe_args,
    recipe_metrics,
    saved_model_noted,
)
from gendd_hf.cli.presets import CIFAR100_DATA, KD_CIFAR_SCHEDULE
from gendd_hf.data import build_transforms, mixup_fn, with_pixel_values
from gendd_hf.progress import quiet_library_bars_in_log_files
from gendd_hf.teacher_training import (
    check_cross_entropy_args,
    save_timm_classifier,
    timm_data_config,
    train_timm_classifier,
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


def train_teacher(args: RecipeArguments, training_args: GenDDTrainingArguments) -> GenDDTrainer:
    """Train `args.teacher_name` with cross-entropy on `args.dataset_name` (`train_timm_classifier`), evaluate it,
    save it as a timm classifier in `training_args.output_dir`; returns the trainer."""
    check_cross_entropy_args(training_args)  # before the data loads
    # ---- data
    train, evaluation = load_recipe_datasets(args, training_args)
    names = class_names(args, train)
    compute_metrics = recipe_metrics(args, train, evaluation, len(names), training_args.inference_paths)
    timm_kwargs = {key: value for key, value in args.teacher_timm_kwargs.items() if key != "num_classes"}
    data_config = timm_data_config(args.teacher_name, **timm_kwargs)
    if args.image_size is not None:
        data_config["input_size"] = (data_config["input_size"][0], args.image_size, args.image_size)
    train_transform = build_transforms(
        data_config, is_training=not args.no_augmentation, augmentation=args.augmentation
    )
    eval_transform = build_transforms(data_config, is_training=False, augmentation=args.augmentation)
    # ---- train, evaluate, save
    classifier, trainer, result = train_timm_classifier(
        args.teacher_name,
        names,
        training_args,
        with_pixel_values(train, train_transform),
        None if evaluation is None else with_pixel_values(evaluation, eval_transform),
        timm_kwargs=timm_kwargs,
        mixup_fn=mixup_fn(len(names), args.mixup_alpha, args.cutmix_alpha, args.label_smoothing),
        data_collator=default_data_collator,
        compute_metrics=compute_metrics,
    )
    if trainer.is_world_process_zero():  # first: a failing evaluation must not lose the trained teacher
        save_timm_classifier(classifier, training_args.output_dir, names, data_config)
    trainer.log_metrics("train", result.metrics)
    trainer.save_metrics("train", result.metrics)
    if evaluation is not None:
        with saved_model_noted(training_args.output_dir, trainer.is_world_process_zero()):
            metrics = trainer.evaluate()
        trainer.log_metrics("eval", metrics)
        trainer.save_metrics("eval", metrics)
    return trainer


def main(argv: Sequence[str] | None = None) -> GenDDTrainer:
    args, training_args = parse_recipe_args(argv, DEFAULTS, script=Path(__file__).name)
    quiet_library_bars_in_log_files()
    with OutputDirLock(training_args.output_dir, args.overwrite_output_dir, training_args.process_index == 0):
        return train_teacher(args, training_args)


if __name__ == "__main__":
    main()
