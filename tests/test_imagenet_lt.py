"""ImageNet-LT: split files read into datasets, the dataset folder the recipes read, and many/medium/few-shot metrics,
on a tiny generated ImageNet tree (class 0: 101 training images, class 1: 20, class 2: 5)."""

import datasets
import numpy as np
import PIL.Image
import pytest
from datasets import ClassLabel, Value

from gendd_hf.data import load_image_dataset
from gendd_hf.data.imagenet_lt import load_imagenet_lt, main, read_split_file, save_imagenet_lt
from gendd_hf.metrics import class_counts, class_groups


TRAIN_COUNTS = (101, 20, 5)  # many (> 100), medium (20..100), few (< 20)
TEST_PER_CLASS = 2
SYNSETS = ("n01440764", "n01443537", "n01484850")


pytestmark = pytest.mark.usefixtures("datasets_cache_in_tmp_path")  # conftest.py


def shade(label: int, index: int) -> int:
    return 40 * label + index % 40


def write_image(path, value):
    path.parent.mkdir(parents=True, exist_ok=True)
    PIL.Image.fromarray(np.full((4, 4, 3), value, dtype=np.uint8)).save(path)


@pytest.fixture
def imagenet(tmp_path):
    """An ImageNet-like folder (train/<synset>/, val/<synset>/) with the three ImageNet-LT split files beside it."""
    root = tmp_path / "imagenet"
    lines = {"train": [], "val": [], "test": []}
    for label, (synset, count) in enumerate(zip(SYNSETS, TRAIN_COUNTS)):
        for index in range(count):
            relative = f"train/{synset}/{synset}_{index}.JPEG"
            write_image(root / relative, shade(label, index))
            lines["train"].append(f"{relative} {label}")
        for index in range(TEST_PER_CLASS):
            relative = f"val/{synset}/ILSVRC2012_val_{label}{index}.JPEG"
            write_image(root / relative, shade(label, index))
            lines["test"].append(f"{relative} {label}")
    lines["val"] = lines["test"][::TEST_PER_CLASS]
    for split, split_lines in lines.items():
        (root / f"ImageNet_LT_{split}.txt").write_text("\n".join(split_lines) + "\n")
    return root


def test_read_split_file(imagenet):
    files, labels = read_split_file(imagenet / "ImageNet_LT_val.txt")
    assert files == [f"val/{synset}/ILSVRC2012_val_{label}0.JPEG" for label, synset in enumerate(SYNSETS)]
    assert labels == [0, 1, 2]


@pytest.mark.parametrize(
    "content,message",
    [
        ("train/a.JPEG\n", "line 1: expected"),
        ("train/a.JPEG 0\ntrain/b.JPEG x\n", "line 2: expected"),
        ("\n", "no image"),
    ],
)
def test_read_split_file_errors(tmp_path, content, message):
    path = tmp_path / "ImageNet_LT_train.txt"
    path.write_text(content)
    with pytest.raises(ValueError, match=message):
        read_split_file(path)
    with pytest.raises(FileNotFoundError, match="split_dir"):
        read_split_file(tmp_path / "missing.txt")


def test_load_split_gives_images_and_class_labels(imagenet):
    train = load_imagenet_lt(imagenet, "train", num_classes=1000)
    assert train.column_names == ["image", "label"]
    assert train.features["label"] == ClassLabel(num_classes=1000)
    assert len(train) == sum(TRAIN_COUNTS)
    example = train[TRAIN_COUNTS[0] + 3]  # the fourth image of class 1
    assert example["label"] == 1
    assert example["image"].size == (4, 4)
    assert example["image"].getpixel((0, 0)) == (shade(1, 3),) * 3

    test = load_imagenet_lt(imagenet, "test")
    assert test.features["label"].num_classes == len(SYNSETS)  # the largest class id + 1 by default
    assert test["label"] == [0, 0, 1, 1, 2, 2]


def test_split_dir_and_split_file(imagenet, tmp_path):
    elsewhere = tmp_path / "splits"
    elsewhere.mkdir()
    (elsewhere / "ImageNet_LT_val.txt").write_text((imagenet / "ImageNet_LT_val.txt").read_text())
    (imagenet / "ImageNet_LT_val.txt").unlink()
    assert load_imagenet_lt(imagenet, "val", split_dir=elsewhere)["label"] == [0, 1, 2]
    assert load_imagenet_lt(imagenet, split_file=elsewhere / "ImageNet_LT_val.txt")["label"] == [0, 1, 2]
    with pytest.raises(FileNotFoundError, match="ImageNet_LT_val.txt"):
        load_imagenet_lt(imagenet, "val")


def test_load_errors(imagenet):
    with pytest.raises(ValueError, match="not an ImageNet-LT split"):
        load_imagenet_lt(imagenet, "validation")
    with pytest.raises(ValueError, match="class id 2 but num_classes=2"):
        load_imagenet_lt(imagenet, "val", num_classes=2)
    (imagenet / "train" / SYNSETS[2] / f"{SYNSETS[2]}_4.JPEG").unlink()
    with pytest.raises(FileNotFoundError, match=r"1 of the 126 images .*\(first: .*n01484850_4\.JPEG\)"):
        load_imagenet_lt(imagenet, "train")


def test_hub_id_goes_through_load_image_dataset(tmp_path, monkeypatch):
    seen = {}

    def fake_load(name, split=None, **kwargs):
        seen.update(name=name, split=split, **kwargs)
        return "the dataset"

    monkeypatch.setattr("gendd_hf.data.imagenet_lt.load_image_dataset", fake_load)
    assert load_imagenet_lt("someone/imagenet-lt", "test", label_column="cls") == "the dataset"
    assert seen == {"name": "someone/imagenet-lt", "split": "test", "label_column": "cls"}


def test_dataset_folder_for_the_recipes_keeps_paths_not_images(imagenet, tmp_path, capsys):
    folder = tmp_path / "imagenet_lt"
    main([str(imagenet), str(folder)])
    assert "train 126 images, val 3 images, test 6 images" in capsys.readouterr().out
    # The folder stores paths (strings), which `save_to_disk` does not replace by the image bytes.
    saved = datasets.load_from_disk(str(folder))
    assert saved["train"].features["image"] == Value("string")
    assert saved["train"][0]["image"] == str((imagenet / "train" / SYNSETS[0] / f"{SYNSETS[0]}_0.JPEG").resolve())
    test = load_image_dataset(str(folder), split="test")
    assert test.features["label"] == ClassLabel(num_classes=1000)
    assert test["label"] == [0, 0, 1, 1, 2, 2]
    assert test[5]["image"].getpixel((0, 0)) == (shade(2, 1),) * 3
    assert save_imagenet_lt(imagenet, tmp_path / "again", splits=("val",))["val"]["label"] == [0, 1, 2]


def test_shot_groups_come_from_training_counts(imagenet):
    train = load_imagenet_lt(imagenet, "train")
    assert class_counts(train).tolist() == list(TRAIN_COUNTS)
    assert class_counts([0, 2, 2], num_classes=4).tolist() == [1, 0, 2, 0]
    assert class_groups(train) == ["many", "medium", "few"]
    # 101 > 100 is many, 20 is still medium, 5 < 20 is few; other thresholds move the boundaries.
    assert class_groups(train, many=101) == ["medium", "medium", "few"]
    with pytest.raises(ValueError, match="no 'label' column"):
        class_counts(train.remove_columns("label"))
