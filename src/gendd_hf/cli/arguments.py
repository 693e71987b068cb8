"""The command line of the training recipes: their arguments, layered defaults (script, `--recipe`, `--preset`) and
`--help`."""

import argparse
import copy
import dataclasses
import json
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from transformers import HfArgumentParser

from ..configuration_gendd import SAMPLERS, GenDDConfig, GenDDSamplingConfig
from ..data.transforms import AUGMENTATIONS
from ..modeling_gendd import GenDDForImageClassification
from ..teacher import TimmTeacher
from ..training_args import GenDDTrainingArguments
from .presets import PRESETS, format_presets, get_preset


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


MIN_IMAGE_SIZE = 8
"""The smallest `--image_size`: below it the crops, pads and strides of the transforms and students leave nothing."""


def check_image_size(image_size: int | None) -> None:
    """Raise a `ValueError` with the reason when `--image_size` (`None`: the teacher's) is below `MIN_IMAGE_SIZE`."""
    if image_size is not None and image_size < MIN_IMAGE_SIZE:
        reason = "no image" if image_size < 1 else f"{image_size}x{image_size}-pixel images, too small to classify"
        raise ValueError(
            f"--image_size {image_size} is invalid: every image is resized to image_size x image_size, which would "
            f"give {reason}. Use at least {MIN_IMAGE_SIZE} (e.g. 32 for CIFAR, 224 for ImageNet), or leave it unset "
            "for the teacher's input size."
        )


@dataclass
class _RecipeArguments:
    """`RecipeArguments` without the GenDD model and sampling fields, which `MODEL_FLAGS` adds."""

    # ---- data
    dataset_name: str | None = field(
        default=None,
        metadata={
            "help": "Hub dataset id, or a local imagefolder / parquet / webdataset-shard / save_to_disk path, or "
            "a folder of Fashion-MNIST's IDX files (/usr/share/datasets/fashion-mnist)."
        },
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
        metadata={
            "help": "timm name of the teacher, e.g. resnet34.tv_in1k or cifar_resnet56, or local-dir:FOLDER for "
            "a timm model folder (weights, classes and preprocessing; train_teacher.py writes one)."
        },
    )
    teacher_checkpoint: str | None = field(
        default=None,
        metadata={"help": "Local safetensors state dict of the teacher; without it timm's pretrained weights."},
    )
    teacher_kwargs: str = field(
        default="{}",
        metadata={"help": "JSON timm.create_model arguments of the teacher, e.g. '{\"num_classes\": 100}'."},
    )
    student_name: str = field(default=GenDDConfig().student_name, metadata={"help": "timm name of the student."})
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
    shot_metrics: bool = field(
        default=False,
        metadata={
            "help": "Also report the many (over 100 training images), medium (20 to 100) and few-shot (under "
            "20) top-1 of each inference path, as ImageNet-LT does (eval_probe_many_top1, ...); the classes "
            "are grouped by their images in the (not streamed) training split."
        },
    )
    # ---- precomputed teacher outputs, presets
    teacher_outputs: str | None = field(
        default=None,
        metadata={
            "help": "Folder or Hub id of teacher outputs stored by recipes/precompute_teacher.py for the "
            "training set, with the same --image_size and --augmentation: the teacher then runs in evaluation "
            "only."
        },
    )
    preset: str | None = field(
        default=None,
        metadata={
            "help": "An experiment preset (gendd_hf.cli.presets): its values become the defaults; flags given "
            "on the command line still win. --list-presets prints them."
        },
    )
    # ---- model card
    license: str | None = field(
        default=None,
        metadata={
            "help": "Hub licence id of the trained weights for the model card (apache-2.0, mit, cc-by-4.0, "
            "other...); unset: the card states no licence (the data's and the teacher's terms still apply)."
        },
    )
    overwrite_output_dir: bool = field(
        default=False,
        metadata={
            "help": "Write into an output_dir that another live run holds (its lock file .gendd_run.lock); without "
            "it such a run is refused. The lock of a run that has died is taken over without it."
        },
    )

    def __post_init__(self):
        if not self.dataset_name:
            raise ValueError("--dataset_name is required: a Hub dataset id or a local dataset path.")
        if not self.teacher_name:
            raise ValueError("--teacher_name is required: the timm name of the teacher (e.g. resnet34.tv_in1k).")
        if self.augmentation not in AUGMENTATIONS:
            raise ValueError(f"--augmentation={self.augmentation!r} is invalid: use one of {list(AUGMENTATIONS)}.")
        check_image_size(self.image_size)
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

    def build_model(
        self, teacher: TimmTeacher, class_names: Sequence[str] | None = None
    ) -> GenDDForImageClassification:
        """A GenDD student sized by `teacher` (`GenDDConfig.from_teacher`) with these model and sampling settings."""
        config = GenDDConfig.from_teacher(
            teacher,
            class_names,
            student_name=self.student_name,
            student_kwargs=self.student_timm_kwargs,
            **{name: getattr(self, name) for name in MODEL_FLAGS},
        )
        model = GenDDForImageClassification(config)
        model.sampling_config = GenDDSamplingConfig(**{name: getattr(self, name) for name in SAMPLING_FLAGS})
        return model


