"""Every experiment of the GenDD paper (arXiv 2507.14503) as a named preset: `recipes/<script> --preset NAME`.

A preset is a set of argument defaults, fields of [`~gendd_hf.cli.RecipeArguments`] and
[`GenDDTrainingArguments`]; flags given on the command line still win. `--list-presets` prints the table below
(`format_presets()`) with the paper's top-1 beside each experiment. Presets chain through their folders: a CIFAR
teacher preset writes the timm checkpoint that the distillation presets read (`teacher_checkpoint`), a `-stage1`
preset writes the folder that its stage-2 preset starts from (`init_from`). [`prerequisites`] lists what runs first.

The table is Python rather than YAML: the eleven CIFAR pairs and the ablation sweeps are generated from one base
each by small functions (no hand-copied blocks), and every preset is checked when the module is imported.

Settings come from the paper as restated in the project's method notes; where a pair's settings are not stated
there, from the authors' public scripts (github.com/jiequancui/Generative-Distribution-Distillation), and each
preset's `notes` say which values are assumptions. The global batch sizes assume 8 processes (CIFAR: 1).
"""

import difflib
import json
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from types import MappingProxyType
from typing import Any

from ..configuration_gendd import OFFICIAL_SAMPLING
from ..data.transforms import AUGMENTATIONS
from ..losses import METHODS
from ..training_args import STAGES


# The ImageNet recipes of the paper (method page, section 5). A1/A2 mix images, which replaces feature mixup.
IMAGENET_RECIPES = {
    "regular": {"augmentation": "regular", "num_train_epochs": 100},
    "a2": {
        "augmentation": "a2",
        "mixup_alpha": 0.1,
        "cutmix_alpha": 1.0,
        "label_smoothing": 0.0,
        "feature_mixup_beta": 0.0,
        "num_train_epochs": 300,
    },
    "a1": {
        "augmentation": "a1",
        "mixup_alpha": 0.2,
        "cutmix_alpha": 1.0,
        "label_smoothing": 0.1,
        "feature_mixup_beta": 0.0,
        "num_train_epochs": 600,
    },
}
"""`--recipe` of `recipes/train_imagenet.py`: field defaults of `RecipeArguments` and `GenDDTrainingArguments`."""

RECIPE_SCRIPTS = ("train_cifar100.py", "train_imagenet.py", "train_cc3m_unsupervised.py", "train_teacher.py")
"""The scripts of `recipes/` that run presets."""
OUTPUT_ROOT = "outputs"
GPU_HOURS_NOTE = (
    "GPU-h: rough A100 GPU-hours of the preset's own run (bf16, teacher online), from the FLOPs of student (x3 "
    "for the backward), teacher and diffusion head at 40 TFLOP/s sustained; slow data loading can double them."
)


# ---- the preset table -----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Preset:
    r"""
    One experiment of the paper, run by `python recipes/{recipe} --preset {name}`.

    Args:
        name (`str`): The preset's name.
        recipe (`str`): The script of `recipes/` that runs it, one of `RECIPE_SCRIPTS`.
        experiment (`str`): What the paper calls it (teacher -> student, recipe).
        group (`str`): Section of the table.
        overrides (`Mapping[str, Any]`): Argument defaults, fields of `RecipeArguments` / `GenDDTrainingArguments`.
        gpu_hours (`float`): Rough A100 GPU-hours of the run (see `GPU_HOURS_NOTE`).
        paper_top1 (`float`, *optional*): Top-1 (%) the authors report for it; `None` when not in our notes.
        top1_source (`str`, *optional*): Where `paper_top1` is reported ("paper" or the authors' README).
        baseline (`str`, *optional*): For an ablation, the preset it differs from by one setting.
        notes (`str`, *optional*): Assumptions and differences from the paper, in a sentence or two.
    """

    name: str
    recipe: str
    experiment: str
    group: str
    overrides: Mapping[str, Any]
    gpu_hours: float
    paper_top1: float | None = None
    top1_source: str = ""
    baseline: str | None = None
    notes: str = ""

    def __post_init__(self):
        def check(ok: bool, message: str) -> None:
            if not ok:
                raise ValueError(f"Preset {self.name!r}: {message}.")

        check(self.recipe in RECIPE_SCRIPTS, f"recipe {self.recipe!r} is not one of {list(RECIPE_SCRIPTS)}")
        check("recipe" not in self.overrides, "the script goes in Preset.recipe, not in the overrides")
        check(
            self.overrides.get("augmentation", "regular") in AUGMENTATIONS,
            f"augmentation must be one of {list(AUGMENTATIONS)}",
        )
        check(self.overrides.get("method", "gendd") in METHODS, f"method must be one of {list(METHODS)}")
        check(self.overrides.get("stage", "main") in STAGES, f"stage must be one of {list(STAGES)}")
        check((self.paper_top1 is None) == (not self.top1_source), "give paper_top1 and its top1_source together")
        check(self.gpu_hours > 0, "give a positive GPU-hour estimate")
        object.__setattr__(self, "overrides", MappingProxyType(dict(self.overrides)))


