"""A recipe's run: load the data and the teacher, build the student, train, evaluate, save and push
(`run_recipe`, in the order of a Hugging Face example script), and the evaluation of a saved folder
(`evaluate_folder`). The same code runs under `python` and under `accelerate launch` on any number of processes."""

import sys
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from datasets import Dataset, IterableDataset
from transformers import EvalPrediction, TrainerCallback, default_data_collator, set_seed

from ..data import build_transforms, load_split, mixup_fn, with_pixel_values
from ..data.transforms import eval_data_config
from ..metrics import LongTailMetrics, class_groups, top_k_metrics
from ..model_card import check_license
from ..modeling_gendd import GenDDForImageClassification
from ..progress import quiet_library_bars_in_log_files
from ..teacher import TimmTeacher
from ..teacher_outputs import ViewConfig, teacher_outputs_dataset
from ..trainer import IGNORE_INDEX, GenDDTrainer, check_dataset_classes
from ..training_args import GenDDTrainingArguments
from .arguments import MIN_IMAGE_SIZE, EvaluateArguments, RecipeArguments, parse_recipe_args
from .output_lock import OutputDirLock


def load_recipe_datasets(
    args: RecipeArguments, training_args: GenDDTrainingArguments
) -> tuple[Dataset | IterableDataset, Dataset | None]:
    """The training set (streamed and shuffled in a buffer with `--streaming`) and the evaluation set, if any.

    One process loads them (downloads and prepares the `datasets` cache) while the others wait, then they read its
    cache: the main process of the run, or of each node when the nodes share no file system (`save_on_each_node`).
    """
    with training_args.main_process_first(local=training_args.save_on_each_node, desc="loading the datasets"):
        train = load_split(
            args.dataset_name,
            args.train_split,
            args.dataset_config,
            args.streaming,
            args.image_column,
            args.label_column,
            args.max_train_samples,
        )
        evaluation = None
        if args.eval_split:
            name, config, image_column, label_column = (
                (args.eval_dataset_name, args.eval_dataset_config, args.eval_image_column, args.eval_label_column)
                if args.eval_dataset_name
                else (args.dataset_name, args.dataset_config, args.image_column, args.label_column)
            )
            evaluation = load_split(
                name, args.eval_split, config, False, image_column, label_column, args.max_eval_samples
            )
    if args.streaming and not args.teacher_outputs:  # stored teacher outputs shuffle themselves, with the images
        seed = training_args.data_seed or training_args.seed
        train = train.shuffle(seed=seed, buffer_size=args.shuffle_buffer_size)
    return train, evaluation


def _columns(dataset) -> list[str]:
    return dataset.column_names if dataset.column_names is not None else list(next(iter(dataset)))


def load_teacher(args: RecipeArguments) -> TimmTeacher:
    """The frozen timm teacher: from `--teacher_checkpoint` (safetensors) or timm's pretrained weights."""
    return TimmTeacher.from_timm(
        args.teacher_name,
        pretrained=args.teacher_checkpoint is None,
        checkpoint_path=args.teacher_checkpoint,
        **args.teacher_timm_kwargs,
    )


def check_recipe_inputs(
    args: RecipeArguments,
    training_args: GenDDTrainingArguments,
    teacher: TimmTeacher,
    data_config: Mapping[str, Any],
    train: Dataset | IterableDataset,
    evaluation: Dataset | None,
) -> None:
    """Fail before training, with the fix in the message, on inputs that cannot work together."""
    if isinstance(train, IterableDataset) and training_args.max_steps <= 0:
        raise ValueError("A streamed training set has no length: pass --max_steps N (optimizer steps to train).")
    student_chans = args.student_timm_kwargs.get("in_chans", 3)
    teacher_chans = data_config["input_size"][0]
    if student_chans != teacher_chans:
        raise ValueError(
            f"The teacher {args.teacher_name!r} takes {teacher_chans}-channel images but the student is built with "
            f'in_chans={student_chans}; both read the same tensors: pass --student_kwargs \'{{"in_chans": '
            f"{teacher_chans}}}' (or a teacher with {student_chans} input channels)."
        )
    if training_args.uses_labels and "label" not in _columns(train):
        raise ValueError(
            f"--method {training_args.method} needs labels, but {args.dataset_name!r} ({args.train_split}) has no "
            f"label column (columns: {_columns(train)}). Pass --label_column NAME, or train without labels with "
            "--method gendd_unsup or --method kl_unsup."
        )
    for name, dataset in (("train", train), ("eval", evaluation)):
        if dataset is None:
            continue
        check_dataset_classes(dataset, teacher.num_classes, f"{name} dataset")
        labels_used = name == "eval" or training_args.uses_labels  # an unsupervised method never reads them
        if isinstance(dataset, Dataset) and "label" in dataset.column_names and labels_used:
            check_label_values(dataset, teacher.num_classes, name, ignore_index=name == "train")


