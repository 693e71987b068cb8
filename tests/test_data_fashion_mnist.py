import gzip

import numpy as np
import pytest
from datasets import ClassLabel, DatasetDict

from gendd_hf.data import (
    FASHION_MNIST_LABEL_NAMES,
    arrays,
    dataset_from_arrays,
    fashion_mnist,
    load_fashion_mnist,
    read_idx,
)


def write_idx(path, array, compress=True):
    array = np.asarray(array, dtype=np.uint8)
    header = bytes([0, 0, 0x08, array.ndim]) + np.asarray(array.shape, dtype=">i4").tobytes()
    opener = gzip.open if compress else open
    with opener(path, "wb") as f:
        f.write(header + array.tobytes())


def write_fashion_mnist(folder, seed=0):
    """Tiny stand-ins for the four Debian files: 6 train and 3 test images."""
    rng = np.random.default_rng(seed)
    data = {}
    sizes = {"train": 6, "test": 3}
    for split, (images_file, labels_file) in fashion_mnist.FASHION_MNIST_FILES.items():
        n = sizes[split]
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, size=n, dtype=np.uint8)
        write_idx(folder / images_file, images)
        write_idx(folder / labels_file, labels)
        data[split] = (images, labels)
    return data


def test_read_idx_round_trip_gzip_and_plain(tmp_path):
    array = np.arange(60, dtype=np.uint8).reshape(5, 4, 3)
    write_idx(tmp_path / "a.gz", array)
    write_idx(tmp_path / "a", array, compress=False)
    np.testing.assert_array_equal(read_idx(tmp_path / "a.gz", ndim=3), array)
    np.testing.assert_array_equal(read_idx(tmp_path / "a", ndim=3), array)


def test_read_idx_errors_name_the_file_and_the_fix(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"missing\.gz.*apt-get install dataset-fashion-mnist"):
        read_idx(tmp_path / "missing.gz", ndim=1)
    write_idx(tmp_path / "labels.gz", np.arange(4))
    with pytest.raises(ValueError, match=r"labels\.gz has magic number 00000801, expected 0000xx03"):
        read_idx(tmp_path / "labels.gz", ndim=3)
    with gzip.open(tmp_path / "short.gz", "wb") as f:
        f.write(bytes([0, 0, 8, 1]) + np.asarray([10], dtype=">i4").tobytes() + b"\x01\x02")
    with pytest.raises(ValueError, match=r"short\.gz holds 2 data bytes .* needs 10; it is truncated"):
        read_idx(tmp_path / "short.gz", ndim=1)
    with gzip.open(tmp_path / "header.gz", "wb") as f:
        f.write(bytes([0, 0, 8, 3, 0, 0]))
    with pytest.raises(ValueError, match=r"header\.gz ends inside its header"):
        read_idx(tmp_path / "header.gz", ndim=3)
    (tmp_path / "broken.gz").write_bytes(b"not gzip at all")
    with pytest.raises(ValueError, match=r"broken\.gz cannot be read.*apt-get install"):
        read_idx(tmp_path / "broken.gz", ndim=1)


def test_dataset_from_arrays_round_trips_gray_and_rgb(monkeypatch):
    rng = np.random.default_rng(0)
    gray = rng.integers(0, 256, size=(5, 7, 6), dtype=np.uint8)
    rgb = rng.integers(0, 256, size=(3, 4, 5, 3), dtype=np.uint8)
    # A tiny chunk limit forces several Arrow chunks, as a >2 GiB array would.
    monkeypatch.setattr(arrays, "_MAX_CHUNK_BYTES", 100)
    ds = dataset_from_arrays(gray, labels=[0, 1, 1, 0, 1], label_names=["a", "b"])
    assert ds.features["label"] == ClassLabel(names=["a", "b"])
    assert [ds[i]["image"].mode for i in range(5)] == ["L"] * 5
    np.testing.assert_array_equal(np.stack([np.asarray(ds[i]["image"]) for i in range(5)]), gray)
    assert ds["label"][:] == [0, 1, 1, 0, 1]
    ds_rgb = dataset_from_arrays(rgb)
    assert ds_rgb.column_names == ["image"]
    assert ds_rgb[2]["image"].mode == "RGB"
    np.testing.assert_array_equal(np.asarray(ds_rgb[2]["image"]), rgb[2])


