"""Accuracy against cost of a saved GenDD model's inference paths: the paper's sampler (DDPM, 64 steps, guidance 2,
5 samples), DDIM, DPM-Solver++ and DDPM at few steps, the one-step conditional mean (`sampler="mean"`) and the
probe.

For each setting it reports top-1 (the mean over the given models, e.g. three seed students), head evaluations per
image (`head_evaluations_per_image`: one row is one token of one draw of one branch at one step) and images per
second, then names the best fast setting: at least 20x fewer head evaluations than the paper's, mean top-1 within
0.3 points of it. The student backbone runs once per image and its time is added to every setting's, so images per
second are end to end.

`--synthetic` adds a check that needs no data: a GenDD head trained on conditional Gaussians (`synthetic_errors`),
where a fast setting must put the mean of its features within 0.1 of the 64-step chain's.

Usage:
    python -m gendd_hf.bench.fast_sampling --model <gendd folder> [<gendd folder> ...] [--synthetic]
        [--dataset fashion_mnist | <dataset path or id>] [--split test] [--num_eval 2000] [--batch_size 250]
        [--steps 1,2,4,8,16] [--samplers ddim,dpm_solver,ddpm] [--within_target] [--device cuda] [--output <dir>]
"""

import argparse
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from ..configuration_gendd import GenDDSamplingConfig
from ..data import load_eval_dataset
from ..image_processing import build_image_processor
from ..metrics import top1
from ..modeling_gendd import GenDDForImageClassification
from ..progress import progress_bar
from ..sampling import head_evaluations_per_image


MAX_EVALUATION_FRACTION = 1 / 20  # "at least 20x fewer head evaluations than the paper's setting"
TOP1_TOLERANCE = 0.3  # points of top-1 below the paper's setting
SYNTHETIC_TOLERANCE = 0.1  # largest |mean feature - the 64-step chain's| on the synthetic task


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
FAST_SETTING = InferenceSetting("ddim", 4, 2.0, 1)
"""The fast setting timed by `gendd_hf.bench.serving` (64 head evaluations per image, 80x fewer than the paper's).
Measured (three bench seed students, all 10,000 Fashion-MNIST test images, `--within_target`): 85.09 ± 0.82 against
86.07 ± 0.50 for the paper's sampler, synthetic error 0.72. No setting meets the target; DDIM 2 steps (guidance 2, one
sample) scores higher on Fashion-MNIST (85.43) but misses the synthetic mean by 2.19, and this one has the lowest
synthetic error among the settings within one point at 64 or fewer head evaluations."""


def default_settings(
    steps=(1, 2, 4, 8, 16), samplers=("ddim", "dpm_solver", "ddpm"), within_target: bool = False
) -> list[InferenceSetting]:
    """The probe, the paper's sampler, each of `samplers` at each of `steps` with and without guidance and with 1 or
    the paper's number of samples, and the one-step mean with and without guidance. `within_target=True` keeps only
    the sampled settings with at most `MAX_EVALUATION_FRACTION` of the paper's head evaluations (the only ones
    `best_fast_setting` can choose), which saves most of a full-test-set run."""
    guidance_scales = (1.0, PAPER_SETTING.guidance_scale)
    settings = [PROBE_SETTING, PAPER_SETTING]
    for sampler in samplers:
        for num_steps in steps:
            for guidance_scale in guidance_scales:
                for num_samples in (1, PAPER_SETTING.num_samples):
                    settings.append(InferenceSetting(sampler, num_steps, guidance_scale, num_samples))
    settings += [InferenceSetting("mean", 1, guidance_scale) for guidance_scale in guidance_scales]
    if within_target:
        budget = MAX_EVALUATION_FRACTION * PAPER_SETTING.head_evaluations(1)
        settings = [s for s in settings if s in (PROBE_SETTING, PAPER_SETTING) or s.head_evaluations(1) <= budget]
    return settings


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
    progress = progress_bar(total=len(settings), desc="inference settings", unit="setting")
    for setting in settings:
        progress.update()
        begin = time.perf_counter()
        path = "probe" if setting.sampler is None else "sampled"
        sampling = (
            {}
            if setting.sampler is None
            else {
                "num_inference_steps": setting.num_inference_steps,
                "guidance_scale": setting.guidance_scale,
                "num_samples": setting.num_samples,
                "sampler": setting.sampler,
                "seed": seed,
            }
        )
        logits = torch.cat([model.path_logits(z, path, **sampling) for z in student_features])
        seconds = student_seconds + seconds_since(begin)
        results.append(
            {
                "setting": setting.name,
                **asdict(setting),
                "head_evaluations_per_image": setting.head_evaluations(num_tokens),
                "top1": 100.0 * top1(logits, labels),
                "images_per_second": len(labels) / seconds,
            }
        )
    progress.close()
    return results


