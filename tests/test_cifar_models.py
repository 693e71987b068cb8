"""The CIFAR model zoo: sizes from the literature, timm's model API, and loading reference checkpoints."""

import re
import subprocess
import sys

import pytest
import timm
import torch
from safetensors.torch import save_file
from timm.data import resolve_model_data_config
from torch import nn

from gendd_hf.models import CIFAR100_MEAN, CIFAR100_STD, CIFAR_MODEL_NAMES
from gendd_hf.models.cifar_resnet import CifarResNet
from gendd_hf.models.cifar_vgg import CifarVGG
from gendd_hf.models.cifar_wrn import CifarWideResNet


# (name, parameters in millions as published for the CRD/DKD CIFAR-100 zoo, exact count of these definitions with
# 100 classes, pooled feature width). The published sizes carry 2-3 significant digits, so they are matched with a
# 3% relative tolerance (the coarsest, "2.2M" for WRN-40-2, is 2.5% off its 2,255,156); the exact counts pin the
# architectures against regressions.
ZOO = [
    ("cifar_resnet20", 0.28, 278_324, 64),
    ("cifar_resnet32", 0.47, 472_756, 64),
    ("cifar_resnet56", 0.86, 861_620, 64),
    ("cifar_resnet110", 1.7, 1_736_564, 64),
    ("cifar_resnet8x4", 1.2, 1_233_540, 256),
    ("cifar_resnet32x4", 7.4, 7_433_860, 256),
    ("cifar_resnet50", 23.71, 23_705_252, 2048),
    ("cifar_wrn_16_2", 0.70, 703_284, 128),
    ("cifar_wrn_40_1", 0.57, 569_780, 64),
    ("cifar_wrn_40_2", 2.2, 2_255_156, 128),
    ("cifar_vgg8", 3.96, 3_965_028, 512),
    ("cifar_vgg13", 9.46, 9_462_180, 512),
    ("cifar_shufflenet_v1", 0.95, 949_258, 960),
    ("cifar_shufflenet_v2", 1.36, 1_355_528, 1024),
    ("cifar_mobilenet_v2", 0.81, 812_836, 1280),
]


def _num_params(model: nn.Module) -> int:
    return sum(parameter.numel() for parameter in model.parameters())


def test_zoo_table_covers_every_registered_name():
    assert [row[0] for row in ZOO] == list(CIFAR_MODEL_NAMES)
    assert set(timm.list_models("cifar_*")) == set(CIFAR_MODEL_NAMES)


@pytest.mark.parametrize("name,published_millions,exact_params,feature_dim", ZOO)
def test_sizes_shapes_and_pooled_features(name, published_millions, exact_params, feature_dim):
    torch.manual_seed(0)
    model = timm.create_model(name)
    num_params = _num_params(model)
    assert num_params == pytest.approx(published_millions * 1e6, rel=0.03)
    assert num_params == exact_params

    assert model.num_features == model.head_hidden_size == feature_dim
    classifier = model.get_classifier()
    assert isinstance(classifier, nn.Linear)
    assert (classifier.in_features, classifier.out_features) == (feature_dim, 100)
    assert model.get_classifier(name_only=True) == "fc"

    x = torch.randn(2, 3, 32, 32)
    model.eval()
    with torch.no_grad():
        feature_map = model.forward_features(x)
        pooled = model.forward_head(feature_map, pre_logits=True)
        logits = model(x)
    assert logits.shape == (2, 100)
    assert feature_map.shape[:2] == (2, feature_dim)
    assert feature_map.shape[2:] == model.pretrained_cfg["pool_size"]
    torch.testing.assert_close(pooled, feature_map.mean(dim=(2, 3)))
    torch.testing.assert_close(logits, classifier(pooled))


@pytest.mark.parametrize(
    "name",
    [
        "cifar_resnet20",
        "cifar_wrn_16_2",
        "cifar_vgg8",
        "cifar_shufflenet_v1",
        "cifar_shufflenet_v2",
        "cifar_mobilenet_v2",
    ],
)
def test_training_step_reaches_every_parameter(name):
    torch.manual_seed(0)
    model = timm.create_model(name).train()
    logits = model(torch.randn(2, 3, 32, 32))
    assert logits.shape == (2, 100)
    logits.logsumexp(dim=1).sum().backward()
    assert all(parameter.grad is not None and parameter.grad.abs().sum() > 0 for parameter in model.parameters())


@pytest.mark.parametrize("name", ["cifar_resnet20", "cifar_wrn_16_2", "cifar_shufflenet_v2"])
def test_num_classes_in_chans_and_reset_classifier(name):
    torch.manual_seed(0)
    x = torch.randn(2, 1, 32, 32)
    model = timm.create_model(name, num_classes=0, in_chans=1).eval()
    assert model.num_classes == 0 and isinstance(model.get_classifier(), nn.Identity)
    with torch.no_grad():
        pooled = model(x)
        torch.testing.assert_close(pooled, model.forward_head(model.forward_features(x), pre_logits=True))
    assert pooled.shape == (2, model.num_features)

    model.reset_classifier(10)
    assert not model.fc.training
    assert model(x).shape == (2, 10)
    model.reset_classifier(0)
    with torch.no_grad():
        torch.testing.assert_close(model(x), pooled)
    # timm's catavgmax pooling concatenates average and max pooling: the head doubles in width.
    model.reset_classifier(7, global_pool="catavgmax")
    assert model.head_hidden_size == 2 * model.num_features
    assert model(x).shape == (2, 7)


