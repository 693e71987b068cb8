"""Data for GenDD: Fashion-MNIST and unlabeled digits offline, any image dataset layout, long-tailed subsets,
transforms, and the collator that turns rows into `pixel_values` / `labels` batches."""

from .arrays import dataset_from_arrays
from .digits import load_digits_unlabeled
from .fashion_mnist import FASHION_MNIST_LABEL_NAMES, default_cache_dir, load_fashion_mnist, read_idx
from .loading import load_eval_dataset, load_image_dataset, load_split, normalize_image_columns, shard_for_process
from .long_tail import long_tailed_class_counts, make_long_tailed
from .transforms import ConvertImageMode, EvenBatchMixup, ImageCollator, build_transforms, mixup_fn, with_pixel_values


__all__ = [
    "FASHION_MNIST_LABEL_NAMES",
    "ConvertImageMode",
    "EvenBatchMixup",
    "ImageCollator",
    "build_transforms",
    "dataset_from_arrays",
    "default_cache_dir",
    "load_digits_unlabeled",
    "load_fashion_mnist",
    "load_eval_dataset",
    "load_image_dataset",
    "load_split",
    "long_tailed_class_counts",
    "make_long_tailed",
    "mixup_fn",
    "normalize_image_columns",
    "read_idx",
    "shard_for_process",
    "with_pixel_values",
]
