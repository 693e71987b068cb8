"""The Fashion-MNIST benchmark: GenDD against the KD baselines on real data, on a CPU.

`python -m gendd_hf.bench.fashion_mnist demo [--quick]` (`make demo`, `make demo-quick`) trains or reuses a cached
teacher, distils a smaller student with GenDD and with KD, prints a table and saves the GenDD student.
`python -m gendd_hf.bench.fashion_mnist bench` (`make bench`) runs every method over three seeds on the
Fashion-MNIST train set, on non-target digits (unsupervised) and on a long-tailed split, and writes
`results.json`, `results.md` and plots.

Budget choices (2 CPU cores): the teacher is timm's `resnet10t` (4.9 M parameters, 512-d feature), the student
timm's `test_resnet` (0.37 M, 13x smaller). There is no random augmentation, so the teacher's outputs are computed
once per image and stored with the data: training never runs the teacher. The sampled path is scored with the
paper's sampler on a fixed subset of the test set (it costs 64 steps x 2 branches x 5 samples of the head per
image); the probe path on the whole test set.
"""

import argparse
import hashlib
import json
import math
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file
from torch.utils.data import Dataset

from ..configuration_gendd import GenDDConfig
from ..data import FASHION_MNIST_LABEL_NAMES, load_digits_unlabeled, load_fashion_mnist, shot_accuracy, shot_groups
from ..data.long_tail import long_tailed_class_counts
from ..image_processing import build_image_processor
from ..modeling_gendd import GenDDForImageClassification
from ..teacher import TimmTeacher, timm_classifier
from ..trainer import GenDDTrainer
from ..training_args import GENDD_METHODS, GenDDTrainingArguments

MEAN, STD = 0.2860, 0.3530  # Fashion-MNIST pixel statistics


@dataclass
class BenchSettings:
    """Everything that determines a result; stored beside every number in `results.json`."""

    teacher_name: str = "resnet10t"
    teacher_epochs: float = 2.0
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
    methods: tuple[str, ...] = ("ce", "kd", "dkd", "gendd", "gendd_unsup", "kl_unsup")
    nontarget_methods: tuple[str, ...] = ("gendd_unsup", "kl_unsup")
    lt_methods: tuple[str, ...] = ("ce", "kd", "gendd")
    step_curve: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64)


QUICK = dict(teacher_epochs=1.0, epochs=1.0, train_size=3000, test_size=1000, sampled_eval_size=100,
             num_inference_steps=16, num_samples=2, seeds=(0,), step_curve=(1, 4, 16))


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
    )
    kwargs.update(overrides)
    return GenDDTrainingArguments(**kwargs)


def fingerprint(payload: dict) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def get_teacher(settings: BenchSettings, arrays: dict, cache_dir: Path, log) -> TimmTeacher:
    """Train the teacher with `--method ce` once; later runs with the same settings load it (safetensors)."""
    key = fingerprint({"teacher": settings.teacher_name, "epochs": settings.teacher_epochs,
                       "train_size": settings.train_size, "lr": settings.learning_rate,
                       "batch_size": settings.batch_size})
    path = cache_dir / f"teacher-{settings.teacher_name}-{key}.safetensors"
    kwargs = {"in_chans": 1, "num_classes": 10}
    if path.exists():
        log(f"teacher: reusing {path}")
        return TimmTeacher.from_timm(settings.teacher_name, checkpoint_path=str(path), **kwargs)
    log(f"teacher: training {settings.teacher_name} for {settings.teacher_epochs} epochs (cached afterwards)")
    # `ce` trains only the backbone and probe; the head sizes are placeholders.
    config = GenDDConfig(student_name=settings.teacher_name, student_kwargs={"in_chans": 1}, teacher_feature_dim=64,
                         token_dim=64, head_width=8, head_depth=1, id2label=dict(enumerate(FASHION_MNIST_LABEL_NAMES)))
    model = GenDDForImageClassification(config)
    train = ArrayDataset(pixel_values=arrays["train_pixels"], labels=arrays["train_labels"])
    args = training_args(cache_dir / "teacher-run", "ce", settings.teacher_epochs, 0, settings)
    GenDDTrainer(model, args, train_dataset=train).train()
    cache_dir.mkdir(parents=True, exist_ok=True)
    save_file(timm_classifier(model, in_chans=1).state_dict(), str(path))
    return TimmTeacher.from_timm(settings.teacher_name, checkpoint_path=str(path), **kwargs)