def _output_dir(name: str) -> str:
    return f"{OUTPUT_ROOT}/{name}"


def _teacher_checkpoint(teacher_preset: str) -> str:
    """Where `train_teacher.py` writes the timm checkpoint of a teacher preset."""
    return f"{_output_dir(teacher_preset)}/model.safetensors"


def _preset(
    name: str, recipe: str, experiment: str, group: str, gpu_hours: float, overrides: Mapping[str, Any], **kwargs: Any
) -> Preset:
    return Preset(name, recipe, experiment, group, {"output_dir": _output_dir(name), **overrides}, gpu_hours, **kwargs)


def _step_decay(*epochs: int, warmup_epochs: int = 0) -> dict[str, Any]:
    """The official CIFAR step schedule (`gendd_hf.schedules.EpochSchedule`): per-epoch warm-up, x0.1 at `epochs`."""
    kwargs = {
        "lr_decay_epochs": list(epochs),
        "lr_decay_rate": 0.1,
        **({"warmup_epochs": warmup_epochs} if warmup_epochs else {}),
    }
    return {"lr_scheduler_type": "constant_with_warmup", "lr_scheduler_kwargs": json.dumps(kwargs), "warmup_steps": 0}


def _epoch_cosine(warmup_epochs: int, min_lr: float, **kwargs: Any) -> dict[str, Any]:
    """The official cosine (`gendd_hf.schedules.EpochSchedule`): per-epoch warm-up, then down to `min_lr`."""
    kwargs = {"warmup_epochs": warmup_epochs, "min_lr": min_lr, **kwargs}
    return {"lr_scheduler_type": "cosine", "lr_scheduler_kwargs": json.dumps(kwargs), "warmup_steps": 0}


# ---- CIFAR-100 ------------------------------------------------------------------------------------------------------
CIFAR100_DATA = {  # its columns, img and fine_label, are found automatically
    "dataset_name": "uoft-cs/cifar100",
    "train_split": "train",
    "eval_split": "test",
    "image_size": 32,
    "augmentation": "small",
}
CIFAR_EPOCHS = 240
CIFAR_ADAM_BETA2_START = 0.95  # train_student_gendd.py's adam_beta_min
CIFAR_SAMPLING = next(config for name, config in OFFICIAL_SAMPLING.items() if "CIFAR" in name)
KD_CIFAR_LR_DECAY_EPOCHS = (150, 180, 210)
KD_CIFAR_SCHEDULE = {
    # Cross-entropy training of the CIFAR-100 distillation benchmarks (CRD, DKD): 240 epochs of SGD with momentum
    # 0.9 at batch 64, weight decay 5e-4, learning rate x0.1 at epochs 150, 180 and 210.
    "method": "ce",
    "num_train_epochs": CIFAR_EPOCHS,
    "per_device_train_batch_size": 64,
    "optim": "sgd",
    "optim_args": "momentum=0.9",
    "weight_decay": 5e-4,
    **_step_decay(*KD_CIFAR_LR_DECAY_EPOCHS),
}
_SMALL_LR_FAMILIES = ("shufflenet", "mobilenet")


def kd_cifar_learning_rate(architecture: str) -> float:
    """The CIFAR-100 learning rate of the distillation literature (CRD, DKD) for SGD at batch 64: 0.05, or 0.01 for
    ShuffleNet and MobileNet."""
    return 0.01 if any(family in architecture for family in _SMALL_LR_FAMILIES) else 0.05


