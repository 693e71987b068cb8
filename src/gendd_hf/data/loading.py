"""One entry point for image datasets in any of the layouts `datasets` reads, with columns named `image`/`label`."""

from collections.abc import Sequence
from pathlib import Path

from datasets import (
    Dataset,
    DatasetDict,
    Image,
    IterableDataset,
    IterableDatasetDict,
    Value,
    load_dataset,
    load_from_disk,
)
from datasets.distributed import split_dataset_by_node

from .fashion_mnist import FASHION_MNIST_FILES, load_fashion_mnist


# Tried in order when image_column / label_column is not given ("fine_label": CIFAR-100's 100 classes). "txt" is
# not a label candidate: in webdatasets such as CC3M it holds a caption; pass label_column="txt" when it holds a
# class id.
IMAGE_COLUMN_CANDIDATES = ("image", "img", "jpg", "jpeg", "png", "webp")
LABEL_COLUMN_CANDIDATES = ("label", "labels", "cls", "class", "target", "fine_label")
# Files that `Dataset.save_to_disk` / `DatasetDict.save_to_disk` write at the top of their folder.
_SAVED_DATASET_MARKERS = ("state.json", "dataset_dict.json")
_FILE_BUILDERS = {".parquet": "parquet", ".tar": "webdataset"}

AnyDataset = Dataset | IterableDataset


def _load_saved(path: Path, split: str | None, streaming: bool) -> AnyDataset:
    dataset = load_from_disk(str(path))
    if isinstance(dataset, DatasetDict):
        dataset = _pick_split(dataset, split, str(path))
    return dataset.to_iterable_dataset() if streaming else dataset


def _is_fashion_mnist_folder(path: Path) -> bool:
    return all((path / name).is_file() for files in FASHION_MNIST_FILES.values() for name in files)


def _load_fashion_mnist_folder(path: Path, split: str | None, streaming: bool) -> AnyDataset:
    dataset = _pick_split(load_fashion_mnist(source="local", data_dir=path), split, str(path))
    return dataset.to_iterable_dataset() if streaming else dataset


def _pick_split(splits: DatasetDict | IterableDatasetDict, split: str | None, name: str) -> AnyDataset:
    if split is None and len(splits) == 1:
        return next(iter(splits.values()))
    if split not in splits:
        raise ValueError(f"{name} has splits {list(splits)}; pass split= one of them (got {split!r}).")
    return splits[split]


def _find_column(
    column_names: Sequence[str], requested: str | None, candidates: Sequence[str], role: str
) -> str | None:
    if requested is not None:
        if requested not in column_names:
            raise ValueError(f"{role}_column {requested!r} is not a column; available columns: {list(column_names)}.")
        return requested
    return next((name for name in candidates if name in column_names), None)


def normalize_image_columns(
    dataset: AnyDataset, image_column: str | None = None, label_column: str | None = None
) -> AnyDataset:
    """Keep only the image and label columns, renamed `image` and `label`, with an `Image` feature.

    Args:
        dataset (`Dataset` or `IterableDataset`): the loaded data.
        image_column (`str`, *optional*): the image column; found among `IMAGE_COLUMN_CANDIDATES` when not given.
        label_column (`str`, *optional*): the label column; found among `LABEL_COLUMN_CANDIDATES` when not
            given, and left out when none exists (unlabeled data). String labels ("3") are cast to int64.
    """
    column_names = dataset.column_names
    if column_names is None:  # a streamed dataset without declared features: read its first example
        column_names = list(next(iter(dataset)).keys())
    image = _find_column(column_names, image_column, IMAGE_COLUMN_CANDIDATES, "image")
    if image is None:
        raise ValueError(
            f"No image column found among {list(IMAGE_COLUMN_CANDIDATES)}; available columns: {list(column_names)}. "
            "Pass image_column=..."
        )
    label = _find_column(column_names, label_column, LABEL_COLUMN_CANDIDATES, "label")
    renames = {image: "image", **({label: "label"} if label is not None else {})}
    dataset = dataset.select_columns(list(renames)).rename_columns(
        {old: new for old, new in renames.items() if old != new}
    )
    features = dataset.features
    if features is not None and not isinstance(features["image"], Image):
        dataset = dataset.cast_column("image", Image())
    if features is not None and label is not None and features["label"] == Value("string"):
        dataset = dataset.cast_column("label", Value("int64"))
    return dataset


