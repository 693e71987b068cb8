"""Shared pieces of the CIFAR model zoo: timm's classifier-head API, weight init, default configs and the builder.

The networks follow the CIFAR-100 definitions of the knowledge-distillation literature (CRD, arXiv 1910.10699,
github.com/HobbitLong/RepDistiller, reused by DKD's mdistiller). Their trunk parameter names match those
definitions, and `checkpoint_filter_fn` renames the rest, so checkpoints trained with those repositories load
through timm's `pretrained_cfg_overlay=dict(file=...)`.
"""

import re
from collections.abc import Sequence
from functools import partial
from typing import Any, TypeVar

import torch
from timm.layers import create_classifier
from timm.models import build_model_with_cfg
from torch import nn


CIFAR100_MEAN = (0.5071, 0.4867, 0.4408)
CIFAR100_STD = (0.2675, 0.2565, 0.2761)

ModelT = TypeVar("ModelT", bound=nn.Module)


class CifarNet(nn.Module):
    """Base of the CIFAR networks: a subclass builds its trunk and `forward_features`, then calls `init_head`.

    The head is timm's: global pooling (`global_pool`) then a linear classifier (`fc`); `num_classes=0` replaces
    the classifier by an identity so that `forward` returns the pooled penultimate feature.
    """

    def init_head(self, num_features: int, num_classes: int, global_pool: str = "avg") -> None:
        self.num_classes = num_classes
        self.num_features = num_features
        self.global_pool, self.fc = create_classifier(num_features, num_classes, pool_type=global_pool)
        self.head_hidden_size = num_features * self.global_pool.feat_mult()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Unpooled last feature map, shape (batch_size, num_features, height, width)."""
        raise NotImplementedError(f"{type(self).__name__} must define forward_features")

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Pools the feature map; returns the pooled feature when `pre_logits`, else the logits."""
        x = self.global_pool(x)
        return x if pre_logits else self.fc(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def get_classifier(self, name_only: bool = False) -> nn.Module | str:
        return "fc" if name_only else self.fc

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        """Replaces the classifier by a freshly initialised one with `num_classes` outputs (0: identity)."""
        pool_type = self.global_pool.pool_type if global_pool is None else global_pool
        self.init_head(self.num_features, num_classes, global_pool=pool_type)
        self.global_pool.train(self.training)
        self.fc.train(self.training)


def init_cifar_weights(model: nn.Module, linear_std: float | None = None) -> None:
    """He-normal (fan-out) convolutions and unit BatchNorm, as in the reference definitions.

    With `linear_std`, linear layers get N(0, linear_std) weights and zero bias (the VGG and MobileNetV2
    references); otherwise they keep PyTorch's default initialisation.
    """
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Linear) and linear_std is not None:
            nn.init.normal_(module.weight, std=linear_std)
            nn.init.zeros_(module.bias)


def cifar_cfg(first_conv: str, pool_size: tuple[int, int], **kwargs: Any) -> dict[str, Any]:
    """timm pretrained config of a CIFAR-100 model: 32x32 inputs, CIFAR-100 mean/std, 100 classes, no weights."""
    return {
        "url": "",
        "num_classes": 100,
        "input_size": (3, 32, 32),
        "pool_size": pool_size,
        "crop_pct": 1.0,
        "interpolation": "bilinear",
        "mean": CIFAR100_MEAN,
        "std": CIFAR100_STD,
        "first_conv": first_conv,
        "classifier": "fc",
        "origin_url": "https://github.com/HobbitLong/RepDistiller",
        "paper_ids": "arXiv:1910.10699",
        **kwargs,
    }


def checkpoint_filter_fn(
    state_dict: dict[str, torch.Tensor], model: nn.Module, renames: Sequence[tuple[str, str]] = ()
) -> dict[str, torch.Tensor]:
    """Renames the keys of a reference-repository checkpoint with `(pattern, replacement)` regex pairs.

    Keys already in this zoo's naming are left alone, so the function also accepts checkpoints saved from
    these models.
    """
    renamed = {}
    for key, value in state_dict.items():
        for pattern, replacement in renames:
            key = re.sub(pattern, replacement, key)
        renamed[key] = value
    return renamed


def build_cifar_model(
    model_cls: type[ModelT], variant: str, pretrained: bool, renames: Sequence[tuple[str, str]] = (), **kwargs: Any
) -> ModelT:
    """Builds a registered CIFAR model through timm (config, kwargs defaults, optional weights from a file)."""
    return build_model_with_cfg(
        model_cls,
        variant,
        pretrained,
        pretrained_filter_fn=partial(checkpoint_filter_fn, renames=renames),
        **kwargs,
    )