MODEL_FLAGS = {
    "token_dim": "Split tokenization token size k.",
    "head_width": "Diffusion head width.",
    "head_depth": "Diffusion head residual blocks.",
    "contraction": "Distribution contraction lambda.",
    "diffusion_batch_mul": "Diffusion rows per (sample, token).",
    "feature_mixup_beta": "Feature mixup Beta(a, a); 0: off.",
    "cond_drop_prob": "Condition dropout of classifier-free guidance.",
}
"""The `GenDDConfig` fields a recipe sets from its command line, with their help; the defaults are the config's."""
SAMPLING_FLAGS = {
    "num_inference_steps": "Sampling steps of the sampled path.",
    "guidance_scale": "Classifier-free guidance scale.",
    "num_samples": "Feature samples averaged per image.",
    "sampler": "Sampler of the sampled path.",
}
"""The `GenDDSamplingConfig` fields a recipe sets, likewise."""


def _config_fields() -> list[tuple[str, type, Any]]:
    """`MODEL_FLAGS` and `SAMPLING_FLAGS` as dataclass fields whose defaults are the configs' own (the paper's)."""
    model_defaults, sampling_defaults = GenDDConfig(), GenDDSamplingConfig()
    fields = []
    for flags, defaults in ((MODEL_FLAGS, model_defaults), (SAMPLING_FLAGS, sampling_defaults)):
        for name, help_text in flags.items():
            default = getattr(defaults, name)
            metadata = {"help": help_text, **({"choices": list(SAMPLERS)} if name == "sampler" else {})}
            fields.append((name, type(default), field(default=default, metadata=metadata)))
    return fields


RecipeArguments = dataclasses.make_dataclass(
    "RecipeArguments", _config_fields(), bases=(_RecipeArguments,), namespace={"__module__": __name__}
)
RecipeArguments.__doc__ = """
    What a recipe trains on and with: data, teacher, student, augmentation and the GenDD model and sampling settings
    (`MODEL_FLAGS`, `SAMPLING_FLAGS`, fields of `GenDDConfig` and `GenDDSamplingConfig` with their defaults, which
    are the paper's). Parsed with [`GenDDTrainingArguments`] (method, stage, schedule, checkpoints, Hub) by
    `HfArgumentParser`.
    """


@dataclass
class EvaluateArguments:
    """What `recipes/evaluate_model.py` scores: a saved GenDD folder on a labelled dataset split."""

    model_name_or_path: str = field(metadata={"help": "A GenDD folder (a recipe's output_dir) or Hub id."})
    dataset_name: str = field(metadata={"help": "Hub dataset id or local dataset path."})
    dataset_config: str | None = field(default=None, metadata={"help": "Configuration name of a Hub dataset."})
    eval_split: str = field(default="validation", metadata={"help": "Split to evaluate on."})
    image_column: str | None = field(default=None, metadata={"help": "Image column (found automatically if unset)."})
    label_column: str | None = field(default=None, metadata={"help": "Label column (found automatically if unset)."})
    max_eval_samples: int | None = field(default=None, metadata={"help": "Evaluate on the first N examples only."})
    shot_metrics_split: str | None = field(
        default=None,
        metadata={
            "help": "Also report many / medium / few-shot top-1 (ImageNet-LT), classes grouped by their images "
            "in this split of the dataset (the training split, e.g. 'train')."
        },
    )