def _cifar_ce(architecture: str, role: str) -> Preset:
    """Cross-entropy training of a CIFAR-100 network with the distillation literature's schedule (`--method ce`)."""
    return _preset(
        f"cifar100-ce-{architecture}",
        "train_teacher.py",
        f"{role} {architecture}, cross-entropy",
        "CIFAR-100 teachers and students (cross-entropy, 240 epochs, SGD)",
        gpu_hours=2.0 if architecture in ("resnet110", "resnet32x4", "resnet50") else 1.0,
        overrides={
            **CIFAR100_DATA,
            "teacher_name": f"cifar_{architecture}",
            **KD_CIFAR_SCHEDULE,
            "learning_rate": kd_cifar_learning_rate(architecture),
        },
        notes="Norms and biases are not decayed (the reference decays every parameter).",
    )


@dataclass(frozen=True)
class _CifarPair:
    """Settings of one CIFAR-100 pair in the authors' scripts (stage 1, then GenDD)."""

    teacher: str
    student: str
    paper_top1: float | None = None
    contraction: float = 0.9
    learning_rate: float = 1e-3
    weight_decay: float = 5e-2
    batch_size: int = 64
    diffusion_batch_mul: int = 30
    warmup_epochs: int = 50
    cosine: bool = False
    head_weight_decay: float = 0.0
    stage1: Mapping[str, Any] = field(default_factory=dict)
    gpu_hours: float = 2.0


def _cifar_pair(pair: _CifarPair, group: str) -> list[Preset]:
    name = f"cifar100-{pair.teacher}-{pair.student}"
    experiment = f"{pair.teacher} -> {pair.student}"
    shared = {
        **CIFAR100_DATA,
        "teacher_name": f"cifar_{pair.teacher}",
        "teacher_checkpoint": _teacher_checkpoint(f"cifar100-ce-{pair.teacher}"),
        "student_name": f"cifar_{pair.student}",
    }
    stage1 = {  # train_student_pretrain.py: cosine over the stage's epochs, no warm-up, floor 0
        "learning_rate": 3e-3,
        "weight_decay": pair.weight_decay,
        "per_device_train_batch_size": 64,
        "num_train_epochs": 50,
        **_epoch_cosine(warmup_epochs=0, min_lr=0.0),
        **pair.stage1,
    }
    if pair.cosine:  # train_student_gendd.py --cos: adjust_learning_rate_cos, floor 0 (min_learning_rate)
        schedule = _epoch_cosine(warmup_epochs=pair.warmup_epochs, min_lr=0.0)
    else:  # adjust_learning_rate: per-epoch warm-up, then x0.1 after epochs 150, 180 and 210
        schedule = _step_decay(*KD_CIFAR_LR_DECAY_EPOCHS, warmup_epochs=pair.warmup_epochs)
    notes = "Settings of the authors' script for this pair"
    if pair.contraction != 0.9:
        notes += f" (its lambda {pair.contraction}; the paper's text says 0.9 for every pair)"
    if any(family in pair.student for family in _SMALL_LR_FAMILIES):
        notes += (
            f"; their train_student_gendd.py replaces the learning rate of {pair.student} students by 0.01, "
            "so the rate they ran with is uncertain"
        )
    return [
        _preset(
            f"{name}-stage1",
            "train_cifar100.py",
            f"{experiment}, stage 1",
            group,
            gpu_hours=0.2,
            overrides={**shared, "method": "gendd", "stage": "pretrain", **stage1},
        ),
        _preset(
            name,
            "train_cifar100.py",
            experiment,
            group,
            gpu_hours=pair.gpu_hours,
            overrides={
                **shared,
                "method": "gendd",
                "init_from": _output_dir(f"{name}-stage1"),
                "num_train_epochs": CIFAR_EPOCHS,
                "learning_rate": pair.learning_rate,
                "weight_decay": pair.weight_decay,
                "head_weight_decay": pair.head_weight_decay,
                "per_device_train_batch_size": pair.batch_size,
                "adam_beta2_start": CIFAR_ADAM_BETA2_START,
                **schedule,
                "contraction": pair.contraction,
                "diffusion_batch_mul": pair.diffusion_batch_mul,
                "num_inference_steps": CIFAR_SAMPLING.num_inference_steps,
                "num_samples": CIFAR_SAMPLING.num_samples,
            },
            paper_top1=pair.paper_top1,
            top1_source="paper" if pair.paper_top1 is not None else "",
            notes=notes + ".",
        ),
    ]