def load_image_dataset(
    name_or_path: str | Path | Sequence[str | Path],
    split: str | None = None,
    streaming: bool = False,
    image_column: str | None = None,
    label_column: str | None = None,
    **load_kwargs,
) -> AnyDataset:
    """Load an image classification dataset from the Hub or from local files.

    Accepted sources:
    - a Hub dataset id (`"imagenet-1k"`, `"zalando-datasets/fashion_mnist"`), read with `load_dataset`;
    - a local folder: an imagefolder (one sub-folder per class), parquet files, or webdataset `.tar` shards
      (`jpg` + `cls` members), recognised by `load_dataset` from the file extensions;
    - a folder written by `save_to_disk`;
    - a folder of Fashion-MNIST's four IDX files (`train` and `test` splits), such as
      `/usr/share/datasets/fashion-mnist` from Debian's `dataset-fashion-mnist` (read by `load_fashion_mnist`);
    - parquet or `.tar` file path(s).

    Args:
        name_or_path (`str`, `Path` or a list of them): the dataset id, folder or files.
        split (`str`, *optional*): the split to return; may be left out when the source has one split.
        streaming (`bool`, *optional*, defaults to `False`): return an `IterableDataset` read lazily.
        image_column / label_column (`str`, *optional*): source column names when auto-detection is not enough.
        load_kwargs: passed to `load_dataset` (e.g. `cache_dir`, `revision`, `data_files`).

    Returns:
        `Dataset` or `IterableDataset` with columns `image` and, when the source has labels, `label`.
    """
    is_file_list = isinstance(name_or_path, (list, tuple))
    paths = [Path(p) for p in name_or_path] if is_file_list else [Path(name_or_path)]
    if not is_file_list and any((paths[0] / marker).is_file() for marker in _SAVED_DATASET_MARKERS):
        dataset = _load_saved(paths[0], split, streaming)
    elif not is_file_list and _is_fashion_mnist_folder(paths[0]):
        dataset = _load_fashion_mnist_folder(paths[0], split, streaming)
    else:
        if is_file_list or paths[0].is_file():
            builders = {_FILE_BUILDERS.get(path.suffix) if path.is_file() else None for path in paths}
            if len(builders) != 1 or None in builders:
                raise ValueError(
                    f"Files {[str(p) for p in paths]} must all exist and end in one of {list(_FILE_BUILDERS)}; "
                    "for image files pass their folder instead."
                )
            args = (builders.pop(),)
            load_kwargs = {"data_files": [str(p) for p in paths], **load_kwargs}
        else:
            args = (str(name_or_path),)
        dataset = load_dataset(*args, split=split, streaming=streaming, **load_kwargs)
        if isinstance(dataset, (DatasetDict, IterableDatasetDict)):
            dataset = _pick_split(dataset, split, str(name_or_path))
    return normalize_image_columns(dataset, image_column=image_column, label_column=label_column)


def load_split(
    name: str,
    split: str,
    config: str | None = None,
    streaming: bool = False,
    image_column: str | None = None,
    label_column: str | None = None,
    max_samples: int | None = None,
) -> AnyDataset:
    """One split of `load_image_dataset(name)` (Hub configuration `config`), its first `max_samples` rows if given."""
    dataset = load_image_dataset(
        name,
        split=split,
        streaming=streaming,
        image_column=image_column,
        label_column=label_column,
        **({"name": config} if config else {}),
    )
    if max_samples is not None:
        dataset = dataset.take(max_samples) if streaming else dataset.select(range(min(max_samples, len(dataset))))
    return dataset


def load_eval_dataset(dataset: str, split: str = "test", num_eval: int | None = None, require_labels: bool = True):
    """`"fashion_mnist"` (through `load_fashion_mnist`) or anything `load_image_dataset` reads; the first
    `num_eval` rows, with columns `image` and (unless `require_labels=False`) `label`."""
    rows = load_fashion_mnist()[split] if dataset == "fashion_mnist" else load_image_dataset(dataset, split=split)
    if require_labels and "label" not in rows.column_names:
        raise ValueError(f"Dataset {dataset!r} has no label column ({rows.column_names}); top-1 needs labels.")
    return rows if num_eval is None else rows.select(range(min(num_eval, len(rows))))


def shard_for_process(dataset: AnyDataset, rank: int, world_size: int) -> AnyDataset:
    """The part of `dataset` that process `rank` of `world_size` reads; the parts are disjoint and cover it.

    Streams use `datasets.distributed.split_dataset_by_node` (whole shards per rank when the shard count
    divides evenly, else every `world_size`-th example); map-style datasets get a contiguous block.
    """
    if not 0 <= rank < world_size:
        raise ValueError(f"rank must be in [0, world_size={world_size}), got {rank}.")
    if isinstance(dataset, IterableDataset):
        return split_dataset_by_node(dataset, rank=rank, world_size=world_size)
    return dataset.shard(num_shards=world_size, index=rank, contiguous=True)


__all__ = [
    "load_eval_dataset",
    "load_split",
    "IMAGE_COLUMN_CANDIDATES",
    "LABEL_COLUMN_CANDIDATES",
    "load_image_dataset",
    "normalize_image_columns",
    "shard_for_process",
]
