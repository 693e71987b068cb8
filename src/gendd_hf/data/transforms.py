"""Image transforms (timm augmentations of the paper's recipes), a Trainer collator, and timm mixup/cutmix."""

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np
import torch
from datasets import Dataset, IterableDataset
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD, create_transform, resolve_data_config
from timm.data.mixup import Mixup, mixup_target
from timm.data.transforms import str_to_interp_mode
from torchvision import transforms


# RandAugment of timm's "ResNet strikes back" A1/A2 hparams: 2 ops, magnitude 7, magnitude std 0.5,
# magnitudes increasing with strength. A1 and A2 share the image augmentation; they differ in
# mixup/cutmix/label smoothing, which `mixup_fn` configures.
STRONG_RANDAUGMENT = "rand-m7-mstd0.5-inc1"
# Train-time `create_transform` options of each ImageNet-style augmentation; color_jitter=None keeps "regular"
# to RandomResizedCrop + flip, as in the torchvision ImageNet recipe the paper's 100-epoch runs use.
_CROP_AND_FLIP = {"scale": (0.08, 1.0), "hflip": 0.5, "color_jitter": None}
_STRONG = {**_CROP_AND_FLIP, "auto_augment": STRONG_RANDAUGMENT}
IMAGENET_AUGMENTATIONS = {"regular": _CROP_AND_FLIP, "a2": _STRONG, "a1": _STRONG}
# "small": 28x28 / 32x32 data (Fashion-MNIST, CIFAR): random crop after zero padding, then flip.
SMALL_IMAGE_PADDING = 4
AUGMENTATIONS = (*IMAGENET_AUGMENTATIONS, "small")
"""Every augmentation name (`--augmentation`, `build_transforms`, stored teacher-output views)."""
_PIL_MODE_FOR_CHANNELS = {1: "L", 3: "RGB"}


@dataclass
class ConvertImageMode:
    """Convert a PIL image to `mode` ("L" or "RGB") so that the tensor gets the channels the model expects."""

    mode: str

    def __call__(self, image):
        return image if image.mode == self.mode else image.convert(self.mode)


def _resolved_data_config(data_config: Mapping[str, Any]) -> dict:
    if "input_size" not in data_config:
        raise ValueError(
            f"data_config needs an 'input_size' (channels, height, width), got keys {sorted(data_config)}; "
            "build it with timm.data.resolve_data_config / resolve_model_data_config."
        )
    in_chans = data_config["input_size"][0]
    if in_chans not in _PIL_MODE_FOR_CHANNELS:
        raise ValueError(f"input_size[0] (in_chans) must be 1 or 3, got {in_chans}.")
    defaults = {"mean": IMAGENET_DEFAULT_MEAN, "std": IMAGENET_DEFAULT_STD}
    for key, default in defaults.items():
        values = data_config.get(key, default)
        if len(values) not in (1, in_chans):
            origin = "" if key in data_config else " (timm's ImageNet default, used when it is left out)"
            raise ValueError(
                f"data_config[{key!r}] has {len(values)} values{origin} but in_chans is {in_chans}; give one "
                f"value per channel or a single value for all (e.g. a grayscale {key} for a 1-channel model)."
            )
    # timm fills the keys left out (interpolation, crop_pct, crop_mode) and broadcasts 1-value mean/std.
    return resolve_data_config(args=dict(data_config))


def eval_data_config(data_config: Mapping[str, Any], augmentation: str = "regular") -> dict:
    """timm's data config of the evaluation transform: `data_config` resolved, with `crop_pct` 1 for the `"small"`
    augmentation (a plain resize of 28x28 / 32x32 data). Saved as the model's `pretrained_cfg`, it is also the config of
    its image processor, so `pipeline()` preprocesses as the evaluation does."""
    config = _resolved_data_config(data_config)
    if augmentation == "small":
        config["crop_pct"] = 1.0
    return config