_SHUFFLENET_STAGE1 = {"learning_rate": 1e-5, "weight_decay": 1e-2, "per_device_train_batch_size": 128}
CIFAR_SAME_FAMILY = (
    _CifarPair("resnet56", "resnet20", paper_top1=72.63),
    _CifarPair("resnet110", "resnet32", paper_top1=74.95),
    _CifarPair("resnet32x4", "resnet8x4", contraction=0.7, gpu_hours=3.0),
    _CifarPair("wrn_40_2", "wrn_16_2", contraction=0.8),
    _CifarPair("wrn_40_2", "wrn_40_1", contraction=0.8),
    _CifarPair("vgg13", "vgg8", contraction=0.7, gpu_hours=3.0),
)
CIFAR_CROSS_FAMILY = (
    _CifarPair(
        "resnet32x4",
        "shufflenet_v1",
        contraction=0.7,
        learning_rate=1e-5,
        weight_decay=1e-2,
        batch_size=128,
        warmup_epochs=20,
        stage1={**_SHUFFLENET_STAGE1, "num_train_epochs": 20},
        gpu_hours=3.0,
    ),
    _CifarPair(
        "wrn_40_2",
        "shufflenet_v1",
        contraction=0.7,
        learning_rate=1e-5,
        weight_decay=1e-2,
        batch_size=128,
        stage1={"weight_decay": 1e-2, "per_device_train_batch_size": 128},
        gpu_hours=3.0,
    ),
    _CifarPair(
        "vgg13",
        "mobilenet_v2",
        contraction=0.8,
        learning_rate=1e-4,
        weight_decay=1e-2,
        batch_size=128,
        cosine=True,
        stage1={"weight_decay": 1e-2},
        gpu_hours=3.0,
    ),
    _CifarPair(
        "resnet50",
        "mobilenet_v2",
        contraction=0.8,
        learning_rate=1e-4,
        weight_decay=2e-2,
        batch_size=128,
        diffusion_batch_mul=10,
        cosine=True,
        head_weight_decay=2e-2,
        stage1={"weight_decay": 2e-2},
        gpu_hours=4.0,
    ),
    _CifarPair(
        "resnet32x4",
        "shufflenet_v2",
        contraction=0.7,
        learning_rate=1e-5,
        weight_decay=1e-2,
        batch_size=128,
        warmup_epochs=20,
        stage1={**_SHUFFLENET_STAGE1, "num_train_epochs": 20},
        gpu_hours=3.0,
    ),
)
CIFAR_TEACHERS = ("resnet56", "resnet110", "resnet32x4", "wrn_40_2", "vgg13", "resnet50")
CIFAR_STUDENTS = (
    "resnet20",
    "resnet32",
    "resnet8x4",
    "wrn_16_2",
    "wrn_40_1",
    "vgg8",
    "shufflenet_v1",
    "shufflenet_v2",
    "mobilenet_v2",
)


# ---- ImageNet -------------------------------------------------------------------------------------------------------
IMAGENET_DATA = {"dataset_name": "imagenet-1k", "train_split": "train", "eval_split": "validation", "image_size": 224}
# The official ImageNet scripts (main_supervised_gendd.py, main_unsupervised_gendd.py, main_gendd_lt.py): lr 2e-3 at a
# total batch of 512 (8 x 64), AdamW, weight decay 0.02, 10 diffusion rows, beta2 from 0.96 (adam_beta_min), and the
# per-epoch cosine of adjust_learning_rate_cos down to min_lr 1e-6 after warmup_epochs (default 20; the
# res34 -> res18 script passes 10).
IMAGENET_MIN_LR = 1e-6
IMAGENET_WARMUP_EPOCHS = 20
IMAGENET_ADAM_BETA2_START = 0.96
IMAGENET_OPTIMIZATION = {
    "learning_rate": 2e-3,
    "per_device_train_batch_size": 64,
    "weight_decay": 0.02,
    "diffusion_batch_mul": 10,
    "adam_beta2_start": IMAGENET_ADAM_BETA2_START,
    **_epoch_cosine(IMAGENET_WARMUP_EPOCHS, IMAGENET_MIN_LR),
}
# main_gendd_pretrain.py: 20 epochs, its cosine without warm-up down to 1e-6, beta2 0.999 throughout.
IMAGENET_STAGE1 = {
    "stage": "pretrain",
    "num_train_epochs": 20,
    "learning_rate": 2e-3,
    "per_device_train_batch_size": 64,
    "weight_decay": 0.02,
    **_epoch_cosine(0, IMAGENET_MIN_LR),
}


