"""How stored teacher outputs find their images again: image ids, undecoded access and content digests.

Images are read undecoded (`datasets.Image(decode=False)`) wherever possible: rows of other shards are skipped without
decoding, and the digest is taken over the encoded bytes, which do not depend on the image decoder's version.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import PIL.Image
from datasets import Image


def undecoded(dataset, image_column: str):
    """`dataset` with its `datasets.Image` column `image_column` left undecoded (`{"bytes", "path"}` rows); datasets
    without declared features (some streams) are returned as they are."""
    feature = (dataset.features or {}).get(image_column)
    if isinstance(feature, Image) and feature.decode:
        return dataset.cast_column(image_column, Image(decode=False))
    return dataset


def decode_image(value: Any) -> PIL.Image.Image:
    """A PIL image from an undecoded `datasets.Image` value (or a PIL image, returned as it is)."""
    if isinstance(value, PIL.Image.Image):
        return value
    return Image().decode_example(value)


def image_digest(value: Any) -> str:
    """A 64-bit hex digest of an image: of its encoded bytes (or file) when undecoded, of mode, size and pixels for a
    PIL image. Stored next to each teacher output, so that a different image under the same id is caught."""
    if isinstance(value, PIL.Image.Image):
        payload = f"{value.mode}{value.size}".encode() + value.tobytes()
    elif isinstance(value, dict) and value.get("bytes") is not None:
        payload = value["bytes"]
    elif isinstance(value, dict) and value.get("path"):
        payload = Path(value["path"]).read_bytes()
    else:
        raise TypeError(
            f"Cannot identify an image given as {type(value).__name__}; use a datasets.Image column (or PIL images)."
        )
    return hashlib.blake2b(payload, digest_size=8).hexdigest()


def as_image_id(value: Any) -> int | str:
    """An image id as a plain `int` or `str` (numpy scalars converted), the form ids are hashed and stored in."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise TypeError(f"Image ids must be integers or strings, got {value!r} ({type(value).__name__}).")
    return value


__all__ = ["as_image_id", "decode_image", "image_digest", "undecoded"]
