"""Training speed with the teacher online against streamed precomputed teacher outputs, on a CPU.

For each method, two runs train the same student with `GenDDTrainer` on the same 28x28 Fashion-MNIST images (the
Debian copy; random images of that shape when it is missing) with the same random augmentation (`--augmentation
small`: pad-and-crop + flip). The online run draws a fresh view per image and runs the teacher on every batch; the
streamed run reads outputs precomputed once (`precompute_teacher_outputs`, `--num_views` views per image; timed, and
its disk cost reported) with `teacher_outputs_dataset`, replays each stored view and never runs the teacher. Steps
per second are the inverse of the median step time after `--warmup_steps` steps (data loading included) over
`--repeats` alternated online and streamed runs;
all measured steps lie in the first epoch, before the stream's end: `datasets` pauses 5 s at the end of every epoch
of a shuffled parquet stream, which these figures leave out. The teacher's weights are random: speed does not
depend on them.

GenDD's diffusion head (width 256, 4 repeats of 8 tokens per image here, as in the Fashion-MNIST benchmark) costs
more than the student backbone, so the teacher's share of a GenDD step is smaller than of a KD step.

Usage:
    python -m gendd_hf.bench.teacher_outputs_speed                      # resnet18 -> test_resnet, gendd and kd
    python -m gendd_hf.bench.teacher_outputs_speed --methods kd --teacher resnet10t
"""

import argparse
import json
import os
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import timm
import torch
from torch.utils.flop_counter import FlopCounterMode
from transformers import TrainerCallback

from ..data import ImageCollator, dataset_from_arrays, load_fashion_mnist
from ..losses import METHODS
from ..modeling_gendd import GenDDForImageClassification
from ..teacher import TimmTeacher
from ..teacher_outputs import (
    RandomViewTransform,
    TeacherOutputsSettings,
    ViewConfig,
    finalize_teacher_outputs,
    precompute_teacher_outputs,
    teacher_outputs_dataset,
)
from ..trainer import GenDDTrainer
from ..training_args import GenDDTrainingArguments
from .fashion_mnist import MEAN, STD, BenchSettings, new_student


@dataclass
class SpeedSettings:
    """What the measurement depends on; printed with the results."""

    teacher: str = "resnet18"
    student: str = "test_resnet"
    methods: tuple[str, ...] = ("gendd", "kd")
    augmentation: str = "small"
    num_views: int = 4
    batch_size: int = 128
    warmup_steps: int = 3
    steps: int = 15
    repeats: int = 3
    seed: int = 0

    shuffle_buffer_size: int = 1000
    dataloader_num_workers: int = 0

    @property
    def num_images(self) -> int:
        """Enough images that the measured steps never reach the end of the stream: the data loader reads a batch
        ahead, the shuffle buffer reads `shuffle_buffer_size` rows ahead, and when a stream that interleaves parquet
        shards ends, `datasets` pauses 5 s (its guard against an Arrow thread-shutdown crash), once per epoch."""
        return self.batch_size * (self.warmup_steps + self.steps + 2) + self.shuffle_buffer_size


class StepTimes(TrainerCallback):
    """Wall-clock time at the end of every optimizer step."""

    def __init__(self):
        self.times = []

    def on_step_end(self, args, state, control, **kwargs):
        self.times.append(time.perf_counter())


def load_images(num_images: int):
    """The first `num_images` Fashion-MNIST training images, or random 28x28 images when the data is missing."""
    try:
        return load_fashion_mnist(source="local")["train"].select(range(num_images)), "Fashion-MNIST"
    except FileNotFoundError:
        rng = np.random.default_rng(0)
        images = rng.integers(0, 256, (num_images, 28, 28), dtype=np.uint8)
        return dataset_from_arrays(images, rng.integers(0, 10, num_images)), "random 28x28 images"


def forward_flops(module, inputs: torch.Tensor) -> int:
    """FLOPs of one forward pass, counted by torch's `FlopCounterMode` (2 per multiply-accumulate)."""
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        module(inputs)
    return counter.get_total_flops()


def folder_bytes(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.rglob("*.parquet"))


def step_times(trainer: GenDDTrainer, settings: SpeedSettings) -> list[float]:
    """Seconds of each training step after the warm-up, data loading included."""
    times = StepTimes()
    trainer.add_callback(times)
    trainer.train()
    return np.diff(times.times[settings.warmup_steps - 1 :]).tolist()


