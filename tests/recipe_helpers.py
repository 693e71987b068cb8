"""Helpers of the recipe tests (plain functions and constants; fixtures are in conftest.py): tiny data in every layout
the recipes read, teachers saved as safetensors, and recipe runs in a subprocess, offline."""

import io
import json
import os
import socket
import subprocess
import tarfile
from pathlib import Path

import numpy as np
import timm
import torch
from datasets import ClassLabel, Dataset, Features, Image, Value
from PIL import Image as PILImage
from safetensors.torch import save_file

import gendd_hf  # noqa: F401  (registers the cifar_* models with timm)


ROOT = Path(__file__).resolve().parents[1]
RECIPES = ROOT / "recipes"
NAMES = ["bee", "cat", "dog", "elk", "fox", "owl"]  # sorted, as imagefolder numbers its classes
SIZE = 32
# A tiny GenDD model and a short, quiet run.
TINY = [
    "--student_name",
    "test_resnet",
    "--image_size",
    str(SIZE),
    "--token_dim",
    "32",
    "--head_width",
    "32",
    "--head_depth",
    "1",
    "--diffusion_batch_mul",
    "2",
    "--num_inference_steps",
    "4",
    "--num_samples",
    "1",
]
QUIET = [
    "--report_to",
    "none",
    "--disable_tqdm",
    "true",
    "--dataloader_num_workers",
    "0",
    "--logging_steps",
    "1",
    "--per_device_eval_batch_size",
    "4",
    "--eval_strategy",
    "no",
    "--save_strategy",
    "no",
]


# ---- data -----------------------------------------------------------------------------------------------------------
def band_image(label: int, rng: np.random.Generator) -> PILImage.Image:
    pixels = rng.integers(0, 60, (SIZE, SIZE, 3)).astype(np.uint8)
    pixels[5 * label : 5 * label + 5] += 150
    return PILImage.fromarray(pixels)


def write_recipe_data(root: Path) -> dict[str, Path]:
    """Tiny datasets in every layout the recipes read, and teachers as safetensors; returns their paths."""
    rng = np.random.default_rng(0)
    paths = {name: root / name for name in ("imagefolder", "parquet", "parquet_int", "wds")}
    for split, per_class in (("train", 4), ("validation", 2)):
        for i in range(per_class * len(NAMES)):
            folder = paths["imagefolder"] / split / NAMES[i % len(NAMES)]
            folder.mkdir(parents=True, exist_ok=True)
            band_image(i % len(NAMES), rng).save(folder / f"{i}.png")
    for split, per_class in (("train", 4), ("test", 2)):
        labels = [i % len(NAMES) for i in range(per_class * len(NAMES))]
        images = [band_image(label, rng) for label in labels]
        features = Features(img=Image(), fine_label=ClassLabel(names=NAMES))
        paths["parquet"].mkdir(exist_ok=True)
        Dataset.from_dict({"img": images, "fine_label": labels}, features).to_parquet(
            paths["parquet"] / f"{split}.parquet"
        )
        if split == "train":  # plain integer labels, without class names or count
            paths["parquet_int"].mkdir(exist_ok=True)
            Dataset.from_dict(
                {"image": images, "label": labels}, Features(image=Image(), label=Value("int64"))
            ).to_parquet(paths["parquet_int"] / "train.parquet")
    paths["wds"].mkdir()
    for shard in range(2):  # unlabeled, like CC3M: an image and a caption per example
        with tarfile.open(paths["wds"] / f"train-{shard:05d}.tar", "w") as tar:
            for i in range(12):
                buffer = io.BytesIO()
                band_image(i % len(NAMES), rng).save(buffer, format="JPEG")
                for extension, payload in (("jpg", buffer.getvalue()), ("txt", f"caption {i}".encode())):
                    info = tarfile.TarInfo(f"{shard}_{i:04d}.{extension}")
                    info.size = len(payload)
                    tar.addfile(info, io.BytesIO(payload))
    for name, model, classes in (
        ("teacher", "test_resnet", 6),
        ("teacher4", "test_resnet", 4),
        ("cifar_teacher", "cifar_resnet20", 6),
    ):
        torch.manual_seed(1)
        paths[name] = root / f"{name}.safetensors"
        save_file(timm.create_model(model, num_classes=classes).state_dict(), paths[name])
    return paths


def teacher_args(data: dict[str, Path], name: str = "teacher", model: str = "test_resnet", classes: int = 6):
    return [
        "--teacher_name",
        model,
        "--teacher_checkpoint",
        str(data[name]),
        "--teacher_kwargs",
        json.dumps({"num_classes": classes}),
    ]


def recipe_env(tmp: Path, **overrides: str) -> dict[str, str]:
    """The environment of a recipe subprocess: offline, one thread, caches and configs under `tmp`."""
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "HF_HUB_OFFLINE": "1",
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_HOME": str(tmp / "hf_home"),
        "HF_DATASETS_CACHE": str(tmp / "hf_datasets"),
    }
    env.update(overrides)
    return {name: value for name, value in env.items() if value is not None}


def run_script(command: list[str], env: dict[str, str], check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(command[:3])} failed:\n{result.stderr[-4000:]}")
    return result


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now: each multi-process launch takes its own, so launches of tests that run at the
    same time (`pytest -n 2`) do not meet on torch.distributed's default 29500."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
