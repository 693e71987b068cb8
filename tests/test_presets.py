"""gendd_hf.cli.presets: the table of the paper's experiments, and every preset started through its own recipe
script on tiny generated data, with tiny models in place of the paper's."""

import functools
import gc
import json
import math
import runpy
import sys
from pathlib import Path

import datasets
import numpy as np
import PIL.Image
import pytest
import timm
import torch
from safetensors.torch import save_file

from gendd_hf.cli import parse_recipe_args, presets
from gendd_hf.cli.presets import PRESETS, Preset, format_presets, get_preset, prerequisites
from gendd_hf.data.imagenet_lt import save_imagenet_lt
from gendd_hf.schedules import epoch_scheduler
from gendd_hf.training_args import GenDDTrainingArguments


ROOT = Path(__file__).resolve().parents[1]
NUM_CLASSES = 3


# ---- the table ------------------------------------------------------------------------------------------------------
# Each experiment the paper reports (issue 7), with the script that runs it.
PAPER_EXPERIMENTS = {
    **{
        f"cifar100-{pair}": "train_cifar100.py"
        for pair in (
            "resnet56-resnet20",
            "resnet110-resnet32",
            "resnet32x4-resnet8x4",
            "wrn_40_2-wrn_16_2",
            "wrn_40_2-wrn_40_1",
            "vgg13-vgg8",
            "resnet32x4-shufflenet_v1",
            "wrn_40_2-shufflenet_v1",
            "vgg13-mobilenet_v2",
            "resnet50-mobilenet_v2",
            "resnet32x4-shufflenet_v2",
        )
    },
    "imagenet-resnet34-resnet18": "train_imagenet.py",
    "imagenet-resnet50-mobilenetv1": "train_imagenet.py",
    "imagenet-beitv2_large-resnet50-a2": "train_imagenet.py",
    "imagenet-beitv2_large-resnet50-a1": "train_imagenet.py",
    "imagenet-beitv2_base-resnet50-a2": "train_imagenet.py",
    "imagenet-beitv2_base-resnet50-a1": "train_imagenet.py",
    "cc3m-unsup-resnet50-mobilenetv1": "train_cc3m_unsupervised.py",
    "imagenet-lt-resnext101-resnet18": "train_imagenet.py",
    "imagenet-lt-resnext101-resnet50": "train_imagenet.py",
    **{f"ablation-token-dim-{k}": "train_cc3m_unsupervised.py" for k in (16, 32, 128, 256, 512, 1024, 2048)},
    **{f"ablation-contraction-{c}": "train_imagenet.py" for c in (0.0, 0.5, 0.7, 0.8, 1.0)},
    "ablation-sgd": "train_imagenet.py",
    "ablation-step-lr": "train_imagenet.py",
}
# The top-1 numbers of docs/gendd-method.md (the paper), section 6.
PAPER_TOP1 = {
    "imagenet-resnet34-resnet18": 72.38,
    "imagenet-resnet50-mobilenetv1": 73.78,
    "imagenet-beitv2_large-resnet50-a1": 82.28,
    "cifar100-resnet56-resnet20": 72.63,
    "cifar100-resnet110-resnet32": 74.95,
    "cc3m-unsup-resnet50-mobilenetv1": 67.89,
    "imagenet-lt-resnext101-resnet50": 49.31,
}


def test_every_experiment_of_the_paper_has_a_preset():
    assert {name: PRESETS[name].recipe for name in PAPER_EXPERIMENTS if name in PRESETS} == PAPER_EXPERIMENTS
    paper = {name: p.paper_top1 for name, p in PRESETS.items() if p.top1_source == "paper"}
    assert paper == PAPER_TOP1
    # The ablation sweeps cover the paper's ranges, with the default as the baseline preset.
    token_dim = get_preset("cc3m-unsup-resnet50-mobilenetv1").get("token_dim", 64)
    assert sorted([token_dim] + [get_preset(f"ablation-token-dim-{k}")["token_dim"] for k in presets.TOKEN_DIMS]) == [
        16,
        32,
        64,
        128,
        256,
        512,
        1024,
        2048,
    ]
    assert PRESETS["ablation-contraction-1.0"].baseline == "imagenet-resnet34-resnet18"
    assert get_preset("ablation-contraction-0.0")["contraction"] == 0.0