def check_label_values(dataset: Dataset, num_classes: int, name: str, ignore_index: bool) -> None:
    """Raise a `ValueError` naming the first label of `dataset` that is not a class index in `0..num_classes - 1`
    (nor `IGNORE_INDEX` with `ignore_index`), before training: the trainer would only meet it in its batch, after
    hours for an evaluation split."""
    labels = np.unique(np.asarray(dataset.with_format("numpy")["label"]))
    if not np.issubdtype(labels.dtype, np.integer):
        return  # soft labels
    valid = (labels >= 0) & (labels < num_classes)
    if ignore_index:
        valid |= labels == IGNORE_INDEX
    if valid.all():
        return
    invalid = labels[~valid]
    value = int(invalid[0] if invalid[0] < 0 else invalid[-1])  # the most negative, else the largest
    hint = "distil on data labelled with the teacher's classes"
    if value < 0:
        hint = (
            "a negative label usually marks an image without class: drop those images (dataset.filter(lambda row: "
            f"row['label'] >= 0)){', or label them -100, skipped in training by ce and kd' if ignore_index else ''}"
        )
    raise ValueError(
        f"The {name} dataset has label {value} but the teacher has {num_classes} classes (0..{num_classes - 1}); "
        f"{hint}. (Checked on the whole {name} split before the first step.)"
    )


def warn_on_small_images(model: GenDDForImageClassification, image_size: int, train: Dataset | IterableDataset) -> None:
    """Warn, with the reason, when the images are smaller than the student's total stride (its last feature map
    would be under one pixel: the student sees padding) or the training images are tiny (upscaled, they carry no
    detail; only the first image of a set that is not streamed is looked at)."""
    feature_info = getattr(model.student, "feature_info", None) or [{}]
    stride = feature_info[-1].get("reduction", 1)
    if image_size < stride:
        warnings.warn(
            f"--image_size {image_size} is below the total stride {stride} of the student "
            f"{model.config.student_name!r}: its last feature map is under one pixel, computed mostly from padding. "
            f"Use --image_size {stride} or more, or a student for small images (e.g. the cifar_* models).",
            UserWarning,
            stacklevel=2,
        )
    first = train[0]["image"] if isinstance(train, Dataset) and len(train) and "image" in train.column_names else None
    if isinstance(getattr(first, "size", None), tuple):  # a PIL image
        width, height = first.size
        if min(width, height) < MIN_IMAGE_SIZE:
            warnings.warn(
                f"The training images are {width}x{height} pixels (the first one): resized to {image_size} pixels, "
                "they carry almost no detail. Check --image_column and the dataset.",
                UserWarning,
                stacklevel=2,
            )


def recipe_metrics(
    args: RecipeArguments,
    train: Dataset | IterableDataset,
    evaluation: Dataset | None,
    num_classes: int,
    paths: Sequence[str],
) -> Callable | None:
    """`compute_metrics` of a recipe's trainer: with `--shot_metrics`, top-1/top-5 plus the many / medium / few-shot
    top-1 of each path (classes grouped by their training images); otherwise `None`, the trainer's top-1/top-5."""
    if not args.shot_metrics:
        return None
    if isinstance(train, IterableDataset) or "label" not in _columns(train) or evaluation is None:
        raise ValueError(
            "--shot_metrics groups the classes by their images in the training split, and scores the evaluation "
            "split: it needs a labelled training set that is not streamed (drop --streaming) and an --eval_split."
        )
    return LongTailMetrics(class_groups(train, num_classes), paths)


def recipe_card_fields(args: RecipeArguments) -> dict[str, Any]:
    """What a recipe's model card says beyond what the trainer knows (`GenDDTrainer.model_card_info`): the training
    data (also when streamed or unlabelled), the evaluation data, the licence, the augmentation and the subsets used.
    Dataset names are given as typed: the card links Hub ids and shows local paths as text."""
    check_license(args.license)
    notes = [
        f"Augmentation `{args.augmentation}`"
        + (" (off)" if args.no_augmentation else "")
        + f", mixup {args.mixup_alpha}, cutmix {args.cutmix_alpha}, label smoothing {args.label_smoothing}."
    ]
    if args.dataset_config:
        notes.append(f"Training data configuration `{args.dataset_config}`.")
    if args.eval_dataset_name and args.eval_dataset_config and args.eval_split:
        notes.append(f"Evaluation data configuration `{args.eval_dataset_config}`.")
    if args.max_train_samples:
        notes.append(f"Trained on the first {args.max_train_samples} examples of the training split.")
    if args.max_eval_samples and args.eval_split:
        notes.append(f"Evaluated on the first {args.max_eval_samples} examples of the evaluation split.")
    return {
        "dataset": args.dataset_name,
        "train_split": args.train_split,
        "streaming": args.streaming,
        "eval_dataset": args.eval_dataset_name,
        "eval_split": args.eval_split or None,
        "license": args.license,
        "notes": " ".join(notes),
    }


