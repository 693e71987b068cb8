"""Accuracy against cost of a saved GenDD model's inference paths: the paper's sampler (DDPM, 64 steps, guidance 2,
5 samples), DDIM, DPM-Solver++ and DDPM at few steps, the one-step conditional mean (`sampler="mean"`) and the
probe.

For each setting it reports top-1, head evaluations per image (`head_evaluations_per_image`: one row is one token
of one draw of one branch at one step) and images per second, then names the best fast setting: at least 20x
fewer head evaluations than the paper's, top-1 within 0.3 points of it. The student backbone runs once per image
and its time is added to every setting's, so images per second are end to end.

Usage:
    python -m gendd_hf.bench.fast_sampling --model <gendd folder> [--dataset fashion_mnist | <dataset path or id>]
        [--split test] [--num_eval 2000] [--batch_size 250] [--steps 1,2,4,8,16] [--samplers ddim,dpm_solver,ddpm]
        [--device cuda] [--output <dir>]
"""

import argparse
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from ..configuration_gendd import GenDDSamplingConfig
from ..data import load_fashion_mnist, load_image_dataset
from ..image_processing import build_image_processor
from ..modeling_gendd import GenDDForImageClassification
from ..sampling import head_evaluations_per_image

MAX_EVALUATION_FRACTION = 1 / 20  # "at least 20x fewer head evaluations than the paper's setting"
TOP1_TOLERANCE = 0.3  # points of top-1 below the paper's setting


@dataclass(frozen=True)
class InferenceSetting:
    """One inference path: `sampler=None` is the probe; otherwise `generate_features`'s arguments."""

    sampler: str | None = None
    num_inference_steps: int = 0
    guidance_scale: float = 1.0
    num_samples: int = 1

    @property
    def name(self) -> str:
        if self.sampler is None:
            return "probe"
        if self.sampler == "mean":
            return f"mean g{self.guidance_scale:g}"
        return f"{self.sampler} {self.num_inference_steps} steps g{self.guidance_scale:g} x{self.num_samples}"

    def head_evaluations(self, num_tokens: int) -> int:
        if self.sampler is None:
            return 0
        return head_evaluations_per_image(
            self.sampler, self.num_inference_steps, self.guidance_scale, self.num_samples, num_tokens
        )


_PAPER = GenDDSamplingConfig()
PAPER_SETTING = InferenceSetting("ddpm", _PAPER.num_inference_steps, _PAPER.guidance_scale, _PAPER.num_samples)
PROBE_SETTING = InferenceSetting()


def default_settings(steps=(1, 2, 4, 8, 16), samplers=("ddim", "dpm_solver", "ddpm")) -> list[InferenceSetting]:
    """The probe, the paper's sampler, each of `samplers` at each of `steps` with and without guidance and with 1 or
    the paper's number of samples, and the one-step mean with and without guidance."""
    guidance_scales = (1.0, PAPER_SETTING.guidance_scale)
    settings = [PROBE_SETTING, PAPER_SETTING]
    for sampler in samplers:
        for num_steps in steps:
            for guidance_scale in guidance_scales:
                for num_samples in (1, PAPER_SETTING.num_samples):
                    settings.append(InferenceSetting(sampler, num_steps, guidance_scale, num_samples))
    settings += [InferenceSetting("mean", 1, guidance_scale) for guidance_scale in guidance_scales]
    return settings


def load_eval_dataset(dataset: str, split: str = "test", num_eval: int | None = None):
    """`"fashion_mnist"` (through `load_fashion_mnist`) or anything `load_image_dataset` reads; the first
    `num_eval` rows, with columns `image` and `label`."""
    rows = load_fashion_mnist()[split] if dataset == "fashion_mnist" else load_image_dataset(dataset, split=split)
    if "label" not in rows.column_names:
        raise ValueError(f"Dataset {dataset!r} has no label column ({rows.column_names}); top-1 needs labels.")
    return rows if num_eval is None else rows.select(range(min(num_eval, len(rows))))


def load_model_and_processor(folder: str | Path):
    """The GenDD model in eval mode and its image processor (from its config's `pretrained_cfg`)."""
    model = GenDDForImageClassification.from_pretrained(folder).eval()
    return model, build_image_processor(model)


