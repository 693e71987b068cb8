import random

import numpy as np
import PIL.Image
import pytest
import torch
from torch.utils.data import DataLoader

from gendd_hf.data import EvenBatchMixup, ImageCollator, build_transforms, dataset_from_arrays, mixup_fn
from gendd_hf.data.transforms import AUGMENTATIONS


def seed_everything(seed):
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def data_config(in_chans, size=32):
    return {"input_size": (in_chans, size, size), "mean": (0.5,) * in_chans, "std": (0.25,) * in_chans}


def image(mode, size=28, seed=0):
    rng = np.random.default_rng(seed)
    shape = (size, size) if mode == "L" else (size, size, 3)
    return PIL.Image.fromarray(rng.integers(0, 256, size=shape, dtype=np.uint8), mode=mode)


@pytest.mark.parametrize("preset", AUGMENTATIONS)
@pytest.mark.parametrize("in_chans", [1, 3])
def test_output_channels_follow_in_chans_for_any_input_mode(preset, in_chans):
    for is_training in (True, False):
        transform = build_transforms(data_config(in_chans), is_training=is_training, augmentation=preset)
        for mode in ("L", "RGB"):
            out = transform(image(mode))
            assert out.shape == (in_chans, 32, 32) and out.dtype == torch.float32


def test_presets_pick_the_recipe_augmentations():
    steps = {
        preset: [type(t).__name__ for t in build_transforms(data_config(3), True, preset).transforms]
        for preset in AUGMENTATIONS
    }
    assert steps["regular"] == [
        "ConvertImageMode",
        "RandomResizedCropAndInterpolation",
        "RandomHorizontalFlip",
        "MaybeToTensor",
        "Normalize",
    ]
    assert steps["a2"] == steps["a1"] == steps["regular"][:3] + ["RandAugment"] + steps["regular"][3:]
    assert "m=7, mstd=0.5" in repr(build_transforms(data_config(3), True, "a1"))
    assert steps["small"] == [
        "ConvertImageMode",
        "Resize",
        "RandomCrop",
        "RandomHorizontalFlip",
        "ToTensor",
        "Normalize",
    ]
    eval_steps = [type(t).__name__ for t in build_transforms(data_config(3), False, "a1").transforms]
    assert eval_steps == ["ConvertImageMode", "Resize", "CenterCrop", "MaybeToTensor", "Normalize"]


def test_small_eval_is_resize_and_normalize():
    config = {"input_size": (1, 4, 4), "mean": (0.5,), "std": (0.5,)}
    pixels = np.array([[0, 255], [255, 0]], dtype=np.uint8).repeat(2, axis=0).repeat(2, axis=1)
    out = build_transforms(config, is_training=False, augmentation="small")(PIL.Image.fromarray(pixels))
    # (x / 255 - 0.5) / 0.5 maps 0 -> -1 and 255 -> 1.
    np.testing.assert_allclose(out[0].numpy(), pixels / 127.5 - 1, atol=1e-6)
    rgb = PIL.Image.merge("RGB", [PIL.Image.fromarray(pixels)] * 3)
    np.testing.assert_allclose(build_transforms(config, False, "small")(rgb)[0].numpy(), pixels / 127.5 - 1, atol=1e-6)


def test_small_train_crops_with_padding_and_flips():
    transform = build_transforms({"input_size": (1, 28, 28), "mean": (0.0,), "std": (1.0,)}, True, "small")
    seed_everything(0)
    outs = [transform(PIL.Image.fromarray(np.full((28, 28), 255, dtype=np.uint8))) for _ in range(20)]
    # A white image shifted by up to 4 pixels shows zero padding in some crops, never more than 4 rows.
    assert any(out.min() == 0 for out in outs)
    assert all((out[0] == 1).any(dim=1).sum() >= 24 for out in outs)


@pytest.mark.parametrize("preset", ["a2", "small"])
def test_training_transform_is_deterministic_under_a_seed(preset):
    transform = build_transforms(data_config(3), is_training=True, augmentation=preset)
    img = image("RGB")

    def run(seed):
        seed_everything(seed)
        return torch.stack([transform(img) for _ in range(4)])

    assert torch.equal(run(0), run(0))
    assert not torch.equal(run(0), run(1))


def test_build_transforms_errors():
    with pytest.raises(ValueError, match="augmentation must be one of"):
        build_transforms(data_config(3), True, augmentation="a3")
    with pytest.raises(ValueError, match=r"data_config\['mean'\] has 3 values but in_chans is 1"):
        build_transforms({"input_size": (1, 28, 28), "mean": (0.4, 0.4, 0.4)}, True)
    with pytest.raises(ValueError, match=r"data_config\['std'\] has 3 values \(timm's ImageNet default"):
        build_transforms({"input_size": (1, 28, 28), "mean": (0.3,)}, True)
    with pytest.raises(ValueError, match="input_size\\[0\\] \\(in_chans\\) must be 1 or 3"):
        build_transforms({"input_size": (2, 28, 28)}, True)
    with pytest.raises(ValueError, match="needs an 'input_size'"):
        build_transforms({"mean": (0.5,)}, True)


