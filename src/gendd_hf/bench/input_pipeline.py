"""The recipes' training input pipeline against timm's own loader on the same JPEG files, in one run.

`recipe`: what `train_imagenet.py` runs (`--recipe a2` by default: RandAugment, mixup 0.1, cutmix 1.0): `load_split`
(`datasets`; a streamed set shuffled in a 10,000-row buffer, as `load_recipe_datasets` does), `with_pixel_values`
with `build_transforms`, the Trainer's own training DataLoader (`Trainer.get_train_dataloader` with
`GenDDTrainingArguments`, `default_data_collator`) and the recipe's `mixup_fn` on each batch, where
`GenDDTrainer.compute_loss` applies it. `timm`: `timm.data.create_dataset` + `create_loader` with the same transform
settings (`use_prefetcher=False`, the CPU form) and `timm.data.Mixup` on each batch, as timm's `train.py` applies it
without the prefetcher.

Layouts, generated once from the same random JPEGs (256-400 px a side): `imagefolder` (timm: its folder reader),
`parquet` (the JPEG bytes in parquet shards; timm: its `hfds/` reader) and `webdataset` (`.tar` shards of `jpg` +
`cls` members, streamed; timm: its `hfids/` reader, since its `wds/` reader needs the `webdataset` package, which
gendd_hf does not depend on). Images per second are counted from the first batch to the end of one epoch; the
seconds to the first batch (loading the dataset, building the loader, starting its workers: paid once per epoch, not
per image) are reported apart. For each layout and worker count both loaders run back to back,
the order flipping with each repetition.

Usage:
    python -m gendd_hf.bench.input_pipeline                              # 512 images, 1 and 2 workers (minutes)
    python -m gendd_hf.bench.input_pipeline --num_images 2048 --workers 8,16 --output results/input_pipeline
"""

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from .step_speed import write_results


LAYOUTS = ("imagefolder", "parquet", "webdataset")
LOADERS = ("recipe", "timm")
TARGET = 0.95  # smallest recipe / timm images per second (issue 25)
TEACHER = "resnet34.tv_in1k"  # train_imagenet.py's teacher: its data config sets the transforms


def write_layouts(root: Path, num_images: int, num_classes: int = 8, num_shards: int = 4, seed: int = 0) -> dict:
    """Random JPEGs (256-400 px a side, quality 90) as an imagefolder, parquet shards and webdataset shards under
    `root`; returns the path of each layout."""
    import io
    import tarfile

    import numpy as np
    from datasets import ClassLabel, Dataset, Features, Image
    from PIL import Image as PILImage

    rng = np.random.default_rng(seed)
    paths = {layout: root / layout for layout in LAYOUTS}
    rows = []
    for index in range(num_images):
        height, width = rng.integers(256, 401, size=2)
        # smooth colour gradients with noise: compresses like a photograph, not like white noise
        ramp = np.linspace(0, 1, width)[None, :, None] * rng.uniform(0, 255, 3)
        noise = rng.normal(0, 20, (height, width, 3))
        pixels = np.clip(ramp + np.linspace(0, 80, height)[:, None, None] + noise, 0, 255).astype(np.uint8)
        buffer = io.BytesIO()
        PILImage.fromarray(pixels).save(buffer, format="JPEG", quality=90)
        label = index % num_classes
        folder = paths["imagefolder"] / "train" / f"class_{label}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{index:06d}.jpg").write_bytes(buffer.getvalue())
        rows.append((f"{index:06d}", buffer.getvalue(), label))
    features = Features({"image": Image(), "label": ClassLabel(num_classes=num_classes)})
    paths["parquet"].mkdir(parents=True, exist_ok=True)
    paths["webdataset"].mkdir(parents=True, exist_ok=True)
    for shard in range(num_shards):
        part = rows[shard::num_shards]
        images = [{"bytes": data, "path": f"{key}.jpg"} for key, data, _ in part]
        dataset = Dataset.from_dict({"image": images, "label": [label for *_, label in part]}, features=features)
        dataset.to_parquet(str(paths["parquet"] / f"train-{shard:05d}-of-{num_shards:05d}.parquet"))
        with tarfile.open(paths["webdataset"] / f"train-{shard:05d}.tar", "w") as tar:
            for key, data, label in part:
                for suffix, payload in (("jpg", data), ("cls", str(label).encode())):
                    member = tarfile.TarInfo(f"{key}.{suffix}")
                    member.size = len(payload)
                    tar.addfile(member, io.BytesIO(payload))
    return paths


