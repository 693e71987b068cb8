"""The machinery behind the training recipes in `recipes/`: their arguments, `run_recipe` and `evaluate_folder`.

A recipe script is its defaults (dataset, teacher, student, schedule) and one call to [`recipe_main`]. Everything a
run does lives here, in the order of a Hugging Face example script: arguments, data, teacher and model, trainer,
train, evaluate, save, push. The same code runs under `python` and under `accelerate launch` on any number of
processes.
"""

import argparse
import copy
import dataclasses
import inspect
import json
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import timm
from datasets import ClassLabel, Dataset, IterableDataset
from transformers import (
    EvalPrediction,
    HfArgumentParser,
    TrainerCallback,
    default_data_collator,
    set_seed,
)

from .configuration_gendd import SAMPLERS, GenDDConfig, GenDDSamplingConfig
from .data import build_transforms, load_image_dataset, mixup_fn
from .data.transforms import eval_data_config
from .data.imagenet_lt import LongTailMetrics, class_groups
from .data.transforms import IMAGENET_PRESETS
from .image_processing import build_image_processor
from .model_card import check_license
from .modeling_gendd import GenDDForImageClassification
from .progress import quiet_library_bars_in_log_files
from .teacher import TimmTeacher, first_conv_in_channels
from .teacher_outputs import ViewConfig, teacher_outputs_dataset
from .trainer import GenDDTrainer, check_dataset_classes, top_k_metrics
from .training_args import GenDDTrainingArguments


AUGMENTATIONS = (*IMAGENET_PRESETS, "small")
# The ImageNet recipes of the paper (method page, section 5). A1/A2 mix images, which replaces feature mixup.
IMAGENET_RECIPES = {
    "regular": {"augmentation": "regular", "num_train_epochs": 100},
    "a2": {
        "augmentation": "a2", "mixup_alpha": 0.1, "cutmix_alpha": 1.0, "label_smoothing": 0.0,
        "feature_mixup_beta": 0.0, "num_train_epochs": 300,
    },
    "a1": {
        "augmentation": "a1", "mixup_alpha": 0.2, "cutmix_alpha": 1.0, "label_smoothing": 0.1,
        "feature_mixup_beta": 0.0, "num_train_epochs": 600,
    },
}
"""`--recipe` of `recipes/train_imagenet.py`: field defaults of `RecipeArguments` and `GenDDTrainingArguments`."""


def _gendd_default(name: str):
    """`GenDDConfig`'s (or `GenDDSamplingConfig`'s) default, the paper's value, so that the recipes never restate it."""
    parameters = inspect.signature(GenDDConfig.__init__).parameters
    return parameters[name].default if name in parameters else getattr(GenDDSamplingConfig(), name)


def parse_json_dict(value: str | Mapping | None, name: str) -> dict:
    """`--name '{"key": value}'` as a dict (a dict given by a preset is taken as it is)."""
    if value is None or isinstance(value, Mapping):
        return dict(value or {})
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError as error:
        raise ValueError(
            f"--{name} must be a JSON object such as '{{\"in_chans\": 1}}', got {value!r} ({error})."
        ) from error
    if not isinstance(parsed, dict):
        raise ValueError(f"--{name} must be a JSON object such as '{{\"in_chans\": 1}}', got {value!r}.")
    return parsed


