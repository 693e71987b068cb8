"""The Fashion-MNIST benchmark: GenDD against the KD baselines on real data, on a CPU.

`python -m gendd_hf.bench.fashion_mnist demo [--quick]` (`make demo`, `make demo-quick`) trains or reuses a cached
teacher, distils a smaller student with GenDD and with KD, prints a table and saves the GenDD student.
`python -m gendd_hf.bench.fashion_mnist bench` (`make bench`) runs every method over three seeds on the
Fashion-MNIST train set, on non-target digits (unsupervised) and on a long-tailed split, saves every seed's GenDD
student with its model card (`gendd-student`, `gendd-student-seed1`, ...), scores the one-pass student made from each
(`gendd_one_pass`: the probe refitted to its sampled path, `gendd_hf.one_pass`) and writes
`results.json`, `results.md` and a plot. The fast samplers are measured on the saved students by
`gendd_hf.bench.fast_sampling`, serving costs by `gendd_hf.bench.serving`. `python -m gendd_hf.bench.fashion_mnist
budget` (`make bench-budget`) is the budget curve, `gendd_hf.bench.budget`.

Budget choices (2 CPU cores): the teacher is timm's `resnet10t` (4.9 M parameters, 512-d feature), the student
timm's `test_resnet` (0.37 M, 13x smaller). There is no random augmentation, so the teacher's outputs are computed
once per image and stored with the data: training never runs the teacher. Every training (teacher and students, all
methods) runs in bfloat16 autocast where the CPU has BF16 units (`bf16`, AVX-512 BF16 or AMX; evaluation stays in
float32; float32 elsewhere, `native_bf16`): a GenDD step takes 0.17 s instead of 0.32 s, which keeps `make bench`
within 90 minutes with the full-recipe row. Side by side
with the official code in float32 (`gendd_hf.bench.parity --bf16`, 3 seeds, during development), it moved our probe
by -0.10 points and the sampled path by -0.53, within one seed-to-seed std (1.1-1.2 points; docs/parity.md). The
sampled path is scored with the paper's sampler on a fixed subset of the test set (it costs 64 steps x 2 branches x
5 samples of the head per image); the probe path on the whole test set.
"""

import argparse
import hashlib
import json
import math
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file
from torch.utils.data import Dataset

from ..calibration import path_logits_of_images
from ..configuration_gendd import GenDDConfig
from ..data import FASHION_MNIST_LABEL_NAMES, load_digits_unlabeled, load_fashion_mnist
from ..data.long_tail import long_tailed_class_counts
from ..data.transforms import SMALL_IMAGE_PADDING
from ..losses import GENDD_METHODS
from ..metrics import shot_accuracy, shot_groups, top1
from ..model_card import ModelCardInfo, write_model_card
from ..modeling_gendd import GenDDForImageClassification
from ..one_pass import distil_probe
from ..teacher import TimmTeacher
from ..teacher_training import save_timm_classifier, train_timm_classifier
from ..trainer import GenDDTrainer
from ..training_args import GenDDTrainingArguments


MEAN, STD = 0.2860, 0.3530  # Fashion-MNIST pixel statistics


