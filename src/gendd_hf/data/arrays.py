"""Build an image `datasets.Dataset` straight from a uint8 numpy array, without a per-image Python loop."""

from collections.abc import Sequence

import numpy as np
import pyarrow as pa
from datasets import ClassLabel, Dataset, DatasetInfo, Features, Image, Value


# Arrow `binary` arrays use int32 offsets, so each chunk of encoded images must stay under 2 GiB.
_MAX_CHUNK_BYTES = 2**30


def _netpbm_column(images: np.ndarray) -> pa.ChunkedArray:
    """Encode (N, H, W) or (N, H, W, 3) uint8 images as binary netpbm files in one Arrow column.

    Netpbm (PGM "P5" for grayscale, PPM "P6" for RGB) is a fixed header followed by the raw pixels, so all
    images are encoded with one numpy concatenation instead of one PNG compression each (about 0.2 s instead
    of 6 s for Fashion-MNIST), it is lossless, and PIL decodes it faster than PNG when training reads it.
    """
    num_images, height, width = images.shape[:3]
    magic = b"P5" if images.ndim == 3 else b"P6"
    header = np.frombuffer(magic + f"\n{width} {height}\n255\n".encode(), dtype=np.uint8)
    rows = np.concatenate([np.broadcast_to(header, (num_images, header.size)), images.reshape(num_images, -1)], axis=1)
    rows_per_chunk = max(1, _MAX_CHUNK_BYTES // rows.shape[1])
    chunks = []
    for start in range(0, num_images, rows_per_chunk):
        chunk = np.ascontiguousarray(rows[start : start + rows_per_chunk])
        offsets = np.arange(len(chunk) + 1, dtype=np.int32) * chunk.shape[1]
        image_bytes = pa.BinaryArray.from_buffers(
            pa.binary(), len(chunk), [None, pa.py_buffer(offsets), pa.py_buffer(chunk)]
        )
        chunks.append(
            pa.StructArray.from_arrays([image_bytes, pa.nulls(len(chunk), pa.string())], names=["bytes", "path"])
        )
    return pa.chunked_array(chunks, type=Image().pa_type)


def dataset_from_arrays(
    images: np.ndarray,
    labels: np.ndarray | None = None,
    label_names: Sequence[str] | None = None,
) -> Dataset:
    """Wrap uint8 image arrays (and optional integer labels) as a `Dataset` with an `image` column.

    Args:
        images (`np.ndarray` of shape `(N, H, W)` or `(N, H, W, 3)`, dtype `uint8`):
            Grayscale or RGB pixels; they decode to PIL images of mode "L" or "RGB".
        labels (`np.ndarray` of shape `(N,)`, *optional*):
            Integer class ids stored in a `label` column; left out for unlabeled data.
        label_names (`Sequence[str]`, *optional*):
            Class names; the `label` column becomes a `ClassLabel` with these names.

    Returns:
        `datasets.Dataset` with columns `image` (and `label`).
    """
    images = np.asarray(images)
    if images.dtype != np.uint8 or not (images.ndim == 3 or (images.ndim == 4 and images.shape[-1] == 3)):
        raise ValueError(
            f"images must be a uint8 array of shape (N, H, W) or (N, H, W, 3), got {images.dtype} {images.shape}; "
            "scale to 0..255 and cast with .astype(np.uint8) first."
        )
    columns = {"image": _netpbm_column(images)}
    features = {"image": Image()}
    if labels is not None:
        labels = np.asarray(labels, dtype=np.int64)
        if labels.shape != (len(images),):
            raise ValueError(f"labels must have shape ({len(images)},) to match images, got {labels.shape}.")
        columns["label"] = pa.array(labels)
        features["label"] = ClassLabel(names=list(label_names)) if label_names is not None else Value("int64")
    elif label_names is not None:
        raise ValueError("label_names was given without labels; pass labels=... or drop label_names.")
    features = Features(features)
    table = pa.table(columns).cast(features.arrow_schema)
    return Dataset(table, info=DatasetInfo(features=features))


__all__ = ["dataset_from_arrays"]
