"""Two sampler choices measured on the Fashion-MNIST bench's GenDD students (issue 21, docs/parity.md):

- **The first-step clamp** (`GenDDSamplingConfig.clamp_first_step`, a deviation from the official code, which clamps
  nothing): the paper's sampler with the clamp on and off on the same images with the same noise, for every
  student; the paired difference with a 95% bootstrap interval over images.
- **Evaluation noise**: every image drawing the same noise (one seed for all, the old scheme) against per-image seeds
  derived from the seed and the image's pixels (`content_seeds`, the current one); the seed-to-seed standard
  deviation of sampled top-1 under each, on one student.

    python -m gendd_hf.bench.sampling_ablation students [--seeds 0 1 2]
    python -m gendd_hf.bench.sampling_ablation measure --model results/fashion_mnist/gendd-student ...
        [--num_images 2000] [--noise_images 1000] [--noise_seeds 0 1 2 3] [--output results/sampling_ablation]

`students` trains the bench's GenDD students (the `gendd` row of `make bench`, 469 steps each) and saves them as
`make bench` does, without the other methods. `measure` appends every finished measurement to
`measurements.jsonl` and skips those already there when started again; it then writes `sampling_ablation.json` and
`.md`.
"""

import argparse
import json
import math
from pathlib import Path

import numpy as np


DEFAULT_OUTPUT = Path("results/sampling_ablation")


def train_students(seeds, output_dir: Path, cache_dir: Path) -> list[Path]:
    """The bench's `gendd` students for `seeds`, saved as `gendd-student` (first seed) and `gendd-student-seedN`."""
    from .fashion_mnist import BenchSettings, make_logger, prepare, save_student, train_set, train_student

    settings, log = BenchSettings(seeds=tuple(seeds)), make_logger()
    data, teacher = prepare(settings, cache_dir, log)
    full = train_set(data, "train")
    steps = math.ceil(settings.epochs * len(full) / settings.batch_size)
    folders = []
    for seed in seeds:
        model = train_student("gendd", seed, full, steps, settings, teacher, output_dir / "runs" / "fashion_mnist")
        name = "gendd-student" + ("" if seed == seeds[0] else f"-seed{seed}")
        folders.append(save_student(model, output_dir / name))
        log(f"seed {seed}: saved {folders[-1]} ({steps} steps)")
    return folders


def measure(models, num_images: int, noise_images: int, noise_seeds, output_dir: Path) -> dict:
    import torch

    from ..metrics import paired_bootstrap
    from ..modeling_gendd import GenDDForImageClassification
    from ..sampling import content_seeds, image_generators
    from .fashion_mnist import BenchSettings, load_arrays, make_logger

    log = make_logger()
    output_dir.mkdir(parents=True, exist_ok=True)
    journal = output_dir / "measurements.jsonl"
    done = {}
    if journal.exists():
        for line in journal.read_text().splitlines():
            row = json.loads(line)
            done[row["key"]] = row
    data = load_arrays(BenchSettings(train_size=1, test_size=max(num_images, noise_images)))
    pixels, labels = data["test_pixels"], data["test_labels"]

    def run(key: str, model, count: int, scheme: str, seed: int, clamp: bool) -> dict:
        if key in done:
            log(f"{key}: done before")
            return done[key]
        correct = []
        for start in range(0, count, 250):
            batch = pixels[start : min(start + 250, count)]
            seeds = content_seeds(batch, seed) if scheme == "content" else [seed] * len(batch)
            with torch.no_grad():
                logits = model.path_logits(
                    model.extract_features(batch),
                    "sampled",
                    generator=image_generators(seeds, batch.device),
                    clamp_first_step=clamp,
                )
            correct.append((logits.argmax(-1) == labels[start : start + len(batch)]).to(torch.uint8))
        correct = torch.cat(correct).tolist()
        row = {"key": key, "top1": float(np.mean(correct)), "correct": correct}
        with journal.open("a") as file:
            file.write(json.dumps(row) + "\n")
        done[key] = row
        log(f"{key}: top-1 {row['top1']:.4f} on {count} images")
        return row

    results = {"num_images": num_images, "noise_images": noise_images, "clamp": [], "noise": {}}
    for folder in models:
        model = GenDDForImageClassification.from_pretrained(folder).eval()
        on = run(f"{folder}|clamp|on", model, num_images, "content", 0, True)
        off = run(f"{folder}|clamp|off", model, num_images, "content", 0, False)
        difference = paired_bootstrap(on["correct"], off["correct"])
        results["clamp"].append({"model": str(folder), "on": on["top1"], "off": off["top1"], **difference})
    model = GenDDForImageClassification.from_pretrained(models[0]).eval()
    for scheme in ("same", "content"):
        top1s = [
            run(f"{models[0]}|noise|{scheme}|{seed}|{noise_images}", model, noise_images, scheme, seed, True)["top1"]
            for seed in noise_seeds
        ]
        results["noise"][scheme] = {"seeds": list(noise_seeds), "top1": top1s, "std": float(np.std(top1s, ddof=1))}
    (output_dir / "sampling_ablation.json").write_text(json.dumps(results, indent=2))
    (output_dir / "sampling_ablation.md").write_text(markdown(results))
    print(markdown(results))
    return results


