"""recipes/train_teacher.py end to end on a tiny generated imagefolder of 32x32 images: the step schedule, the timm
checkpoint it writes, and that TimmTeacher reads it back as the same classifier; and the library function it calls,
`gendd_hf.teacher_training.train_timm_classifier`, on tensors as the benchmark calls it."""

import importlib.util
import json
from pathlib import Path

import datasets
import numpy as np
import PIL.Image
import pytest
import torch
from safetensors.torch import load_file

from gendd_hf import TimmTeacher
from gendd_hf.teacher_training import UNUSED_HEAD, save_timm_classifier, timm_data_config, train_timm_classifier
from gendd_hf.training_args import GenDDTrainingArguments


ROOT = Path(__file__).resolve().parents[1]
NUM_CLASSES = 3
ARCHITECTURE = "cifar_resnet20"


def load_recipe():
    spec = importlib.util.spec_from_file_location("train_teacher", ROOT / "recipes" / "train_teacher.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


train_teacher = load_recipe()


pytestmark = pytest.mark.usefixtures("datasets_cache_in_tmp_path")  # conftest.py


def write_imagefolder(folder: Path, per_class: dict[str, int]) -> Path:
    """Class c is a bright vertical band at columns 10c..10c+9 over dark noise."""
    rng = np.random.default_rng(0)
    for split, count in per_class.items():
        for label in range(NUM_CLASSES):
            (folder / split / f"class_{label}").mkdir(parents=True)
            for index in range(count):
                pixels = rng.integers(0, 60, (32, 32, 3)).astype(np.uint8)
                pixels[:, 10 * label : 10 * label + 10] += 150
                PIL.Image.fromarray(pixels).save(folder / split / f"class_{label}" / f"{index}.png")
    return folder


def argv(data: Path, output_dir: Path, *extra: str) -> list[str]:
    return [
        "--dataset_name",
        str(data),
        "--teacher_name",
        ARCHITECTURE,
        "--output_dir",
        str(output_dir),
        "--per_device_train_batch_size",
        "4",
        "--per_device_eval_batch_size",
        "8",
        "--logging_steps",
        "1",
        "--eval_strategy",
        "no",
        "--save_strategy",
        "no",
        "--use_cpu",
        "true",
        "--report_to",
        "none",
        "--disable_tqdm",
        "true",
        "--seed",
        "0",
        *extra,
    ]


def test_trains_with_the_step_schedule_and_writes_a_timm_teacher(tmp_path):
    data = write_imagefolder(tmp_path / "data", {"train": 8, "test": 2})
    output_dir = tmp_path / "teacher"
    # 8 steps standing for 4 epochs (2 steps each): lr x0.1 from epoch 2 (step 4) and again from epoch 3 (step 6).
    trainer = train_teacher.main(
        argv(
            data,
            output_dir,
            "--max_steps",
            "8",
            "--num_train_epochs",
            "4",
            "--learning_rate",
            "0.1",
            "--lr_scheduler_kwargs",
            '{"lr_decay_epochs": [2, 3], "lr_decay_rate": 0.1}',
        )
    )
    args = trainer.args
    assert (args.method, args.optim, args.weight_decay, args.optim_args) == ("ce", "sgd", 5e-4, "momentum=0.9")
    assert trainer.optimizer.param_groups[0]["momentum"] == 0.9
    learning_rates = [entry["learning_rate"] for entry in trainer.state.log_history if "loss" in entry]
    assert learning_rates == pytest.approx([0.1] * 4 + [0.01] * 2 + [0.001] * 2)
    assert json.loads((output_dir / "eval_results.json").read_text())["eval_probe_top1"] >= 0

    # A timm model folder: timm's config and the state dict of timm.create_model(ARCHITECTURE, num_classes=3).
    config = json.loads((output_dir / "config.json").read_text())
    assert (config["architecture"], config["num_classes"]) == (ARCHITECTURE, NUM_CLASSES)
    assert config["label_names"] == ["class_0", "class_1", "class_2"]
    assert config["pretrained_cfg"]["input_size"] == [3, 32, 32]
    weights = load_file(output_dir / "model.safetensors")
    model = trainer.model.eval()
    torch.testing.assert_close(weights["fc.weight"], model.probe.weight.detach(), rtol=0, atol=0)
    torch.testing.assert_close(weights["layer3.2.conv2.weight"], model.student.layer3[2].conv2.weight.detach())

    # TimmTeacher loads it and gives the trained model's probe-path logits.
    teacher = TimmTeacher.from_timm(
        ARCHITECTURE, checkpoint_path=output_dir / "model.safetensors", num_classes=NUM_CLASSES
    )
    pixel_values = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        probe_logits = model(pixel_values=pixel_values, inference_path="probe").logits
    torch.testing.assert_close(teacher(pixel_values).logits, probe_logits, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(teacher.classifier_weight, model.probe.weight.detach())
    # As a timm model folder (the recipes' --teacher_name local-dir:FOLDER): the same, with its preprocessing.
    folder_teacher = TimmTeacher.from_timm(f"local-dir:{output_dir}")
    torch.testing.assert_close(folder_teacher(pixel_values).logits, probe_logits, rtol=1e-5, atol=1e-5)
    assert tuple(folder_teacher.data_config()["input_size"]) == (3, 32, 32)


def test_default_schedule_is_the_kd_literature_one(tmp_path):
    data = write_imagefolder(tmp_path / "data", {"train": 2})
    trainer = train_teacher.main(argv(data, tmp_path / "out", "--eval_split", "", "--max_steps", "1"))
    args = trainer.args
    assert (args.num_train_epochs, args.learning_rate, args.per_device_train_batch_size) == (240, 0.05, 4)
    assert args.lr_scheduler_kwargs == {"lr_decay_epochs": [150, 180, 210], "lr_decay_rate": 0.1}
    assert trainer.lr_scheduler.lr_lambdas[0].lr_decay_epochs == (150.0, 180.0, 210.0)
    assert (tmp_path / "out" / "model.safetensors").is_file()


def test_takes_any_image_and_label_columns_and_splits(tmp_path):
    """As in the other recipes: columns found automatically (the tests above: an imagefolder's `image` and `label`),
    or named with --image_column / --label_column; splits named with --train_split / --eval_split."""
    folder = write_imagefolder(tmp_path / "imagefolder", {"train": 4, "test": 1})
    renamed = datasets.DatasetDict(
        {
            name: datasets.load_dataset("imagefolder", data_dir=str(folder), split=split).rename_columns(
                {"image": "picture", "label": "category"}
            )
            for name, split in (("fit", "train"), ("holdout", "test"))
        }
    )
    renamed.save_to_disk(tmp_path / "renamed")
    trainer = train_teacher.main(
        argv(
            tmp_path / "renamed",
            tmp_path / "out",
            "--image_column",
            "picture",
            "--label_column",
            "category",
            "--train_split",
            "fit",
            "--eval_split",
            "holdout",
            "--max_steps",
            "2",
        )
    )
    assert trainer.state.global_step == 2 and len(trainer.eval_dataset) == NUM_CLASSES
    config = json.loads((tmp_path / "out" / "config.json").read_text())
    assert config["label_names"] == ["class_0", "class_1", "class_2"]
    assert "eval_probe_top1" in json.loads((tmp_path / "out" / "eval_results.json").read_text())


@pytest.mark.parametrize(
    "extra,message",
    [
        (["--method", "kd"], "cross-entropy only: drop --method kd"),
        (["--stage", "pretrain"], "cross-entropy only"),
        (["--teacher_kwargs", '{"num_classes": 10}'], "num_classes=10 but .* has 3 classes"),
    ],
)
def test_rejects_what_it_cannot_train(tmp_path, extra, message):
    data = write_imagefolder(tmp_path / "data", {"train": 1})
    with pytest.raises(ValueError, match=message):
        train_teacher.main(argv(data, tmp_path / "out", "--eval_split", "", "--max_steps", "1", *extra))


def test_train_timm_classifier_on_tensors_as_the_bench_calls_it(tmp_path):
    """No recipe around it: tensor rows in, the trained model's probe path out as a timm classifier (the smallest
    unused head unless told otherwise), saved as a timm model folder; `timm_data_config` draws no random numbers."""
    state = torch.get_rng_state()
    data_config = timm_data_config(ARCHITECTURE)
    assert torch.equal(torch.get_rng_state(), state) and tuple(data_config["input_size"]) == (3, 32, 32)
    generator = torch.Generator().manual_seed(0)
    rows = [
        {"pixel_values": torch.randn(3, 32, 32, generator=generator), "labels": torch.tensor(i % NUM_CLASSES)}
        for i in range(8)
    ]
    args = GenDDTrainingArguments(
        output_dir=str(tmp_path / "run"),
        method="ce",
        max_steps=2,
        per_device_train_batch_size=4,
        use_cpu=True,
        report_to="none",
        save_strategy="no",
    )
    classifier, trainer, result = train_timm_classifier(ARCHITECTURE, ["a", "b", "c"], args, rows)
    assert result.global_step == 2 and not classifier.training
    config = trainer.model.config
    assert {key: getattr(config, key) for key in UNUSED_HEAD} == UNUSED_HEAD
    pixel_values = torch.stack([row["pixel_values"] for row in rows[:4]])
    with torch.no_grad():
        probe_logits = trainer.model.eval()(pixel_values=pixel_values, inference_path="probe").logits
        torch.testing.assert_close(classifier(pixel_values), probe_logits, rtol=1e-5, atol=1e-5)
    weights = save_timm_classifier(classifier, tmp_path / "teacher", ["a", "b", "c"], data_config)
    teacher = TimmTeacher.from_timm(f"local-dir:{weights.parent}")
    torch.testing.assert_close(teacher(pixel_values).logits, probe_logits, rtol=1e-5, atol=1e-5)
    assert json.loads((weights.parent / "config.json").read_text())["label_names"] == ["a", "b", "c"]

    with pytest.raises(ValueError, match="cross-entropy only: drop --method kd"):
        train_timm_classifier(
            ARCHITECTURE,
            ["a", "b", "c"],
            GenDDTrainingArguments(output_dir=str(tmp_path / "kd"), method="kd", use_cpu=True, report_to="none"),
            rows,
        )


def test_the_seed_decides_the_classifier(tmp_path):
    """torch seeds every new process at random: the initialisation must come from `--seed`, not the global state."""
    generator = torch.Generator().manual_seed(0)
    rows = [
        {"pixel_values": torch.randn(3, 32, 32, generator=generator), "labels": torch.tensor(i % NUM_CLASSES)}
        for i in range(4)
    ]

    def train(seed: int, global_seed: int) -> dict[str, torch.Tensor]:
        torch.manual_seed(global_seed)  # another process's random start
        args = GenDDTrainingArguments(
            output_dir=str(tmp_path / f"run-{seed}-{global_seed}"),
            method="ce",
            seed=seed,
            max_steps=1,
            per_device_train_batch_size=4,
            use_cpu=True,
            report_to="none",
            save_strategy="no",
        )
        return train_timm_classifier(ARCHITECTURE, ["a", "b", "c"], args, rows).classifier.state_dict()

    first, again, other = train(7, 1), train(7, 2), train(8, 1)
    assert all(torch.equal(first[key], again[key]) for key in first)
    assert not all(torch.equal(first[key], other[key]) for key in first)