@torch.no_grad()
def teacher_outputs(teacher: TimmTeacher, pixels: torch.Tensor, batch_size: int = 1000) -> tuple[torch.Tensor, ...]:
    """The teacher's features and logits for every image, computed once (no random augmentation here)."""
    outputs = [teacher(pixels[i : i + batch_size]) for i in range(0, len(pixels), batch_size)]
    return torch.cat([o.features for o in outputs]), torch.cat([o.logits for o in outputs])


def student_config(settings: BenchSettings, method: str, teacher: TimmTeacher) -> GenDDConfig:
    return GenDDConfig(
        student_name=settings.student_name,
        student_kwargs={"in_chans": 1},
        teacher_feature_dim=teacher.feature_dim,
        token_dim=settings.token_dim,
        head_width=settings.head_width,
        diffusion_batch_mul=settings.diffusion_batch_mul,
        contraction=0.0 if method == "gendd_unsup" else settings.contraction,
        num_inference_steps=settings.num_inference_steps,
        guidance_scale=settings.guidance_scale,
        num_samples=settings.num_samples,
        inference_path="sampled" if method in GENDD_METHODS else "probe",
        id2label=dict(enumerate(FASHION_MNIST_LABEL_NAMES)),
    )


@torch.no_grad()
def predict(model: GenDDForImageClassification, pixels: torch.Tensor, path: str, seed: int = 0,
            batch_size: int = 500, **sampling) -> torch.Tensor:
    """Logits of one inference path over `pixels`, batched; sampling noise from a generator seeded by `seed`."""
    model.eval()
    generator = torch.Generator().manual_seed(seed)
    logits = []
    for i in range(0, len(pixels), batch_size):
        batch = pixels[i : i + batch_size]
        if path == "probe":
            logits.append(model(batch, inference_path="probe").logits)
        else:
            logits.append(model.classify_features(model.generate_features(batch, generator=generator, **sampling)))
    return torch.cat(logits)


def top1(logits: torch.Tensor, labels: torch.Tensor) -> float:
    return (logits.argmax(-1) == labels).float().mean().item()


def run_method(method, seed, train, steps, data, settings, teacher, output_dir, log):
    """Train one student for `steps` optimizer steps and score both paths. Returns (record, model)."""
    torch.manual_seed(seed)
    model = GenDDForImageClassification(student_config(settings, method, teacher))
    model.set_teacher_classifier(teacher.classifier_weight, teacher.classifier_bias)
    epochs = steps * settings.batch_size / len(train)
    args = training_args(output_dir / f"{method}-seed{seed}", method, epochs, seed, settings)
    start = time.perf_counter()
    GenDDTrainer(model, args, train_dataset=train).train()
    record = {"method": method, "seed": seed, "train_seconds": time.perf_counter() - start}
    start = time.perf_counter()
    probe_logits = predict(model, data["test_pixels"], "probe")
    record["probe_images_per_second"] = len(probe_logits) / (time.perf_counter() - start)
    record["probe_top1"] = top1(probe_logits, data["test_labels"])
    record["probe_predictions"] = probe_logits.argmax(-1)
    subset = slice(0, settings.sampled_eval_size)
    if method in GENDD_METHODS:
        start = time.perf_counter()
        sampled_logits = predict(model, data["test_pixels"][subset], "sampled", seed=seed)
        record["sampled_images_per_second"] = len(sampled_logits) / (time.perf_counter() - start)
        record["sampled_top1"] = top1(sampled_logits, data["test_labels"][subset])
        record["probe_top1_on_subset"] = top1(probe_logits[subset], data["test_labels"][subset])
    log(f"{method:12s} seed {seed}: " + ", ".join(
        f"{k} {v:.4f}" for k, v in record.items() if isinstance(v, float)))
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
    columns = {"pixel_values": data[f"{name}_pixels"], "teacher_features": data[f"{name}_features"],
               "teacher_logits": data[f"{name}_logits"]}
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
                entry[key] = {"mean": float(np.mean(values)), "std": float(np.std(values, ddof=1)) if len(values) > 1
                              else 0.0}
        summary[f"{setting}/{method}"] = entry
    return summary