def test_settings_of_the_paper():
    resnet18 = get_preset("imagenet-resnet34-resnet18")
    assert resnet18["teacher_name"] == "resnet34.tv_in1k" and resnet18["student_name"] == "resnet18"
    assert (resnet18["learning_rate"], resnet18["num_train_epochs"], resnet18["augmentation"]) == (2e-3, 100, "regular")
    assert resnet18["per_device_train_batch_size"] * 8 == 512
    assert resnet18["init_from"] == get_preset("imagenet-resnet34-resnet18-stage1")["output_dir"]
    assert get_preset("imagenet-resnet34-resnet18-stage1")["num_train_epochs"] == 20
    a1 = get_preset("imagenet-beitv2_large-resnet50-a1")
    assert (a1["num_train_epochs"], a1["mixup_alpha"], a1["cutmix_alpha"], a1["label_smoothing"]) == (600, 0.2, 1, 0.1)
    a2 = get_preset("imagenet-beitv2_base-resnet50-a2")
    assert (a2["num_train_epochs"], a2["mixup_alpha"], a2["cutmix_alpha"], a2["label_smoothing"]) == (300, 0.1, 1, 0)
    assert a2["teacher_name"].startswith("beitv2_base_patch16_224") and a2["feature_mixup_beta"] == 0.0
    unsup = get_preset("cc3m-unsup-resnet50-mobilenetv1")
    assert (unsup["method"], unsup["contraction"], unsup["streaming"]) == ("gendd_unsup", 0.0, True)
    assert unsup["max_steps"] == 100 * 5676  # 100 passes over 2,905,954 images at 512 a step
    cifar = get_preset("cifar100-resnet56-resnet20")
    assert (cifar["learning_rate"], cifar["per_device_train_batch_size"], cifar["diffusion_batch_mul"]) == (
        1e-3,
        64,
        30,
    )
    assert cifar["teacher_checkpoint"] == "outputs/cifar100-ce-resnet56/model.safetensors"
    teacher = get_preset("cifar100-ce-resnet56")
    assert (teacher["optim"], teacher["learning_rate"], teacher["weight_decay"]) == ("sgd", 0.05, 5e-4)
    assert json.loads(teacher["lr_scheduler_kwargs"])["lr_decay_epochs"] == [150, 180, 210]
    assert get_preset("cifar100-ce-shufflenet_v1")["learning_rate"] == 0.01
    assert get_preset("imagenet-lt-resnext101-resnet50")["num_train_epochs"] == 90


# Learning rates per epoch (0-based) and AdamW's first beta2, written from the official scripts:
# GenDD_imagenet/main_supervised_gendd.py (adjust_learning_rate_cos, min_lr 1e-6, adam_beta_min 0.96; warmup_epochs 20,
# 10 in sh/imagenet_train_res34res18_gendd.sh), main_gendd_pretrain.py (20 epochs, no warm-up, beta2 0.999),
# GenDD_cifar/train_student_gendd.py (adjust_learning_rate from epoch 1, sh/train_res56_res20_gendd.sh: lr 1e-3,
# warmup_epochs 50; adam_beta_min 0.95) and train_student_pretrain.py (cosine over 50 epochs, floor 0).
OFFICIAL_SCHEDULES = {
    "imagenet-resnet34-resnet18": ({0: 2e-4, 9: 2e-3, 99: 1e-6}, 0.96),
    "imagenet-resnet50-mobilenetv1": ({0: 1e-4, 19: 2e-3, 99: 1e-6}, 0.96),
    "imagenet-resnet34-resnet18-stage1": (
        {0: 1e-6 + (2e-3 - 1e-6) * 0.5 * (1 + math.cos(math.pi / 20)), 19: 1e-6},
        None,
    ),
    "imagenet-beitv2_large-resnet50-a1": ({0: 1e-4, 19: 2e-3, 599: 1e-6}, 0.96),
    "cifar100-resnet56-resnet20": (
        {0: 2e-5, 48: 9.8e-4, 49: 9.8e-4, 149: 9.8e-4, 150: 1e-4, 180: 1e-5, 239: 1e-6},
        0.95,
    ),
    "cifar100-resnet56-resnet20-stage1": ({0: 3e-3 * 0.5 * (1 + math.cos(math.pi / 50)), 49: 0.0}, None),
}


