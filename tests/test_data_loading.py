import io
import tarfile

import numpy as np
import PIL.Image
import pytest
from datasets import ClassLabel, Dataset, DatasetDict, Features, Image, IterableDataset, Value

from gendd_hf.data import load_image_dataset, loading, shard_for_process


NUM_EXAMPLES = 6


pytestmark = pytest.mark.usefixtures("datasets_cache_in_tmp_path")  # conftest.py


def pixels(i):
    """A distinct 4x4 RGB image per example, so examples can be told apart after loading."""
    return np.full((4, 4, 3), 10 * i, dtype=np.uint8)


def write_webdataset(folder, label_member="cls", num_shards=2):
    """Tar shards of `<key>.png` + `<key>.<label_member>` (the class id as text) + `<key>.json`."""
    folder.mkdir()
    per_shard = NUM_EXAMPLES // num_shards
    for shard in range(num_shards):
        with tarfile.open(folder / f"shard-{shard:05d}.tar", "w") as tar:
            for i in range(shard * per_shard, (shard + 1) * per_shard):
                buffer = io.BytesIO()
                PIL.Image.fromarray(pixels(i)).save(buffer, format="PNG")
                members = {"png": buffer.getvalue(), label_member: str(i).encode(), "json": b'{"a": 1}'}
                for ext, data in members.items():
                    info = tarfile.TarInfo(f"{i:04d}.{ext}")
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
    return folder


def labeled_dataset():
    features = Features({"img": Image(), "labels": Value("int64"), "caption": Value("string")})
    rows = {"img": [pixels(i) for i in range(NUM_EXAMPLES)], "labels": list(range(NUM_EXAMPLES))}
    return Dataset.from_dict({**rows, "caption": ["x"] * NUM_EXAMPLES}, features=features)


def label_of_each(dataset):
    return [example["label"] for example in dataset]


def check_examples(dataset, streaming=False):
    assert isinstance(dataset, IterableDataset if streaming else Dataset)
    assert dataset.column_names == ["image", "label"]
    examples = list(dataset)
    assert sorted(label_of_each(examples)) == list(range(NUM_EXAMPLES))
    for example in examples:
        np.testing.assert_array_equal(np.asarray(example["image"].convert("RGB")), pixels(example["label"]))


@pytest.mark.parametrize("streaming", [False, True])
def test_imagefolder(tmp_path, streaming):
    for i in range(4):
        folder = tmp_path / "images" / ("cat" if i % 2 == 0 else "dog")
        folder.mkdir(parents=True, exist_ok=True)
        PIL.Image.fromarray(pixels(i)).save(folder / f"{i}.png")
    ds = load_image_dataset(tmp_path / "images", streaming=streaming)
    assert ds.column_names == ["image", "label"]
    assert ds.features["label"] == ClassLabel(names=["cat", "dog"])
    by_class = {}
    for example in ds:
        by_class.setdefault(example["label"], set()).add(int(np.asarray(example["image"])[0, 0, 0]))
    assert by_class == {0: {0, 20}, 1: {10, 30}}


@pytest.mark.parametrize("streaming", [False, True])
def test_parquet_folder_file_and_file_list(tmp_path, streaming):
    source = labeled_dataset()
    (tmp_path / "pq").mkdir()
    source.select(range(3)).to_parquet(str(tmp_path / "pq" / "part-0.parquet"))
    source.select(range(3, NUM_EXAMPLES)).to_parquet(str(tmp_path / "pq" / "part-1.parquet"))
    files = sorted((tmp_path / "pq").glob("*.parquet"))
    kwargs = dict(streaming=streaming)
    check_examples(load_image_dataset(tmp_path / "pq", **kwargs), streaming)
    check_examples(load_image_dataset([str(f) for f in files], **kwargs), streaming)
    single = load_image_dataset(files[1], **kwargs)
    assert sorted(label_of_each(single)) == [3, 4, 5]


@pytest.mark.parametrize("streaming", [False, True])
def test_webdataset_shards(tmp_path, streaming):
    ds = load_image_dataset(write_webdataset(tmp_path / "wds"), streaming=streaming)
    assert ds.features["label"] == Value("int64")
    check_examples(ds, streaming)