def average_results(per_model: list[list[dict]]) -> list[dict]:
    """One row per setting: top-1 and images per second averaged over models (same settings, same order), with the
    top-1 standard deviation and each model's top-1."""
    rows = []
    for same in zip(*per_model):
        top1 = torch.tensor([row["top1"] for row in same], dtype=torch.float64)
        rows.append(
            {
                **same[0],
                "top1": top1.mean().item(),
                "top1_std": top1.std().item() if len(same) > 1 else 0.0,
                "top1_per_model": top1.tolist(),
                "images_per_second": sum(row["images_per_second"] for row in same) / len(same),
            }
        )
    return rows


def synthetic_errors(settings, steps: int = 1000, draws: int = 500, seed: int = 0) -> dict[str, float]:
    """The synthetic check: per setting, the largest |mean sampled feature - the 64-step chain's| (same guidance).

    A small GenDD head (width 128, depth 2, 8-d teacher space in two 4-d tokens) is trained through the model's own
    loss for `steps` steps on conditional Gaussians: four random student features, each with its own teacher-feature
    mean and spread 0.2, 0.4, 0.6, 0.8 (condition dropout 0.1, so that guidance is defined). Each setting then draws
    `draws` features per condition (the `"mean"` sampler one); the chain of reference is the paper's sampler with the
    setting's guidance scale. Conditions, means and the training noise come from `seed`.
    """
    from ..configuration_gendd import GenDDConfig  # noqa: PLC0415 (a bench-only path)

    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    config = GenDDConfig(
        student_name="test_resnet",
        student_kwargs={"in_chans": 1},
        teacher_feature_dim=8,
        token_dim=4,
        head_width=128,
        head_depth=2,
        diffusion_batch_mul=8,
        contraction=0.0,
        feature_mixup_beta=0.0,
        cond_drop_prob=0.1,
        id2label={0: "a", 1: "b"},
    )
    model = GenDDForImageClassification(config)
    conditions = torch.randn(4, model.student_feature_dim, generator=generator)
    means = torch.randn(4, 8, generator=generator)
    sigma = torch.tensor([0.2, 0.4, 0.6, 0.8])
    optimizer = torch.optim.AdamW(model.head.parameters(), lr=3e-3, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
    model.train()
    for _ in range(steps):
        c = torch.randint(0, 4, (256,), generator=generator)
        targets = means[c] + sigma[c, None] * torch.randn(256, 8, generator=generator)
        loss, _ = model.compute_losses(conditions[c], model.probe(conditions[c]), targets, c % 2)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
    model.eval()
    z = conditions.repeat_interleave(draws, dim=0)

    def feature_means(setting: InferenceSetting) -> torch.Tensor:
        features = model.sample_features(
            z,
            setting.num_inference_steps,
            setting.guidance_scale,
            setting.num_samples,
            sampler=setting.sampler,
            generator=torch.Generator().manual_seed(seed),
        )
        return features.reshape(4, draws, 8).mean(1)

    chains = {}
    errors = {}
    for setting in settings:
        if setting.sampler is None:
            continue
        if setting.guidance_scale not in chains:
            chains[setting.guidance_scale] = feature_means(
                InferenceSetting("ddpm", PAPER_SETTING.num_inference_steps, setting.guidance_scale, 1)
            )
        errors[setting.name] = (feature_means(setting) - chains[setting.guidance_scale]).abs().max().item()
    return errors


def best_fast_setting(results: list[dict], synthetic: dict[str, float] | None = None) -> dict | None:
    """The most accurate sampled setting (fewest head evaluations on ties) with at most `MAX_EVALUATION_FRACTION` of
    the paper setting's head evaluations and top-1 at most `TOP1_TOLERANCE` points below it (and, with `synthetic`,
    a synthetic error within `SYNTHETIC_TOLERANCE`); `None` if none is."""
    paper = next(row for row in results if row["setting"] == PAPER_SETTING.name)
    candidates = [
        row
        for row in results
        if row["sampler"] is not None
        and row["head_evaluations_per_image"] <= MAX_EVALUATION_FRACTION * paper["head_evaluations_per_image"]
        and row["top1"] >= paper["top1"] - TOP1_TOLERANCE
        and (synthetic is None or synthetic.get(row["setting"], float("inf")) <= SYNTHETIC_TOLERANCE)
    ]
    return max(candidates, key=lambda row: (row["top1"], -row["head_evaluations_per_image"]), default=None)


def markdown_table(results: list[dict], synthetic: dict[str, float] | None = None) -> str:
    """One row per setting; top-1 as mean ± std when it was averaged over models; the synthetic error when given."""
    extra = " synthetic error |" if synthetic is not None else ""
    lines = [
        "| setting | sampler | steps | guidance | samples | head evaluations / image | top-1 (%) | images / s |"
        + extra,
        "|---|---|---|---|---|---|---|---|" + "---|" * bool(extra),
    ]
    for row in results:
        sampled = row["sampler"] is not None
        top1 = f"{row['top1']:.2f}" + (f" ± {row['top1_std']:.2f}" if len(row.get("top1_per_model", ())) > 1 else "")
        error = ""
        if synthetic is not None:
            error = f" {synthetic[row['setting']]:.3f} |" if row["setting"] in synthetic else " - |"
        lines.append(
            f"| {row['setting']} | {row['sampler'] or '-'} | {row['num_inference_steps'] if sampled else '-'} | "
            f"{row['guidance_scale'] if sampled else '-'} | {row['num_samples'] if sampled else '-'} | "
            f"{row['head_evaluations_per_image']} | {top1} | {row['images_per_second']:.1f} |" + error
        )
    return "\n".join(lines) + "\n"


def verdict(best: dict | None, synthetic: bool = False) -> str:
    criterion = f">= {1 / MAX_EVALUATION_FRACTION:g}x fewer head evaluations, top-1 within {TOP1_TOLERANCE} points"
    if synthetic:
        criterion += f", synthetic error <= {SYNTHETIC_TOLERANCE}"
    if best is None:
        return f"No fast setting meets the target ({criterion} of the paper's setting)."
    return (
        f"Best fast setting ({criterion} of the paper's setting): {best['setting']}, top-1 {best['top1']:.2f}, "
        f"{best['head_evaluations_per_image']} head evaluations per image."
    )


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, nargs="+", help="folder(s) of saved GenDD models")
    parser.add_argument("--synthetic", action="store_true", help="also run the synthetic conditional-Gaussian check")
    parser.add_argument("--dataset", default="fashion_mnist", help="'fashion_mnist' or a path / Hub id")
    parser.add_argument("--split", default="test")
    parser.add_argument("--num_eval", type=int, default=None, help="first N images (default: the whole split)")
    parser.add_argument("--batch_size", type=int, default=250)
    parser.add_argument("--steps", default="1,2,4,8,16", help="step counts of the few-step samplers")
    parser.add_argument("--samplers", default="ddim,dpm_solver,ddpm", help="the few-step samplers")
    parser.add_argument(
        "--within_target",
        action="store_true",
        help="run only the settings cheap enough to be chosen (>= 20x fewer head evaluations)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--output", default=None, help="folder for fast_sampling.json and fast_sampling.md")
    args = parser.parse_args(argv)

    rows = load_eval_dataset(args.dataset, args.split, args.num_eval)
    settings = default_settings(
        tuple(int(steps) for steps in args.steps.split(",")), tuple(args.samplers.split(",")), args.within_target
    )
    per_model = []
    for folder in args.model:
        model, processor = load_model_and_processor(folder)
        per_model.append(evaluate_settings(model, processor, rows, settings, args.batch_size, args.seed, args.device))
    results = average_results(per_model)
    synthetic = synthetic_errors(settings, seed=args.seed) if args.synthetic else None
    best = best_fast_setting(results, synthetic)
    table, summary = markdown_table(results, synthetic), verdict(best, synthetic is not None)
    print(table + "\n" + summary)
    report = {
        "models": [str(folder) for folder in args.model],
        "dataset": args.dataset,
        "split": args.split,
        "num_eval": len(rows),
        "seed": args.seed,
        "device": args.device,
        "torch_threads": torch.get_num_threads(),
        "results": results,
        "synthetic_errors": synthetic,
        "best_fast": best,
    }
    if args.output is not None:
        output = Path(args.output)
        output.mkdir(parents=True, exist_ok=True)
        (output / "fast_sampling.json").write_text(json.dumps(report, indent=2))
        (output / "fast_sampling.md").write_text(table + "\n" + summary + "\n")
    return report


if __name__ == "__main__":
    main()