def _imagenet_pair(
    name: str,
    experiment: str,
    group: str,
    models: Mapping[str, str],
    training_recipe: str,
    gpu_hours: float,
    warmup_epochs: int = IMAGENET_WARMUP_EPOCHS,
    **kwargs: Any,
) -> list[Preset]:
    """Stage 1 (20 epochs) and GenDD on ImageNet-1k with one of the paper's recipes (`IMAGENET_RECIPES`), warming up
    over `warmup_epochs` as the pair's official script does."""
    shared = {**IMAGENET_DATA, **models, "method": "gendd"}
    return [
        _preset(
            f"{name}-stage1",
            "train_imagenet.py",
            f"{experiment}, stage 1",
            group,
            gpu_hours=STAGE1_GPU_HOURS[models["student_name"]],
            overrides={**shared, "augmentation": "regular", **IMAGENET_STAGE1},
        ),
        _preset(
            name,
            "train_imagenet.py",
            experiment,
            group,
            gpu_hours=gpu_hours,
            overrides={
                **shared,
                **IMAGENET_OPTIMIZATION,
                **_epoch_cosine(warmup_epochs, IMAGENET_MIN_LR),
                **IMAGENET_RECIPES[training_recipe],
                "init_from": _output_dir(f"{name}-stage1"),
            },
            **kwargs,
        ),
    ]


# Stage 1 trains the student alone (supervised: the teacher is not run), 20 epochs.
STAGE1_GPU_HOURS = {"resnet18": 2.0, "mobilenetv1_100": 1.0, "resnet50": 5.0}
RESNET34_RESNET18 = {"teacher_name": "resnet34.tv_in1k", "student_name": "resnet18"}
RESNET50_MOBILENET = {"teacher_name": "resnet50.tv_in1k", "student_name": "mobilenetv1_100"}
BEITV2 = {
    "large": "beitv2_large_patch16_224.in1k_ft_in22k_in1k",
    "base": "beitv2_base_patch16_224.in1k_ft_in22k_in1k",
}
_README = "authors' README"
# (size, recipe) -> (GPU-hours, reported top-1, where it is reported)
BEIT_RUNS = {
    ("large", "a2"): (420.0, 81.64, f"{_README}, first version"),
    ("large", "a1"): (830.0, 82.28, "paper"),
    ("base", "a2"): (175.0, 82.01, _README),
    ("base", "a1"): (350.0, 82.31, _README),
}
_BEIT_NOTES = (
    "Learning rate, weight decay and warm-up of the 100-epoch recipe (the strong recipes' values are not "
    "in our notes); stage 1 of 20 epochs assumed."
)


# ---- unlabeled CC3M and ImageNet-LT ---------------------------------------------------------------------------------
CC3M_TRAIN_IMAGES = 2_905_954  # pixparse/cc3m-wds, train split
CC3M_EPOCHS = 100
CC3M_MAX_STEPS = CC3M_EPOCHS * math.ceil(CC3M_TRAIN_IMAGES / 512)
CC3M_DATA = {
    "dataset_name": "pixparse/cc3m-wds",
    "streaming": True,
    "image_column": "jpg",
    "eval_dataset_name": "imagenet-1k",
    "eval_split": "validation",
    "image_size": 224,
    "augmentation": "regular",
}


def _cc3m(suffix: str, models: Mapping[str, str], experiment: str, gpu_hours: float, **kwargs: Any) -> Preset:
    return _preset(
        f"cc3m-unsup-{suffix}",
        "train_cc3m_unsupervised.py",
        experiment,
        "Unsupervised: CC3M without labels -> ImageNet val",
        gpu_hours,
        overrides={
            **CC3M_DATA,
            **models,
            **IMAGENET_OPTIMIZATION,
            **_epoch_cosine(IMAGENET_WARMUP_EPOCHS, IMAGENET_MIN_LR, num_epochs=CC3M_EPOCHS),
            "method": "gendd_unsup",
            "contraction": 0.0,
            "max_steps": CC3M_MAX_STEPS,
        },
        notes=f"{CC3M_EPOCHS} passes over CC3M at a total batch of 512 (the authors' script); no stage 1.",
        **kwargs,
    )