def markdown_table(summary: dict, settings: BenchSettings, teacher_top1: float) -> str:
    def cell(entry, key, scale=100.0, digits=2):
        if key not in entry:
            return "-"
        value = entry[key]
        return f"{value['mean'] * scale:.{digits}f} ± {value['std'] * scale:.{digits}f}"

    lines = [
        f"Teacher `{settings.teacher_name}`: {teacher_top1 * 100:.2f} top-1. Student `{settings.student_name}`, "
        f"{len(settings.seeds)} seed(s), mean ± std. Probe: whole test set; sampled: first "
        f"{settings.sampled_eval_size} test images, {settings.num_inference_steps} steps, guidance "
        f"{settings.guidance_scale}, {settings.num_samples} samples.",
        "",
        "| setting | method | probe top-1 | sampled top-1 | many | medium | few | train s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for key, entry in summary.items():
        setting, method = key.split("/")
        lines.append(
            f"| {setting} | {method} | {cell(entry, 'probe_top1')} | {cell(entry, 'sampled_top1')} | "
            f"{cell(entry, 'shot_many')} | {cell(entry, 'shot_medium')} | {cell(entry, 'shot_few')} | "
            f"{cell(entry, 'train_seconds', 1.0, 0)} |"
        )
    return "\n".join(lines) + "\n"


def plot(summary: dict, curve: dict, output_dir: Path) -> list[Path]:
    """Accuracy by method with error bars, and sampled accuracy against sampling steps."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
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
    paths.append(output_dir / "accuracy_by_method.png")
    fig.savefig(paths[-1], dpi=120)
    plt.close(fig)

    if curve:
        fig, ax = plt.subplots(figsize=(5, 4))
        for sampler, points in curve.items():
            steps = sorted(int(s) for s in points)
            ax.plot(steps, [points[str(s)] * 100 for s in steps], marker="o", label=sampler)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("sampling steps")
        ax.set_ylabel("sampled top-1 (%)")
        ax.set_title("GenDD (seed 0): accuracy against steps")
        ax.legend()
        fig.tight_layout()
        paths.append(output_dir / "accuracy_vs_steps.png")
        fig.savefig(paths[-1], dpi=120)
        plt.close(fig)
    return paths


def step_curve(model, data, settings) -> dict:
    """Sampled top-1 on the subset for each sampler and step count (guidance and samples as in the paper)."""
    subset = slice(0, settings.sampled_eval_size)
    pixels, labels = data["test_pixels"][subset], data["test_labels"][subset]
    return {sampler: {str(steps): top1(predict(model, pixels, "sampled", sampler=sampler,
                                               num_inference_steps=steps), labels)
                      for steps in settings.step_curve}
            for sampler in ("ddpm", "ddim")}


def save_student(model: GenDDForImageClassification, folder: Path) -> Path:
    model.save_pretrained(folder)
    build_image_processor(model, image_size=28, mean=(MEAN,), std=(STD,)).save_pretrained(folder)
    return folder


def run(command: str, settings: BenchSettings, output_dir: Path, cache_dir: Path) -> dict:
    output_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()

    def log(message):
        print(f"[{time.perf_counter() - started:7.1f}s] {message}", flush=True)

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
    records, curve, saved = [], {}, None
    for seed in settings.seeds:
        for setting, method, train in runs:
            record, model = run_method(method, seed, train, steps, data, settings, teacher,
                                       output_dir / "runs" / setting, log)
            record["setting"] = setting
            if setting == "long_tailed":
                predictions = record["probe_predictions"].numpy()
                accuracy = shot_accuracy(predictions, data["test_labels"].numpy(), groups)
                record.update({f"shot_{k}": float(v) for k, v in accuracy.items() if k != "overall"})
            record.pop("probe_predictions")
            records.append(record)
            if setting == "fashion_mnist" and method == "gendd" and seed == settings.seeds[0]:
                saved = save_student(model, output_dir / "gendd-student")
                log(f"GenDD student saved to {saved}")
                if command == "bench":
                    log("accuracy against sampling steps")
                    curve = step_curve(model, data, settings)
    summary = summarize(records)
    results = {"command": command, "settings": asdict(settings), "teacher_top1": teacher_top1,
               "optimizer_steps_per_run": steps, "records": records, "summary": summary, "step_curve": curve,
               "wall_seconds": time.perf_counter() - started}
    if command == "bench":
        results["long_tailed_class_counts"] = lt_counts
    table = markdown_table(summary, settings, teacher_top1)
    (output_dir / "results.json").write_text(json.dumps(results, indent=2))
    (output_dir / "results.md").write_text(table)
    plots = plot(summary, curve, output_dir)
    print("\n" + table)
    log(f"results: {output_dir / 'results.json'}, {output_dir / 'results.md'}; plots: {', '.join(map(str, plots))}")
    if saved is not None:
        log(f"load the student: AutoModelForImageClassification.from_pretrained({str(saved)!r}) after `import gendd_hf`")
    return results


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("command", choices=["demo", "bench"])
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
    default_dir = "results/fashion_mnist" if args.command == "bench" else "outputs/demo" + ("-quick" * args.quick)
    return run(args.command, settings, Path(args.output_dir or default_dir), Path(args.cache_dir))


if __name__ == "__main__":
    main()