def native_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX-512 BF16 or AMX). Without, torch emulates it: measured on an
    AVX2 machine, a bfloat16 autocast convolution ran 25x slower than float32, so the bench trains in float32 there."""
    return torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()


@dataclass
class BenchSettings:
    """Everything that determines a result; stored beside every number in `results.json`."""

    teacher_name: str = "resnet10t"
    teacher_epochs: float = 2.0
    teacher_augmentation: bool = False  # random crop (4-pixel padding) + flip in the teacher's training (`CropFlip`)
    student_name: str = "test_resnet"
    epochs: float = 2.0
    batch_size: int = 256
    learning_rate: float = 2e-3
    warmup_ratio: float = 0.05
    weight_decay: float = 0.05
    token_dim: int = 64
    head_width: int = 256
    diffusion_batch_mul: int = 2
    contraction: float = 0.9
    num_inference_steps: int = 64
    guidance_scale: float = 2.0
    num_samples: int = 5
    sampled_eval_size: int = 1000
    train_size: int | None = None  # None: all 60,000
    test_size: int | None = None  # None: all 10,000 for the probe path
    lt_imbalance_ratio: float = 100.0
    lt_n_max: int = 1000
    seeds: tuple[int, ...] = (0, 1, 2)
    bf16: bool = field(default_factory=native_bf16)  # bfloat16 autocast in training where the CPU has BF16 units
    stage1_fraction: float = 1 / 6  # of the full recipe's steps: stage 1 (the paper: 20 of 120 ImageNet epochs)
    methods: tuple[str, ...] = ("ce", "kd", "dkd", "gendd", "gendd_full", "gendd_unsup", "kl_unsup")
    nontarget_methods: tuple[str, ...] = ("gendd_unsup", "kl_unsup")
    lt_methods: tuple[str, ...] = ("ce", "kd", "gendd")
    one_pass: bool = True  # score `gendd_one_pass`, the one-pass student of each Fashion-MNIST GenDD student


# The bench's GenDD rows: the methods, and the full recipe (stage 1, then GenDD) as `gendd_full`.
BENCH_GENDD_METHODS = (*GENDD_METHODS, "gendd_full")

# The smoke run: 3,000 training images in batches of 64 (47 steps an epoch; 3 epochs for the students).
QUICK = dict(
    teacher_epochs=1.0,
    epochs=3.0,
    batch_size=64,
    train_size=3000,
    test_size=1000,
    sampled_eval_size=100,
    num_inference_steps=16,
    num_samples=2,
    seeds=(0,),
)


class ArrayDataset(Dataset):
    """Rows of equally long tensors as dicts (`pixel_values`, `labels`, `teacher_features`, ...)."""

    def __init__(self, **columns: torch.Tensor):
        self.columns = columns

    def __len__(self):
        return len(next(iter(self.columns.values())))

    def __getitem__(self, index):
        return {name: column[index] for name, column in self.columns.items()}

    def subset(self, indices) -> "ArrayDataset":
        return ArrayDataset(**{name: column[indices] for name, column in self.columns.items()})


def to_pixels(images: np.ndarray) -> torch.Tensor:
    """uint8 `(N, 28, 28)` -> normalised float `(N, 1, 28, 28)`."""
    return ((torch.from_numpy(images).float() / 255.0 - MEAN) / STD).unsqueeze(1)


def load_arrays(settings: BenchSettings) -> dict[str, torch.Tensor]:
    """Fashion-MNIST (Debian's IDX files, through `load_fashion_mnist`) and the unlabeled digits as tensors."""
    splits = load_fashion_mnist().with_format("numpy")
    arrays = {}
    for split, size in (("train", settings.train_size), ("test", settings.test_size)):
        rows = splits[split] if size is None else splits[split].select(range(size))
        arrays[f"{split}_pixels"] = to_pixels(np.stack(rows["image"]))
        arrays[f"{split}_labels"] = torch.from_numpy(np.asarray(rows["label"])).long()
    digits = load_digits_unlabeled(size=28).with_format("numpy")
    arrays["digits_pixels"] = to_pixels(np.stack(digits["image"]))
    return arrays


def long_tailed_indices(labels: torch.Tensor, settings: BenchSettings, seed: int = 0) -> torch.Tensor:
    """Indices of the long-tailed train split: n_c = n_max * ratio^(-c / 9), drawn with `seed`."""
    quotas = long_tailed_class_counts(settings.lt_n_max, 10, settings.lt_imbalance_ratio)
    generator = torch.Generator().manual_seed(seed)
    keep = [torch.nonzero(labels == c).flatten() for c in range(10)]
    keep = [idx[torch.randperm(len(idx), generator=generator)[:quota]] for idx, quota in zip(keep, quotas)]
    return torch.sort(torch.cat(keep)).values


def training_args(output_dir: Path, method: str, epochs: float, seed: int, settings: BenchSettings, **overrides):
    kwargs = dict(
        output_dir=str(output_dir),
        method=method,
        num_train_epochs=epochs,
        per_device_train_batch_size=settings.batch_size,
        per_device_eval_batch_size=500,
        learning_rate=settings.learning_rate,
        warmup_steps=settings.warmup_ratio,
        weight_decay=settings.weight_decay,
        seed=seed,
        data_seed=seed,
        save_strategy="no",
        eval_strategy="no",
        logging_steps=50,
        report_to="none",
        use_cpu=True,
        dataloader_num_workers=0,
        eval_num_inference_steps=settings.num_inference_steps,
        eval_guidance_scale=settings.guidance_scale,
        eval_num_samples=settings.num_samples,
        bf16=settings.bf16,
    )
    kwargs.update(overrides)
    return GenDDTrainingArguments(**kwargs)


def fingerprint(payload: dict) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


# The unused diffusion head of the teacher's training (`method="ce"`), larger than `UNUSED_HEAD`: the cached teachers
# were trained with it, and a head of another size draws other random numbers before the probe's initialisation.
TEACHER_HEAD = {"teacher_feature_dim": 64, "token_dim": 64, "head_width": 8, "head_depth": 1}


class CropFlip(Dataset):
    """The teacher's training images with `teacher_augmentation`: each image, every time it is read, a random 28x28
    crop of itself zero-padded by `padding` (`SMALL_IMAGE_PADDING`, 4) pixels, flipped horizontally with probability
    1/2: the `"small"` augmentation of `build_transforms`, on the benchmark's normalised tensors (padding with black,
    `(0 - MEAN) / STD`). A dataset, not a collator: the Trainer's evaluation (the teacher's curve) reads the test
    images unaltered. Draws from torch's global generator, which the Trainer seeds."""

    def __init__(self, dataset: Dataset, padding: int = SMALL_IMAGE_PADDING):
        self.dataset, self.padding = dataset, padding

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, index):
        row = dict(self.dataset[index])
        pad, (height, width) = self.padding, row["pixel_values"].shape[-2:]
        padded = torch.nn.functional.pad(row["pixel_values"], (pad, pad, pad, pad), value=-MEAN / STD)
        top, left = torch.randint(0, 2 * pad + 1, (2,)).tolist()
        crop = padded[:, top : top + height, left : left + width]
        row["pixel_values"] = crop.flip(-1) if torch.rand(()) < 0.5 else crop
        return row