def build_transforms(data_config: Mapping[str, Any], is_training: bool, augmentation: str = "regular") -> Callable:
    """Build the PIL -> tensor transform for training or evaluation.

    Args:
        data_config (`Mapping`): timm-style data config with `input_size` (C, H, W) and usually `mean`, `std`,
            `interpolation`, `crop_pct` (as `timm.data.resolve_model_data_config(model)` returns). The output
            tensor has C channels: images are converted to "L" for C = 1 and to "RGB" for C = 3.
        is_training (`bool`): random augmentation when `True`, the deterministic evaluation transform otherwise.
        augmentation (`str`, *optional*, defaults to `"regular"`):
            - `"regular"`: RandomResizedCrop + horizontal flip (ImageNet 100-epoch recipe);
            - `"a2"` / `"a1"`: the same plus RandAugment `rand-m7-mstd0.5-inc1` ("ResNet strikes back");
            - `"small"`: random crop of the input size after 4-pixel zero padding + flip, for 28x28 / 32x32 data.
            Evaluation is timm's evaluation transform of `eval_data_config(data_config, augmentation)` for every
            augmentation: resize + center crop at `crop_pct` (1 for `"small"`), the transform of the saved image
            processor.

    Returns:
        A callable mapping a PIL image to a float tensor of shape `input_size`.
    """
    if augmentation not in AUGMENTATIONS:
        raise ValueError(f"augmentation must be one of {list(AUGMENTATIONS)}, got {augmentation!r}.")
    config = _resolved_data_config(data_config) if is_training else eval_data_config(data_config, augmentation)
    in_chans, height, width = config["input_size"]
    to_mode = ConvertImageMode(_PIL_MODE_FOR_CHANNELS[in_chans])
    if augmentation != "small" or not is_training:
        train_options = IMAGENET_AUGMENTATIONS[augmentation] if is_training else {}
        timm_transform = create_transform(
            input_size=config["input_size"],
            is_training=is_training,
            interpolation=config["interpolation"],
            mean=config["mean"],
            std=config["std"],
            crop_pct=config["crop_pct"],
            crop_mode=config["crop_mode"],
            **train_options,
        )
        return transforms.Compose([to_mode, *timm_transform.transforms])
    return transforms.Compose(
        [
            to_mode,
            transforms.Resize((height, width), interpolation=str_to_interp_mode(config["interpolation"])),
            transforms.RandomCrop((height, width), padding=SMALL_IMAGE_PADDING),
            transforms.RandomHorizontalFlip(),
            transforms.ToTensor(),
            transforms.Normalize(mean=config["mean"], std=config["std"]),
        ]
    )


