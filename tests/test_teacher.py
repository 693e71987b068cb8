"""TimmTeacher: features and linear classifier of a frozen timm model, and safe checkpoint loading."""

import pytest
import timm
import torch
from safetensors.torch import save_file
from timm.layers import create_classifier
from torch import nn

import gendd_hf.models  # noqa: F401  (registers the cifar_* models in timm)
from gendd_hf.teacher import TeacherOutput, TimmTeacher


def _cifar_resnet20(num_classes: int = 10) -> nn.Module:
    torch.manual_seed(0)
    return timm.create_model("cifar_resnet20", num_classes=num_classes)


def _images(batch_size: int = 4, size: int = 32) -> torch.Tensor:
    return torch.randn(batch_size, 3, size, size, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize(
    "name,kwargs,feature_dim",
    [
        ("cifar_resnet20", {}, 64),
        ("test_resnet", {}, 96),
        ("test_vit", {"img_size": 32}, 64),
        ("test_convnext", {}, 64),
    ],
)
def test_features_and_logits_match_the_timm_model(name, kwargs, feature_dim):
    torch.manual_seed(0)
    model = timm.create_model(name, num_classes=7, **kwargs)
    teacher = TimmTeacher(model)
    assert (teacher.feature_dim, teacher.num_classes) == (feature_dim, 7)
    assert teacher.classifier_weight.shape == (7, feature_dim)
    assert teacher.classifier_bias.shape == (7,)

    x = _images()
    output = teacher(x)
    assert isinstance(output, TeacherOutput)
    assert output.features.shape == (4, feature_dim) and output.logits.shape == (4, 7)
    torch.testing.assert_close(output.logits, output.features @ teacher.classifier_weight.T + teacher.classifier_bias)
    with torch.no_grad():
        torch.testing.assert_close(output.logits, model(x))
    features, logits = output.to_tuple()
    assert features is output.features and logits is output.logits


def test_hand_computed_logits_with_a_known_classifier():
    teacher = TimmTeacher(_cifar_resnet20(num_classes=2))
    with torch.no_grad():
        teacher.classifier.weight.zero_()
        teacher.classifier.weight[0, 0] = 2.0  # class 0 logit = 2 * f[0] + 1
        teacher.classifier.weight[1, 1] = -1.0  # class 1 logit = -f[1] - 3
        teacher.classifier.bias.copy_(torch.tensor([1.0, -3.0]))
    output = teacher(_images(batch_size=3))
    f = output.features
    expected = torch.stack([2 * f[:, 0] + 1, -f[:, 1] - 3], dim=1)
    torch.testing.assert_close(output.logits, expected)


def test_stays_frozen_in_eval_mode():
    teacher = TimmTeacher(_cifar_resnet20())
    assert not any(module.training for module in teacher.modules())
    wrapper = nn.ModuleDict({"teacher": teacher, "student": nn.Linear(2, 2)})
    wrapper.train()
    assert wrapper["student"].training
    assert not any(module.training for module in teacher.modules())
    assert teacher.train(True) is teacher and not teacher.training

    bn = teacher.model.bn1
    running_mean = bn.running_mean.clone()
    x = _images().requires_grad_(True)
    output = teacher(x)
    torch.testing.assert_close(bn.running_mean, running_mean, rtol=0, atol=0)
    # Eval-mode BatchNorm: a sample's output does not depend on the rest of the batch.
    torch.testing.assert_close(teacher(x[:1]).logits, output.logits[:1])

    assert all(not parameter.requires_grad for parameter in teacher.parameters())
    assert not output.features.requires_grad and not output.logits.requires_grad
    assert not teacher.classifier_weight.requires_grad and not teacher.classifier_bias.requires_grad


def test_state_dict_holds_the_classifier_once():
    model = _cifar_resnet20()
    teacher = TimmTeacher(model)
    assert list(teacher.state_dict()) == [f"model.{key}" for key in model.state_dict()]


def test_classifier_without_bias_gives_zero_bias():
    model = _cifar_resnet20()
    model.fc = nn.Linear(64, 10, bias=False)
    teacher = TimmTeacher(model)
    torch.testing.assert_close(teacher.classifier_bias, torch.zeros(10))
    output = teacher(_images())
    torch.testing.assert_close(output.logits, output.features @ teacher.classifier_weight.T)


def _with_identity_head(model):
    model.reset_classifier(0)


def _with_mlp_head(model):
    model.fc = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))


def _with_conv_head(model):
    model.global_pool, model.fc = create_classifier(64, 10, use_conv=True)


@pytest.mark.parametrize("make_head", [_with_identity_head, _with_mlp_head, _with_conv_head])
def test_non_linear_classifier_is_refused(make_head):
    model = _cifar_resnet20()
    make_head(model)
    with pytest.raises(ValueError, match="needs a linear final classifier"):
        TimmTeacher(model)


def test_non_timm_module_is_refused():
    with pytest.raises(TypeError, match="forward_features, forward_head, get_classifier"):
        TimmTeacher(nn.Linear(3, 3))


def test_from_timm_loads_a_safetensors_checkpoint(tmp_path):
    model = _cifar_resnet20().eval()
    path = tmp_path / "teacher.safetensors"
    save_file(model.state_dict(), str(path))

    # pretrained=True (the default) is ignored with a checkpoint: timm has no cifar_resnet20 weights to fetch.
    teacher = TimmTeacher.from_timm("cifar_resnet20", checkpoint_path=path, num_classes=10)
    x = _images()
    with torch.no_grad():
        expected_logits = model(x)
        expected_features = model.forward_head(model.forward_features(x), pre_logits=True)
    output = teacher(x)
    torch.testing.assert_close(output.logits, expected_logits, rtol=0, atol=0)
    torch.testing.assert_close(output.features, expected_features, rtol=0, atol=0)
    assert teacher.data_config()["input_size"] == (3, 32, 32)
    assert teacher.data_config()["mean"] == gendd_hf.models.CIFAR100_MEAN


def test_from_timm_without_checkpoint_builds_the_named_model():
    teacher = TimmTeacher.from_timm("test_resnet", pretrained=False, num_classes=3)
    assert type(teacher.model).__name__ == "ResNet"
    assert teacher.num_classes == 3 and not teacher.training


def test_missing_checkpoint_names_the_path(tmp_path):
    path = tmp_path / "absent.safetensors"
    with pytest.raises(FileNotFoundError, match="absent.safetensors"):
        TimmTeacher.from_timm("cifar_resnet20", checkpoint_path=path, num_classes=10)


def test_pickle_checkpoint_is_refused_without_unpickling(tmp_path):
    path = tmp_path / "teacher.pth"
    torch.save(_cifar_resnet20().state_dict(), path)
    with pytest.raises(ValueError, match=r"teacher\.pth is not a safetensors file"):
        TimmTeacher.from_timm("cifar_resnet20", checkpoint_path=path, num_classes=10)


def test_checkpoint_of_another_shape_names_the_path(tmp_path):
    path = tmp_path / "hundred_classes.safetensors"
    save_file(_cifar_resnet20(num_classes=100).state_dict(), str(path))
    with pytest.raises(ValueError, match="hundred_classes.safetensors does not fit timm model 'cifar_resnet20'"):
        TimmTeacher.from_timm("cifar_resnet20", checkpoint_path=path, num_classes=10)