def run(settings: SpeedSettings, workdir: Path) -> dict:
    """Precompute once, then measure both runs of every method; returns the figures printed by `main`."""
    images, source = load_images(settings.num_images)
    torch.manual_seed(settings.seed)
    teacher = TimmTeacher(timm.create_model(settings.teacher, in_chans=1, num_classes=10))
    bench = BenchSettings(student_name=settings.student)
    data_config = {"input_size": (1, 28, 28), "mean": (MEAN,), "std": (STD,), "interpolation": "bilinear"}
    view_config = ViewConfig.from_data_config(data_config, preset=settings.augmentation)

    def student(method: str) -> GenDDForImageClassification:
        torch.manual_seed(settings.seed)
        return new_student(bench, method, teacher)

    def arguments(name: str, method: str) -> GenDDTrainingArguments:
        return GenDDTrainingArguments(
            output_dir=str(workdir / name),
            method=method,
            per_device_train_batch_size=settings.batch_size,
            max_steps=settings.warmup_steps + settings.steps,
            learning_rate=1e-3,
            seed=settings.seed,
            save_strategy="no",
            logging_steps=10_000,
            report_to="none",
            disable_tqdm=True,
            use_cpu=True,
            dataloader_num_workers=settings.dataloader_num_workers,
        )

    probe = torch.zeros(1, 1, 28, 28)
    teacher_flops = forward_flops(teacher, probe)
    student_flops = forward_flops(student("kd").eval().extract_features, probe)

    folder = workdir / "teacher_outputs"
    start = time.perf_counter()
    precompute_teacher_outputs(
        images,
        teacher,
        folder,
        TeacherOutputsSettings(view_config, num_views=settings.num_views, shard_size=settings.batch_size * 4),
        settings.teacher,
        batch_size=512,
        progress=False,
    )
    outputs = finalize_teacher_outputs(folder)
    precompute_seconds = time.perf_counter() - start

    speeds = {}
    for method in settings.methods:
        times = {"online": [], "streamed": []}
        for _ in range(settings.repeats):  # alternated, so that a burst of other work hits both runs alike
            # online: a fresh replayable view per image, the teacher in every step
            online = GenDDTrainer(
                student(method),
                arguments(f"{method}-online", method),
                teacher=teacher,
                train_dataset=images,
                data_collator=ImageCollator(RandomViewTransform(view_config)),
            )
            times["online"] += step_times(online, settings)
            # streamed: the stored view of the epoch, stored outputs, no teacher
            model = student(method)
            outputs.load_teacher_classifier(model)
            train_dataset = teacher_outputs_dataset(
                images,
                outputs,
                view_config=view_config,
                seed=settings.seed,
                shuffle_buffer_size=settings.shuffle_buffer_size,
            )
            streamed = GenDDTrainer(model, arguments(f"{method}-streamed", method), train_dataset=train_dataset)
            times["streamed"] += step_times(streamed, settings)
        # The median step time is robust to other processes' bursts on a shared machine.
        speeds[method] = {mode: 1.0 / statistics.median(values) for mode, values in times.items()}
        speeds[method]["speedup"] = speeds[method]["streamed"] / speeds[method]["online"]

    return {
        "settings": {**asdict(settings), "num_images": settings.num_images, "images": source},
        "threads": torch.get_num_threads(),
        "load_average": os.getloadavg(),
        "teacher_forward_mflops": teacher_flops / 1e6,
        "student_forward_mflops": student_flops / 1e6,
        "flop_ratio": teacher_flops / student_flops,
        "steps_per_second": speeds,
        "precompute_seconds": precompute_seconds,
        "bytes_per_image_per_view": folder_bytes(folder) / (outputs.num_images * settings.num_views),
    }


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    for name, value in asdict(SpeedSettings()).items():
        if isinstance(value, tuple):
            parser.add_argument(f"--{name}", nargs="+", default=value, choices=METHODS)
        else:
            parser.add_argument(f"--{name}", type=type(value), default=value)
    parser.add_argument("--output_json", type=Path, default=None, help="Also write the results here.")
    args = vars(parser.parse_args(argv))
    output_json = args.pop("output_json")
    settings = SpeedSettings(**{**args, "methods": tuple(args["methods"])})
    with tempfile.TemporaryDirectory() as workdir:
        results = run(settings, Path(workdir))
    print(
        f"images: {results['settings']['images']}, {settings.num_images} x {settings.num_views} views; teacher "
        f"{settings.teacher}, student {settings.student}, batch {settings.batch_size}, {results['threads']} torch "
        f"threads, load average {', '.join(f'{v:.2f}' for v in results['load_average'])} (1, 5, 15 min)"
    )
    print(
        f"forward FLOPs per 28x28 image: teacher {results['teacher_forward_mflops']:.1f} M, student backbone "
        f"{results['student_forward_mflops']:.1f} M (ratio {results['flop_ratio']:.1f}x)"
    )
    print("| method | online steps/s | streamed steps/s | speed-up |\n|---|---|---|---|")
    for method, speed in results["steps_per_second"].items():
        print(f"| {method} | {speed['online']:.3f} | {speed['streamed']:.3f} | {speed['speedup']:.2f}x |")
    print(
        f"precompute: {results['precompute_seconds']:.1f} s for {settings.num_images} x {settings.num_views} views; "
        f"disk: {results['bytes_per_image_per_view']:.0f} bytes per image per view"
    )
    if output_json is not None:
        output_json.write_text(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
