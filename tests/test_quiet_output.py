"""A normal run prints no misleading line: a baseline recipe run, then its folder loaded through the Auto classes and
the pipeline, as a user does after training."""

import logging

import numpy as np
import pytest
from transformers import AutoImageProcessor, AutoModelForImageClassification, pipeline

from gendd_hf.cli import parse_recipe_args, run_recipe
from recipe_helpers import NAMES, QUIET, TINY, band_image, teacher_args, write_recipe_data


MISLEADING = {
    # transformers asks for the torchvision backend of TimmWrapperImageProcessor, which it lists under PIL only
    "backend is not available": "the image processor's backend notice, with torchvision installed",
    # a bar per load and save of a model that takes about a second
    "Loading weights": "the weight-loading bar",
    "Writing model shards": "the weight-saving bar",
    # the Trainer saving the image processor, which lives in config.json
    "`save_pretrained` method is disabled": "the image processor's save notice after a successful run",
    # a baseline set to the probe path, from the config's default
    "Setting config.inference_path": "the inference-path notice of a baseline (or a teacher) trained as it should",
}


@pytest.mark.usefixtures("datasets_cache_in_tmp_path")
def test_a_baseline_run_and_its_folder_print_no_misleading_line(tmp_path, capfd, caplog):
    logging.Logger.warning_once.cache_clear()  # transformers' once-only warnings, as in a fresh process
    caplog.set_level(logging.INFO)
    data = write_recipe_data(tmp_path / "data")
    out = tmp_path / "out"
    argv = [
        "--dataset_name",
        str(data["imagefolder"]),
        *teacher_args(data),
        *TINY,
        *QUIET,
        "--method",
        "kd",
        "--max_steps",
        "2",
        "--per_device_train_batch_size",
        "4",
        "--output_dir",
        str(out),
    ]
    defaults = {"dataset_name": "imagenet-1k", "eval_split": "validation", "teacher_name": "resnet34.tv_in1k"}
    metrics = run_recipe(*parse_recipe_args(argv, defaults))
    AutoModelForImageClassification.from_pretrained(out)
    AutoImageProcessor.from_pretrained(out)
    answer = pipeline("image-classification", model=str(out))(band_image(2, np.random.default_rng(0)))
    assert "eval_probe_top1" in metrics and answer[0]["label"] in NAMES

    printed = capfd.readouterr().err + "\n".join(
        record.getMessage() for record in caplog.records if record.levelno >= logging.WARNING
    )
    shown = {line: what for line, what in MISLEADING.items() if line in printed}
    assert not shown, shown
    # The inference-path change is still logged, at INFO: the baseline classifies with its probe.
    assert any("Setting config.inference_path='probe'" in record.getMessage() for record in caplog.records)