def test_pretrained_cfg_is_cifar100():
    model = timm.create_model("cifar_vgg8")
    cfg = model.pretrained_cfg
    assert model.default_cfg is cfg
    assert cfg["input_size"] == (3, 32, 32)
    assert cfg["num_classes"] == 100
    assert cfg["classifier"] == "fc"
    data_config = resolve_model_data_config(model)
    assert data_config["mean"] == CIFAR100_MEAN == (0.5071, 0.4867, 0.4408)
    assert data_config["std"] == CIFAR100_STD == (0.2675, 0.2565, 0.2761)
    assert data_config["crop_pct"] == 1.0
    # No weights are published through timm: asking for them is a clear error, not a silent random init.
    with pytest.raises(RuntimeError, match="No pretrained weights exist for cifar_vgg8"):
        timm.create_model("cifar_vgg8", pretrained=True)


def test_registered_in_timm_once_gendd_hf_is_imported():
    code = (
        "import timm, torch\n"
        "assert not timm.is_model('cifar_resnet56')\n"
        "import gendd_hf.models\n"
        "model = timm.create_model('cifar_resnet56', num_classes=10)\n"
        "print(tuple(model(torch.zeros(1, 3, 32, 32)).shape))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "(1, 10)"


# Reference key names (CRD's models/*.py) for the families whose names differ from this zoo's, written from ours.
TO_REFERENCE_KEYS = {
    "cifar_wrn_16_2": (
        [(r"^block(\d)\.", r"block\1.layer."), (r"\.shortcut\.", ".convShortcut.")],
        ["block1.layer.0.convShortcut.weight", "block3.layer.1.bn2.running_var", "fc.weight"],
    ),
    "cifar_vgg8": ([(r"^fc\.", "classifier.")], ["block0.0.weight", "block4.1.running_mean", "classifier.weight"]),
    "cifar_shufflenet_v1": ([(r"^fc\.", "linear.")], ["layer1.0.conv1.weight", "layer3.3.bn3.bias", "linear.weight"]),
    "cifar_shufflenet_v2": ([(r"^fc\.", "linear.")], ["layer1.0.conv5.weight", "layer2.7.bn3.bias", "linear.bias"]),
    "cifar_mobilenet_v2": (
        [(r"^fc\.", "classifier.0.")],
        ["blocks.6.0.conv.7.weight", "conv2.0.weight", "classifier.0.weight"],
    ),
    "cifar_resnet20": ([], ["layer2.0.downsample.0.weight", "layer3.2.bn2.weight", "fc.bias"]),
    "cifar_resnet50": (
        [(r"\.downsample\.", ".shortcut."), (r"^fc\.", "linear.")],
        ["layer1.0.shortcut.0.weight", "layer4.2.bn3.running_var", "linear.weight"],
    ),
}


@pytest.mark.parametrize("name", sorted(TO_REFERENCE_KEYS))
def test_reference_checkpoint_loads_through_timm(name, tmp_path):
    renames, expected_reference_keys = TO_REFERENCE_KEYS[name]
    torch.manual_seed(0)
    trained = timm.create_model(name).eval()
    reference_state = {}
    for key, value in trained.state_dict().items():
        for pattern, replacement in renames:
            key = re.sub(pattern, replacement, key)
        reference_state[key] = value.clone()
    assert set(expected_reference_keys) <= set(reference_state)
    path = tmp_path / f"{name}.safetensors"
    save_file(reference_state, str(path))

    torch.manual_seed(1)
    loaded = timm.create_model(name, pretrained=True, pretrained_cfg_overlay=dict(file=str(path))).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), trained(x), rtol=0, atol=0)


def test_reference_initialisation():
    torch.manual_seed(0)
    vgg = timm.create_model("cifar_vgg13")
    assert torch.all(vgg.fc.bias == 0)
    assert vgg.fc.weight.std().item() == pytest.approx(0.01, rel=0.05)
    conv = vgg.block4[3]
    # He-normal, fan-out mode: std = sqrt(2 / (out_channels * 3 * 3)).
    assert conv.weight.std().item() == pytest.approx((2 / (512 * 9)) ** 0.5, rel=0.05)
    assert torch.all(vgg.block4[4].weight == 1) and torch.all(vgg.block4[4].bias == 0)


@pytest.mark.parametrize(
    "build,message",
    [
        (lambda: CifarResNet(depth=21, channels=(16, 16, 32, 64)), "6n\\+2"),
        (lambda: CifarResNet(depth=20, channels=(16, 32, 64)), "4 values"),
        (lambda: CifarWideResNet(depth=18, widen_factor=2), "6n\\+4"),
        (lambda: CifarVGG(stage_widths=((64,), (128,))), "5 stages"),
    ],
)
def test_bad_architecture_arguments(build, message):
    with pytest.raises(ValueError, match=message):
        build()
