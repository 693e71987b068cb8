"""ShuffleNet V1 (Zhang et al., arXiv 1707.01083) and V2 (Ma et al., arXiv 1807.11164) for CIFAR, as used by CRD.

Both keep the 32x32 resolution in a 1x1 stem (24 wide) and halve it at the first unit of each of their three
stages (32 -> 16 -> 8 -> 4). Channel shuffle is `nn.ChannelShuffle`.
"""

from collections.abc import Sequence
from typing import Any

import torch
from timm.models import generate_default_cfgs, register_model
from torch import nn

from ._base import CifarNet, build_cifar_model, cifar_cfg


_REFERENCE_RENAMES = ((r"^linear\.", "fc."),)
_STEM_WIDTH = 24


class ShuffleV1Unit(nn.Module):
    """ShuffleNet V1 unit: grouped 1x1 conv, channel shuffle, 3x3 depthwise conv, grouped 1x1 conv.

    At stride 1 the result is added to the input; at stride 2 it is concatenated with a 3x3 average pooling of
    the input, so the unit outputs `in_chs + out_chs` channels.
    """

    def __init__(self, in_chs: int, out_chs: int, stride: int, groups: int, first_groups: int):
        super().__init__()
        mid_chs = out_chs // 4
        self.stride = stride
        self.conv1 = nn.Conv2d(in_chs, mid_chs, kernel_size=1, groups=first_groups, bias=False)
        self.bn1 = nn.BatchNorm2d(mid_chs)
        self.shuffle = nn.ChannelShuffle(first_groups)
        self.conv2 = nn.Conv2d(mid_chs, mid_chs, kernel_size=3, stride=stride, padding=1, groups=mid_chs, bias=False)
        self.bn2 = nn.BatchNorm2d(mid_chs)
        self.conv3 = nn.Conv2d(mid_chs, out_chs, kernel_size=1, groups=groups, bias=False)
        self.bn3 = nn.BatchNorm2d(out_chs)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut = nn.AvgPool2d(kernel_size=3, stride=2, padding=1) if stride == 2 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.shuffle(self.relu(self.bn1(self.conv1(x))))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        shortcut = self.shortcut(x)
        return self.relu(torch.cat([out, shortcut], dim=1) if self.stride == 2 else out + shortcut)


class CifarShuffleNetV1(CifarNet):
    """ShuffleNet V1 for 32x32 inputs.

    Args:
        stage_widths (`Sequence[int]`): Output width of each of the three stages.
        stage_depths (`Sequence[int]`): Number of units in each stage.
        groups (`int`): Groups of the 1x1 convolutions.
        num_classes (`int`, defaults to 100): Classifier outputs; 0 makes `forward` return pooled features.
        in_chans (`int`, defaults to 3): Input image channels.
        global_pool (`str`, defaults to `"avg"`): timm pooling type of the head.
    """

    def __init__(
        self,
        stage_widths: Sequence[int],
        stage_depths: Sequence[int],
        groups: int,
        num_classes: int = 100,
        in_chans: int = 3,
        global_pool: str = "avg",
    ):
        super().__init__()
        self.conv1 = nn.Conv2d(in_chans, _STEM_WIDTH, kernel_size=1, bias=False)
        self.bn1 = nn.BatchNorm2d(_STEM_WIDTH)
        self.relu = nn.ReLU(inplace=True)
        in_chs = _STEM_WIDTH
        for index, (out_chs, depth) in enumerate(zip(stage_widths, stage_depths), start=1):
            # The paper keeps the first 1x1 conv ungrouped: the 24-wide stem output is too narrow to split.
            first_groups = 1 if index == 1 else groups
            units = [ShuffleV1Unit(in_chs, out_chs - in_chs, stride=2, groups=groups, first_groups=first_groups)]
            units += [ShuffleV1Unit(out_chs, out_chs, 1, groups, groups) for _ in range(depth - 1)]
            self.add_module(f"layer{index}", nn.Sequential(*units))
            in_chs = out_chs
        self.init_head(in_chs, num_classes, global_pool)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        return self.layer3(self.layer2(self.layer1(x)))