# ImageNet-LT: the split files turned into a dataset folder by `python -m gendd_hf.data.imagenet_lt`.
IMAGENET_LT_DATA = {
    "dataset_name": "data/imagenet_lt",
    "train_split": "train",
    "eval_split": "test",
    "image_size": 224,
    "augmentation": "regular",
    "shot_metrics": True,
}
IMAGENET_LT_TEACHER = "imagenet-lt-ce-resnext101_32x4d"
IMAGENET_LT_EPOCHS = 90


def _imagenet_lt(student: str, gpu_hours: float, **kwargs: Any) -> Preset:
    return _preset(
        f"imagenet-lt-resnext101-{student}",
        "train_imagenet.py",
        f"ResNeXt101 -> {student.replace('resnet', 'ResNet')}, ImageNet-LT",
        "ImageNet-LT (many / medium / few-shot accuracy)",
        gpu_hours=gpu_hours,
        overrides={
            **IMAGENET_LT_DATA,
            "teacher_name": "resnext101_32x4d",
            "teacher_checkpoint": _teacher_checkpoint(IMAGENET_LT_TEACHER),
            "student_name": student,
            "method": "gendd",
            **IMAGENET_OPTIMIZATION,
            "per_device_train_batch_size": 32,
            "weight_decay": 0.2,
            "num_train_epochs": IMAGENET_LT_EPOCHS,
        },
        notes="Total batch 256 and weight decay 0.2 from the authors' script (which runs 100 epochs); its "
        "20-epoch warm-up and cosine to 1e-6 over our 90 epochs; no stage 1.",
        **kwargs,
    )


# ---- ablations ------------------------------------------------------------------------------------------------------
TOKEN_DIMS = (16, 32, 128, 256, 512, 1024, 2048)  # 64, the paper's default, is the baseline itself
CONTRACTIONS = (0.0, 0.5, 0.7, 0.8, 1.0)  # 0.9 is the baseline
_ABLATIONS = "Ablations (one setting changed from the named baseline)"
_ABLATION_SETTING = "The paper's setting for this ablation is not in our notes; this baseline is our choice."


def _ablation(base: Preset, name: str, change: str, overrides: Mapping[str, Any], notes: str = "") -> Preset:
    return _preset(
        f"ablation-{name}",
        base.recipe,
        f"{base.experiment}, {change}",
        _ABLATIONS,
        base.gpu_hours,
        overrides={**{k: v for k, v in base.overrides.items() if k != "output_dir"}, **overrides},
        baseline=base.name,
        notes=" ".join(filter(None, [notes, _ABLATION_SETTING])),
    )


def _ablations(imagenet: Preset, cc3m: Preset) -> Iterator[Preset]:
    for token_dim in TOKEN_DIMS:
        yield _ablation(cc3m, f"token-dim-{token_dim}", f"token dim {token_dim}", {"token_dim": token_dim})
    for contraction in CONTRACTIONS:
        yield _ablation(imagenet, f"contraction-{contraction}", f"lambda {contraction}", {"contraction": contraction})
    yield _ablation(
        imagenet,
        "sgd",
        "SGD instead of AdamW",
        {"optim": "sgd", "optim_args": "momentum=0.9", "learning_rate": 0.2, "weight_decay": 1e-4},
        notes="SGD as in torchvision's ImageNet recipe (lr 0.1 per 256 images, weight decay 1e-4).",
    )
    yield _ablation(
        imagenet,
        "step-lr",
        "step decay instead of cosine",
        _step_decay(30, 60, 90, warmup_epochs=10),
        notes="Learning rate x0.1 at epochs 30, 60 and 90 after the same 10-epoch warm-up, held at 0.9 of the rate "
        "until epoch 30 as in the official CIFAR step schedule (the official ImageNet one reaches the full rate).",
    )