@pytest.mark.parametrize("name", sorted(OFFICIAL_SCHEDULES))
def test_schedules_are_the_official_scripts(tmp_path, name):
    expected, beta2_start = OFFICIAL_SCHEDULES[name]
    preset = get_preset(name)
    fields = ("learning_rate", "num_train_epochs", "lr_scheduler_type", "lr_scheduler_kwargs", "warmup_steps")
    args = GenDDTrainingArguments(output_dir=str(tmp_path), **{k: preset[k] for k in fields}, report_to="none")
    epochs = int(preset["num_train_epochs"])
    optimizer = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=args.learning_rate)
    scheduler = epoch_scheduler(args, optimizer, num_training_steps=epochs)  # one step an epoch
    rates = []
    for _ in range(epochs):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert [rates[epoch] for epoch in expected] == pytest.approx(list(expected.values()), rel=1e-9, abs=1e-15)
    assert preset.get("adam_beta2_start") == beta2_start  # stage 1 keeps beta2 at 0.999 (no schedule)


def test_get_preset_is_a_fresh_dict_and_names_the_near_misses():
    preset = get_preset("cifar100-resnet56-resnet20")
    preset["learning_rate"] = 1.0
    assert get_preset("cifar100-resnet56-resnet20")["learning_rate"] == 1e-3
    with pytest.raises(ValueError, match="Did you mean 'cifar100-resnet56-resnet20'"):
        get_preset("cifar100-resnet56-resnet2")
    with pytest.raises(ValueError, match=f"prints all {len(PRESETS)} of them"):
        get_preset("no-such-thing")


def test_prerequisites_chain_teacher_stage1_and_main():
    assert prerequisites("cifar100-ce-resnet56") == []
    assert prerequisites("cifar100-resnet56-resnet20-stage1") == ["cifar100-ce-resnet56"]
    assert prerequisites("cifar100-resnet56-resnet20") == ["cifar100-ce-resnet56", "cifar100-resnet56-resnet20-stage1"]
    assert prerequisites("ablation-sgd") == ["imagenet-resnet34-resnet18-stage1"]
    assert prerequisites("imagenet-lt-resnext101-resnet18") == ["imagenet-lt-ce-resnext101_32x4d"]


@pytest.mark.parametrize(
    "changes,message",
    [
        ({"recipe": "train.py"}, "not one of"),
        ({"overrides": {"recipe": "train_imagenet.py"}}, "Preset.recipe"),
        ({"overrides": {"augmentation": "strong"}}, "augmentation"),
        ({"overrides": {"method": "crd"}}, "method"),
        ({"paper_top1": 70.0}, "together"),
        ({"gpu_hours": 0}, "positive"),
    ],
)
def test_preset_checks_its_fields(changes, message):
    fields = dict(name="x", recipe="train_imagenet.py", experiment="x", group="x", overrides={}, gpu_hours=1.0)
    with pytest.raises(ValueError, match=message):
        Preset(**{**fields, **changes})


def test_list_presets_prints_every_preset_with_the_papers_number(capsys):
    with pytest.raises(SystemExit):
        parse_recipe_args(["--list-presets"])
    printed = capsys.readouterr().out
    assert printed.strip() == format_presets().strip()
    rows = {line.split()[0]: line for line in printed.splitlines() if line.split() and line.split()[0] in PRESETS}
    assert set(rows) == set(PRESETS)
    assert "72.63" in rows["cifar100-resnet56-resnet20"] and "82.28" in rows["imagenet-beitv2_large-resnet50-a1"]
    assert "82.01 (README)" in rows["imagenet-beitv2_base-resnet50-a2"]
    assert "not in our notes" in rows["cifar100-vgg13-vgg8"]
    assert "cifar100-resnet56-resnet20-stage1" in rows["cifar100-resnet56-resnet20"]


def test_docs_reproduction_table_is_the_generated_one():
    docs = (ROOT / "docs" / "reproduction.md").read_text()
    assert format_presets(markdown=True) in docs
    for name, preset in PRESETS.items():
        assert f"`{name}`" in docs
        assert f"needs ~{preset.gpu_hours:g} GPU-hours, not run here" in docs