def teacher_checkpoint(settings: BenchSettings, cache_dir: Path) -> Path:
    """Where the teacher of `settings` is cached (its weights; its training curve beside them, `.json`)."""
    key = fingerprint(
        {
            "teacher": settings.teacher_name,
            "epochs": settings.teacher_epochs,
            "train_size": settings.train_size,
            "lr": settings.learning_rate,
            "batch_size": settings.batch_size,
            **({"bf16": True} if settings.bf16 else {}),
            **({"augmentation": "crop_flip"} if settings.teacher_augmentation else {}),
        }
    )
    return cache_dir / f"teacher-{settings.teacher_name}-{key}.safetensors"


def get_teacher(settings: BenchSettings, arrays: dict, cache_dir: Path, log) -> TimmTeacher:
    """Train the teacher with `--method ce` once; later runs with the same settings load it (safetensors). It is also
    written to `cache_dir/teacher` as a timm model folder with its preprocessing, which the recipes load with
    `--teacher_name local-dir:cache/fashion_mnist/teacher` (docs/recipes.md): the teacher of the latest run. With
    `settings.teacher_augmentation` it trains on random crops and flips (`CropFlip`), drawn anew every epoch. When
    `arrays` hold the test set, the teacher is scored on it after every epoch and that curve is cached beside the
    weights (`teacher_curve`). Its training keeps the checkpoint of its last finished epoch (`cache_dir/teacher-run-*`,
    removed at the end): a training that was interrupted resumes from it."""
    path = teacher_checkpoint(settings, cache_dir)
    kwargs = {"in_chans": 1, "num_classes": 10}
    if path.exists():
        log(f"teacher: reusing {path}")
    else:
        augmentation = " with random crop + flip" if settings.teacher_augmentation else ""
        log(f"teacher: training {settings.teacher_name} for {settings.teacher_epochs} epochs{augmentation} (cached)")
        train = ArrayDataset(pixel_values=arrays["train_pixels"], labels=arrays["train_labels"])
        train = CropFlip(train) if settings.teacher_augmentation else train
        scored = "test_pixels" in arrays
        run_dir = cache_dir / f"teacher-run-{path.stem}"
        args = training_args(
            run_dir,
            "ce",
            settings.teacher_epochs,
            0,
            settings,
            eval_strategy="epoch" if scored else "no",
            save_strategy="epoch",
            save_total_limit=1,
            resume_from_checkpoint="latest" if any(run_dir.glob("checkpoint-*")) else None,
        )
        trained = train_timm_classifier(
            settings.teacher_name,
            FASHION_MNIST_LABEL_NAMES,
            args,
            train,
            ArrayDataset(pixel_values=arrays["test_pixels"], labels=arrays["test_labels"]) if scored else None,
            timm_kwargs={"in_chans": 1},
            unused_head=TEACHER_HEAD,
        )
        cache_dir.mkdir(parents=True, exist_ok=True)
        save_file(trained.classifier.state_dict(), str(path))
        if scored:
            curve = [
                {"epoch": entry["epoch"], "test_top1": entry["eval_probe_top1"]}
                for entry in trained.trainer.state.log_history
                if "eval_probe_top1" in entry
            ]
            path.with_suffix(".json").write_text(json.dumps({"curve": curve}, indent=2))
        shutil.rmtree(run_dir)
    teacher = TimmTeacher.from_timm(settings.teacher_name, checkpoint_path=str(path), **kwargs)
    save_timm_classifier(teacher.model, cache_dir / "teacher", FASHION_MNIST_LABEL_NAMES, DATA_CONFIG)
    return teacher


