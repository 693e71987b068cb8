"""VGG networks with BatchNorm for CIFAR (Simonyan & Zisserman, arXiv 1409.1556) as used by CRD.

The fully connected layers of the ImageNet VGG are removed: five conv stages (64, 128, 256, 512, 512 wide),
2x2 max pooling after the first three (32 -> 16 -> 8 -> 4), global average pooling and one linear classifier.
"""

from collections.abc import Sequence
from typing import Any

import torch
from timm.models import generate_default_cfgs, register_model
from torch import nn

from ._base import CifarNet, build_cifar_model, cifar_cfg, init_cifar_weights


_REFERENCE_RENAMES = ((r"^classifier\.", "fc."),)


def _conv_stage(in_chs: int, widths: Sequence[int]) -> nn.Sequential:
    """3x3 conv (with bias, as in the reference) - BN - ReLU, once per width."""
    layers = []
    for width in widths:
        layers += [nn.Conv2d(in_chs, width, kernel_size=3, padding=1), nn.BatchNorm2d(width), nn.ReLU(inplace=True)]
        in_chs = width
    return nn.Sequential(*layers)


class CifarVGG(CifarNet):
    """VGG-BN for 32x32 inputs.

    Args:
        stage_widths (`Sequence[Sequence[int]]`): Conv widths of each of the five stages.
        num_classes (`int`, defaults to 100): Classifier outputs; 0 makes `forward` return pooled features.
        in_chans (`int`, defaults to 3): Input image channels.
        global_pool (`str`, defaults to `"avg"`): timm pooling type of the head.
    """

    def __init__(
        self,
        stage_widths: Sequence[Sequence[int]],
        num_classes: int = 100,
        in_chans: int = 3,
        global_pool: str = "avg",
    ):
        super().__init__()
        if len(stage_widths) != 5:
            raise ValueError(f"VGG needs the conv widths of 5 stages, got {len(stage_widths)}: {stage_widths}.")
        in_chs = in_chans
        for index, widths in enumerate(stage_widths):
            self.add_module(f"block{index}", _conv_stage(in_chs, widths))
            in_chs = widths[-1]
        self.pool = nn.MaxPool2d(kernel_size=2, stride=2)
        self.init_head(in_chs, num_classes, global_pool)
        init_cifar_weights(self, linear_std=0.01)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.block0(x))
        x = self.pool(self.block1(x))
        x = self.pool(self.block2(x))
        return self.block4(self.block3(x))


default_cfgs = generate_default_cfgs(
    {name: cifar_cfg(first_conv="block0.0", pool_size=(4, 4)) for name in ("cifar_vgg8", "cifar_vgg13")}
)


@register_model
def cifar_vgg8(pretrained: bool = False, **kwargs: Any) -> CifarVGG:
    """VGG-8 with BatchNorm for CIFAR (3.96M parameters, 512-d feature)."""
    stage_widths = ((64,), (128,), (256,), (512,), (512,))
    return build_cifar_model(
        CifarVGG, "cifar_vgg8", pretrained, _REFERENCE_RENAMES, stage_widths=stage_widths, **kwargs
    )


@register_model
def cifar_vgg13(pretrained: bool = False, **kwargs: Any) -> CifarVGG:
    """VGG-13 with BatchNorm for CIFAR (9.46M parameters, 512-d feature)."""
    stage_widths = ((64, 64), (128, 128), (256, 256), (512, 512), (512, 512))
    return build_cifar_model(
        CifarVGG, "cifar_vgg13", pretrained, _REFERENCE_RENAMES, stage_widths=stage_widths, **kwargs
    )