def run_recipe(
    args: RecipeArguments,
    training_args: GenDDTrainingArguments,
    callbacks: Sequence[TrainerCallback] | None = None,
) -> dict[str, float]:
    """Train a GenDD student (or a baseline) as `args` and `training_args` say, evaluate it, save it to
    `training_args.output_dir` with its image processor and model card, and push it with `--push_to_hub`.

    The saved config records the evaluation transform (`config.pretrained_cfg`, also the image processor's config),
    so that [`evaluate_folder`] and `pipeline()` score the folder as the run did. The Hub goes through the Trainer's
    own machinery (`--push_to_hub`, `--hub_model_id`, `--hub_strategy`, `--resume_from_checkpoint hub`; see
    `GenDDTrainer`): pushes during training as `--hub_strategy` says, and one at the end with the evaluated card,
    never with `training_args.bin` (see `gendd_hf.hub`).

    The trained model is saved before the evaluation, the card and the push: if one of them fails, the error says
    where the model is. Meanwhile the run holds `output_dir`'s lock ([`OutputDirLock`]): a second run into the same
    folder is refused unless `--overwrite_output_dir`; a dead run's lock is taken over.

    Returns:
        `dict`: the evaluation metrics (`eval_{path}_top1`, `eval_{path}_top5`, `eval_loss`), empty without an
        evaluation split.
    """
    with OutputDirLock(training_args.output_dir, args.overwrite_output_dir, active=training_args.process_index == 0):
        return _run_recipe(args, training_args, callbacks)


def _run_recipe(
    args: RecipeArguments, training_args: GenDDTrainingArguments, callbacks: Sequence[TrainerCallback] | None
) -> dict[str, float]:
    set_seed(training_args.seed)
    data_seed = training_args.data_seed or training_args.seed
    # ---- data, teacher, model
    train, evaluation = load_recipe_datasets(args, training_args)
    teacher = load_teacher(args)
    data_config = teacher.data_config(args.image_size)
    check_recipe_inputs(args, training_args, teacher, data_config, train, evaluation)
    compute_metrics = recipe_metrics(args, train, evaluation, teacher.num_classes, training_args.inference_paths)
    model = args.build_model(teacher, teacher.class_names(train, evaluation))
    warn_on_small_images(model, data_config["input_size"][-1], train)
    # The evaluation transform's config: saved in config.json, it is also the image processor's.
    model.config.pretrained_cfg = eval_data_config(data_config, args.augmentation)

    augment = not args.no_augmentation
    if args.teacher_outputs:
        # Training batches then carry the teacher's features and logits; the teacher only runs in evaluation.
        view_config = ViewConfig.from_data_config(data_config, args.augmentation, is_training=augment)
        train = teacher_outputs_dataset(
            train,
            args.teacher_outputs,
            view_config=view_config,
            teacher=teacher,
            split=args.train_split,
            seed=data_seed,
            shuffle_buffer_size=args.shuffle_buffer_size,
        )
    else:
        train = with_pixel_values(
            train, build_transforms(data_config, is_training=augment, augmentation=args.augmentation)
        )
    eval_transform = build_transforms(data_config, is_training=False, augmentation=args.augmentation)
    # ---- trainer
    trainer = GenDDTrainer(
        model,
        training_args,
        teacher=teacher,
        mixup_fn=mixup_fn(teacher.num_classes, args.mixup_alpha, args.cutmix_alpha, args.label_smoothing),
        model_card=recipe_card_fields(args),
        train_dataset=train,
        eval_dataset=None if evaluation is None else with_pixel_values(evaluation, eval_transform),
        data_collator=default_data_collator,
        compute_metrics=compute_metrics,
        callbacks=list(callbacks or []),
    )
    # ---- train
    result = trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
    # ---- save first: nothing after training may lose the trained model (the push, with the evaluated card, follows)
    trainer.save_model(_internal_call=True)
    trainer.log_metrics("train", result.metrics)
    trainer.save_metrics("train", result.metrics)
    with saved_model_noted(training_args.output_dir, trainer.is_world_process_zero()):
        # ---- evaluate, card, push
        metrics = {}
        if evaluation is not None:
            metrics = trainer.evaluate()
            trainer.log_metrics("eval", metrics)
            trainer.save_metrics("eval", metrics)
        if training_args.push_to_hub:  # writes the card (with the evaluation) before uploading
            commit = trainer.push_to_hub(commit_message=f"GenDD {training_args.method}: end of training")
            if commit is not None:
                print(f"Pushed {training_args.output_dir} to {commit.commit_url}")
        else:
            trainer.create_model_card()
    return metrics