# ---- the step schedule ----------------------------------------------------------------------------------------------
def test_kd_cifar_learning_rate():
    assert presets.kd_cifar_learning_rate("resnet56") == 0.05
    assert presets.kd_cifar_learning_rate("wrn_40_2") == 0.05
    assert presets.kd_cifar_learning_rate("shufflenet_v2") == 0.01
    assert presets.kd_cifar_learning_rate("mobilenet_v2") == 0.01


# ---- every preset starts ---------------------------------------------------------------------------------------------
def tiny_teacher_kwargs(feature_dim: int) -> dict:
    """A timm ResNet of a few thousand parameters whose pooled feature has `feature_dim` dims (4 x the last width)."""
    return {"channels": [16, 16, 16, feature_dim // 4], "base_width": 16, "stem_width": 8, "num_classes": NUM_CLASSES}


@functools.cache
def teacher_feature_dim(name: str) -> int:
    """The pooled feature width of the paper's teacher, from the architecture alone (no weights, no memory)."""
    with torch.device("meta"):
        return timm.create_model(name, pretrained=False).num_features


class Workspace:
    """Tiny data, tiny teachers of each feature width, and the preset runs done so far (stage 1 before stage 2)."""

    def __init__(self, root: Path):
        self.root = root
        self.images = root / "images"
        rng = np.random.default_rng(0)
        for split, count in (("train", 4), ("test", 2)):
            for label in range(NUM_CLASSES):
                (self.images / split / f"class_{label}").mkdir(parents=True)
                for index in range(count):
                    pixels = rng.integers(0, 255, (32, 32, 3)).astype(np.uint8)
                    PIL.Image.fromarray(pixels).save(self.images / split / f"class_{label}" / f"{index}.png")
        # ImageNet-LT: split files over the same images, turned into the dataset folder the LT presets read.
        for split, folder in (("train", "train"), ("val", "test"), ("test", "test")):
            lines = [
                f"{path.relative_to(self.images)} {path.parent.name[-1]}"
                for path in sorted((self.images / folder).rglob("*.png"))
            ]
            (self.images / f"ImageNet_LT_{split}.txt").write_text("\n".join(lines))
        self.imagenet_lt = root / "imagenet_lt"
        save_imagenet_lt(self.images, self.imagenet_lt, num_classes=NUM_CLASSES)
        self.teachers: dict[int, Path] = {}
        self.ran: set[str] = set()

    def output_dir(self, name: str) -> Path:
        return self.root / "outputs" / name

    def teacher(self, feature_dim: int) -> Path:
        if feature_dim not in self.teachers:
            torch.manual_seed(feature_dim)
            model = timm.create_model("resnet26", **tiny_teacher_kwargs(feature_dim))
            self.teachers[feature_dim] = self.root / f"teacher-{feature_dim}.safetensors"
            save_file(model.state_dict(), self.teachers[feature_dim])
        return self.teachers[feature_dim]

    def tiny_flags(self, preset: Preset) -> dict[str, object]:
        overrides = preset.overrides
        data = (
            self.imagenet_lt if overrides["dataset_name"] == presets.IMAGENET_LT_DATA["dataset_name"] else self.images
        )
        flags = {
            "dataset_name": data,
            "image_column": "image",
            "label_column": "label",
            "eval_split": "test",
            "image_size": 32,
            "per_device_train_batch_size": 4,
            "per_device_eval_batch_size": 8,
            "max_steps": 2,
            "output_dir": self.output_dir(preset.name),
            "logging_steps": 1,
            "eval_strategy": "no",
            "save_strategy": "no",
            "dataloader_num_workers": 0,
            "use_cpu": "true",
            "report_to": "none",
            "disable_tqdm": "true",
        }
        if "eval_dataset_name" in overrides:
            flags.update(eval_dataset_name=self.images, eval_image_column="image", eval_label_column="label")
        if preset.recipe == "train_teacher.py":
            return {**flags, "teacher_name": "test_resnet"}
        feature_dim = teacher_feature_dim(overrides["teacher_name"])
        flags.update(
            teacher_name="resnet26",
            teacher_kwargs=json.dumps(tiny_teacher_kwargs(feature_dim)),
            teacher_checkpoint=self.teacher(feature_dim),
            student_name="test_resnet",
            head_width=16,
            head_depth=1,
            diffusion_batch_mul=1,
            num_inference_steps=2,
            num_samples=1,
        )
        if "init_from" in overrides:
            flags["init_from"] = self.output_dir(prerequisites(preset.name)[-1])
        return flags

    def run(self, name: str, monkeypatch) -> tuple[set[str], GenDDTrainingArguments]:
        """Run preset `name` as `python recipes/<script> --preset NAME <tiny flags>` does (its stage 1 first, when it
        has one); returns the flags set in place of the preset's and the training arguments the run used."""
        preset = PRESETS[name]
        for earlier in prerequisites(name):
            if PRESETS[earlier].overrides.get("stage") == "pretrain" and earlier not in self.ran:
                self.run(earlier, monkeypatch)
        flags = self.tiny_flags(preset)
        argv = ["--preset", name, *(item for key, value in flags.items() for item in (f"--{key}", str(value)))]
        monkeypatch.setattr(sys, "argv", [preset.recipe, *argv])
        script = str(ROOT / "recipes" / preset.recipe)
        if preset.recipe == "train_teacher.py":
            training_args = runpy.run_path(script)["main"]().args  # what its `__main__` block runs, with the trainer
        else:
            runpy.run_path(script, run_name="__main__")
            # training_args.bin is the Trainer's pickle of its arguments, written by this very test run.
            training_args = torch.load(self.output_dir(name) / "training_args.bin", weights_only=False)
        self.ran.add(name)
        return set(flags), training_args


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    # Each Trainer.train() runs gc.collect() (accelerate's free_memory), which walks every object of this long test
    # process: freezing the objects that exist now keeps ~70 runs from spending most of their time there.
    gc.freeze()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path_factory.mktemp("hf_cache"))
        yield Workspace(tmp_path_factory.mktemp("presets"))
    gc.unfreeze()


@pytest.mark.parametrize("name", list(PRESETS))
def test_each_preset_starts(workspace, monkeypatch, name):
    preset = PRESETS[name]
    substituted, training_args = workspace.run(name, monkeypatch)
    output_dir = workspace.output_dir(name)
    results = json.loads((output_dir / "all_results.json").read_text())
    assert np.isfinite(results["train_loss"])
    top1 = {key: value for key, value in results.items() if key.startswith("eval_") and key.endswith("_top1")}
    shots = {key: value for key, value in top1.items() if key.split("_")[-2] in ("many", "medium", "few")}
    # A shot group without classes in the tiny data has no accuracy (NaN); every other top-1 is a fraction.
    assert top1 and all(0 <= value <= 1 for key, value in top1.items() if not (key in shots and np.isnan(value)))
    if preset.overrides.get("shot_metrics"):  # ImageNet-LT: many / medium / few-shot top-1 of each path
        paths = {key.split("_")[1] for key in top1 if key not in shots}  # ce: the probe only
        assert {f"eval_{path}_{group}_top1" for path in paths for group in ("many", "medium", "few")} == set(shots)
        assert not all(np.isnan(list(shots.values())))
    else:
        assert not shots

    # The preset's settings reached the run, except those of the tiny stand-ins.
    expected = {key: value for key, value in preset.overrides.items() if key not in substituted}
    for key, value in expected.items():
        if key in GenDDTrainingArguments.__dataclass_fields__:
            recorded = getattr(training_args, key)
            recorded = getattr(recorded, "value", recorded)  # enums: lr_scheduler_type, optim
            assert recorded == (json.loads(value) if key == "lr_scheduler_kwargs" else value), key
    config = json.loads((output_dir / "config.json").read_text())
    if preset.recipe == "train_teacher.py":  # a timm classifier folder
        assert (config["architecture"], config["num_classes"]) == ("test_resnet", NUM_CLASSES)
        return
    for key in {"token_dim", "contraction", "feature_mixup_beta", "cond_drop_prob"} & set(expected):
        assert config[key] == expected[key], key
    if "sampler" in expected:
        assert json.loads((output_dir / "sampling_config.json").read_text())["sampler"] == expected["sampler"]
    assert config["teacher_feature_dim"] == teacher_feature_dim(preset.overrides["teacher_name"])
    if "augmentation" in expected:
        assert f"Augmentation `{expected['augmentation']}`" in (output_dir / "README.md").read_text()
        assert (config["pretrained_cfg"]["crop_pct"] == 1.0) == (expected["augmentation"] == "small")