def recipe_settings(recipe: str) -> dict:
    """The recipe's augmentation and mixup settings, and the teacher's data config at 224 px."""
    import timm

    from ..cli.presets import IMAGENET_RECIPES

    settings = IMAGENET_RECIPES[recipe]
    data_config = timm.data.resolve_data_config(pretrained_cfg=timm.models.get_pretrained_cfg(TEACHER).to_dict())
    return {
        "augmentation": settings["augmentation"],
        "mixup_alpha": settings.get("mixup_alpha", 0.0),
        "cutmix_alpha": settings.get("cutmix_alpha", 0.0),
        "label_smoothing": settings.get("label_smoothing", 0.0),
        "data_config": data_config,
    }


def recipe_loader(path: Path, layout: str, settings: dict, batch_size: int, workers: int, num_images: int):
    """The recipe's batches: the Trainer's DataLoader over `with_pixel_values(load_split(...))`, then `mixup_fn`."""
    import torch
    from transformers import Trainer, default_data_collator

    from ..data import build_transforms, load_split, mixup_fn, with_pixel_values
    from ..training_args import GenDDTrainingArguments

    streaming = layout == "webdataset"
    train = load_split(str(path), "train", streaming=streaming)
    if streaming:  # load_recipe_datasets' shuffle of a streamed training set (--shuffle_buffer_size default)
        train = train.shuffle(seed=0, buffer_size=10_000)
    transform = build_transforms(settings["data_config"], is_training=True, augmentation=settings["augmentation"])
    args = GenDDTrainingArguments(
        output_dir=str(path.parent / "trainer"),
        per_device_train_batch_size=batch_size,
        dataloader_num_workers=workers,
        report_to="none",
        max_steps=1,
    )
    trainer = Trainer(
        model=torch.nn.Linear(1, 1),
        args=args,
        train_dataset=with_pixel_values(train, transform),
        data_collator=default_data_collator,
    )
    mix = mixup_fn(8, settings["mixup_alpha"], settings["cutmix_alpha"], settings["label_smoothing"])
    for batch in trainer.get_train_dataloader():
        pixel_values, labels = batch["pixel_values"], batch["labels"]
        yield mix(pixel_values, labels) if mix is not None else (pixel_values, labels)


def timm_loader(path: Path, layout: str, settings: dict, batch_size: int, workers: int, num_images: int):
    """timm's batches: `create_dataset` + `create_loader` with the same transform settings, then `Mixup`."""
    import torch
    from timm.data import Mixup, create_dataset, create_loader

    from ..data.transforms import IMAGENET_AUGMENTATIONS

    if layout == "imagefolder":
        dataset = create_dataset("", root=str(path / "train"), split="train", is_training=True)
    elif layout == "parquet":
        dataset = create_dataset(f"hfds/{path}", split="train", is_training=True)
    else:
        dataset = create_dataset(
            f"hfids/{path}",
            split="train",
            is_training=True,
            batch_size=batch_size,
            input_key="jpg",
            target_key="cls",
            num_samples=num_images,
        )
    config = settings["data_config"]
    options = IMAGENET_AUGMENTATIONS[settings["augmentation"]]
    loader = create_loader(
        dataset,
        input_size=config["input_size"],
        batch_size=batch_size,
        is_training=True,
        use_prefetcher=False,
        scale=options["scale"],
        hflip=options["hflip"],
        color_jitter=options["color_jitter"],
        auto_augment=options.get("auto_augment"),
        interpolation=config["interpolation"],
        mean=config["mean"],
        std=config["std"],
        crop_pct=config["crop_pct"],
        num_workers=workers,
        device=torch.device("cpu"),
    )
    mix = None
    if settings["mixup_alpha"] > 0 or settings["cutmix_alpha"] > 0:
        mix = Mixup(
            mixup_alpha=settings["mixup_alpha"],
            cutmix_alpha=settings["cutmix_alpha"],
            label_smoothing=settings["label_smoothing"],
            num_classes=8,
        )
    for images, labels in loader:
        yield mix(images, labels) if mix is not None else (images, labels)