@contextmanager
def saved_model_noted(output_dir: str, main_process: bool = True) -> Iterator[None]:
    """Around what follows the saving of a trained model (evaluation, card, push): on an error, say on stderr (the
    main process) that the model is saved and where, then raise the error."""
    try:
        yield
    except Exception:
        if main_process:
            print(
                f"The trained model is saved in {output_dir} (model.safetensors, config.json); what failed after "
                f"training is below. Score it with recipes/evaluate_model.py --model_name_or_path {output_dir}, or "
                "upload it with `hf upload`.",
                file=sys.stderr,
            )
        raise


def recipe_main(
    defaults: Mapping[str, Any] | None = None,
    recipes: Mapping[str, Mapping[str, Any]] | None = None,
    argv: Sequence[str] | None = None,
) -> dict[str, float]:
    """Entry point of a recipe script: parse its command line (`sys.argv` unless `argv` is given) with its `defaults`
    (and `--recipe` choices), then `run_recipe`. In a log file, the libraries' own tqdm bars are off."""
    script = Path(sys.argv[0]).name if argv is None else None
    args = parse_recipe_args(argv, defaults, recipes, script=script)
    quiet_library_bars_in_log_files()
    return run_recipe(*args)


def evaluate_folder(eval_args: EvaluateArguments, training_args: GenDDTrainingArguments) -> dict[str, float]:
    """Top-1 and top-5 of a saved GenDD folder on a labelled split, for each path of
    `training_args.eval_inference_paths` (`eval_sampled_top1`, ..., `eval_probe_top5`), and with
    `--shot_metrics_split` the many / medium / few-shot top-1 (`eval_probe_few_top1`, ...).

    Without the teacher (the model holds its classifier; no loss is computed) and with the evaluation transform the
    run saved (`config.pretrained_cfg`, the image processor's config); each image's sampling noise comes from its
    seed, as in the run's `GenDDTrainer.evaluate`, so the scores are the same.
    """
    model = GenDDForImageClassification.from_pretrained(eval_args.model_name_or_path)
    dataset = load_split(
        eval_args.dataset_name,
        eval_args.eval_split,
        eval_args.dataset_config,
        False,
        eval_args.image_column,
        eval_args.label_column,
        eval_args.max_eval_samples,
    )
    if "label" not in dataset.column_names:
        raise ValueError(
            f"{eval_args.dataset_name!r} ({eval_args.eval_split}) has no label column "
            f"(columns: {dataset.column_names}); pass --label_column NAME."
        )
    check_dataset_classes(dataset, model.config.num_labels, "eval dataset")
    labels = np.asarray(dataset["label"])
    compute_metrics = partial(top_k_metrics, paths=training_args.inference_paths)
    if eval_args.shot_metrics_split:
        train = load_split(
            eval_args.dataset_name,
            eval_args.shot_metrics_split,
            eval_args.dataset_config,
            False,
            eval_args.image_column,
            eval_args.label_column,
        )
        if "label" not in train.column_names:
            raise ValueError(
                f"--shot_metrics_split {eval_args.shot_metrics_split!r} of {eval_args.dataset_name!r} has "
                f"no label column (columns: {train.column_names}); pass --label_column NAME."
            )
        compute_metrics = LongTailMetrics(class_groups(train, model.config.num_labels), training_args.inference_paths)
    # Without labels, `predict` returns the per-path logits and computes no loss, which needs the teacher.
    eval_transform = build_transforms(model.config.pretrained_cfg, is_training=False)
    unlabeled = with_pixel_values(dataset.remove_columns("label"), eval_transform)
    trainer = GenDDTrainer(model, training_args, data_collator=default_data_collator)
    predictions = trainer.predict(unlabeled).predictions
    metrics = compute_metrics(EvalPrediction(predictions=predictions, label_ids=labels))
    metrics = {f"eval_{name}": value for name, value in metrics.items()}
    trainer.log_metrics("eval", metrics)
    trainer.save_metrics("eval", metrics)
    return metrics


__all__ = [
    "check_label_values",
    "check_recipe_inputs",
    "evaluate_folder",
    "load_recipe_datasets",
    "load_teacher",
    "recipe_card_fields",
    "recipe_main",
    "recipe_metrics",
    "run_recipe",
    "saved_model_noted",
    "warn_on_small_images",
]