def teacher_curve(settings: BenchSettings, cache_dir: Path) -> list[dict] | None:
    """The cached teacher's test top-1 after each training epoch (`[{"epoch", "test_top1"}]`), or `None` when it was
    trained without the test set at hand (or before curves were kept)."""
    path = teacher_checkpoint(settings, cache_dir).with_suffix(".json")
    return json.loads(path.read_text())["curve"] if path.exists() else None


@torch.no_grad()
def teacher_outputs(teacher: TimmTeacher, pixels: torch.Tensor, batch_size: int = 1000) -> tuple[torch.Tensor, ...]:
    """The teacher's features and logits for every image, computed once (no random augmentation here)."""
    outputs = [teacher(pixels[i : i + batch_size]) for i in range(0, len(pixels), batch_size)]
    return torch.cat([o.features for o in outputs]), torch.cat([o.logits for o in outputs])


# timm's data config of the benchmark's evaluation transform: 28x28 grayscale, normalised; no resize or crop.
DATA_CONFIG = {
    "input_size": (1, 28, 28),
    "interpolation": "bilinear",
    "mean": (MEAN,),
    "std": (STD,),
    "crop_pct": 1.0,
    "crop_mode": "center",
}


def new_student(settings: BenchSettings, method: str, teacher: TimmTeacher) -> GenDDForImageClassification:
    """A fresh student for `method`, holding the teacher classifier and the benchmark's sampling settings."""
    config = GenDDConfig.from_teacher(
        teacher,
        FASHION_MNIST_LABEL_NAMES,
        student_name=settings.student_name,
        student_kwargs={"in_chans": 1},
        token_dim=settings.token_dim,
        head_width=settings.head_width,
        diffusion_batch_mul=settings.diffusion_batch_mul,
        contraction=0.0 if method == "gendd_unsup" else settings.contraction,
        inference_path="sampled" if method in BENCH_GENDD_METHODS else "probe",
        pretrained_cfg=DATA_CONFIG,
    )
    model = GenDDForImageClassification(config)
    model.set_teacher_classifier(teacher.classifier_weight, teacher.classifier_bias)
    model.sampling_config = model.sampling_config.update(
        num_inference_steps=settings.num_inference_steps,
        guidance_scale=settings.guidance_scale,
        num_samples=settings.num_samples,
    )
    return model


