"""Unlabeled non-target images for unsupervised GenDD on Fashion-MNIST (the role CC3M plays for ImageNet)."""

import numpy as np
import PIL.Image
from datasets import Dataset

from .arrays import dataset_from_arrays


# scikit-learn's digits are 4-bit intensities (0..16), ink high as in Fashion-MNIST's bright objects.
_DIGITS_MAX_INTENSITY = 16


def load_digits_unlabeled(size: int = 28) -> Dataset:
    """scikit-learn's bundled handwritten digits (1,797 images, 8x8) upscaled to `size` x `size`, without labels.

    The teacher never saw these images, so distilling on them tests GenDD's unsupervised setting
    (contraction lambda = 0): the student learns from the teacher's feature distribution alone. Needs
    scikit-learn (the `bench` extra); nothing is downloaded.

    Args:
        size (`int`, *optional*, defaults to 28): output height and width in pixels (bilinear resize).

    Returns:
        `datasets.Dataset` with one column `image` (PIL, mode "L", values 0..255).
    """
    if not isinstance(size, int) or size < 1:
        raise ValueError(f"size must be a positive int, got {size!r}.")
    try:
        from sklearn.datasets import load_digits
    except ImportError as err:
        raise ImportError("load_digits_unlabeled needs scikit-learn: pip install 'gendd-hf[bench]'.") from err
    digits = np.rint(load_digits().images * (255 / _DIGITS_MAX_INTENSITY)).astype(np.uint8)
    resized = np.stack(
        [np.asarray(PIL.Image.fromarray(image).resize((size, size), PIL.Image.BILINEAR)) for image in digits]
    )
    return dataset_from_arrays(resized)


__all__ = ["load_digits_unlabeled"]
