"""CIFAR-100 model zoo of the distillation literature, registered in timm on import.

After `import gendd_hf.models`, `timm.create_model("cifar_resnet56")` (and the other `cifar_*` names) works like
any timm model: 32x32 inputs, CIFAR-100 mean/std in its pretrained config, 100 classes by default.
"""

from ._base import CIFAR100_MEAN, CIFAR100_STD, CifarNet
from .cifar_mobilenet import CifarMobileNetV2
from .cifar_resnet import CifarBottleneckResNet, CifarResNet
from .cifar_shufflenet import CifarShuffleNetV1, CifarShuffleNetV2
from .cifar_vgg import CifarVGG
from .cifar_wrn import CifarWideResNet


CIFAR_MODEL_NAMES = (
    "cifar_resnet20",
    "cifar_resnet32",
    "cifar_resnet56",
    "cifar_resnet110",
    "cifar_resnet8x4",
    "cifar_resnet32x4",
    "cifar_resnet50",
    "cifar_wrn_16_2",
    "cifar_wrn_40_1",
    "cifar_wrn_40_2",
    "cifar_vgg8",
    "cifar_vgg13",
    "cifar_shufflenet_v1",
    "cifar_shufflenet_v2",
    "cifar_mobilenet_v2",
)

__all__ = [
    "CIFAR100_MEAN",
    "CIFAR100_STD",
    "CIFAR_MODEL_NAMES",
    "CifarBottleneckResNet",
    "CifarMobileNetV2",
    "CifarNet",
    "CifarResNet",
    "CifarShuffleNetV1",
    "CifarShuffleNetV2",
    "CifarVGG",
    "CifarWideResNet",
]