def markdown(results: dict) -> str:
    lines = [
        f"Paper's sampler (DDPM 64 steps, guidance 2, 5 samples) on the first {results['num_images']} Fashion-MNIST "
        "test images, same noise in both arms (per-image content seeds, seed 0). Difference: clamp on minus off, "
        "points, 95% paired bootstrap interval over images.",
        "",
        "| student | clamp on | clamp off | on - off | 95% CI |",
        "|---|---|---|---|---|",
    ]
    for row in results["clamp"]:
        lines.append(
            f"| {Path(row['model']).name} | {100 * row['on']:.2f} | {100 * row['off']:.2f} | "
            f"{100 * row['difference']:+.2f} | {100 * row['low']:+.2f} to {100 * row['high']:+.2f} |"
        )
    mean = np.mean([row["difference"] for row in results["clamp"]])
    lines += ["", f"Mean on - off over the students: {100 * mean:+.2f} points.", ""]
    lines += [
        f"Seed-to-seed spread of sampled top-1 on one student ({results['noise_images']} images, clamp on):",
        "",
        "| noise | seeds | top-1 per seed | std |",
        "|---|---|---|---|",
    ]
    names = {"same": "one seed for every image (before)", "content": "per-image content seeds (now)"}
    for scheme, row in results["noise"].items():
        values = ", ".join(f"{100 * v:.2f}" for v in row["top1"])
        lines.append(f"| {names[scheme]} | {len(row['seeds'])} | {values} | {100 * row['std']:.2f} |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("command", choices=["students", "measure"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="students: the bench seeds")
    parser.add_argument("--students_dir", default="results/fashion_mnist", help="students: where they are saved")
    parser.add_argument("--cache_dir", default="cache/fashion_mnist", help="students: the bench's teacher cache")
    parser.add_argument("--model", nargs="+", default=[], help="measure: GenDD folders (the first: noise study)")
    parser.add_argument("--num_images", type=int, default=2000)
    parser.add_argument("--noise_images", type=int, default=1000)
    parser.add_argument("--noise_seeds", type=int, nargs="+", default=[0, 1, 2, 3])
    parser.add_argument("--output", default=str(DEFAULT_OUTPUT))
    args = parser.parse_args(argv)
    if args.command == "students":
        return train_students(args.seeds, Path(args.students_dir), Path(args.cache_dir))
    if not args.model:
        parser.error("measure needs --model with one or more GenDD folders")
    return measure(args.model, args.num_images, args.noise_images, args.noise_seeds, Path(args.output))


if __name__ == "__main__":
    main()