@dataclass
class ImageCollator:
    """Turn a list of dataset rows into a model batch: `pixel_values` (B, C, H, W) and `labels` (B,) when present.

    Use it as `Trainer(data_collator=ImageCollator(transform), args=TrainingArguments(...,
    remove_unused_columns=False))`, so the raw `image` column reaches the collator; the transform then runs in
    the DataLoader workers.

    Args:
        transform (`Callable`): PIL image -> tensor, e.g. from [`build_transforms`].
        image_column (`str`, *optional*, defaults to `"image"`) / label_column (`str`, *optional*, defaults to
            `"label"`): row keys; rows without a label (unlabeled data) give a batch without `labels`.
        extra_columns (`Sequence[str]`, *optional*): numeric columns stacked into tensors under their own names,
            e.g. precomputed `teacher_features`.
    """

    transform: Callable
    image_column: str = "image"
    label_column: str = "label"
    extra_columns: Sequence[str] = ()

    def __call__(self, examples: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        batch = {"pixel_values": torch.stack([self.transform(example[self.image_column]) for example in examples])}
        if examples[0].get(self.label_column) is not None:
            batch["labels"] = torch.tensor([example[self.label_column] for example in examples], dtype=torch.long)
        for column in self.extra_columns:
            batch[column] = torch.as_tensor(np.stack([np.asarray(example[column]) for example in examples]))
        return batch


def mixup_fn(
    num_classes: int,
    mixup_alpha: float = 0.0,
    cutmix_alpha: float = 0.0,
    label_smoothing: float = 0.0,
    **mixup_kwargs,
) -> Optional["EvenBatchMixup"]:
    """timm's batch Mixup/CutMix on batches of any size, returning `(mixed pixel_values, soft labels (B,
    num_classes))` when called.

    The A2 recipe is `mixup_alpha=0.1, cutmix_alpha=1.0`; A1 is `mixup_alpha=0.2, cutmix_alpha=1.0,
    label_smoothing=0.1`. GenDD's distribution contraction takes the soft labels as they are.

    Args:
        num_classes (`int`): number of classes of the soft labels.
        mixup_alpha (`float`, *optional*, defaults to 0.0): Beta(alpha, alpha) of mixup; 0 disables it.
        cutmix_alpha (`float`, *optional*, defaults to 0.0): Beta(alpha, alpha) of cutmix; 0 disables it.
        label_smoothing (`float`, *optional*, defaults to 0.0): smoothing of the mixed one-hot labels.
        mixup_kwargs: other `timm.data.Mixup` options (`prob`, `switch_prob`, `mode`, `cutmix_minmax`).

    Returns:
        [`EvenBatchMixup`] around `timm.data.Mixup`, or `None` when both alphas are 0 (no mixing: use the hard
        labels).
    """
    for name, value in (("mixup_alpha", mixup_alpha), ("cutmix_alpha", cutmix_alpha)):
        if value < 0:
            raise ValueError(f"{name} must be >= 0, got {value}.")
    if not 0 <= label_smoothing < 1:
        raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}.")
    if mixup_alpha == 0 and cutmix_alpha == 0 and mixup_kwargs.get("cutmix_minmax") is None:
        if label_smoothing > 0:
            raise ValueError(
                f"label_smoothing={label_smoothing} without mixup or cutmix is not applied here; smooth the "
                "one-hot labels where they are used, or set mixup_alpha / cutmix_alpha > 0."
            )
        return None
    return EvenBatchMixup(
        Mixup(
            mixup_alpha=mixup_alpha,
            cutmix_alpha=cutmix_alpha,
            label_smoothing=label_smoothing,
            num_classes=num_classes,
            **mixup_kwargs,
        )
    )


@dataclass
class EvenBatchMixup:
    """timm's `Mixup` on batches of any size. timm mixes a batch with its flipped self and refuses odd sizes; the odd
    last batch of an epoch keeps its last image unmixed, with the (smoothed) one-hot label timm would give it.
    `dataloader_drop_last=True` would avoid odd batches too, but the Trainer applies it to evaluation as well."""

    mixup: Mixup

    def __call__(self, pixel_values: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if len(pixel_values) % 2 == 0:
            return self.mixup(pixel_values, labels)
        last = mixup_target(labels[-1:], self.mixup.num_classes, smoothing=self.mixup.label_smoothing)
        if len(pixel_values) == 1:
            return pixel_values, last
        mixed, soft = self.mixup(pixel_values[:-1], labels[:-1])
        return torch.cat([mixed, pixel_values[-1:]]), torch.cat([soft, last])


@dataclass
class PixelValuesTransform:
    """Dataset transform: the `image` column becomes `pixel_values` through `transform`; other columns are kept.

    Each split gets its own (random training augmentation, deterministic evaluation), which one Trainer collator
    could not do.
    """

    transform: Callable

    def __call__(self, batch: dict[str, list]) -> dict[str, list]:
        batch = dict(batch)
        batch["pixel_values"] = [self.transform(image) for image in batch.pop("image")]
        return batch


def with_pixel_values(dataset: Dataset | IterableDataset, transform: Callable) -> Dataset | IterableDataset:
    """`dataset` whose rows carry `pixel_values` (a tensor from `transform`) instead of `image`, lazily."""
    if isinstance(dataset, IterableDataset):  # one example at a time: no batch of 1,000 decoded images in memory
        return dataset.map(PixelValuesTransform(transform), batched=True, batch_size=1, remove_columns=["image"])
    return dataset.with_transform(PixelValuesTransform(transform))


__all__ = [
    "PixelValuesTransform",
    "with_pixel_values",
    "AUGMENTATIONS",
    "IMAGENET_AUGMENTATIONS",
    "eval_data_config",
    "ConvertImageMode",
    "EvenBatchMixup",
    "ImageCollator",
    "build_transforms",
    "mixup_fn",
]
