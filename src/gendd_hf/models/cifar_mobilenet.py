"""MobileNetV2 (Sandler et al., arXiv 1801.04381) for CIFAR, as used by CRD (its `mobile_half`: width 0.5).

A stride-2 3x3 stem (32 -> 16), seven stages of inverted residual blocks (down to 2x2), a 1x1 conv to 1280
channels, global average pooling and a linear classifier. As in the reference, activations are ReLU (not ReLU6)
and the expansion-1 block keeps its 1x1 expansion conv.
"""

from collections.abc import Sequence
from typing import Any

import torch
from timm.models import generate_default_cfgs, register_model
from torch import nn

from ._base import CifarNet, build_cifar_model, cifar_cfg, init_cifar_weights


_REFERENCE_RENAMES = ((r"^classifier\.0\.", "fc."),)

# (expansion ratio t, width c, blocks n, stride of the first block s), Table 2 of the paper
_INVERTED_RESIDUAL_SETTING = (
    (1, 16, 1, 1),
    (6, 24, 2, 1),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


def _conv_bn_relu(in_chs: int, out_chs: int, kernel_size: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_chs, out_chs, kernel_size, stride, padding=kernel_size // 2, bias=False),
        nn.BatchNorm2d(out_chs),
        nn.ReLU(inplace=True),
    )


class InvertedResidual(nn.Module):
    """1x1 expansion, 3x3 depthwise conv, linear 1x1 projection; residual when stride 1 and the width is kept."""

    def __init__(self, in_chs: int, out_chs: int, stride: int, expand_ratio: int):
        super().__init__()
        hidden_chs = in_chs * expand_ratio
        self.use_residual = stride == 1 and in_chs == out_chs
        self.conv = nn.Sequential(
            nn.Conv2d(in_chs, hidden_chs, kernel_size=1, bias=False),
            nn.BatchNorm2d(hidden_chs),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden_chs, hidden_chs, kernel_size=3, stride=stride, padding=1, groups=hidden_chs, bias=False),
            nn.BatchNorm2d(hidden_chs),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden_chs, out_chs, kernel_size=1, bias=False),
            nn.BatchNorm2d(out_chs),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.use_residual else self.conv(x)


class CifarMobileNetV2(CifarNet):
    """MobileNetV2 for 32x32 inputs.

    Args:
        width_mult (`float`): Width multiplier of the stem and the inverted residual stages.
        setting (`Sequence[Tuple[int, int, int, int]]`): (expansion, width, blocks, stride) per stage.
        num_features (`int`, defaults to 1280): Width of the final 1x1 conv (the pooled feature).
        num_classes (`int`, defaults to 100): Classifier outputs; 0 makes `forward` return pooled features.
        in_chans (`int`, defaults to 3): Input image channels.
        global_pool (`str`, defaults to `"avg"`): timm pooling type of the head.
    """

    def __init__(
        self,
        width_mult: float,
        setting: Sequence[tuple[int, int, int, int]] = _INVERTED_RESIDUAL_SETTING,
        num_features: int = 1280,
        num_classes: int = 100,
        in_chans: int = 3,
        global_pool: str = "avg",
    ):
        super().__init__()
        in_chs = int(32 * width_mult)
        self.conv1 = _conv_bn_relu(in_chans, in_chs, kernel_size=3, stride=2)
        stages = []
        for expand_ratio, width, num_blocks, stride in setting:
            out_chs = int(width * width_mult)
            blocks = []
            for block_stride in [stride] + [1] * (num_blocks - 1):
                blocks.append(InvertedResidual(in_chs, out_chs, block_stride, expand_ratio))
                in_chs = out_chs
            stages.append(nn.Sequential(*blocks))
        self.blocks = nn.Sequential(*stages)
        self.conv2 = _conv_bn_relu(in_chs, num_features, kernel_size=1)
        self.init_head(num_features, num_classes, global_pool)
        init_cifar_weights(self, linear_std=0.01)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(self.blocks(self.conv1(x)))


default_cfgs = generate_default_cfgs({"cifar_mobilenet_v2": cifar_cfg(first_conv="conv1.0", pool_size=(2, 2))})


@register_model
def cifar_mobilenet_v2(pretrained: bool = False, **kwargs: Any) -> CifarMobileNetV2:
    """MobileNetV2, width 0.5, for CIFAR (0.81M parameters, 1280-d feature)."""
    return build_cifar_model(
        CifarMobileNetV2, "cifar_mobilenet_v2", pretrained, _REFERENCE_RENAMES, width_mult=0.5, **kwargs
    )
