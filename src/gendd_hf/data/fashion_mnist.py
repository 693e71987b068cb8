"""Fashion-MNIST as a `datasets.DatasetDict`, read offline from Debian's IDX files or from the Hub."""

import gzip
import hashlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Literal

import numpy as np
from datasets import DatasetDict, load_dataset, load_from_disk

from .arrays import dataset_from_arrays


FASHION_MNIST_HUB_ID = "zalando-datasets/fashion_mnist"
# Installed by `apt-get install dataset-fashion-mnist` (Debian/Ubuntu).
FASHION_MNIST_DEBIAN_DIR = "/usr/share/datasets/fashion-mnist"
FASHION_MNIST_LABEL_NAMES = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]
FASHION_MNIST_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
_ALL_FILES = tuple(name for pair in FASHION_MNIST_FILES.values() for name in pair)
# Bump when the layout of the cached DatasetDict changes, so that old caches are not read back.
_CACHE_FORMAT = "v1"
_INSTALL_HINT = "install it with `apt-get install dataset-fashion-mnist` or use source='hub' when online"

# IDX type codes (third byte of the magic number) -> big-endian numpy dtypes.
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def default_cache_dir() -> Path:
    """Cache root of gendd_hf: `$GENDD_HF_CACHE`, else `~/.cache/gendd_hf`."""
    return Path(os.environ.get("GENDD_HF_CACHE", Path.home() / ".cache" / "gendd_hf"))


def read_idx(path: str | Path, ndim: int) -> np.ndarray:
    """Read an IDX file (the MNIST format, optionally gzip'd) into a numpy array.

    The header is two zero bytes, a type code, the number of dimensions, then each dimension as a
    big-endian int32; the data follow in C order.

    Args:
        path (`str` or `Path`): the file; names ending in `.gz` are decompressed.
        ndim (`int`): expected number of dimensions (3 for images, 1 for labels).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"IDX file {path} is missing; {_INSTALL_HINT}.")
    try:
        with gzip.open(path) if path.suffix == ".gz" else open(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as err:
        raise ValueError(
            f"IDX file {path} cannot be read ({err}); it is corrupt, reinstall it: {_INSTALL_HINT}."
        ) from err
    if len(raw) < 4 or raw[:2] != b"\x00\x00" or raw[2] not in _IDX_DTYPES or raw[3] != ndim:
        raise ValueError(
            f"IDX file {path} has magic number {raw[:4].hex()}, expected 0000xx{ndim:02x} "
            f"(an IDX file with {ndim} dimension(s)); it is corrupt or not an IDX file: {_INSTALL_HINT}."
        )
    offset = 4 + 4 * ndim
    if len(raw) < offset:
        raise ValueError(f"IDX file {path} ends inside its header; it is truncated: {_INSTALL_HINT}.")
    shape = tuple(int(d) for d in np.frombuffer(raw, dtype=">i4", count=ndim, offset=4))
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(raw) - offset != expected:
        raise ValueError(
            f"IDX file {path} holds {len(raw) - offset} data bytes but its header {shape} needs {expected}; "
            f"it is truncated or corrupt: {_INSTALL_HINT}."
        )
    return np.frombuffer(raw, dtype=dtype, offset=offset).reshape(shape).astype(dtype.newbyteorder("="))


def _build_from_idx(data_dir: Path) -> DatasetDict:
    splits = {}
    for split, (images_file, labels_file) in FASHION_MNIST_FILES.items():
        images = read_idx(data_dir / images_file, ndim=3)
        labels = read_idx(data_dir / labels_file, ndim=1)
        if len(images) != len(labels):
            raise ValueError(
                f"{data_dir / images_file} has {len(images)} images but {data_dir / labels_file} has "
                f"{len(labels)} labels; the files are inconsistent: {_INSTALL_HINT}."
            )
        splits[split] = dataset_from_arrays(images, labels, label_names=FASHION_MNIST_LABEL_NAMES)
    return DatasetDict(splits)


def _cache_key(data_dir: Path) -> str:
    # The key follows the source files, so a changed or moved installation never reads a stale cache.
    stamp = [str(data_dir.resolve())]
    for name in _ALL_FILES:
        stat = (data_dir / name).stat()
        stamp.append(f"{name}:{stat.st_size}:{stat.st_mtime_ns}")
    return hashlib.sha1("|".join(stamp).encode()).hexdigest()[:16]


def _load_local(data_dir: Path, cache_dir: Path) -> DatasetDict:
    target = cache_dir / "fashion_mnist" / f"{_CACHE_FORMAT}-{_cache_key(data_dir)}"
    if target.exists():
        return load_from_disk(str(target))
    dataset = _build_from_idx(data_dir)
    target.parent.mkdir(parents=True, exist_ok=True)
    # Save beside the target and rename, so that concurrent processes (DDP ranks) never read a half-written cache.
    staging = tempfile.mkdtemp(dir=target.parent, prefix=".staging-")
    dataset.save_to_disk(staging)
    try:
        os.replace(staging, target)
    except OSError:  # another process renamed its copy first
        shutil.rmtree(staging, ignore_errors=True)
    return load_from_disk(str(target))


def load_fashion_mnist(
    source: Literal["auto", "local", "hub"] = "auto",
    data_dir: str | Path = FASHION_MNIST_DEBIAN_DIR,
    cache_dir: str | Path | None = None,
) -> DatasetDict:
    """Load Fashion-MNIST (60,000 train and 10,000 test 28x28 grayscale images, 10 classes).

    Args:
        source (`str`, *optional*, defaults to `"auto"`):
            `"local"` parses the IDX files in `data_dir` (offline), `"hub"` calls
            `load_dataset("zalando-datasets/fashion_mnist")`, `"auto"` uses the local files when they exist.
        data_dir (`str` or `Path`, *optional*, defaults to `/usr/share/datasets/fashion-mnist`):
            Folder with the four gzip'd IDX files installed by Debian's `dataset-fashion-mnist` package.
        cache_dir (`str` or `Path`, *optional*):
            Where the DatasetDict built from local files is saved and memory-mapped on later calls;
            defaults to `$GENDD_HF_CACHE` or `~/.cache/gendd_hf`.

    Returns:
        `datasets.DatasetDict` with splits `train` and `test` and columns `image` (PIL, mode "L") and
        `label` (`ClassLabel` with the 10 Fashion-MNIST class names).
    """
    if source not in ("auto", "local", "hub"):
        raise ValueError(f"source must be one of 'auto', 'local', 'hub', got {source!r}.")
    data_dir = Path(data_dir)
    missing = [name for name in _ALL_FILES if not (data_dir / name).is_file()]
    if source == "hub" or (source == "auto" and missing):
        return load_dataset(FASHION_MNIST_HUB_ID)
    if missing:
        raise FileNotFoundError(f"Fashion-MNIST files {missing} are missing from {data_dir}; {_INSTALL_HINT}.")
    return _load_local(data_dir, Path(cache_dir) if cache_dir is not None else default_cache_dir())


__all__ = ["FASHION_MNIST_LABEL_NAMES", "default_cache_dir", "load_fashion_mnist", "read_idx"]