def test_image_collator_batches_with_and_without_labels():
    transform = build_transforms({"input_size": (1, 8, 8), "mean": (0.5,), "std": (0.5,)}, False, "small")
    rows = [{"image": image("L", size=8, seed=i), "label": i, "teacher_features": [i, 2.0 * i]} for i in range(3)]
    batch = ImageCollator(transform, extra_columns=("teacher_features",))(rows)
    assert set(batch) == {"pixel_values", "labels", "teacher_features"}
    assert batch["pixel_values"].shape == (3, 1, 8, 8)
    assert torch.equal(batch["pixel_values"][2], transform(rows[2]["image"]))
    assert batch["labels"].dtype == torch.long and batch["labels"].tolist() == [0, 1, 2]
    assert batch["teacher_features"].tolist() == [[0, 0], [1, 2], [2, 4]]
    unlabeled = ImageCollator(transform)([{"image": row["image"]} for row in rows])
    assert list(unlabeled) == ["pixel_values"]


def test_image_collator_in_a_dataloader_over_a_dataset():
    ds = dataset_from_arrays(np.zeros((5, 28, 28), dtype=np.uint8), labels=np.arange(5))
    collator = ImageCollator(build_transforms(data_config(3), is_training=True, augmentation="small"))
    batches = list(DataLoader(ds, batch_size=2, collate_fn=collator))
    assert [b["pixel_values"].shape for b in batches] == [(2, 3, 32, 32)] * 2 + [(1, 3, 32, 32)]
    assert torch.cat([b["labels"] for b in batches]).tolist() == [0, 1, 2, 3, 4]


def test_mixup_fn_gives_soft_labels_summing_to_one():
    mixup = mixup_fn(num_classes=5, mixup_alpha=0.2, cutmix_alpha=1.0, label_smoothing=0.1)
    seed_everything(0)
    pixel_values = torch.randn(4, 1, 8, 8)
    mixed, soft = mixup(pixel_values.clone(), torch.tensor([0, 1, 2, 3]))
    assert mixed.shape == pixel_values.shape and not torch.equal(mixed, pixel_values)
    assert soft.shape == (4, 5)
    torch.testing.assert_close(soft.sum(dim=1), torch.ones(4))
    # Smoothing puts at least 0.1 / 5 on every class; mixing puts mass on two classes per row.
    assert soft.min() >= 0.02 - 1e-6 and (soft > 0.05).sum(dim=1).min() >= 2


def test_mixup_fn_off_and_errors():
    assert mixup_fn(num_classes=10) is None
    with pytest.raises(ValueError, match="label_smoothing=0.1 without mixup or cutmix"):
        mixup_fn(num_classes=10, label_smoothing=0.1)
    with pytest.raises(ValueError, match="mixup_alpha must be >= 0"):
        mixup_fn(num_classes=10, mixup_alpha=-1)
    with pytest.raises(ValueError, match=r"label_smoothing must be in \[0, 1\)"):
        mixup_fn(num_classes=10, cutmix_alpha=1.0, label_smoothing=1.0)


def test_mixup_fn_takes_odd_batches_and_leaves_the_odd_image_unmixed():
    even_batch_mixup = mixup_fn(num_classes=6, mixup_alpha=0.2, cutmix_alpha=1.0, label_smoothing=0.1)
    assert isinstance(even_batch_mixup, EvenBatchMixup)
    mixup = even_batch_mixup.mixup  # timm's Mixup, which refuses odd batches
    pixels, labels = torch.randn(5, 3, 8, 8), torch.tensor([0, 1, 2, 3, 4])
    with pytest.raises(AssertionError, match="even"):
        mixup(pixels.clone(), labels)
    np.random.seed(0)
    mixed, soft = even_batch_mixup(pixels.clone(), labels)
    np.random.seed(0)
    expected, expected_soft = mixup(pixels[:4].clone(), labels[:4])
    assert torch.equal(mixed[:4], expected) and torch.equal(soft[:4], expected_soft)
    assert torch.equal(mixed[4], pixels[4])
    # timm's smoothed one-hot: 1 - 0.1 + 0.1 / 6 on the label, 0.1 / 6 elsewhere.
    torch.testing.assert_close(soft[4], torch.tensor([0.1 / 6] * 4 + [0.9 + 0.1 / 6, 0.1 / 6]))
    single, single_soft = even_batch_mixup(pixels[:1].clone(), labels[:1])
    assert torch.equal(single, pixels[:1]) and single_soft.argmax().item() == 0