HELP_GROUPS = {
    "method and stage": ("preset", "list_presets", "recipe", "method", "stage", "init_from"),
    "teacher": ("teacher_name", "teacher_checkpoint", "teacher_kwargs", "teacher_outputs"),
    "student and diffusion head": (
        "student_name",
        "student_kwargs",
        "token_dim",
        "head_width",
        "head_depth",
        "contraction",
        "diffusion_batch_mul",
    ),
    "sampling (the sampled inference path)": ("sampler", "num_inference_steps", "guidance_scale", "num_samples"),
    "data": (
        "dataset_name",
        "train_split",
        "eval_split",
        "image_column",
        "label_column",
        "image_size",
        "max_train_samples",
        "max_eval_samples",
    ),
}
"""The flags a recipe's `--help` leads with, GenDD's own, by group; every other flag follows them (`HELP_REST`)."""
HELP_REST = {
    "other recipe flags (augmentation, mixup, evaluation)": RecipeArguments,
    "training (transformers' TrainingArguments and GenDD's additions)": GenDDTrainingArguments,
}
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
    `--list-presets` and, with `recipes`, `--recipe` with the defaults of its first choice (a plain run's)."""
    parser = HfArgumentParser((RecipeArguments, GenDDTrainingArguments))
    parser.add_argument("--list-presets", "--list_presets", action="store_true", help="Print the presets and exit.")
    if recipes:
        parser.add_argument(
            "--recipe",
            choices=list(recipes),
            default=next(iter(recipes)),
            help="Training recipe of the paper: its augmentation, mixup and schedule become the defaults.",
        )
    _set_defaults(parser, defaults or {}, "The recipe's defaults")
    if recipes:
        default_recipe = next(iter(recipes))
        _set_defaults(parser, recipes[default_recipe], f"--recipe {default_recipe}")
    return parser


def format_recipe_help(parser: HfArgumentParser, script: str) -> str:
    """The `--help` of recipe `script`: GenDD's own flags (`HELP_GROUPS`) with their defaults, then every other flag
    (`HELP_REST`).

    A recipe script run with `--help` alone prints `recipes/help/<script>.txt`, this text, without importing torch
    (a test keeps the files current); with `--recipe` or `--preset` as well, the parser prints it with their defaults.
    """
    actions = {}  # dest -> its actions (a boolean field has `--flag` and `--no_flag`)
    for action in parser._actions:
        actions.setdefault(action.dest, []).append(_first_option_only(action))
    formatter = parser.formatter_class(prog=script, width=HELP_WIDTH, max_help_position=40)
    formatter.add_usage(f"python recipes/{script} --output_dir DIR [--preset NAME] [--FLAG VALUE ...]", [], [])
    sections = list(HELP_GROUPS.items())
    shown = {"help", *(name for _, names in sections for name in names)}
    for title, arguments in HELP_REST.items():
        sections.append((title, [f.name for f in dataclasses.fields(arguments) if f.name not in shown]))
        shown.update(sections[-1][1])
    for title, names in sections:
        formatter.start_section(title)
        formatter.add_arguments([action for name in names for action in actions.get(name, ())])
        formatter.end_section()
    return formatter.format_help()


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
    `--recipe` of `recipes` (when given, e.g. `IMAGENET_RECIPES`), the `--preset` of `gendd_hf.cli.presets`; flags on
    the command line win over all of them. `--help` prints GenDD's own flags then every other one, with the layered
    defaults ([`format_recipe_help`]), `--list-presets` the presets; each then exits. With `script` (the file name of
    the running recipe), a preset written for another script is refused.
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = recipe_parser(defaults, recipes)
    script_name = script or Path(sys.argv[0]).name
    help_asked = bool({"-h", "--help"} & set(argv))
    known, _ = parser.parse_known_args([arg for arg in argv if arg not in ("-h", "--help")])
    if known.list_presets:
        print(format_presets())
        raise SystemExit(0)
    if recipes:
        _set_defaults(parser, recipes[known.recipe], f"--recipe {known.recipe}")
    if known.preset:
        _set_defaults(parser, get_preset(known.preset), f"--preset {known.preset}")
        if script is not None and PRESETS[known.preset].recipe != script:
            raise ValueError(f"Preset {known.preset!r} runs with recipes/{PRESETS[known.preset].recipe}, not {script}.")
    if help_asked:
        print(format_recipe_help(parser, script_name), end="")
        raise SystemExit(0)
    recipe_args, training_args, _ = parser.parse_args_into_dataclasses(argv)
    return recipe_args, training_args


__all__ = [
    "HELP_GROUPS",
    "MIN_IMAGE_SIZE",
    "MODEL_FLAGS",
    "SAMPLING_FLAGS",
    "EvaluateArguments",
    "RecipeArguments",
    "check_image_size",
    "format_recipe_help",
    "parse_json_dict",
    "parse_recipe_args",
    "recipe_parser",
]