def test_webdataset_txt_labels_are_opt_in_and_cast_to_int(tmp_path):
    folder = write_webdataset(tmp_path / "wds", label_member="txt")
    # "txt" often holds captions (CC3M), so it is not taken as a label unless asked for.
    unlabeled = load_image_dataset(folder, streaming=True)
    assert unlabeled.column_names == ["image"]
    ds = load_image_dataset(folder, streaming=True, label_column="txt")
    assert ds.features["label"] == Value("int64")
    check_examples(ds, streaming=True)


@pytest.mark.parametrize("streaming", [False, True])
def test_save_to_disk_dataset_and_dataset_dict(tmp_path, streaming):
    labeled_dataset().save_to_disk(str(tmp_path / "single"))
    check_examples(load_image_dataset(tmp_path / "single", streaming=streaming), streaming)
    DatasetDict({"train": labeled_dataset(), "test": labeled_dataset().select([0])}).save_to_disk(str(tmp_path / "dd"))
    assert label_of_each(load_image_dataset(tmp_path / "dd", split="test", streaming=streaming)) == [0]
    with pytest.raises(ValueError, match=r"has splits \['train', 'test'\]; pass split="):
        load_image_dataset(tmp_path / "dd", streaming=streaming)


def test_hub_id_goes_to_load_dataset_and_columns_are_normalised(monkeypatch):
    calls = []

    def fake_load_dataset(*args, **kwargs):
        calls.append((args, kwargs))
        return DatasetDict({"validation": labeled_dataset().rename_columns({"img": "jpg", "labels": "cls"})})

    monkeypatch.setattr(loading, "load_dataset", fake_load_dataset)
    check_examples(load_image_dataset("someone/not-a-local-path", revision="main"))
    assert calls == [(("someone/not-a-local-path",), {"split": None, "streaming": False, "revision": "main"})]


def test_column_errors_list_the_available_columns(tmp_path):
    buffer = io.BytesIO()
    PIL.Image.fromarray(pixels(0)).save(buffer, format="PNG")
    ds = Dataset.from_dict({"picture": [buffer.getvalue()], "y": [1]})
    ds.save_to_disk(str(tmp_path / "ds"))
    with pytest.raises(ValueError, match=r"No image column found .*available columns: \['picture', 'y'\]"):
        load_image_dataset(tmp_path / "ds")
    with pytest.raises(ValueError, match=r"label_column 'target' is not a column; available columns"):
        load_image_dataset(tmp_path / "ds", image_column="picture", label_column="target")
    # A column of encoded bytes named explicitly becomes an Image feature.
    ds = load_image_dataset(tmp_path / "ds", image_column="picture", label_column="y")
    assert isinstance(ds.features["image"], Image) and ds[0]["label"] == 1
    with pytest.raises(ValueError, match=r"must all exist and end in one of \['.parquet', '.tar'\]"):
        load_image_dataset([tmp_path / "a.csv"])


def test_shard_for_process_map_style_is_disjoint_and_covering():
    ds = labeled_dataset().rename_columns({"labels": "label"})
    parts = [shard_for_process(ds, rank, 2)["label"][:] for rank in range(2)]
    assert parts == [[0, 1, 2], [3, 4, 5]]
    with pytest.raises(ValueError, match=r"rank must be in \[0, world_size=2\)"):
        shard_for_process(ds, 2, 2)


@pytest.mark.parametrize("num_shards", [2, 1])
def test_shard_for_process_streaming_is_disjoint_and_covering(tmp_path, num_shards):
    ds = load_image_dataset(write_webdataset(tmp_path / "wds", num_shards=num_shards), streaming=True)
    parts = [label_of_each(shard_for_process(ds, rank, 2)) for rank in range(2)]
    assert all(parts) and sorted(parts[0] + parts[1]) == list(range(NUM_EXAMPLES))
    if num_shards == 2:  # whole shards per rank
        assert sorted(parts[0]) == [0, 1, 2]