def predict(
    model: GenDDForImageClassification,
    pixels: torch.Tensor,
    path: str,
    seed: int = 0,
    batch_size: int = 500,
    **sampling,
) -> torch.Tensor:
    """Logits of one inference path over `pixels`, batched; each image's sampling noise seeded by `seed`."""
    return path_logits_of_images(model, pixels, path, batch_size, show_progress=path != "probe", seed=seed, **sampling)


def train_student(method, seed, train, steps, settings, teacher, output_dir) -> GenDDForImageClassification:
    """Train one student for `steps` optimizer steps. `gendd_full` is the paper's recipe inside the same steps:
    stage 1 (the projected student feature through the frozen teacher classifier, cross-entropy) for
    `stage1_fraction` of them, then GenDD from its student (`init_from`) for the rest."""
    torch.manual_seed(seed)
    model = new_student(settings, method, teacher)
    run_dir = output_dir / f"{method}-seed{seed}"
    stages = [(method, "main", steps, None)]
    if method == "gendd_full":
        stage1_steps = round(steps * settings.stage1_fraction)
        stages = [
            ("gendd", "pretrain", stage1_steps, None),
            ("gendd", "main", steps - stage1_steps, run_dir / "stage1"),
        ]
    for stage_method, stage, stage_steps, init_from in stages:
        if init_from is not None:
            torch.manual_seed(seed)
            model = new_student(settings, method, teacher)
        epochs = stage_steps * settings.batch_size / len(train)
        args = training_args(
            run_dir,
            stage_method,
            epochs,
            seed,
            settings,
            stage=stage,
            init_from=None if init_from is None else str(init_from),
        )
        GenDDTrainer(model, args, train_dataset=train).train()
        if stage == "pretrain":
            model.save_pretrained(run_dir / "stage1")
    return model


def run_method(method, seed, train, steps, data, settings, teacher, output_dir, log):
    """Train one student for `steps` optimizer steps and score both paths. Returns (record, model)."""
    start = time.perf_counter()
    model = train_student(method, seed, train, steps, settings, teacher, output_dir)
    record = {"method": method, "seed": seed, "train_seconds": time.perf_counter() - start}
    start = time.perf_counter()
    probe_logits = predict(model, data["test_pixels"], "probe")
    record["probe_images_per_second"] = len(probe_logits) / (time.perf_counter() - start)
    record["probe_top1"] = top1(probe_logits, data["test_labels"])
    record["probe_logits"] = probe_logits
    subset = slice(0, settings.sampled_eval_size)
    if method in BENCH_GENDD_METHODS:
        start = time.perf_counter()
        sampled_logits = predict(model, data["test_pixels"][subset], "sampled", seed=seed)
        record["sampled_images_per_second"] = len(sampled_logits) / (time.perf_counter() - start)
        record["sampled_top1"] = top1(sampled_logits, data["test_labels"][subset])
        record["sampled_predictions"] = sampled_logits.argmax(-1)
        record["probe_top1_on_subset"] = top1(probe_logits[subset], data["test_labels"][subset])
    log(f"{method:12s} seed {seed}: " + ", ".join(f"{k} {v:.4f}" for k, v in record.items() if isinstance(v, float)))
    return record, model


def prepare(settings: BenchSettings, cache_dir: Path, log):
    """Data, the teacher, and its outputs on every image set (computed once)."""
    log("data: Fashion-MNIST (Debian's dataset-fashion-mnist) and scikit-learn's digits")
    data = load_arrays(settings)
    teacher = get_teacher(settings, data, cache_dir, log)
    log("teacher outputs: one forward pass over every image")
    for name in ("train", "digits"):
        data[f"{name}_features"], data[f"{name}_logits"] = teacher_outputs(teacher, data[f"{name}_pixels"])
    data["teacher_test_logits"] = teacher_outputs(teacher, data["test_pixels"])[1]
    return data, teacher


def train_set(data: dict, name: str, indices=None) -> ArrayDataset:
    columns = {
        "pixel_values": data[f"{name}_pixels"],
        "teacher_features": data[f"{name}_features"],
        "teacher_logits": data[f"{name}_logits"],
    }
    if f"{name}_labels" in data:
        columns["labels"] = data[f"{name}_labels"]
    dataset = ArrayDataset(**columns)
    return dataset if indices is None else dataset.subset(indices)