# ---- the table ------------------------------------------------------------------------------------------------------
def _build_presets() -> dict[str, Preset]:
    presets = [_cifar_ce(architecture, "teacher") for architecture in CIFAR_TEACHERS]
    presets += [_cifar_ce(architecture, "student") for architecture in CIFAR_STUDENTS]
    for pair in CIFAR_SAME_FAMILY:
        presets += _cifar_pair(pair, "CIFAR-100, teacher and student of the same family")
    for pair in CIFAR_CROSS_FAMILY:
        presets += _cifar_pair(pair, "CIFAR-100, teacher and student of different families")

    imagenet_group = "ImageNet-1k, regular recipe (100 epochs)"
    presets += _imagenet_pair(
        "imagenet-resnet34-resnet18",
        "ResNet34 -> ResNet18",
        imagenet_group,
        RESNET34_RESNET18,
        "regular",
        gpu_hours=24.0,  # docs/performance.md: 18 with stored teacher outputs
        warmup_epochs=10,  # sh/imagenet_train_res34res18_gendd.sh passes --warmup_epochs 10
        paper_top1=72.38,
        top1_source="paper",
    )
    presets += _imagenet_pair(
        "imagenet-resnet50-mobilenetv1",
        "ResNet50 -> MobileNet",
        imagenet_group,
        RESNET50_MOBILENET,
        "regular",
        gpu_hours=50.0,  # docs/performance.md, by FLOPs (its step was not timed)
        paper_top1=73.78,
        top1_source="paper",
    )
    for (size, recipe), (gpu_hours, top1, source) in BEIT_RUNS.items():
        epochs = IMAGENET_RECIPES[recipe]["num_train_epochs"]
        presets += _imagenet_pair(
            f"imagenet-beitv2_{size}-resnet50-{recipe}",
            f"BEiTv2-{size[0].upper()} -> ResNet50, {recipe.upper()} {epochs} epochs",
            "ImageNet-1k, strong recipes (BEiTv2 teachers)",
            {"teacher_name": BEITV2[size], "student_name": "resnet50"},
            recipe,
            gpu_hours=gpu_hours,
            paper_top1=top1,
            top1_source=source,
            notes=_BEIT_NOTES,
        )

    presets.append(
        _cc3m(
            "resnet50-mobilenetv1",
            RESNET50_MOBILENET,
            "ResNet50 -> MobileNet, unsupervised",
            50.0,
            paper_top1=67.89,
            top1_source="paper",
        )
    )
    presets.append(
        _cc3m(
            "resnet34-resnet18",
            RESNET34_RESNET18,
            "ResNet34 -> ResNet18, unsupervised",
            45.0,
            paper_top1=66.90,
            top1_source=_README,
        )
    )

    presets.append(
        _preset(
            IMAGENET_LT_TEACHER,
            "train_teacher.py",
            "ResNeXt101 teacher, ImageNet-LT, cross-entropy",
            "ImageNet-LT (many / medium / few-shot accuracy)",
            gpu_hours=4.0,
            overrides={
                **IMAGENET_LT_DATA,
                "teacher_name": "resnext101_32x4d",
                "method": "ce",
                "num_train_epochs": IMAGENET_LT_EPOCHS,
                "per_device_train_batch_size": 32,
                "optim": "sgd",
                "optim_args": "momentum=0.9",
                "learning_rate": 0.1,
                "weight_decay": 5e-4,
                "lr_scheduler_type": "cosine",
                "lr_scheduler_kwargs": "{}",
            },
            notes="SGD at lr 0.1, total batch 256, weight decay 5e-4 as in the authors' script; 90 epochs and the "
            "cosine schedule assumed.",
        )
    )
    presets.append(_imagenet_lt("resnet18", gpu_hours=3.0))
    presets.append(_imagenet_lt("resnet50", gpu_hours=4.0, paper_top1=49.31, top1_source="paper"))

    by_name = {p.name: p for p in presets}
    presets += list(_ablations(by_name["imagenet-resnet34-resnet18"], by_name["cc3m-unsup-resnet50-mobilenetv1"]))
    table = {}
    for preset in presets:
        if preset.name in table:
            raise ValueError(f"Two presets are named {preset.name!r}.")
        table[preset.name] = preset
    for preset in presets:
        _prerequisites(preset, table)  # every folder a preset reads is written by another one
    return table


def _prerequisites(preset: Preset, table: Mapping[str, Preset]) -> list[str]:
    written_by = {p.overrides["output_dir"]: p.name for p in table.values()}
    reads = [preset.overrides.get("teacher_checkpoint"), preset.overrides.get("init_from")]
    folders = [str(PurePosixPath(path).parent) if path.endswith(".safetensors") else path for path in reads if path]
    missing = [folder for folder in folders if folder not in written_by]
    if missing:
        raise ValueError(f"Preset {preset.name!r} reads {missing}, which no preset writes.")
    return [written_by[folder] for folder in folders]