class ShuffleV2Unit(nn.Module):
    """ShuffleNet V2 basic unit: half of the channels pass through, the other half goes through 1x1 conv, 3x3
    depthwise conv, 1x1 conv; the halves are concatenated and shuffled."""

    def __init__(self, chs: int):
        super().__init__()
        branch_chs = chs // 2
        self.conv1 = nn.Conv2d(branch_chs, branch_chs, kernel_size=1, bias=False)
        self.bn1 = nn.BatchNorm2d(branch_chs)
        self.conv2 = nn.Conv2d(branch_chs, branch_chs, kernel_size=3, padding=1, groups=branch_chs, bias=False)
        self.bn2 = nn.BatchNorm2d(branch_chs)
        self.conv3 = nn.Conv2d(branch_chs, branch_chs, kernel_size=1, bias=False)
        self.bn3 = nn.BatchNorm2d(branch_chs)
        self.relu = nn.ReLU(inplace=True)
        self.shuffle = nn.ChannelShuffle(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        passthrough, branch = x.chunk(2, dim=1)
        branch = self.relu(self.bn1(self.conv1(branch)))
        branch = self.bn2(self.conv2(branch))
        branch = self.relu(self.bn3(self.conv3(branch)))
        return self.shuffle(torch.cat([passthrough, branch], dim=1))


class ShuffleV2DownUnit(nn.Module):
    """ShuffleNet V2 spatial down-sampling unit: two stride-2 branches, each `out_chs / 2` wide, concatenated
    and shuffled."""

    def __init__(self, in_chs: int, out_chs: int):
        super().__init__()
        mid_chs = out_chs // 2
        # left branch: 3x3 depthwise (stride 2), 1x1
        self.conv1 = nn.Conv2d(in_chs, in_chs, kernel_size=3, stride=2, padding=1, groups=in_chs, bias=False)
        self.bn1 = nn.BatchNorm2d(in_chs)
        self.conv2 = nn.Conv2d(in_chs, mid_chs, kernel_size=1, bias=False)
        self.bn2 = nn.BatchNorm2d(mid_chs)
        # right branch: 1x1, 3x3 depthwise (stride 2), 1x1
        self.conv3 = nn.Conv2d(in_chs, mid_chs, kernel_size=1, bias=False)
        self.bn3 = nn.BatchNorm2d(mid_chs)
        self.conv4 = nn.Conv2d(mid_chs, mid_chs, kernel_size=3, stride=2, padding=1, groups=mid_chs, bias=False)
        self.bn4 = nn.BatchNorm2d(mid_chs)
        self.conv5 = nn.Conv2d(mid_chs, mid_chs, kernel_size=1, bias=False)
        self.bn5 = nn.BatchNorm2d(mid_chs)
        self.relu = nn.ReLU(inplace=True)
        self.shuffle = nn.ChannelShuffle(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        left = self.relu(self.bn2(self.conv2(self.bn1(self.conv1(x)))))
        right = self.relu(self.bn3(self.conv3(x)))
        right = self.relu(self.bn5(self.conv5(self.bn4(self.conv4(right)))))
        return self.shuffle(torch.cat([left, right], dim=1))


class CifarShuffleNetV2(CifarNet):
    """ShuffleNet V2 for 32x32 inputs.

    Args:
        stage_widths (`Sequence[int]`): Output width of each of the three stages.
        stage_depths (`Sequence[int]`): Number of basic units after the down-sampling unit of each stage.
        num_features (`int`): Width of the final 1x1 conv (the pooled feature).
        num_classes (`int`, defaults to 100): Classifier outputs; 0 makes `forward` return pooled features.
        in_chans (`int`, defaults to 3): Input image channels.
        global_pool (`str`, defaults to `"avg"`): timm pooling type of the head.
    """

    def __init__(
        self,
        stage_widths: Sequence[int],
        stage_depths: Sequence[int],
        num_features: int,
        num_classes: int = 100,
        in_chans: int = 3,
        global_pool: str = "avg",
    ):
        super().__init__()
        self.conv1 = nn.Conv2d(in_chans, _STEM_WIDTH, kernel_size=1, bias=False)
        self.bn1 = nn.BatchNorm2d(_STEM_WIDTH)
        self.relu = nn.ReLU(inplace=True)
        in_chs = _STEM_WIDTH
        for index, (out_chs, depth) in enumerate(zip(stage_widths, stage_depths), start=1):
            units = [ShuffleV2DownUnit(in_chs, out_chs)] + [ShuffleV2Unit(out_chs) for _ in range(depth)]
            self.add_module(f"layer{index}", nn.Sequential(*units))
            in_chs = out_chs
        self.conv2 = nn.Conv2d(in_chs, num_features, kernel_size=1, bias=False)
        self.bn2 = nn.BatchNorm2d(num_features)
        self.init_head(num_features, num_classes, global_pool)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.relu(self.bn2(self.conv2(x)))


default_cfgs = generate_default_cfgs(
    {name: cifar_cfg(first_conv="conv1", pool_size=(4, 4)) for name in ("cifar_shufflenet_v1", "cifar_shufflenet_v2")}
)


@register_model
def cifar_shufflenet_v1(pretrained: bool = False, **kwargs: Any) -> CifarShuffleNetV1:
    """ShuffleNet V1, 3 groups, for CIFAR (0.95M parameters, 960-d feature)."""
    model_args = dict(stage_widths=(240, 480, 960), stage_depths=(4, 8, 4), groups=3)
    return build_cifar_model(
        CifarShuffleNetV1, "cifar_shufflenet_v1", pretrained, _REFERENCE_RENAMES, **model_args, **kwargs
    )


@register_model
def cifar_shufflenet_v2(pretrained: bool = False, **kwargs: Any) -> CifarShuffleNetV2:
    """ShuffleNet V2 1.0x for CIFAR (1.36M parameters, 1024-d feature)."""
    model_args = dict(stage_widths=(116, 232, 464), stage_depths=(3, 7, 3), num_features=1024)
    return build_cifar_model(
        CifarShuffleNetV2, "cifar_shufflenet_v2", pretrained, _REFERENCE_RENAMES, **model_args, **kwargs
    )