def time_epoch(batches) -> dict:
    """Images per second from the first batch to the end of one epoch, and the seconds to the first batch (loading
    the dataset, building the loader, starting its workers: once per run or epoch, not per image)."""
    start = time.perf_counter()
    shape = next(batches)[0].shape[1:]
    first = time.perf_counter()
    images = 0
    for pixel_values, _ in batches:
        if pixel_values.shape[1:] != shape:
            raise RuntimeError(f"batch of shape {tuple(pixel_values.shape)} after {tuple(shape)}")
        images += len(pixel_values)
    return {"startup_s": first - start, "images": images, "images_per_second": images / (time.perf_counter() - first)}


def benchmark(
    root: Path,
    num_images: int = 512,
    batch_size: int = 32,
    workers: tuple[int, ...] = (1, 2),
    layouts: tuple[str, ...] = LAYOUTS,
    repeats: int = 1,
    recipe: str = "a2",
) -> dict:
    """Write the layouts under `root`, then time both loaders on each layout at each worker count (`datasets` caches
    under `root` too)."""
    import datasets

    datasets.config.HF_DATASETS_CACHE = root / "datasets_cache"
    paths = write_layouts(root, num_images)
    settings = recipe_settings(recipe)
    loaders = {"recipe": recipe_loader, "timm": timm_loader}
    rows = []
    for layout in layouts:
        for count in workers:
            runs = {name: [] for name in LOADERS}
            for repetition in range(repeats):
                for name in LOADERS if repetition % 2 == 0 else LOADERS[::-1]:
                    batches = loaders[name](paths[layout], layout, settings, batch_size, count, num_images)
                    runs[name].append(time_epoch(batches))
            speed = {name: statistics.median(run["images_per_second"] for run in runs[name]) for name in LOADERS}
            rows.append(
                {
                    "layout": layout,
                    "workers": count,
                    **{f"{name}_images_per_second": speed[name] for name in LOADERS},
                    **{f"{name}_startup_s": statistics.median(r["startup_s"] for r in runs[name]) for name in LOADERS},
                    "ratio": speed["recipe"] / speed["timm"],
                }
            )
    settings["data_config"] = {
        key: list(v) if isinstance(v, tuple) else v for key, v in settings["data_config"].items()
    }
    return {
        "num_images": num_images,
        "batch_size": batch_size,
        "repeats": repeats,
        "recipe": recipe,
        "settings": settings,
        "rows": rows,
        "target": TARGET,
    }


def format_markdown(result: dict) -> str:
    lines = [
        f"Recipe `{result['recipe']}` pipeline against timm's loader: {result['num_images']} JPEGs, batch "
        f"{result['batch_size']}, median of {result['repeats']} epoch(s) each (target: recipe / timm >= "
        f"{result['target']}).",
        "",
        "| layout | workers | recipe images/s | timm images/s | recipe / timm | start-up s (recipe, timm) |",
        "| --- | ---: | ---: | ---: | ---: | --- |",
    ]
    for row in result["rows"]:
        lines.append(
            f"| {row['layout']} | {row['workers']} | {row['recipe_images_per_second']:.1f} | "
            f"{row['timm_images_per_second']:.1f} | {row['ratio']:.2f} | "
            f"{row['recipe_startup_s']:.1f}, {row['timm_startup_s']:.1f} |"
        )
    return "\n".join(lines) + "\n"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--num_images", type=int, default=512)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--workers", default="1,2", help="comma-separated DataLoader worker counts")
    parser.add_argument("--layouts", default=",".join(LAYOUTS), help=f"comma-separated, from {','.join(LAYOUTS)}")
    parser.add_argument("--repeats", type=int, default=1, help="epochs of each loader per layout and worker count")
    parser.add_argument("--recipe", default="a2", help="the ImageNet recipe whose augmentation and mixup are timed")
    parser.add_argument("--data_dir", type=Path, help="where the JPEGs are written (a temporary folder if unset)")
    parser.add_argument("--output", type=Path, help="folder for input_pipeline.json and input_pipeline.md")
    return parser


def main(argv=None) -> dict:
    args = build_parser().parse_args(argv)
    with tempfile.TemporaryDirectory() as scratch:
        result = benchmark(
            args.data_dir or Path(scratch),
            num_images=args.num_images,
            batch_size=args.batch_size,
            workers=tuple(int(count) for count in args.workers.split(",")),
            layouts=tuple(args.layouts.split(",")),
            repeats=args.repeats,
            recipe=args.recipe,
        )
    print(format_markdown(result))
    if args.output:
        write_results(args.output, "input_pipeline", result, format_markdown(result))
    return result


if __name__ == "__main__":
    main()
