"""Serving costs of a saved GenDD student, in one run: images per second at batch 256 and the latency of one image
through `pipeline("image-classification")`, for

- `plain`: the student exported with `export_student()` (a `TimmWrapperForImageClassification`), the network a
  plain KD student of the same architecture serves;
- `one_pass`: the one-pass student as it is served (`python -m gendd_hf.one_pass --export`): `export_student()` of the
  GenDD model, loaded and timed as a separate copy. It has exactly the plain student's layers (only the probe's
  weights differ, and the cost does not depend on them), so its ratio measures the timing noise of the run;
- `probe_in_gendd`: the same probe path run inside the GenDD model (`inference_path="probe"`): one student forward
  pass plus the GenDD forward's own work (the 1-channel input check, the output object);
- `fast`: the GenDD model with the fast sampling setting (`fast_sampling.FAST_SETTING` unless `--fast` says
  otherwise);
- `paper`: the paper's sampler (64 DDPM steps, guidance 2, 5 samples).

Each path's cost is also given as a ratio to the plain student's, measured in the same run. Images are random
grayscale images of the model's input size, converted to RGB as the pipeline does.

Usage:
    python -m gendd_hf.bench.serving --model <gendd folder> [--device cuda] [--batch_size 256] [--output <dir>]
        [--fast sampler=mean,guidance_scale=2]
"""

import argparse
import json
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from transformers import AutoModelForImageClassification, pipeline

from ..image_processing import build_image_processor
from ..modeling_gendd import GenDDForImageClassification
from .fast_sampling import FAST_SETTING, PAPER_SETTING


TARGETS = {
    "one_pass": 1.05,
    "probe_in_gendd": 1.05,
    "fast": 2.0,
}  # largest cost relative to the plain student (issue targets)


def random_images(count: int, size: tuple[int, int], seed: int = 0) -> list[Image.Image]:
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 256, size, dtype=np.uint8)).convert("RGB") for _ in range(count)]


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.no_grad()
def batch_throughput(model, pixel_values: torch.Tensor, min_seconds: float, max_repeats: int) -> float:
    """Images per second of `model(pixel_values)`, after one warm-up call, over at least `min_seconds` (or
    `max_repeats` calls)."""
    model(pixel_values)
    synchronize(pixel_values.device)
    repeats, begin = 0, time.perf_counter()
    while repeats < max_repeats and (repeats == 0 or time.perf_counter() - begin < min_seconds):
        model(pixel_values)
        synchronize(pixel_values.device)
        repeats += 1
    return repeats * len(pixel_values) / (time.perf_counter() - begin)


def pipeline_latency(classifier, images: list[Image.Image]) -> float:
    """Median seconds of one `classifier(image)` call, after one warm-up call."""
    classifier(images[0])
    seconds = []
    for image in images:
        begin = time.perf_counter()
        classifier(image)
        seconds.append(time.perf_counter() - begin)
    return statistics.median(seconds)


def sampling_overrides(setting) -> dict:
    return {
        "sampler": setting.sampler,
        "num_inference_steps": setting.num_inference_steps,
        "guidance_scale": setting.guidance_scale,
        "num_samples": setting.num_samples,
    }


def parse_setting(text: str):
    """`sampler=ddim,num_inference_steps=4,...` -> an `InferenceSetting` based on `FAST_SETTING`."""
    values = dict(item.split("=", 1) for item in text.split(","))
    types = {"sampler": str, "num_inference_steps": int, "guidance_scale": float, "num_samples": int}
    unknown = set(values) - set(types)
    if unknown:
        raise ValueError(f"--fast has unknown keys {sorted(unknown)}; use {sorted(types)}.")
    return replace(FAST_SETTING, **{key: types[key](value) for key, value in values.items()})