def summarize(records: list[dict], keys=("probe_top1", "sampled_top1", "train_seconds")) -> dict:
    """Mean and standard deviation over seeds, per (setting, method)."""
    groups: dict[tuple, list[dict]] = {}
    for record in records:
        groups.setdefault((record["setting"], record["method"]), []).append(record)
    summary = {}
    for (setting, method), rows in groups.items():
        entry = {"seeds": len(rows)}
        for key in keys + tuple(k for k in rows[0] if k.startswith("shot_")):
            values = [row[key] for row in rows if key in row]
            if values:
                entry[key] = {
                    "mean": float(np.mean(values)),
                    "std": float(np.std(values, ddof=1)) if len(values) > 1 else 0.0,
                }
        summary[f"{setting}/{method}"] = entry
    return summary


TABLE_COLUMNS = (  # header, summary key, scale, digits
    ("probe top-1", "probe_top1", 100.0, 2),
    ("sampled top-1", "sampled_top1", 100.0, 2),
    ("many (probe)", "shot_many", 100.0, 2),
    ("medium (probe)", "shot_medium", 100.0, 2),
    ("few (probe)", "shot_few", 100.0, 2),
    ("train s", "train_seconds", 1.0, 0),
)


def markdown_table(summary: dict, settings: BenchSettings, teacher_top1: float) -> str:
    """The results in Markdown: the columns that some row has, each value as mean ± std over seeds (alone for one
    seed, which has no spread)."""
    columns = [column for column in TABLE_COLUMNS if any(column[1] in entry for entry in summary.values())]

    def cell(entry, key, scale, digits):
        if key not in entry:
            return "-"
        value = entry[key]
        spread = f" ± {value['std'] * scale:.{digits}f}" if entry["seeds"] > 1 else ""
        return f"{value['mean'] * scale:.{digits}f}{spread}"

    seeds = settings.seeds
    notes = [
        f"Teacher `{settings.teacher_name}`: {teacher_top1 * 100:.2f} top-1. Student `{settings.student_name}`, "
        + (f"{len(seeds)} seeds, mean ± std." if len(seeds) > 1 else f"seed {seeds[0]}.")
        + f" Probe: whole test set; sampled: first {settings.sampled_eval_size} test images, "
        f"{settings.num_inference_steps} steps, guidance {settings.guidance_scale}, {settings.num_samples} samples."
    ]
    if any(key.startswith("shot_") for _, key, _, _ in columns):
        notes.append(
            "Many / medium / few: mean per-class probe top-1 of the long-tailed split's classes with over 100, 20 to "
            "100 and under 20 training images."
        )
    if any(key.endswith("/gendd_one_pass") for key in summary):
        notes.append(
            "gendd_one_pass: the gendd student's probe refitted to its sampled path (`gendd_hf.one_pass`), so one "
            "student forward pass classifies."
        )
    notes.append("Train s: wall seconds of training (gendd_one_pass: gendd's plus the fit).")
    lines = [
        " ".join(notes),
        "",
        "| setting | method | " + " | ".join(header for header, *_ in columns) + " |",
        "|---|---|" + "---|" * len(columns),
    ]
    for key, entry in summary.items():
        setting, method = key.split("/")
        lines.append(f"| {setting} | {method} | " + " | ".join(cell(entry, *column[1:]) for column in columns) + " |")
    return "\n".join(lines) + "\n"


