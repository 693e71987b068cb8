"""`recipes/precompute_teacher.py` end to end on a tiny local dataset: precompute, rerun (resume), train from it."""

import runpy
import sys
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from datasets import DatasetDict
from safetensors.torch import save_file

from gendd_hf import GenDDConfig, GenDDForImageClassification, GenDDTrainer, GenDDTrainingArguments, TimmTeacher
from gendd_hf.data import dataset_from_arrays, load_image_dataset
from gendd_hf.teacher_outputs import TeacherOutputs, ViewConfig, teacher_outputs_dataset


RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "precompute_teacher.py"


def run_recipe(monkeypatch, *args):
    monkeypatch.setattr(sys, "argv", [str(RECIPE), *args])
    runpy.run_path(str(RECIPE), run_name="__main__")


def test_precompute_recipe_then_train_without_a_teacher(tmp_path, monkeypatch, capsys, no_pause_after_shuffled_streams):
    rng = np.random.default_rng(0)
    images = dataset_from_arrays(rng.integers(0, 255, (10, 20, 20), dtype=np.uint8), np.arange(10) % 3, list("abc"))
    DatasetDict({"train": images}).save_to_disk(tmp_path / "images")
    torch.manual_seed(0)
    teacher = timm.create_model("test_resnet", in_chans=1, num_classes=3)
    save_file(teacher.state_dict(), tmp_path / "teacher.safetensors")
    output_dir = tmp_path / "outputs"
    args = [
        "--dataset_name",
        str(tmp_path / "images"),
        "--teacher_name",
        "test_resnet",
        "--teacher_checkpoint",
        str(tmp_path / "teacher.safetensors"),
        "--teacher_kwargs",
        '{"in_chans": 1, "num_classes": 3}',
        "--image_size",
        "16",
        "--augmentation",
        "small",
        "--num_views",
        "2",
        "--shard_size",
        "4",
        "--logits",
        "topk",
        "--logits_top_k",
        "2",
        "--output_dir",
        str(output_dir),
    ]

    run_recipe(monkeypatch, *args)
    assert "10 images x 2 views of test_resnet" in capsys.readouterr().out
    shards = sorted((output_dir / "data").glob("*.parquet"))
    written = {path: path.stat().st_mtime_ns for path in shards}
    run_recipe(monkeypatch, *args)  # a rerun finds every shard complete and writes none
    assert {path: path.stat().st_mtime_ns for path in shards} == written

    outputs = TeacherOutputs.load(output_dir)
    wrapped = TimmTeacher(teacher)
    view_config = ViewConfig.from_data_config(wrapped.data_config(16), preset="small")
    assert (outputs.settings.view_config, outputs.settings.logits_top_k, len(shards)) == (view_config, 2, 3)
    train = teacher_outputs_dataset(
        load_image_dataset(str(tmp_path / "images"), split="train"),
        output_dir,
        view_config=view_config,
        teacher=wrapped,
    )
    model = GenDDForImageClassification(
        GenDDConfig(
            student_name="test_resnet",
            student_kwargs={"in_chans": 1},
            teacher_feature_dim=96,
            token_dim=32,
            head_width=32,
            head_depth=1,
            diffusion_batch_mul=2,
            num_labels=3,
        )
    )
    train.outputs.load_teacher_classifier(model)
    args = GenDDTrainingArguments(
        output_dir=str(tmp_path / "run"),
        method="kd",
        use_cpu=True,
        report_to="none",
        per_device_train_batch_size=5,
        max_steps=2,
        logging_steps=1,
        save_strategy="no",
    )
    trainer = GenDDTrainer(model, args, train_dataset=train)
    trainer.train()
    logs = [entry for entry in trainer.state.log_history if "kd_loss" in entry]
    assert len(logs) == 2 and all(np.isfinite(entry["kd_loss"]) for entry in logs)


def test_an_image_size_below_8_is_refused_before_anything_loads(tmp_path, monkeypatch):
    """Before: --image_size 0 reached the transforms (a PIL error on the first image)."""
    with pytest.raises(ValueError, match="--image_size 0 is invalid: .* Use at least 8"):
        run_recipe(
            monkeypatch,
            "--dataset_name",
            "none",
            "--teacher_name",
            "test_resnet",
            "--image_size",
            "0",
            "--output_dir",
            str(tmp_path / "outputs"),
        )
