"""Wide ResNets for CIFAR (Zagoruyko & Komodakis, arXiv 1605.07146) as used by the CIFAR-100 distillation literature.

WRN-d-k: depth d = 6n+4, widening factor k; a 3x3 stem of width 16, three stages of n pre-activation blocks
(widths 16k, 32k, 64k at 32x32, 16x16 and 8x8), then BN-ReLU before pooling.
"""

from typing import Any

import torch
from timm.models import generate_default_cfgs, register_model
from torch import nn

from ._base import CifarNet, build_cifar_model, cifar_cfg, init_cifar_weights


# The reference wraps each stage in a `NetworkBlock` holding `layer` and names the projection `convShortcut`.
_REFERENCE_RENAMES = ((r"^block(\d)\.layer\.", r"block\1."), (r"\.convShortcut\.", ".shortcut."))


class WideBasicBlock(nn.Module):
    """Pre-activation block (BN-ReLU-conv twice); when the width changes, a 1x1 conv on the activated input is
    the shortcut."""

    def __init__(self, in_chs: int, out_chs: int, stride: int = 1):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_chs)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv1 = nn.Conv2d(in_chs, out_chs, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_chs)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(out_chs, out_chs, kernel_size=3, padding=1, bias=False)
        self.shortcut = None
        if in_chs != out_chs:
            self.shortcut = nn.Conv2d(in_chs, out_chs, kernel_size=1, stride=stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu1(self.bn1(x))
        shortcut = x if self.shortcut is None else self.shortcut(out)
        out = self.conv2(self.relu2(self.bn2(self.conv1(out))))
        return out + shortcut


class CifarWideResNet(CifarNet):
    """Wide ResNet for 32x32 inputs.

    Args:
        depth (`int`): Number of layers, 6n+4 (n blocks per stage).
        widen_factor (`int`): Width multiplier k of the stages (16k, 32k, 64k).
        num_classes (`int`, defaults to 100): Classifier outputs; 0 makes `forward` return pooled features.
        in_chans (`int`, defaults to 3): Input image channels.
        global_pool (`str`, defaults to `"avg"`): timm pooling type of the head.
    """

    def __init__(
        self, depth: int, widen_factor: int, num_classes: int = 100, in_chans: int = 3, global_pool: str = "avg"
    ):
        super().__init__()
        if (depth - 4) % 6 != 0 or depth < 10:
            raise ValueError(f"Wide ResNet depth must be 6n+4 with n >= 1 (16, 40, ...), got {depth}.")
        blocks_per_stage = (depth - 4) // 6
        self.conv1 = nn.Conv2d(in_chans, 16, kernel_size=3, padding=1, bias=False)
        in_chs = 16
        for index, (width, stride) in enumerate(zip((16, 32, 64), (1, 2, 2)), start=1):
            out_chs = width * widen_factor
            blocks = [WideBasicBlock(in_chs, out_chs, stride)]
            blocks += [WideBasicBlock(out_chs, out_chs) for _ in range(blocks_per_stage - 1)]
            self.add_module(f"block{index}", nn.Sequential(*blocks))
            in_chs = out_chs
        self.bn1 = nn.BatchNorm2d(in_chs)
        self.relu = nn.ReLU(inplace=True)
        self.init_head(in_chs, num_classes, global_pool)
        init_cifar_weights(self)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.block3(self.block2(self.block1(self.conv1(x))))
        return self.relu(self.bn1(x))


default_cfgs = generate_default_cfgs(
    {
        name: cifar_cfg(first_conv="conv1", pool_size=(8, 8))
        for name in ("cifar_wrn_16_2", "cifar_wrn_40_1", "cifar_wrn_40_2")
    }
)


@register_model
def cifar_wrn_16_2(pretrained: bool = False, **kwargs: Any) -> CifarWideResNet:
    """WRN-16-2 for CIFAR (0.70M parameters, 128-d feature)."""
    return build_cifar_model(
        CifarWideResNet, "cifar_wrn_16_2", pretrained, _REFERENCE_RENAMES, depth=16, widen_factor=2, **kwargs
    )


@register_model
def cifar_wrn_40_1(pretrained: bool = False, **kwargs: Any) -> CifarWideResNet:
    """WRN-40-1 for CIFAR (0.57M parameters, 64-d feature)."""
    return build_cifar_model(
        CifarWideResNet, "cifar_wrn_40_1", pretrained, _REFERENCE_RENAMES, depth=40, widen_factor=1, **kwargs
    )


@register_model
def cifar_wrn_40_2(pretrained: bool = False, **kwargs: Any) -> CifarWideResNet:
    """WRN-40-2 for CIFAR (2.2M parameters, 128-d feature)."""
    return build_cifar_model(
        CifarWideResNet, "cifar_wrn_40_2", pretrained, _REFERENCE_RENAMES, depth=40, widen_factor=2, **kwargs
    )