@torch.no_grad()
def evaluate_settings(
    model, processor, rows, settings, batch_size: int = 250, seed: int = 0, device: str = "cpu"
) -> list[dict]:
    """Top-1, head evaluations per image and images per second of each setting on `rows` (`image`, `label`).

    Images are converted to RGB as `pipeline("image-classification")` does; every sampled setting draws each image's
    noise from its own generator seeded with `seed`, as the model does by default. Timings wait for the device.
    """
    device = torch.device(device)
    model = model.to(device)
    batches, labels = [], torch.tensor(rows["label"], device=device)
    for start in range(0, len(rows), batch_size):
        images = [image.convert("RGB") for image in rows[start : start + batch_size]["image"]]
        batches.append(processor(images, return_tensors="pt")["pixel_values"].to(device))

    def seconds_since(begin: float) -> float:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter() - begin

    begin = time.perf_counter()
    student_features = [model.extract_features(pixel_values) for pixel_values in batches]
    student_seconds = seconds_since(begin)
    num_tokens = model.config.num_tokens
    results = []
    for setting in settings:
        begin = time.perf_counter()
        if setting.sampler is None:
            logits = torch.cat([model.probe(z) for z in student_features])
        else:
            logits = torch.cat([
                model.classify_features(model.sample_features(
                    z, setting.num_inference_steps, setting.guidance_scale, setting.num_samples,
                    sampler=setting.sampler, seed=seed,
                ))
                for z in student_features
            ])
        seconds = student_seconds + seconds_since(begin)
        results.append({
            "setting": setting.name,
            **asdict(setting),
            "head_evaluations_per_image": setting.head_evaluations(num_tokens),
            "top1": 100.0 * (logits.argmax(-1) == labels).float().mean().item(),
            "images_per_second": len(labels) / seconds,
        })
    return results


def best_fast_setting(results: list[dict]) -> dict | None:
    """The most accurate sampled setting (fewest head evaluations on ties) with at most `MAX_EVALUATION_FRACTION` of
    the paper setting's head evaluations and top-1 at most `TOP1_TOLERANCE` points below it; `None` if none is."""
    paper = next(row for row in results if row["setting"] == PAPER_SETTING.name)
    candidates = [
        row for row in results
        if row["sampler"] is not None
        and row["head_evaluations_per_image"] <= MAX_EVALUATION_FRACTION * paper["head_evaluations_per_image"]
        and row["top1"] >= paper["top1"] - TOP1_TOLERANCE
    ]
    return max(candidates, key=lambda row: (row["top1"], -row["head_evaluations_per_image"]), default=None)


def markdown_table(results: list[dict]) -> str:
    lines = [
        "| setting | sampler | steps | guidance | samples | head evaluations / image | top-1 (%) | images / s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in results:
        sampled = row["sampler"] is not None
        lines.append(
            f"| {row['setting']} | {row['sampler'] or '-'} | {row['num_inference_steps'] if sampled else '-'} | "
            f"{row['guidance_scale'] if sampled else '-'} | {row['num_samples'] if sampled else '-'} | "
            f"{row['head_evaluations_per_image']} | {row['top1']:.2f} | {row['images_per_second']:.1f} |"
        )
    return "\n".join(lines) + "\n"


def verdict(best: dict | None) -> str:
    criterion = f">= {1 / MAX_EVALUATION_FRACTION:g}x fewer head evaluations, top-1 within {TOP1_TOLERANCE} points"
    if best is None:
        return f"No fast setting meets the target ({criterion} of the paper's setting)."
    return (
        f"Best fast setting ({criterion} of the paper's setting): {best['setting']}, top-1 {best['top1']:.2f}, "
        f"{best['head_evaluations_per_image']} head evaluations per image."
    )


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="folder of a saved GenDD model")
    parser.add_argument("--dataset", default="fashion_mnist", help="'fashion_mnist' or a path / Hub id")
    parser.add_argument("--split", default="test")
    parser.add_argument("--num_eval", type=int, default=None, help="first N images (default: the whole split)")
    parser.add_argument("--batch_size", type=int, default=250)
    parser.add_argument("--steps", default="1,2,4,8,16", help="step counts of the few-step samplers")
    parser.add_argument("--samplers", default="ddim,dpm_solver,ddpm", help="the few-step samplers")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--output", default=None, help="folder for fast_sampling.json and fast_sampling.md")
    args = parser.parse_args(argv)

    model, processor = load_model_and_processor(args.model)
    rows = load_eval_dataset(args.dataset, args.split, args.num_eval)
    settings = default_settings(tuple(int(steps) for steps in args.steps.split(",")), tuple(args.samplers.split(",")))
    results = evaluate_settings(model, processor, rows, settings, args.batch_size, args.seed, args.device)
    best = best_fast_setting(results)
    table, summary = markdown_table(results), verdict(best)
    print(table + "\n" + summary)
    report = {"model": str(args.model), "dataset": args.dataset, "split": args.split, "num_eval": len(rows),
              "seed": args.seed, "device": args.device,
              "torch_threads": torch.get_num_threads(), "results": results, "best_fast": best}
    if args.output is not None:
        output = Path(args.output)
        output.mkdir(parents=True, exist_ok=True)
        (output / "fast_sampling.json").write_text(json.dumps(report, indent=2))
        (output / "fast_sampling.md").write_text(table + "\n" + summary + "\n")
    return report


if __name__ == "__main__":
    main()