@dataclass
class RecipeArguments:
    r"""
    What a recipe trains on and with: data, teacher, student, augmentation and the GenDD model settings. Parsed
    with [`GenDDTrainingArguments`] (method, stage, schedule, checkpoints, Hub) by `HfArgumentParser`.

    The GenDD fields default to `GenDDConfig`'s, which are the paper's.
    """

    # ---- data
    dataset_name: str | None = field(
        default=None,
        metadata={"help": "Hub dataset id, or a local imagefolder / parquet / webdataset-shard / save_to_disk path, or "
                  "a folder of Fashion-MNIST's IDX files (/usr/share/datasets/fashion-mnist)."},
    )
    dataset_config: str | None = field(default=None, metadata={"help": "Configuration name of a Hub dataset."})
    train_split: str = field(default="train", metadata={"help": "Split to train on."})
    eval_split: str | None = field(
        default="validation", metadata={"help": "Split to evaluate on; an empty string skips evaluation."}
    )
    eval_dataset_name: str | None = field(
        default=None,
        metadata={"help": "A separate labelled evaluation dataset (e.g. ImageNet val for unlabeled training data)."},
    )
    eval_dataset_config: str | None = field(default=None, metadata={"help": "Configuration of eval_dataset_name."})
    image_column: str | None = field(default=None, metadata={"help": "Image column (found automatically if unset)."})
    label_column: str | None = field(
        default=None, metadata={"help": "Label column (found automatically if unset; absent for unlabeled data)."}
    )
    eval_image_column: str | None = field(
        default=None, metadata={"help": "Image column of eval_dataset_name (default: found automatically)."}
    )
    eval_label_column: str | None = field(
        default=None, metadata={"help": "Label column of eval_dataset_name (default: found automatically)."}
    )
    streaming: bool = field(
        default=False,
        metadata={
            "help": "Stream the training set (needs --max_steps). Under several processes, each reads its own "
            "shards with --accelerator_config '{\"dispatch_batches\": false}' (train_cc3m_unsupervised.py's "
            "default); otherwise process 0 reads every batch and sends each process its part. The evaluation set is "
            "always loaded whole, for exact metrics across processes."
        },
    )
    shuffle_buffer_size: int = field(default=10_000, metadata={"help": "Shuffle buffer of a streamed training set."})
    max_train_samples: int | None = field(default=None, metadata={"help": "Train on the first N examples only."})
    max_eval_samples: int | None = field(default=None, metadata={"help": "Evaluate on the first N examples only."})
    # ---- teacher and student
    teacher_name: str | None = field(
        default=None,
        metadata={"help": "timm name of the teacher, e.g. resnet34.tv_in1k or cifar_resnet56, or local-dir:FOLDER for "
                  "a timm model folder (weights, classes and preprocessing; train_teacher.py writes one)."},
    )
    teacher_checkpoint: str | None = field(
        default=None,
        metadata={"help": "Local safetensors state dict of the teacher; without it timm's pretrained weights."},
    )
    teacher_kwargs: str = field(
        default="{}", metadata={"help": "JSON timm.create_model arguments of the teacher, e.g. '{\"num_classes\": 100}'."}
    )
    student_name: str = field(default=_gendd_default("student_name"), metadata={"help": "timm name of the student."})
    student_kwargs: str = field(
        default="{}", metadata={"help": "JSON timm.create_model arguments of the student, e.g. '{\"in_chans\": 1}'."}
    )
    # ---- images
    image_size: int | None = field(
        default=None, metadata={"help": "Training and evaluation image size (default: the teacher's input size)."}
    )
    augmentation: str = field(
        default="regular",
        metadata={
            "help": "Transform preset: regular (RandomResizedCrop + flip), a2/a1 (+ RandAugment 7/0.5), small "
            "(pad-and-crop + flip, for 32x32 data).",
            "choices": list(AUGMENTATIONS),
        },
    )
    no_augmentation: bool = field(
        default=False,
        metadata={"help": "Train on the deterministic evaluation transform (no random crop, flip or RandAugment)."},
    )
    mixup_alpha: float = field(default=0.0, metadata={"help": "timm mixup alpha (0: off)."})
    cutmix_alpha: float = field(default=0.0, metadata={"help": "timm cutmix alpha (0: off)."})
    label_smoothing: float = field(default=0.0, metadata={"help": "Label smoothing of the mixed labels."})
    # ---- GenDD model
    token_dim: int = field(default=_gendd_default("token_dim"), metadata={"help": "Split tokenization token size k."})
    head_width: int = field(default=_gendd_default("head_width"), metadata={"help": "Diffusion head width."})
    head_depth: int = field(default=_gendd_default("head_depth"), metadata={"help": "Diffusion head residual blocks."})
    contraction: float = field(
        default=_gendd_default("contraction"), metadata={"help": "Distribution contraction lambda."}
    )
    diffusion_batch_mul: int = field(
        default=_gendd_default("diffusion_batch_mul"), metadata={"help": "Diffusion rows per (sample, token)."}
    )
    feature_mixup_beta: float = field(
        default=_gendd_default("feature_mixup_beta"), metadata={"help": "Feature mixup Beta(a, a); 0: off."}
    )
    cond_drop_prob: float = field(
        default=_gendd_default("cond_drop_prob"), metadata={"help": "Condition dropout of classifier-free guidance."}
    )
    num_inference_steps: int = field(
        default=_gendd_default("num_inference_steps"), metadata={"help": "Sampling steps of the sampled path."}
    )
    guidance_scale: float = field(
        default=_gendd_default("guidance_scale"), metadata={"help": "Classifier-free guidance scale."}
    )
    num_samples: int = field(
        default=_gendd_default("num_samples"), metadata={"help": "Feature samples averaged per image."}
    )
    sampler: str = field(
        default=_gendd_default("sampler"), metadata={"help": "Sampler of the sampled path.", "choices": list(SAMPLERS)}
    )
    shot_metrics: bool = field(
        default=False,
        metadata={"help": "Also report the many (over 100 training images), medium (20 to 100) and few-shot (under "
                  "20) top-1 of each inference path, as ImageNet-LT does (eval_probe_many_top1, ...); the classes "
                  "are grouped by their images in the (not streamed) training split."},
    )
    # ---- precomputed teacher outputs, presets
    teacher_outputs: str | None = field(
        default=None,
        metadata={"help": "Folder or Hub id of teacher outputs stored by recipes/precompute_teacher.py for the "
                  "training set, with the same --image_size and --augmentation: the teacher then runs in evaluation "
                  "only."},
    )
    preset: str | None = field(
        default=None,
        metadata={"help": "An experiment preset (gendd_hf.presets): its values become the defaults; flags given "
                  "on the command line still win. --list-presets prints them."},
    )
    # ---- model card
    license: str | None = field(
        default=None,
        metadata={"help": "Hub licence id of the trained weights for the model card (apache-2.0, mit, cc-by-4.0, "
                  "other...); unset: the card states no licence (the data's and the teacher's terms still apply)."},
    )

    def __post_init__(self):
        if not self.dataset_name:
            raise ValueError("--dataset_name is required: a Hub dataset id or a local dataset path.")
        if not self.teacher_name:
            raise ValueError("--teacher_name is required: the timm name of the teacher (e.g. resnet34.tv_in1k).")
        if self.augmentation not in AUGMENTATIONS:
            raise ValueError(f"--augmentation={self.augmentation!r} is invalid: use one of {list(AUGMENTATIONS)}.")
        for name in ("teacher_kwargs", "student_kwargs"):
            parse_json_dict(getattr(self, name), name)
        for name in ("max_train_samples", "max_eval_samples"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ValueError(f"--{name}={getattr(self, name)} is invalid: use a positive count or leave it unset.")

    @property
    def teacher_timm_kwargs(self) -> dict:
        return parse_json_dict(self.teacher_kwargs, "teacher_kwargs")

    @property
    def student_timm_kwargs(self) -> dict:
        return parse_json_dict(self.student_kwargs, "student_kwargs")


@dataclass
class EvaluateArguments:
    """What `recipes/evaluate.py` scores: a saved GenDD folder on a labelled dataset split."""

    model_name_or_path: str = field(metadata={"help": "A GenDD folder (a recipe's output_dir) or Hub id."})
    dataset_name: str = field(metadata={"help": "Hub dataset id or local dataset path."})
    dataset_config: str | None = field(default=None, metadata={"help": "Configuration name of a Hub dataset."})
    eval_split: str = field(default="validation", metadata={"help": "Split to evaluate on."})
    image_column: str | None = field(default=None, metadata={"help": "Image column (found automatically if unset)."})
    label_column: str | None = field(default=None, metadata={"help": "Label column (found automatically if unset)."})
    max_eval_samples: int | None = field(default=None, metadata={"help": "Evaluate on the first N examples only."})
    shot_metrics_split: str | None = field(
        default=None,
        metadata={"help": "Also report many / medium / few-shot top-1 (ImageNet-LT), classes grouped by their images "
                  "in this split of the dataset (the training split, e.g. 'train')."},
    )


# ---- arguments ------------------------------------------------------------------------------------------------------
HELP_GROUPS = {
    "method and stage": ("preset", "list_presets", "recipe", "method", "stage", "init_from"),
    "teacher": ("teacher_name", "teacher_checkpoint", "teacher_kwargs", "teacher_outputs"),
    "student and diffusion head": (
        "student_name", "student_kwargs", "token_dim", "head_width", "head_depth", "contraction", "diffusion_batch_mul",
    ),
    "sampling (the sampled inference path)": ("sampler", "num_inference_steps", "guidance_scale", "num_samples"),
    "data": (
        "dataset_name", "train_split", "eval_split", "image_column", "label_column", "image_size", "max_train_samples",
        "max_eval_samples",
    ),
}
"""The flags a recipe's `--help` shows, GenDD's own, by group; `--help-all` adds every other one (augmentation, mixup,
evaluation, transformers' `TrainingArguments`)."""
HELP_WIDTH = 110  # fixed: recipes/help/*.txt must not depend on the terminal that wrote them


def _set_defaults(parser: HfArgumentParser, values: Mapping[str, Any], origin: str) -> None:
    names = {f.name for f in dataclasses.fields(RecipeArguments)} | {
        f.name for f in dataclasses.fields(GenDDTrainingArguments)
    }
    unknown = sorted(set(values) - names)
    if unknown:
        raise ValueError(f"{origin} sets {unknown}, which are not fields of RecipeArguments or GenDDTrainingArguments.")
    parser.set_defaults(**values)


def recipe_parser(
    defaults: Mapping[str, Any] | None = None, recipes: Mapping[str, Mapping[str, Any]] | None = None
) -> HfArgumentParser:
    """The command line of a recipe: `RecipeArguments` and `GenDDTrainingArguments` with the script's `defaults`,
    `--list-presets`, `--help-all` and, with `recipes`, `--recipe`."""
    parser = HfArgumentParser((RecipeArguments, GenDDTrainingArguments))
    parser.add_argument("--list-presets", "--list_presets", action="store_true", help="Print the presets and exit.")
    parser.add_argument("--help-all", "--help_all", action="store_true", help="Print every flag and exit.")
    if recipes:
        parser.add_argument(
            "--recipe", choices=list(recipes), default=next(iter(recipes)),
            help="Training recipe of the paper: its augmentation, mixup and schedule become the defaults.",
        )
    _set_defaults(parser, defaults or {}, "The recipe's defaults")
    return parser


def format_recipe_help(parser: HfArgumentParser, script: str, every_flag: bool = False) -> str:
    """The `--help` of recipe `script`: GenDD's own flags (`HELP_GROUPS`) with their defaults, then how to list the
    others; with `every_flag` (`--help-all`), followed by the parser's whole help.

    A recipe script prints its `--help` from `recipes/help/<script>.txt`, this text, without importing torch; a test
    keeps the files current.
    """
    actions = {action.dest: action for action in parser._actions}
    formatter = parser.formatter_class(prog=script, width=HELP_WIDTH, max_help_position=40)
    formatter.add_usage(f"python recipes/{script} --output_dir DIR [--preset NAME] [--FLAG VALUE ...]", [], [])
    for title, names in HELP_GROUPS.items():
        formatter.start_section(title)
        formatter.add_arguments([_first_option_only(actions[name]) for name in names if name in actions])
        formatter.end_section()
    if not every_flag:
        formatter.add_text(
            "Every other flag (augmentation and mixup, evaluation, and transformers' TrainingArguments: "
            "--learning_rate, --num_train_epochs, --max_steps, --per_device_train_batch_size, --use_cpu, --bf16, "
            "--push_to_hub, ...): --help-all (slower: it imports torch)."
        )
    text = formatter.format_help()
    return f"{text}\n{parser.format_help()}" if every_flag else text


def _first_option_only(action: argparse.Action) -> argparse.Action:
    """`action` shown by its first flag only (`--teacher_name`, not also `--teacher-name`)."""
    action = copy.copy(action)
    action.option_strings = action.option_strings[:1]
    return action


def parse_recipe_args(
    argv: Sequence[str] | None = None,
    defaults: Mapping[str, Any] | None = None,
    recipes: Mapping[str, Mapping[str, Any]] | None = None,
    script: str | None = None,
) -> tuple[RecipeArguments, GenDDTrainingArguments]:
    """Parse a recipe's command line into `(RecipeArguments, GenDDTrainingArguments)`.

    Defaults are layered, each over the previous: the dataclasses' own, the recipe script's `defaults`, the chosen
    `--recipe` of `recipes` (when given, e.g. `IMAGENET_RECIPES`), the `--preset` of `gendd_hf.presets`; flags on the
    command line win over all of them. `--help` prints GenDD's own flags ([`format_recipe_help`]), `--help-all` every
    flag with the layered defaults, `--list-presets` the presets; each then exits. With `script` (the file name of the
    running recipe), a preset written for another script is refused.
    """
    from .presets import PRESETS, format_presets, get_preset  # here: the presets are built from this module's tables

    argv = sys.argv[1:] if argv is None else list(argv)
    parser = recipe_parser(defaults, recipes)
    script_name = script or Path(sys.argv[0]).name
    if {"-h", "--help"} & set(argv):
        print(format_recipe_help(parser, script_name), end="")
        raise SystemExit(0)
    known, _ = parser.parse_known_args(argv)
    if known.list_presets:
        print(format_presets())
        raise SystemExit(0)
    if recipes:
        _set_defaults(parser, recipes[known.recipe], f"--recipe {known.recipe}")
    if known.preset:
        _set_defaults(parser, get_preset(known.preset), f"--preset {known.preset}")
        if script is not None and PRESETS[known.preset].recipe != script:
            raise ValueError(f"Preset {known.preset!r} runs with recipes/{PRESETS[known.preset].recipe}, not {script}.")
    if known.help_all:
        print(format_recipe_help(parser, script_name, every_flag=True), end="")
        raise SystemExit(0)
    recipe_args, training_args, _ = parser.parse_args_into_dataclasses(argv)
    return recipe_args, training_args


# ---- data -----------------------------------------------------------------------------------------------------------
def _load(name, config, split, streaming, image_column, label_column, max_samples):
    dataset = load_image_dataset(
        name, split=split, streaming=streaming, image_column=image_column, label_column=label_column,
        **({"name": config} if config else {}),
    )
    if max_samples is not None:
        dataset = dataset.take(max_samples) if streaming else dataset.select(range(min(max_samples, len(dataset))))
    return dataset


def load_recipe_datasets(args: RecipeArguments, seed: int) -> tuple[Dataset | IterableDataset, Dataset | None]:
    """The training set (streamed and shuffled in a buffer with `--streaming`) and the evaluation set, if any."""
    train = _load(args.dataset_name, args.dataset_config, args.train_split, args.streaming, args.image_column,
                  args.label_column, args.max_train_samples)
    if args.streaming and not args.teacher_outputs:  # stored teacher outputs shuffle themselves, with the images
        train = train.shuffle(seed=seed, buffer_size=args.shuffle_buffer_size)
    if not args.eval_split:
        return train, None
    if args.eval_dataset_name:
        source = (args.eval_dataset_name, args.eval_dataset_config, args.eval_image_column, args.eval_label_column)
    else:
        source = (args.dataset_name, args.dataset_config, args.image_column, args.label_column)
    name, config, image_column, label_column = source
    evaluation = _load(name, config, args.eval_split, False, image_column, label_column, args.max_eval_samples)
    return train, evaluation


def _columns(dataset) -> list[str]:
    return dataset.column_names if dataset.column_names is not None else list(next(iter(dataset)))


@dataclass
class PixelValuesTransform:
    """Dataset transform: the `image` column becomes `pixel_values` through `transform`; other columns are kept.

    Each split gets its own (random training augmentation, deterministic evaluation), which one Trainer collator
    could not do.
    """

    transform: Callable

    def __call__(self, batch: dict[str, list]) -> dict[str, list]:
        batch = dict(batch)
        batch["pixel_values"] = [self.transform(image) for image in batch.pop("image")]
        return batch


def with_pixel_values(dataset: Dataset | IterableDataset, transform: Callable) -> Dataset | IterableDataset:
    """`dataset` whose rows carry `pixel_values` (a tensor from `transform`) instead of `image`, lazily."""
    if isinstance(dataset, IterableDataset):  # one example at a time: no batch of 1,000 decoded images in memory
        return dataset.map(PixelValuesTransform(transform), batched=True, batch_size=1, remove_columns=["image"])
    return dataset.with_transform(PixelValuesTransform(transform))


# ---- teacher and model ----------------------------------------------------------------------------------------------
def load_teacher(args: RecipeArguments) -> TimmTeacher:
    """The frozen timm teacher: from `--teacher_checkpoint` (safetensors) or timm's pretrained weights."""
    return TimmTeacher.from_timm(
        args.teacher_name,
        pretrained=args.teacher_checkpoint is None,
        checkpoint_path=args.teacher_checkpoint,
        **args.teacher_timm_kwargs,
    )


def recipe_data_config(teacher: TimmTeacher, image_size: int | None = None) -> dict:
    """timm data config of the run: the teacher's preprocessing with its channel count, at `image_size` if given.

    Teacher and student see the same tensors, so the teacher's mean, std, interpolation and crop apply. timm reports
    3-channel values for a 1-channel model; they are averaged into one.
    """
    config = dict(teacher.data_config())
    in_chans = first_conv_in_channels(teacher.model) or config["input_size"][0]
    height, width = config["input_size"][1:] if image_size is None else (image_size, image_size)
    config["input_size"] = (in_chans, height, width)
    if in_chans == 1:
        config["mean"] = (float(np.mean(config["mean"])),)
        config["std"] = (float(np.mean(config["std"])),)
    return config


def label_names(teacher: TimmTeacher, *datasets) -> list[str] | None:
    """Class names for `id2label`: from a dataset's `ClassLabel`, else from timm's ImageNet info of the teacher."""
    for dataset in datasets:
        feature = (getattr(dataset, "features", None) or {}).get("label")
        if isinstance(feature, ClassLabel) and feature.num_classes == teacher.num_classes:
            return list(feature.names)
    subset = timm.data.infer_imagenet_subset(teacher.model)
    if subset:
        names = timm.data.ImageNetInfo(subset).label_descriptions()
        if len(names) == teacher.num_classes:
            return names
    return None


def build_model(
    args: RecipeArguments, teacher: TimmTeacher, names: Sequence[str] | None = None
) -> GenDDForImageClassification:
    """A GenDD student sized by the teacher (feature width, classes) with the recipe's model settings."""
    labels = {"id2label": dict(enumerate(names))} if names else {"num_labels": teacher.num_classes}
    config = GenDDConfig(
        student_name=args.student_name,
        student_kwargs=args.student_timm_kwargs,
        teacher_feature_dim=teacher.feature_dim,
        token_dim=args.token_dim,
        head_width=args.head_width,
        head_depth=args.head_depth,
        contraction=args.contraction,
        diffusion_batch_mul=args.diffusion_batch_mul,
        feature_mixup_beta=args.feature_mixup_beta,
        cond_drop_prob=args.cond_drop_prob,
        **labels,
    )
    model = GenDDForImageClassification(config)
    model.sampling_config = GenDDSamplingConfig(
        sampler=args.sampler, num_inference_steps=args.num_inference_steps, guidance_scale=args.guidance_scale,
        num_samples=args.num_samples,
    )
    return model


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
            f"in_chans={student_chans}; both read the same tensors: pass --student_kwargs '{{\"in_chans\": "
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
        label = (dataset.features or {}).get("label")
        if isinstance(dataset, Dataset) and label is not None and not isinstance(label, ClassLabel):
            largest = int(np.max(dataset.with_format("numpy")["label"]))
            if largest >= teacher.num_classes:
                raise ValueError(
                    f"The {name} dataset has label {largest} but the teacher has {teacher.num_classes} classes "
                    f"(0..{teacher.num_classes - 1}); distil on data labelled with the teacher's classes."
                )


def recipe_metrics(
    args: RecipeArguments, train: Dataset | IterableDataset, evaluation: Dataset | None, num_classes: int,
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


# ---- model card -----------------------------------------------------------------------------------------------------
def recipe_card_fields(args: RecipeArguments) -> dict[str, Any]:
    """What a recipe's model card says beyond what the trainer knows (`GenDDTrainer.model_card_info`): the training
    data (also when streamed or unlabelled), the evaluation data, the licence, the augmentation and the subsets used.
    Dataset names are given as typed: the card links Hub ids and shows local paths as text."""
    check_license(args.license)
    notes = [
        f"Augmentation `{args.augmentation}`" + (" (off)" if args.no_augmentation else "")
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


# ---- the run --------------------------------------------------------------------------------------------------------
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

    Returns:
        `dict`: the evaluation metrics (`eval_{path}_top1`, `eval_{path}_top5`, `eval_loss`), empty without an
        evaluation split.
    """
    set_seed(training_args.seed)
    data_seed = training_args.data_seed or training_args.seed
    # ---- data, teacher, model
    train, evaluation = load_recipe_datasets(args, data_seed)
    teacher = load_teacher(args)
    data_config = recipe_data_config(teacher, args.image_size)
    check_recipe_inputs(args, training_args, teacher, data_config, train, evaluation)
    compute_metrics = recipe_metrics(args, train, evaluation, teacher.num_classes, training_args.inference_paths)
    model = build_model(args, teacher, label_names(teacher, train, evaluation))
    # The evaluation transform's config: saved in config.json, it is also the image processor's.
    model.config.pretrained_cfg = eval_data_config(data_config, args.augmentation)

    augment = not args.no_augmentation
    if args.teacher_outputs:
        # Training batches then carry the teacher's features and logits; the teacher only runs in evaluation.
        view_config = ViewConfig.from_data_config(data_config, args.augmentation, is_training=augment)
        train = teacher_outputs_dataset(train, args.teacher_outputs, view_config=view_config, teacher=teacher,
                                        split=args.train_split, seed=data_seed,
                                        shuffle_buffer_size=args.shuffle_buffer_size)
    else:
        train = with_pixel_values(train, build_transforms(data_config, is_training=augment, preset=args.augmentation))
    eval_transform = build_transforms(data_config, is_training=False, preset=args.augmentation)
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
        processing_class=build_image_processor(model),
        callbacks=list(callbacks or []),
    )
    # ---- train, evaluate
    result = trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
    trainer.log_metrics("train", result.metrics)
    trainer.save_metrics("train", result.metrics)
    metrics = {}
    if evaluation is not None:
        metrics = trainer.evaluate()
        trainer.log_metrics("eval", metrics)
        trainer.save_metrics("eval", metrics)
    # ---- save, card, push
    if training_args.push_to_hub:  # saves the model and writes the card before uploading
        commit = trainer.push_to_hub(commit_message=f"GenDD {training_args.method}: end of training")
        if commit is not None:
            print(f"Pushed {training_args.output_dir} to {commit.commit_url}")
    else:
        trainer.save_model()
        trainer.create_model_card()
    return metrics


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


# ---- evaluation of a saved folder -----------------------------------------------------------------------------------
def evaluate_folder(eval_args: EvaluateArguments, training_args: GenDDTrainingArguments) -> dict[str, float]:
    """Top-1 and top-5 of a saved GenDD folder on a labelled split, for each path of
    `training_args.eval_inference_paths` (`eval_sampled_top1`, ..., `eval_probe_top5`), and with
    `--shot_metrics_split` the many / medium / few-shot top-1 (`eval_probe_few_top1`, ...).

    Without the teacher (the model holds its classifier; no loss is computed) and with the evaluation transform the
    run saved (`config.pretrained_cfg`, the image processor's config); each image's sampling noise comes from its
    seed, as in the run's `GenDDTrainer.evaluate`, so the scores are the same.
    """
    model = GenDDForImageClassification.from_pretrained(eval_args.model_name_or_path)
    dataset = _load(eval_args.dataset_name, eval_args.dataset_config, eval_args.eval_split, False,
                    eval_args.image_column, eval_args.label_column, eval_args.max_eval_samples)
    if "label" not in dataset.column_names:
        raise ValueError(f"{eval_args.dataset_name!r} ({eval_args.eval_split}) has no label column "
                         f"(columns: {dataset.column_names}); pass --label_column NAME.")
    check_dataset_classes(dataset, model.config.num_labels, "eval dataset")
    labels = np.asarray(dataset["label"])
    compute_metrics = partial(top_k_metrics, paths=training_args.inference_paths)
    if eval_args.shot_metrics_split:
        train = _load(eval_args.dataset_name, eval_args.dataset_config, eval_args.shot_metrics_split, False,
                      eval_args.image_column, eval_args.label_column, None)
        if "label" not in train.column_names:
            raise ValueError(f"--shot_metrics_split {eval_args.shot_metrics_split!r} of {eval_args.dataset_name!r} has "
                             f"no label column (columns: {train.column_names}); pass --label_column NAME.")
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
    "AUGMENTATIONS",
    "HELP_GROUPS",
    "IMAGENET_RECIPES",
    "EvaluateArguments",
    "PixelValuesTransform",
    "RecipeArguments",
    "build_model",
    "check_recipe_inputs",
    "evaluate_folder",
    "format_recipe_help",
    "label_names",
    "load_recipe_datasets",
    "load_teacher",
    "parse_json_dict",
    "parse_recipe_args",
    "recipe_card_fields",
    "recipe_data_config",
    "recipe_main",
    "recipe_metrics",
    "recipe_parser",
    "run_recipe",
    "with_pixel_values",
]
