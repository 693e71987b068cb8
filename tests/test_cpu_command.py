"""The CPU command of docs/recipes.md ("On a CPU, offline, in under two minutes") runs as written after `make demo`.

It runs from a folder laid out as the repository after `make demo`: `recipes/` and the teacher folder
`cache/fashion_mnist/teacher`, written by the benchmark's own `get_teacher` (here for a `test_resnet` teacher trained
for two steps). Only flags appended to the command change it: a small Fashion-MNIST in the same IDX files, fewer
images and steps, and a token size that divides `test_resnet`'s 96-d feature.
"""

import gzip
import json
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from gendd_hf.bench.fashion_mnist import MEAN, BenchSettings, get_teacher
from gendd_hf.data import FASHION_MNIST_LABEL_NAMES
from gendd_hf.data.fashion_mnist import FASHION_MNIST_FILES
from recipe_helpers import ROOT, recipe_env


SMALLER = [
    "--max_train_samples",
    "16",
    "--max_eval_samples",
    "8",
    "--per_device_train_batch_size",
    "8",
    "--per_device_eval_batch_size",
    "8",
    "--num_inference_steps",
    "2",
    "--token_dim",
    "32",
]


def docs_cpu_command() -> list[str]:
    section = (ROOT / "docs" / "recipes.md").read_text().split("### On a CPU, offline, in under two minutes\n", 1)[1]
    block = section.split("```bash\n", 1)[1].split("```", 1)[0]
    return shlex.split(block.replace("\\\n", " "))


def write_fashion_mnist_idx(folder: Path, per_split: dict[str, int]) -> Path:
    """Fashion-MNIST's four gzip'd IDX files with 28x28 images of a bright band whose row is the class."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for split, count in per_split.items():
        labels = np.arange(count, dtype=np.uint8) % 10
        images = rng.integers(0, 60, (count, 28, 28), dtype=np.uint8)
        for image, label in zip(images, labels):
            image[2 * label : 2 * label + 3] += 150
        images_file, labels_file = FASHION_MNIST_FILES[split]
        for name, array, type_code in (
            (images_file, images, b"\x00\x00\x08\x03"),
            (labels_file, labels, b"\x00\x00\x08\x01"),
        ):
            with gzip.open(folder / name, "wb") as file:
                file.write(type_code + np.asarray(array.shape, ">i4").tobytes() + array.tobytes())
    return folder


@pytest.mark.slow
def test_the_cpu_command_of_the_docs_runs_as_written_after_make_demo(tmp_path):
    command = docs_cpu_command()
    assert command[:2] == ["python", "recipes/train_cifar100.py"]
    (tmp_path / "recipes").symlink_to(ROOT / "recipes")
    settings = BenchSettings(teacher_name="test_resnet", teacher_epochs=2, batch_size=8, bf16=False)
    arrays = {"train_pixels": torch.randn(8, 1, 28, 28), "train_labels": torch.arange(8) % 10}
    get_teacher(settings, arrays, tmp_path / "cache" / "fashion_mnist", log=print)
    data = write_fashion_mnist_idx(tmp_path / "fashion-mnist", {"train": 20, "test": 10})

    result = subprocess.run(
        [sys.executable, *command[1:], "--dataset_name", str(data), *SMALLER],
        cwd=tmp_path,
        env=recipe_env(tmp_path, GENDD_HF_CACHE=str(tmp_path / "gendd_cache")),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    out = tmp_path / "outputs" / "gendd-fashion-mnist-cpu"
    metrics = json.loads((out / "eval_results.json").read_text())
    assert {"eval_sampled_top1", "eval_probe_top1"} <= set(metrics)
    config = json.loads((out / "config.json").read_text())
    assert list(config["id2label"].values()) == FASHION_MNIST_LABEL_NAMES and config["teacher_feature_dim"] == 96
    # The teacher folder's preprocessing: 28x28, one channel, Fashion-MNIST's normalisation.
    assert config["pretrained_cfg"]["input_size"] == [1, 28, 28] and config["pretrained_cfg"]["mean"] == [MEAN]
    # Progress as lines (16 images in batches of 8, 2 epochs: 4 steps), no tqdm redraws in the log.
    assert "train: 4/4 step (100%)" in result.stderr and "\r" not in result.stderr