PRESETS: Mapping[str, Preset] = MappingProxyType(_build_presets())
"""Every preset by name, in the order of the table."""


def _lookup(name: str) -> Preset:
    if name not in PRESETS:
        close = difflib.get_close_matches(name, list(PRESETS), n=3, cutoff=0.5)
        hint = f" Did you mean {' or '.join(map(repr, close))}?" if close else ""
        raise ValueError(f"Unknown preset {name!r}.{hint} `--list-presets` prints all {len(PRESETS)} of them.")
    return PRESETS[name]


def get_preset(name: str) -> dict[str, Any]:
    """The argument defaults of preset `name`: fields of `RecipeArguments` and `GenDDTrainingArguments` (a fresh dict,
    safe to change). The script that runs it is `PRESETS[name].recipe`."""
    return dict(_lookup(name).overrides)


def prerequisites(name: str) -> list[str]:
    """The presets that must run before `name`: the one writing its teacher checkpoint, then its stage 1."""
    return _prerequisites(_lookup(name), PRESETS)


def _top1(preset: Preset) -> str:
    if preset.overrides.get("stage") == "pretrain":
        return "- (stage 1)"
    if preset.paper_top1 is None:
        return "not in our notes"
    return f"{preset.paper_top1:.2f}" + ("" if preset.top1_source == "paper" else " (README)")


def _hours(hours: float) -> str:
    return f"{hours:g}"


def format_presets(markdown: bool = False) -> str:
    """The presets as a table, by section: name, script, the paper's top-1 (%), GPU-hours, the experiment and the
    presets to run first. With `markdown=True`, the Markdown table of docs/reproduction.md: its "Ours" column says
    that the run was not made here, its last one gives the preset's notes."""
    if markdown:
        header = ["Preset", "Script", "Experiment", "Paper top-1", "Ours", "Notes"]
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for group, presets in _groups():
            lines.append(f"| **{group}** |" + " |" * (len(header) - 1))
            for p in presets:
                experiment = p.experiment + (f" (vs `{p.baseline}`)" if p.baseline else "")
                ours = f"needs ~{_hours(p.gpu_hours)} GPU-hours, not run here"
                lines.append(f"| `{p.name}` | `{p.recipe}` | {experiment} | {_top1(p)} | {ours} | {p.notes} |")
        return "\n".join(lines)
    header = ("preset", "script", "paper top-1", "GPU-h", "experiment [presets to run first]")
    rows = [
        (
            p.name,
            p.recipe,
            _top1(p),
            _hours(p.gpu_hours),
            p.experiment
            + (f" (vs {p.baseline})" if p.baseline else "")
            + (f" [{', '.join(prerequisites(p.name))}]" if prerequisites(p.name) else ""),
        )
        for p in PRESETS.values()
    ]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header) - 1)]

    def line(row) -> str:
        return "  ".join(cell.ljust(width) for cell, width in zip(row, widths)) + "  " + row[-1]

    out = [
        f"{len(PRESETS)} presets: python recipes/<script> --preset NAME (flags on the command line still win).",
        line(header),
    ]
    by_name = dict(zip(PRESETS, rows))
    for group, presets in _groups():
        out += ["", f"[{group}]"] + [line(by_name[p.name]) for p in presets]
    out += [
        "",
        "paper top-1: as reported by the authors; (README) marks numbers from their repository's README.",
        GPU_HOURS_NOTE,
    ]
    return "\n".join(out)


def _groups() -> list[tuple[str, list[Preset]]]:
    groups: dict[str, list[Preset]] = {}
    for preset in PRESETS.values():
        groups.setdefault(preset.group, []).append(preset)
    return list(groups.items())


__all__ = [
    "CIFAR100_DATA",
    "IMAGENET_RECIPES",
    "GPU_HOURS_NOTE",
    "KD_CIFAR_SCHEDULE",
    "PRESETS",
    "RECIPE_SCRIPTS",
    "Preset",
    "format_presets",
    "get_preset",
    "kd_cifar_learning_rate",
    "prerequisites",
]
