"""CIFAR ResNets (He et al., arXiv 1512.03385, section 4.2) as used by the CIFAR-100 distillation literature.

Depth 6n+2: a 3x3 stem, then three stages of n basic blocks at 32x32, 16x16 and 8x8. `resnet8x4` and
`resnet32x4` are the 4x wider variants (stem 32, stages 64/128/256) introduced by CRD.

`resnet50` is CRD's other ResNet for CIFAR, the ImageNet bottleneck ResNet-50 with a 3x3 stride-1 stem and no
max-pool (four stages at 32x32 down to 4x4, 2048-d feature): timm's own `ResNet` with that stem.
"""

from collections.abc import Sequence
from typing import Any

import torch
from timm.models import generate_default_cfgs, register_model
from timm.models.resnet import Bottleneck, ResNet
from torch import nn

from ._base import CifarNet, build_cifar_model, cifar_cfg, init_cifar_weights


class BasicBlock(nn.Module):
    """Post-activation residual block: two 3x3 conv-BN, with a 1x1 conv-BN shortcut when the shape changes."""

    def __init__(self, in_chs: int, out_chs: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_chs, out_chs, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_chs)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(out_chs, out_chs, kernel_size=3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_chs)
        self.downsample = None
        if stride != 1 or in_chs != out_chs:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_chs, out_chs, kernel_size=1, stride=stride, bias=False), nn.BatchNorm2d(out_chs)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + shortcut)


class CifarResNet(CifarNet):
    """ResNet for 32x32 inputs.

    Args:
        depth (`int`): Number of layers, 6n+2 (n basic blocks per stage).
        channels (`Sequence[int]`): Widths of the stem and of the three stages.
        num_classes (`int`, defaults to 100): Classifier outputs; 0 makes `forward` return pooled features.
        in_chans (`int`, defaults to 3): Input image channels.
        global_pool (`str`, defaults to `"avg"`): timm pooling type of the head.
    """

    def __init__(
        self,
        depth: int,
        channels: Sequence[int],
        num_classes: int = 100,
        in_chans: int = 3,
        global_pool: str = "avg",
    ):
        super().__init__()
        if (depth - 2) % 6 != 0 or depth < 8:
            raise ValueError(f"CIFAR ResNet depth must be 6n+2 with n >= 1 (20, 32, 56, 110, ...), got {depth}.")
        if len(channels) != 4:
            raise ValueError(f"channels must give the stem and three stage widths (4 values), got {channels}.")
        blocks_per_stage = (depth - 2) // 6
        self.conv1 = nn.Conv2d(in_chans, channels[0], kernel_size=3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels[0])
        self.relu = nn.ReLU(inplace=True)
        in_chs = channels[0]
        for index, (out_chs, stride) in enumerate(zip(channels[1:], (1, 2, 2)), start=1):
            blocks = [BasicBlock(in_chs, out_chs, stride)]
            blocks += [BasicBlock(out_chs, out_chs) for _ in range(blocks_per_stage - 1)]
            self.add_module(f"layer{index}", nn.Sequential(*blocks))
            in_chs = out_chs
        self.init_head(in_chs, num_classes, global_pool)
        init_cifar_weights(self)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        return self.layer3(self.layer2(self.layer1(x)))