def test_dataset_from_arrays_rejects_bad_input():
    with pytest.raises(ValueError, match="uint8 array of shape"):
        dataset_from_arrays(np.zeros((2, 4, 4), dtype=np.float32))
    with pytest.raises(ValueError, match=r"labels must have shape \(2,\)"):
        dataset_from_arrays(np.zeros((2, 4, 4), dtype=np.uint8), labels=[0, 1, 2])
    with pytest.raises(ValueError, match="label_names was given without labels"):
        dataset_from_arrays(np.zeros((2, 4, 4), dtype=np.uint8), label_names=["a"])


def test_load_fashion_mnist_local_builds_then_reads_cache(tmp_path, monkeypatch):
    data_dir = tmp_path / "fm"
    data_dir.mkdir()
    expected = write_fashion_mnist(data_dir)
    cache_dir = tmp_path / "cache"
    ds = load_fashion_mnist(source="local", data_dir=data_dir, cache_dir=cache_dir)
    assert isinstance(ds, DatasetDict) and list(ds) == ["train", "test"]
    for split, (images, labels) in expected.items():
        assert ds[split].column_names == ["image", "label"]
        assert ds[split].features["label"].names == FASHION_MNIST_LABEL_NAMES
        assert ds[split]["label"][:] == labels.tolist()
        assert ds[split][0]["image"].mode == "L"
        np.testing.assert_array_equal(np.stack([np.asarray(row["image"]) for row in ds[split]]), images)
    assert len(list((cache_dir / "fashion_mnist").iterdir())) == 1

    def no_rebuild(_):
        raise AssertionError("the cached copy should have been read")

    monkeypatch.setattr(fashion_mnist, "_build_from_idx", no_rebuild)
    cached = load_fashion_mnist(source="auto", data_dir=data_dir, cache_dir=cache_dir)
    assert cached["test"]["label"][:] == expected["test"][1].tolist()
    monkeypatch.undo()
    # New source files give a new cache entry instead of a stale read.
    expected = write_fashion_mnist(data_dir, seed=1)
    rebuilt = load_fashion_mnist(source="local", data_dir=data_dir, cache_dir=cache_dir)
    np.testing.assert_array_equal(np.asarray(rebuilt["test"][0]["image"]), expected["test"][0][0])
    assert len(list((cache_dir / "fashion_mnist").iterdir())) == 2


def test_load_fashion_mnist_cache_dir_from_environment(tmp_path, monkeypatch):
    data_dir = tmp_path / "fm"
    data_dir.mkdir()
    write_fashion_mnist(data_dir)
    monkeypatch.setenv("GENDD_HF_CACHE", str(tmp_path / "env_cache"))
    load_fashion_mnist(source="local", data_dir=data_dir)
    assert (tmp_path / "env_cache" / "fashion_mnist").is_dir()


def test_load_fashion_mnist_local_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"train-images-idx3-ubyte\.gz.*apt-get install dataset-fashion-mnist"):
        load_fashion_mnist(source="local", data_dir=tmp_path, cache_dir=tmp_path / "cache")
    write_fashion_mnist(tmp_path)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.zeros(2))
    with pytest.raises(ValueError, match="has 3 images but .*t10k-labels-idx1-ubyte.gz has 2 labels"):
        load_fashion_mnist(source="local", data_dir=tmp_path, cache_dir=tmp_path / "cache")
    with pytest.raises(ValueError, match="source must be one of"):
        load_fashion_mnist(source="internet")


def test_load_fashion_mnist_hub_and_auto_dispatch(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(fashion_mnist, "load_dataset", lambda name: calls.append(name) or "hub dataset")
    assert load_fashion_mnist(source="auto", data_dir=tmp_path / "absent") == "hub dataset"
    write_fashion_mnist(tmp_path)
    assert load_fashion_mnist(source="hub", data_dir=tmp_path) == "hub dataset"
    assert calls == ["zalando-datasets/fashion_mnist"] * 2
    local = load_fashion_mnist(source="auto", data_dir=tmp_path, cache_dir=tmp_path / "cache")
    assert local.num_rows == {"train": 6, "test": 3} and len(calls) == 2