def measure(
    folder: str | Path,
    fast=FAST_SETTING,
    device: str = "cpu",
    batch_size: int = 256,
    latency_images: int = 20,
    min_seconds: float = 2.0,
) -> dict:
    """The four paths' images per second at `batch_size` and single-image pipeline latency, with ratios to plain."""
    device = torch.device(device)
    model = GenDDForImageClassification.from_pretrained(folder).eval().to(device)
    processor = build_image_processor(model)
    _, height, width = model.config.pretrained_cfg["input_size"]
    images = random_images(max(batch_size, latency_images), (height, width))
    pixel_values = processor(images[:batch_size], return_tensors="pt")["pixel_values"].to(device)
    with tempfile.TemporaryDirectory() as export_dir:
        model.export_student(export_dir)
        plain = AutoModelForImageClassification.from_pretrained(export_dir).eval().to(device)
        one_pass = AutoModelForImageClassification.from_pretrained(export_dir).eval().to(device)
    paths = {
        "plain": (plain, {}),
        "one_pass": (one_pass, {}),
        "probe_in_gendd": (model, {"inference_path": "probe"}),
        "fast": (model, {"inference_path": "sampled", **sampling_overrides(fast)}),
        "paper": (model, {"inference_path": "sampled", **sampling_overrides(PAPER_SETTING)}),
    }
    rows = {}
    for name, (network, settings) in paths.items():
        inference_path = settings.get("inference_path")
        sampling = {key: value for key, value in settings.items() if key != "inference_path"}
        if network is model:
            model.config.inference_path = inference_path
            model.sampling_config = model.sampling_config.update(**sampling)
        slow = name == "paper"
        rows[name] = {
            "images_per_second": batch_throughput(network, pixel_values, min_seconds, 1 if slow else 1000),
            "pipeline_seconds": pipeline_latency(
                pipeline("image-classification", model=network, image_processor=processor, device=device),
                images[: 3 if slow else latency_images],
            ),
            **({"setting": (PAPER_SETTING if slow else fast).name} if sampling else {}),
        }
    plain_row = rows["plain"]
    for row in rows.values():
        row["batch_cost_ratio"] = plain_row["images_per_second"] / row["images_per_second"]
        row["pipeline_cost_ratio"] = row["pipeline_seconds"] / plain_row["pipeline_seconds"]
    return {
        "model": str(folder),
        "device": str(device),
        "batch_size": batch_size,
        "torch_threads": torch.get_num_threads(),
        "paths": rows,
    }


def markdown_table(report: dict) -> str:
    lines = [
        f"Batch {report['batch_size']}, device {report['device']} ({report['torch_threads']} threads); cost "
        "ratios against the plain exported student, measured in the same run.",
        "",
        "| path | setting | images / s (batch) | cost vs plain (batch) | pipeline ms / image | cost vs plain "
        "(pipeline) | target |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, row in report["paths"].items():
        target = f"<= {TARGETS[name]:g}x" if name in TARGETS else "-"
        lines.append(
            f"| {name} | {row.get('setting', '-')} | {row['images_per_second']:.1f} | "
            f"{row['batch_cost_ratio']:.2f}x | {1000 * row['pipeline_seconds']:.1f} | "
            f"{row['pipeline_cost_ratio']:.2f}x | {target} |"
        )
    return "\n".join(lines) + "\n"


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="folder of a saved GenDD model")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch_size", type=int, default=256)
    parser.add_argument("--latency_images", type=int, default=20, help="single-image pipeline calls timed")
    parser.add_argument("--fast", default=None, help="the fast setting, e.g. sampler=ddim,num_inference_steps=2")
    parser.add_argument("--output", default=None, help="folder for serving.json and serving.md")
    args = parser.parse_args(argv)
    fast = parse_setting(args.fast) if args.fast else FAST_SETTING
    report = measure(args.model, fast, args.device, args.batch_size, args.latency_images)
    table = markdown_table(report)
    print(table)
    if args.output is not None:
        output = Path(args.output)
        output.mkdir(parents=True, exist_ok=True)
        (output / "serving.json").write_text(json.dumps(report, indent=2))
        (output / "serving.md").write_text(table)
    return report


if __name__ == "__main__":
    main()