class CifarBottleneckResNet(ResNet):
    """timm's bottleneck [`~timm.models.resnet.ResNet`] with the CIFAR stem of CRD's `ResNet50`: one 3x3 stride-1
    convolution and no max-pool, so 32x32 inputs end at 4x4. The residual branches' last BN starts at one, as in
    the reference (timm's default zero init is off).

    Args:
        layers (`Sequence[int]`): Bottleneck blocks per stage, `(3, 4, 6, 3)` for ResNet-50.
        num_classes (`int`, defaults to 100): Classifier outputs; 0 makes `forward` return pooled features.
        in_chans (`int`, defaults to 3): Input image channels.
        kwargs: Other `timm.models.resnet.ResNet` arguments (`global_pool`, `drop_rate`, ...).
    """

    def __init__(self, layers: Sequence[int], num_classes: int = 100, in_chans: int = 3, **kwargs: Any):
        super().__init__(Bottleneck, layers, num_classes=num_classes, in_chans=in_chans, zero_init_last=False, **kwargs)
        self.conv1 = nn.Conv2d(in_chans, self.bn1.num_features, kernel_size=3, padding=1, bias=False)
        nn.init.kaiming_normal_(self.conv1.weight, mode="fan_out", nonlinearity="relu")
        self.maxpool = nn.Identity()
        # The stem no longer downsamples (timm's stride-2 conv and max-pool are gone): 4x less reduction.
        for info in self.feature_info:
            info["reduction"] = max(1, info["reduction"] // 4)


default_cfgs = generate_default_cfgs(
    {
        **{
            name: cifar_cfg(first_conv="conv1", pool_size=(8, 8))
            for name in (
                "cifar_resnet20",
                "cifar_resnet32",
                "cifar_resnet56",
                "cifar_resnet110",
                "cifar_resnet8x4",
                "cifar_resnet32x4",
            )
        },
        "cifar_resnet50": cifar_cfg(first_conv="conv1", pool_size=(4, 4)),
    }
)

_WIDTHS = (16, 16, 32, 64)
_WIDTHS_X4 = (32, 64, 128, 256)


@register_model
def cifar_resnet20(pretrained: bool = False, **kwargs: Any) -> CifarResNet:
    """ResNet-20 for CIFAR (0.28M parameters, 64-d feature)."""
    return build_cifar_model(CifarResNet, "cifar_resnet20", pretrained, depth=20, channels=_WIDTHS, **kwargs)


@register_model
def cifar_resnet32(pretrained: bool = False, **kwargs: Any) -> CifarResNet:
    """ResNet-32 for CIFAR (0.47M parameters, 64-d feature)."""
    return build_cifar_model(CifarResNet, "cifar_resnet32", pretrained, depth=32, channels=_WIDTHS, **kwargs)


@register_model
def cifar_resnet56(pretrained: bool = False, **kwargs: Any) -> CifarResNet:
    """ResNet-56 for CIFAR (0.86M parameters, 64-d feature)."""
    return build_cifar_model(CifarResNet, "cifar_resnet56", pretrained, depth=56, channels=_WIDTHS, **kwargs)


@register_model
def cifar_resnet110(pretrained: bool = False, **kwargs: Any) -> CifarResNet:
    """ResNet-110 for CIFAR (1.7M parameters, 64-d feature)."""
    return build_cifar_model(CifarResNet, "cifar_resnet110", pretrained, depth=110, channels=_WIDTHS, **kwargs)


@register_model
def cifar_resnet8x4(pretrained: bool = False, **kwargs: Any) -> CifarResNet:
    """ResNet-8, 4x wide, for CIFAR (1.2M parameters, 256-d feature)."""
    return build_cifar_model(CifarResNet, "cifar_resnet8x4", pretrained, depth=8, channels=_WIDTHS_X4, **kwargs)


@register_model
def cifar_resnet32x4(pretrained: bool = False, **kwargs: Any) -> CifarResNet:
    """ResNet-32, 4x wide, for CIFAR (7.4M parameters, 256-d feature)."""
    return build_cifar_model(CifarResNet, "cifar_resnet32x4", pretrained, depth=32, channels=_WIDTHS_X4, **kwargs)


# CRD names the projection shortcut `shortcut` and the classifier `linear`; timm says `downsample` and `fc`.
_BOTTLENECK_REFERENCE_RENAMES = ((r"\.shortcut\.", ".downsample."), (r"^linear\.", "fc."))


@register_model
def cifar_resnet50(pretrained: bool = False, **kwargs: Any) -> CifarBottleneckResNet:
    """ResNet-50 (bottleneck) for CIFAR (23.7M parameters, 2048-d feature)."""
    return build_cifar_model(
        CifarBottleneckResNet,
        "cifar_resnet50",
        pretrained,
        _BOTTLENECK_REFERENCE_RENAMES,
        layers=(3, 4, 6, 3),
        **kwargs,
    )
