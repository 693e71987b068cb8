import numpy as np
import pytest
from sklearn.datasets import load_digits

from gendd_hf.data import load_digits_unlabeled


def test_load_digits_unlabeled():
    digits = load_digits().images
    ds = load_digits_unlabeled()
    assert ds.column_names == ["image"] and len(ds) == 1797
    images = np.stack([np.asarray(row["image"]) for row in ds])
    assert ds[0]["image"].mode == "L" and images.shape == (1797, 28, 28)
    # Bilinear upscaling keeps each image's mean brightness of the 0..255-scaled source.
    source_means = (digits * 255 / 16).mean(axis=(1, 2))
    np.testing.assert_allclose(images.mean(axis=(1, 2)), source_means, atol=0.5)
    # At size 8 no resampling happens: pixels are the 0..16 intensities scaled to 0..255.
    np.testing.assert_array_equal(
        np.asarray(load_digits_unlabeled(size=8)[5]["image"]), np.rint(digits[5] * 255 / 16).astype(np.uint8)
    )
    with pytest.raises(ValueError, match="size must be a positive int"):
        load_digits_unlabeled(size=0)
