"""What a GPU user asks first, in one script that prints in minutes: training images/s of KD and GenDD at ImageNet
shapes, the input pipeline's images/s with every CPU core, and the inference paths' images/s at batch 256.

1. Training (`step_speed.TrainingStep`, synthetic tensors, stored teacher outputs): a resnet18 student at 224 px,
   512-d teacher features, the ImageNet preset's head, per-device batch 64 (the recipe's), in float32, then bf16 with
   channels-last, then the same compiled (`torch.compile`); the GenDD / KD ratio of each.
2. Input pipeline (`input_pipeline`): the recipe's loader and timm's on generated JPEGs, with as many DataLoader
   workers as CPU cores.
3. Inference at batch 256 (random weights: speed does not depend on them): `one_pass` (the student and its probe,
   the one-pass form), `fast` (`fast_sampling.FAST_SETTING`) and `sampled` (the paper's sampler,
   `fast_sampling.PAPER_SETTING`).

`--tiny` runs the same at toy sizes, for a test on the CPU.

Usage:
    python -m gendd_hf.bench.gpu_check --output results/gpu_check          # on a CUDA machine
    python -m gendd_hf.bench.gpu_check --tiny --device cpu                 # the test's run
"""

import argparse
import os
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from .input_pipeline import LAYOUTS
from .step_speed import METHODS, StepOptions, StepShapes, write_results


@dataclass(frozen=True)
class CheckSizes:
    """The sizes of the check; `TINY` for a CPU test."""

    shapes: StepShapes = StepShapes(batch_size=64)
    training_steps: int = 20
    warmup_steps: int = 3
    num_images: int = 2048
    pipeline_batch_size: int = 64
    inference_batch_size: int = 256
    compile_backend: str = "inductor"


TINY = CheckSizes(
    shapes=StepShapes(
        batch_size=2,
        image_size=32,
        student_name="test_resnet",
        teacher_feature_dim=64,
        num_labels=10,
        token_dim=16,
        head_width=32,
        head_depth=1,
        diffusion_batch_mul=2,
    ),
    training_steps=2,
    warmup_steps=1,
    num_images=16,
    pipeline_batch_size=4,
    inference_batch_size=4,
    compile_backend="aot_eager",
)
TRAINING_OPTIONS = {
    "float32": StepOptions(),
    "bf16_channels_last": StepOptions(channels_last=True, bf16=True),
    "bf16_channels_last_compiled": StepOptions(channels_last=True, bf16=True, compile=True),
}


def training_throughput(sizes: CheckSizes, device: str) -> dict:
    """Images per second of KD's and GenDD's training steps, per option set, and GenDD's cost relative to KD."""
    from dataclasses import replace

    from .step_speed import TrainingStep

    rows = {}
    for name, options in TRAINING_OPTIONS.items():
        if options.compile:
            options = replace(options, compile_backend=sizes.compile_backend)
        row = {}
        for method in METHODS:
            step = TrainingStep(method, sizes.shapes, options, device)
            for _ in range(sizes.warmup_steps):
                step.run()
            seconds = sum(
                sum(step.run()[part] for part in ("student", "head", "optimizer")) for _ in range(sizes.training_steps)
            )
            row[f"{method}_images_per_second"] = sizes.training_steps * sizes.shapes.batch_size / seconds
        row["gendd_cost"] = row["kd_images_per_second"] / row["gendd_images_per_second"]
        rows[name] = row
    return rows


def pipeline_throughput(sizes: CheckSizes) -> dict:
    """The recipe's and timm's loaders on generated JPEGs, all layouts, one DataLoader worker per CPU core."""
    from .input_pipeline import benchmark

    with tempfile.TemporaryDirectory() as root:
        result = benchmark(Path(root), sizes.num_images, sizes.pipeline_batch_size, (os.cpu_count(),), LAYOUTS)
    return {"workers": os.cpu_count(), "rows": result["rows"]}


def inference_throughput(sizes: CheckSizes, device: str) -> dict:
    """Images per second of the one-pass, fast and sampled paths at `sizes.inference_batch_size`."""
    import torch

    from .fast_sampling import FAST_SETTING, PAPER_SETTING
    from .serving import batch_throughput, sampling_overrides

    shapes = sizes.shapes
    model = shapes.model().eval().to(device)
    pixel_values = torch.randn(sizes.inference_batch_size, 3, shapes.image_size, shapes.image_size, device=device)
    paths = {"one_pass": ("probe", None), "fast": ("sampled", FAST_SETTING), "sampled": ("sampled", PAPER_SETTING)}
    rows = {}
    for name, (inference_path, setting) in paths.items():
        model.config.inference_path = inference_path
        if setting is not None:
            model.sampling_config = model.sampling_config.update(**sampling_overrides(setting))
        repeats = 1 if name == "sampled" else 1000
        rows[name] = {
            "setting": "probe" if setting is None else setting.name,
            "images_per_second": batch_throughput(model, pixel_values, min_seconds=2.0, max_repeats=repeats),
        }
    return rows


def run_check(sizes: CheckSizes, device: str) -> dict:
    import torch

    begin = time.perf_counter()
    report = {
        "device": torch.cuda.get_device_name(device) if torch.device(device).type == "cuda" else str(device),
        "torch": torch.__version__,
        "sizes": asdict(sizes),
        "training": training_throughput(sizes, device),
        "input_pipeline": pipeline_throughput(sizes),
        "inference": inference_throughput(sizes, device),
    }
    report["seconds"] = time.perf_counter() - begin
    return report


def format_markdown(report: dict) -> str:
    shapes = report["sizes"]["shapes"]
    lines = [
        f"GPU check on {report['device']} (torch {report['torch']}), {report['seconds']:.0f} s.",
        "",
        f"Training, {shapes['student_name']} at {shapes['image_size']} px, batch {shapes['batch_size']}, synthetic:",
        "",
        "| options | KD images/s | GenDD images/s | GenDD cost vs KD |",
        "| --- | ---: | ---: | ---: |",
    ]
    for name, row in report["training"].items():
        lines.append(
            f"| {name} | {row['kd_images_per_second']:.0f} | {row['gendd_images_per_second']:.0f} | "
            f"{row['gendd_cost']:.2f}x |"
        )
    lines += [
        "",
        f"Input pipeline, {report['input_pipeline']['workers']} workers:",
        "",
        "| layout | recipe images/s | timm images/s | recipe / timm |",
        "| --- | ---: | ---: | ---: |",
    ]
    for row in report["input_pipeline"]["rows"]:
        lines.append(
            f"| {row['layout']} | {row['recipe_images_per_second']:.0f} | {row['timm_images_per_second']:.0f} | "
            f"{row['ratio']:.2f} |"
        )
    lines += [
        "",
        f"Inference, batch {report['sizes']['inference_batch_size']}:",
        "",
        "| path | setting | images/s |",
        "| --- | --- | ---: |",
    ]
    for name, row in report["inference"].items():
        lines.append(f"| {name} | {row['setting']} | {row['images_per_second']:.1f} |")
    return "\n".join(lines) + "\n"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda", help="the GPU to check (cpu runs, slowly)")
    parser.add_argument("--tiny", action="store_true", help="toy sizes, for a test on the CPU")
    parser.add_argument("--output", type=Path, help="folder for gpu_check.json and gpu_check.md")
    return parser


def main(argv=None) -> dict:
    args = build_parser().parse_args(argv)
    report = run_check(TINY if args.tiny else CheckSizes(), args.device)
    text = format_markdown(report)
    print(text)
    if args.output:
        write_results(args.output, "gpu_check", report, text)
    return report


if __name__ == "__main__":
    main()
