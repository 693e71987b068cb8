"""Replayable augmented views: the random parameters of one training view, drawn from a seed and applied exactly.

A teacher output stored for an augmented image is only useful if training sees the very same pixels. So the random
augmentation of `gendd_hf.data.build_transforms` is split in two: `draw_view` draws a `View` (the crop box, the
horizontal flip and a seed for any further augmentation such as RandAugment) from a seed, with torchvision's own
`RandomResizedCrop.get_params` / `RandomCrop.get_params`; `apply_view` turns an image and a `View` into the tensor.
Precomputing teacher outputs and training from them call the same two functions, and so does the online training
transform `RandomViewTransform`, so stored and online views are identical.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from functools import cache
from typing import Any

import numpy as np
import torch
import torchvision.transforms.functional as F
from timm.data import create_transform
from timm.data.transforms import str_to_interp_mode
from torchvision import transforms

from ..data.transforms import (
    AUGMENTATIONS,
    IMAGENET_AUGMENTATIONS,
    SMALL_IMAGE_PADDING,
    ConvertImageMode,
    _resolved_data_config,
    build_transforms,
)


_PIL_MODES = {1: "L", 3: "RGB"}
# timm's RandomResizedCrop aspect-ratio range, which `create_transform` uses for every ImageNet preset.
_RATIO = (3 / 4, 4 / 3)
_MAX_AUG_SEED = 2**31 - 1  # numpy's legacy seeding takes 32-bit seeds


@dataclass(frozen=True)
class ViewConfig:
    """What the pixels of a view depend on besides the `View` itself: the data config and the transform preset of
    [`~gendd_hf.data.build_transforms`]. Recorded with stored teacher outputs, so that training refuses another one.

    Args:
        input_size (`tuple[int, int, int]`): `(channels, height, width)` of the model input.
        mean (`tuple[float, ...]`) / std (`tuple[float, ...]`): per-channel normalisation.
        interpolation (`str`): resampling of crops and resizes (`"bilinear"`, `"bicubic"`...).
        crop_pct (`float`) / crop_mode (`str`): evaluation resize-and-crop settings (timm's).
        preset (`str`, *optional*, defaults to `"regular"`): the augmentation, as in `build_transforms`:
            `"regular"` (RandomResizedCrop + flip), `"a1"` / `"a2"` (the same + RandAugment), `"small"` (random crop
            of the 4-pixel zero-padded image + flip).
        is_training (`bool`, *optional*, defaults to `True`): `False` is the deterministic evaluation transform, one
            view per image.

    Build it with [`ViewConfig.from_data_config`] from a timm data config.
    """

    input_size: tuple[int, int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    interpolation: str
    crop_pct: float
    crop_mode: str
    preset: str = "regular"
    is_training: bool = True

    def __post_init__(self):
        if self.preset not in AUGMENTATIONS:
            raise ValueError(f"ViewConfig.preset must be one of {list(AUGMENTATIONS)}, got {self.preset!r}.")
        if len(self.input_size) != 3 or self.input_size[0] not in _PIL_MODES:
            raise ValueError(f"ViewConfig.input_size must be (1 or 3, height, width), got {self.input_size}.")

    @classmethod
    def from_data_config(
        cls, data_config: Mapping[str, Any], preset: str = "regular", is_training: bool = True
    ) -> ViewConfig:
        """The view config of `build_transforms(data_config, is_training, preset)` (missing keys filled by timm)."""
        config = _resolved_data_config(data_config)
        return cls(
            input_size=tuple(int(v) for v in config["input_size"]),
            mean=tuple(float(v) for v in config["mean"]),
            std=tuple(float(v) for v in config["std"]),
            interpolation=str(config["interpolation"]),
            crop_pct=float(config["crop_pct"]),
            crop_mode=str(config["crop_mode"]),
            preset=preset,
            is_training=is_training,
        )

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> ViewConfig:
        """Inverse of [`ViewConfig.to_dict`] (lists back to tuples)."""
        return cls(**{key: tuple(value) if isinstance(value, list) else value for key, value in values.items()})

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields."""
        return {key: list(value) if isinstance(value, tuple) else value for key, value in asdict(self).items()}

    @property
    def data_config(self) -> dict[str, Any]:
        """The timm data config, as `build_transforms` takes it."""
        return {
            key: getattr(self, key) for key in ("input_size", "mean", "std", "interpolation", "crop_pct", "crop_mode")
        }


@dataclass(frozen=True)
class View:
    """The random parameters of one augmented view.

    Args:
        top, left, height, width (`int`): crop box in pixels. `"small"`: in the image resized to the input size, and
            it may reach up to 4 pixels past the edges (zero fill, as the padded random crop). Other presets: in the
            image itself; the box is then resized to the input size.
        hflip (`bool`): whether the crop is flipped horizontally.
        aug_seed (`int`): seed of Python's, numpy's and torch's generators while the further augmentation
            (RandAugment of `"a1"` / `"a2"`) runs.
    """

    top: int
    left: int
    height: int
    width: int
    hflip: bool
    aug_seed: int

    @property
    def box(self) -> tuple[int, int, int, int]:
        return self.top, self.left, self.height, self.width


def _size_only(height: int, width: int) -> torch.Tensor:
    # torchvision's get_params reads `F.get_dimensions(img)`; an expanded 1-element tensor has the shape, no memory.
    return torch.empty(1, 1, 1).expand(1, height, width)


def draw_view(image, config: ViewConfig, seed: int) -> View:
    """Draw the random parameters of one view of `image` from `seed`, with torchvision's own samplers.

    Under `torch.manual_seed(seed)` torchvision's `RandomResizedCrop` (or `RandomCrop(padding=4)` for `"small"`)
    followed by `RandomHorizontalFlip` would draw the same crop and flip. The evaluation config has one view: the
    whole image, not flipped.

    Args:
        image (`PIL.Image.Image`): the source image (only its size is read).
        config ([`ViewConfig`]): the transform.
        seed (`int`): seed of this view, e.g. from [`view_seed`].
    """
    _, height, width = config.input_size
    if not config.is_training:
        return View(0, 0, height, width, hflip=False, aug_seed=0)
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(seed)  # the CPU generator only: torch.manual_seed also queues CUDA seeding
        if config.preset == "small":
            pad = SMALL_IMAGE_PADDING
            top, left, box_height, box_width = transforms.RandomCrop.get_params(
                _size_only(height + 2 * pad, width + 2 * pad), (height, width)
            )
            top, left = top - pad, left - pad
        else:
            scale = IMAGENET_AUGMENTATIONS[config.preset]["scale"]
            top, left, box_height, box_width = transforms.RandomResizedCrop.get_params(image, scale, _RATIO)
        hflip = bool(torch.rand(1) < IMAGENET_AUGMENTATIONS["regular"]["hflip"])
        aug_seed = int(torch.randint(_MAX_AUG_SEED, ()))
    return View(int(top), int(left), int(box_height), int(box_width), hflip, aug_seed)


@cache
def _stages(config: ViewConfig):
    """timm's transforms around the replayed crop and flip: (further augmentation or None, to-tensor + normalise).
    For the evaluation config: (None, the whole evaluation transform of `build_transforms`)."""
    if not config.is_training:
        return None, build_transforms(config.data_config, is_training=False, augmentation=config.preset)
    # "small" has no further augmentation; the regular options (no colour jitter, no RandAugment) give none.
    options = IMAGENET_AUGMENTATIONS.get(config.preset, IMAGENET_AUGMENTATIONS["regular"])
    _, further, final = create_transform(
        input_size=config.input_size,
        is_training=True,
        interpolation=config.interpolation,
        mean=config.mean,
        std=config.std,
        separate=True,
        **options,
    )
    return (further if further.transforms else None), final


@contextmanager
def _seeded_generators(seed: int):
    """Seed Python's, numpy's and torch's global generators (timm's RandAugment draws from the first two), then put
    their states back."""
    python_state, numpy_state = random.getstate(), np.random.get_state()
    with torch.random.fork_rng(devices=[]):
        random.seed(seed)
        np.random.seed(seed)
        torch.default_generator.manual_seed(seed)  # the CPU generator only: torch.manual_seed also queues CUDA seeding
        try:
            yield
        finally:
            random.setstate(python_state)
            np.random.set_state(numpy_state)


def apply_view(image, view: View, config: ViewConfig) -> torch.Tensor:
    """The tensor that training sees for `view` of `image`: crop, resize, flip, further augmentation seeded with
    `view.aug_seed`, then timm's to-tensor and normalisation.

    Args:
        image (`PIL.Image.Image`): the source image; converted to "L" or "RGB" to match `config.input_size`.
        view ([`View`]): from [`draw_view`], or read back from stored teacher outputs.
        config ([`ViewConfig`]): the transform the view was drawn for.

    Returns:
        `torch.FloatTensor` of shape `config.input_size`.
    """
    channels, height, width = config.input_size
    image = ConvertImageMode(_PIL_MODES[channels])(image)
    further, final = _stages(config)
    if not config.is_training:
        return final(image)
    interpolation = str_to_interp_mode(config.interpolation)
    if config.preset == "small":
        image = F.resize(image, [height, width], interpolation=interpolation)
    image = F.resized_crop(image, *view.box, [height, width], interpolation=interpolation)
    if view.hflip:
        image = F.hflip(image)
    if further is not None:
        with _seeded_generators(view.aug_seed):
            image = further(image)
    return final(image)


@dataclass
class RandomViewTransform:
    """The online training transform of a [`ViewConfig`]: draws a fresh view per call (its seed from torch's global
    generator, so the Trainer's seeding and checkpoints govern it) and applies it, through the very code that
    replays stored views. Use it with `ImageCollator(RandomViewTransform(config))`.
    """

    config: ViewConfig

    def __call__(self, image) -> torch.Tensor:
        seed = int(torch.randint(2**62, ()))
        return apply_view(image, draw_view(image, self.config, seed), self.config)


def stable_hash(*parts) -> int:
    """A 63-bit integer hash of `parts` (ints and strings) that is the same in every process and Python version."""
    text = "\x1f".join(f"{type(part).__name__}:{part}" for part in parts)
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big") >> 1


def view_seed(seed: int, image_id: int | str, view_index: int) -> int:
    """Seed of view `view_index` of image `image_id` under the run seed `seed`."""
    return stable_hash("view", seed, image_id, view_index)


def epoch_view_index(seed: int, epoch: int, image_id: int | str, num_views: int) -> int:
    """Which of the `num_views` stored views of `image_id` training uses in `epoch`.

    Every view is used once in each block of `num_views` consecutive epochs, in an order that depends on the image,
    the block and `seed` (a permutation sorted by hash, reproducible everywhere).
    """
    if num_views < 1:
        raise ValueError(f"num_views must be >= 1, got {num_views}.")
    block, position = divmod(int(epoch), num_views)
    order = sorted(range(num_views), key=lambda k: stable_hash("epoch", seed, image_id, block, k))
    return order[position]


__all__ = [
    "RandomViewTransform",
    "View",
    "ViewConfig",
    "apply_view",
    "draw_view",
    "epoch_view_index",
    "stable_hash",
    "view_seed",
]
