"""ImageNet-LT (Liu et al., "Large-Scale Long-Tailed Recognition in an Open World", CVPR 2019) for the recipes: its
split files as a `datasets.Dataset` (its many / medium / few-shot accuracy is `gendd_hf.metrics.long_tail`'s).

ImageNet-LT is a long-tailed subset of ImageNet-1k (1000 classes, 1280 down to 5 training images per class) given by
three text files, `ImageNet_LT_train.txt`, `ImageNet_LT_val.txt` and `ImageNet_LT_test.txt`, whose lines read
`train/n01440764/n01440764_190.JPEG 0`: an image path relative to the ImageNet folder, and its class id. Turn them
into a dataset folder once, which the recipes then read by its path (`--dataset_name data/imagenet_lt`)::

    python -m gendd_hf.data.imagenet_lt /data/imagenet data/imagenet_lt

The folder holds the absolute image paths (as strings, which `load_image_dataset` decodes as images) and the labels:
no copy of the images.
"""

import argparse
import os
from collections.abc import Sequence
from pathlib import Path

from datasets import ClassLabel, Dataset, DatasetDict, Features, Image, Value

from .loading import AnyDataset, load_image_dataset


IMAGENET_LT_SPLITS = ("train", "val", "test")
IMAGENET_LT_NUM_CLASSES = 1000


def split_file_name(split: str) -> str:
    """`ImageNet_LT_{split}.txt`, the name of a split file in the ImageNet-LT release."""
    return f"ImageNet_LT_{split}.txt"


def read_split_file(path: str | os.PathLike) -> tuple[list[str], list[int]]:
    """The relative image paths and class ids of an ImageNet-LT split file (`relative/path.JPEG label` per line)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"ImageNet-LT split file {path} does not exist; pass the folder holding ImageNet_LT_train.txt, "
            "ImageNet_LT_val.txt and ImageNet_LT_test.txt (split_dir=...), or the file itself (split_file=...)."
        )
    files, labels = [], []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.rsplit(maxsplit=1)
        if len(parts) != 2 or not parts[1].isdigit():
            raise ValueError(f"{path}, line {number}: expected 'relative/path.JPEG class_id', got {line!r}.")
        files.append(parts[0])
        labels.append(int(parts[1]))
    if not files:
        raise ValueError(f"ImageNet-LT split file {path} lists no image.")
    return files, labels


def _split_dataset(root: Path, split_file: Path, num_classes: int | None) -> Dataset:
    files, labels = read_split_file(split_file)
    paths = [str((root / file).resolve()) for file in files]
    missing = [path for path in paths if not os.path.isfile(path)]
    if missing:
        raise FileNotFoundError(
            f"{len(missing)} of the {len(paths)} images listed in {split_file} are not under {root} (first: "
            f"{missing[0]}); pass the ImageNet folder that the split file's paths are relative to."
        )
    num_classes = max(labels) + 1 if num_classes is None else num_classes
    if max(labels) >= num_classes:
        raise ValueError(f"{split_file} has class id {max(labels)} but num_classes={num_classes}.")
    # Paths as strings: `save_to_disk` would embed the bytes of an `Image` column.
    features = Features({"image": Value("string"), "label": ClassLabel(num_classes=num_classes)})
    return Dataset.from_dict({"image": paths, "label": labels}, features=features)


def load_imagenet_lt(
    name_or_path: str | os.PathLike,
    split: str = "train",
    split_dir: str | os.PathLike | None = None,
    split_file: str | os.PathLike | None = None,
    num_classes: int | None = None,
    **load_kwargs,
) -> AnyDataset:
    """One split of ImageNet-LT as a dataset with an `image` and a `label` (`ClassLabel`) column.

    Args:
        name_or_path (`str` or `os.PathLike`):
            The ImageNet folder that the split files' paths are relative to (holding `train/` and `val/`), or the
            id of a Hub dataset of ImageNet-LT with image and label columns, read by [`load_image_dataset`].
        split (`str`, *optional*, defaults to `"train"`): `"train"`, `"val"` or `"test"`.
        split_dir (`str` or `os.PathLike`, *optional*): Folder of the split files (default: `name_or_path`).
        split_file (`str` or `os.PathLike`, *optional*): The split file itself, overriding `split_dir`.
        num_classes (`int`, *optional*): Classes of the `ClassLabel` (default: the largest class id + 1; 1000 for
            the release).
        load_kwargs: Passed to `load_image_dataset` for a Hub dataset (`image_column`, `label_column`, `revision`...).
    """
    root = Path(name_or_path)
    if not root.is_dir():
        return load_image_dataset(str(name_or_path), split=split, **load_kwargs)
    if split_file is None:
        if split not in IMAGENET_LT_SPLITS:
            raise ValueError(f"split={split!r} is not an ImageNet-LT split: use one of {list(IMAGENET_LT_SPLITS)}.")
        split_file = Path(split_dir or root) / split_file_name(split)
    return _split_dataset(root, Path(split_file), num_classes).cast_column("image", Image())


def save_imagenet_lt(
    root: str | os.PathLike,
    output_dir: str | os.PathLike,
    split_dir: str | os.PathLike | None = None,
    splits: Sequence[str] = IMAGENET_LT_SPLITS,
    num_classes: int = IMAGENET_LT_NUM_CLASSES,
) -> DatasetDict:
    """Write the ImageNet-LT `splits` under `root` as one `save_to_disk` folder (absolute image paths and labels,
    not the images), which `load_image_dataset(output_dir, split=...)` and the recipes' `--dataset_name output_dir`
    read."""
    split_dir = Path(split_dir or root)
    dataset = DatasetDict(
        {split: _split_dataset(Path(root), split_dir / split_file_name(split), num_classes) for split in splits}
    )
    dataset.save_to_disk(str(output_dir))
    return dataset


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Turn the ImageNet-LT split files into a dataset folder.")
    parser.add_argument("root", help="The ImageNet folder the split files' paths are relative to.")
    parser.add_argument("output_dir", help="Where to write the dataset folder (train, val and test splits).")
    parser.add_argument("--split_dir", help="Folder of ImageNet_LT_{train,val,test}.txt (default: root).")
    args = parser.parse_args(argv)
    dataset = save_imagenet_lt(args.root, args.output_dir, split_dir=args.split_dir)
    print(f"Wrote {args.output_dir}: " + ", ".join(f"{split} {len(data)} images" for split, data in dataset.items()))


__all__ = [
    "IMAGENET_LT_NUM_CLASSES",
    "IMAGENET_LT_SPLITS",
    "load_imagenet_lt",
    "read_split_file",
    "save_imagenet_lt",
    "split_file_name",
]


if __name__ == "__main__":
    main()