def plot(summary: dict, output_dir: Path) -> Path:
    """Accuracy by method with error bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 4))
    labels, x = list(summary), np.arange(len(summary))
    for offset, key, name in ((-0.2, "probe_top1", "probe"), (0.2, "sampled_top1", "sampled")):
        means = [summary[k].get(key, {}).get("mean", np.nan) * 100 for k in labels]
        stds = [summary[k].get(key, {}).get("std", np.nan) * 100 for k in labels]
        ax.bar(x + offset, means, width=0.4, yerr=stds, capsize=3, label=name)
    ax.set_xticks(x, labels, rotation=30, ha="right", fontsize=8)
    finite = [v["mean"] * 100 for e in summary.values() for k, v in e.items() if k.endswith("top1")]
    ax.set_ylim(max(0.0, min(finite) - 5), min(100.0, max(finite) + 2))
    ax.set_ylabel("top-1 (%)")
    ax.set_title("Fashion-MNIST test accuracy by setting/method")
    ax.legend()
    fig.tight_layout()
    path = output_dir / "accuracy_by_method.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def save_student(model: GenDDForImageClassification, folder: Path) -> Path:
    model.save_pretrained(folder)  # config.json carries the image processor (DATA_CONFIG)
    return folder


def student_card(
    model: GenDDForImageClassification, settings: BenchSettings, record: dict, teacher_top1: float
) -> ModelCardInfo:
    """A saved GenDD student's model card: both paths' accuracy and the schedule."""
    notes = (
        f"Trained on this library's CPU benchmark (`python -m gendd_hf.bench.fashion_mnist`), seed "
        f"{record['seed']}: 28x28 grayscale, no augmentation, teacher outputs computed once. Head width "
        f"{settings.head_width}, multiplier {settings.diffusion_batch_mul} (CPU choices). The probe path is "
        f"scored on the 10,000 test images, the sampled path on the first {settings.sampled_eval_size}."
    )
    return ModelCardInfo.from_model(
        model,
        model_name=f"gendd-{settings.student_name}-fashion-mnist",
        teacher=f"timm `{settings.teacher_name}` trained here on Fashion-MNIST ({settings.teacher_epochs:g} epochs, "
        f"{100 * teacher_top1:.2f} top-1)",
        dataset="zalando-datasets/fashion_mnist",
        dataset_name="Fashion-MNIST",
        method="gendd",
        sampled_accuracy={"top1": record["sampled_top1"]},
        probe_accuracy={"top1": record["probe_top1"]},
        epochs=settings.epochs,
        learning_rate=settings.learning_rate,
        batch_size=settings.batch_size,
        notes=notes,
    )


def one_pass_record(model: GenDDForImageClassification, record: dict, data: dict, log) -> dict:
    """`gendd_one_pass`: refit `model`'s probe (in place) to its sampled path on the first 10,000 training images
    (`gendd_hf.one_pass`) and score the probe path; its training time is the GenDD run's plus the fit's."""
    start = time.perf_counter()
    pixels = data["train_pixels"]
    report = distil_probe(model, (pixels[i : i + 1000] for i in range(0, len(pixels), 1000)))
    seconds = time.perf_counter() - start
    logits = predict(model, data["test_pixels"], "probe")
    one_pass = {
        "method": "gendd_one_pass",
        "seed": record["seed"],
        "fit_seconds": seconds,
        "train_seconds": record["train_seconds"] + seconds,
        "probe_top1": top1(logits, data["test_labels"]),
        "fit_top1_agreement": report["top1_agreement"],
    }
    sampled = record["sampled_predictions"]
    one_pass["agreement_with_sampled"] = (logits[: len(sampled)].argmax(-1) == sampled).float().mean().item()
    log(f"gendd_one_pass seed {record['seed']}: probe_top1 {one_pass['probe_top1']:.4f}, fit {seconds:.1f}s")
    return one_pass


def make_logger():
    started = time.perf_counter()

    def log(message):
        print(f"[{time.perf_counter() - started:7.1f}s] {message}", flush=True)

    return log


def run(command: str, settings: BenchSettings, output_dir: Path, cache_dir: Path) -> dict:
    """`demo` or `bench`: train every (setting, method, seed), save each seed's Fashion-MNIST GenDD student, score
    its one-pass student, and write the results."""
    output_dir.mkdir(parents=True, exist_ok=True)
    started, log = time.perf_counter(), make_logger()
    data, teacher = prepare(settings, cache_dir, log)
    teacher_top1 = top1(data["teacher_test_logits"], data["test_labels"])
    log(f"teacher test top-1: {teacher_top1:.4f}")
    full = train_set(data, "train")
    steps = math.ceil(settings.epochs * len(full) / settings.batch_size)
    runs = [("fashion_mnist", method, full) for method in settings.methods]
    if command == "bench":
        lt = long_tailed_indices(data["train_labels"], settings)
        lt_counts = torch.bincount(data["train_labels"][lt], minlength=10).tolist()
        groups = shot_groups(lt_counts)
        runs += [("digits_nontarget", method, train_set(data, "digits")) for method in settings.nontarget_methods]
        runs += [("long_tailed", method, full.subset(lt)) for method in settings.lt_methods]
    records, saved = [], []
    for seed in settings.seeds:
        for setting, method, train in runs:
            record, model = run_method(
                method, seed, train, steps, data, settings, teacher, output_dir / "runs" / setting, log
            )
            record["setting"] = setting
            if setting == "long_tailed":
                accuracy = shot_accuracy(record["probe_logits"], data["test_labels"].numpy(), groups)
                record.update({f"shot_{k}": float(v) for k, v in accuracy.items() if k != "overall"})
            record.pop("probe_logits")
            if setting == "fashion_mnist" and method == "gendd":
                name = "gendd-student" + ("" if seed == settings.seeds[0] else f"-seed{seed}")
                saved.append(save_student(model, output_dir / name))
                write_model_card(saved[-1], student_card(model, settings, record, teacher_top1))
                log(f"GenDD student saved to {saved[-1]}")
            one_pass = None
            if setting == "fashion_mnist" and method == "gendd" and settings.one_pass:
                one_pass = {**one_pass_record(model, record, data, log), "setting": setting}
            record.pop("sampled_predictions", None)
            records += [record] + ([one_pass] if one_pass else [])
    results = {
        "command": command,
        "settings": asdict(settings),
        "teacher_top1": teacher_top1,
        "optimizer_steps_per_run": steps,
        "records": records,
        "summary": summarize(records),
        "train_wall_seconds": time.perf_counter() - started,
    }
    if command == "bench":
        results["long_tailed_class_counts"] = lt_counts
    write_results(results, settings, output_dir, log)
    if saved:
        log(
            f"load the student: AutoModelForImageClassification.from_pretrained({str(saved[0])!r}) after "
            "`import gendd_hf`"
        )
    return results


def write_results(results: dict, settings: BenchSettings, output_dir: Path, log) -> None:
    """`results.json`, `results.md` and the plot."""
    table = markdown_table(results["summary"], settings, results["teacher_top1"])
    (output_dir / "results.json").write_text(json.dumps(results, indent=2))
    (output_dir / "results.md").write_text(table)
    path = plot(results["summary"], output_dir)
    print("\n" + table)
    log(f"results: {output_dir / 'results.json'}, {output_dir / 'results.md'}; plot: {path}")


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["budget"]:  # its own options: `python -m gendd_hf.bench.budget --help`
        from .budget import main as budget_main

        return budget_main(argv[1:])
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "command",
        choices=["demo", "bench", "budget"],
        help="budget: the budget curve (gendd_hf.bench.budget; `budget --help` lists its options)",
    )
    parser.add_argument("--quick", action="store_true", help="a small smoke run (under 3 minutes)")
    parser.add_argument("--output_dir", default=None, help="default: results/fashion_mnist (demo: outputs/demo)")
    parser.add_argument("--cache_dir", default="cache/fashion_mnist", help="where the trained teacher is kept")
    parser.add_argument("--seeds", type=int, nargs="+", default=None)
    args = parser.parse_args(argv)
    settings = BenchSettings()
    if args.command == "demo":
        settings = replace(settings, seeds=(0,), methods=("kd", "gendd"))
    if args.quick:
        settings = replace(settings, **QUICK)
    if args.seeds:
        settings = replace(settings, seeds=tuple(args.seeds))
    default_dir = {"demo": "outputs/demo" + ("-quick" * args.quick)}.get(args.command, "results/fashion_mnist")
    return run(args.command, settings, Path(args.output_dir or default_dir), Path(args.cache_dir))


if __name__ == "__main__":
    main()
