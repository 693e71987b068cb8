"""A frozen timm classifier used as the GenDD teacher.

GenDD needs two things from the teacher (section 1 of the method): its pooled penultimate feature f (the target
that the diffusion head learns to generate) and its linear classifier W, b (class centres for Distribution
Contraction, and the map from generated features to logits at inference). Any timm classifier gives both through
its generic API: `forward_features` then `forward_head(pre_logits=True)` for f, `get_classifier()` for W, b.
"""

import os
from dataclasses import dataclass
from typing import Any

import timm
import torch
from datasets import ClassLabel
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn
from transformers.utils import ModelOutput


@dataclass
class TeacherOutput(ModelOutput):
    """Teacher outputs for a batch of images.

    Args:
        features (`torch.FloatTensor` of shape `(batch_size, feature_dim)`):
            Pooled penultimate feature f, the input of the linear classifier.
        logits (`torch.FloatTensor` of shape `(batch_size, num_classes)`):
            `features @ classifier_weight.T + classifier_bias`.
    """

    features: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None


class TimmTeacher(nn.Module):
    """Wraps a timm classifier as a frozen distillation teacher: eval mode, no gradients, ever.

    Args:
        model (`nn.Module`):
            A timm model (with `forward_features`, `forward_head` and `get_classifier`) whose final classifier is
            an `nn.Linear`.
        name (`str`, *optional*):
            timm name of the model, for the model card; defaults to its `pretrained_cfg` architecture.
        weights (`str`, *optional*):
            Where the weights came from, for the model card: `"hf-hub:<repo id>"`, a URL, or a local file or folder.
            `from_timm` records it; `None` means unknown.
    """

    def __init__(self, model: nn.Module, name: str | None = None, weights: str | None = None):
        super().__init__()
        missing = [name for name in ("forward_features", "forward_head", "get_classifier") if not hasattr(model, name)]
        if missing:
            raise TypeError(
                f"TimmTeacher needs a timm model; {type(model).__name__} has no {', '.join(missing)}. "
                "Build it with timm.create_model or use TimmTeacher.from_timm."
            )
        classifier = model.get_classifier()
        if not isinstance(classifier, nn.Linear):
            raise ValueError(
                f"The teacher needs a linear final classifier (nn.Linear) to give GenDD its class centres W and "
                f"bias b, but {type(model).__name__}.get_classifier() is {type(classifier).__name__}. Use a model "
                "with a linear head (not num_classes=0, a conv head or an MLP head)."
            )
        self.model = model
        self.model.requires_grad_(False)
        self.eval()
        self.name = name or (getattr(model, "pretrained_cfg", None) or {}).get("architecture") or type(model).__name__
        self.weights = weights

    @classmethod
    def from_timm(
        cls,
        model_name: str,
        pretrained: bool = True,
        checkpoint_path: str | os.PathLike | None = None,
        **timm_kwargs: Any,
    ) -> "TimmTeacher":
        """Creates the teacher with `timm.create_model`.

        Args:
            model_name (`str`):
                timm model name, e.g. `"resnet50.a1_in1k"`, `"hf-hub:timm/..."` or `"cifar_resnet56"`.
            pretrained (`bool`, defaults to `True`):
                Download timm's pretrained weights (from the Hugging Face Hub). Ignored with `checkpoint_path`.
            checkpoint_path (`str` or `os.PathLike`, *optional*):
                Local safetensors file holding the model's `state_dict` (for example saved with
                `safetensors.torch.save_file(model.state_dict(), path)`); loaded strictly. Pickle checkpoints are
                refused: convert them to safetensors first.
            timm_kwargs:
                Passed to `timm.create_model` (e.g. `num_classes`, `in_chans`); they must describe the checkpoint.
        """
        if checkpoint_path is None:
            model = timm.create_model(model_name, pretrained=pretrained, **timm_kwargs)
            # A `local-dir:` name is a path: the card names the architecture, and the folder as the weights' source.
            name = None if model_name.startswith("local-dir:") else model_name
            return cls(model, name=name, weights=pretrained_weights_source(model) if pretrained else None)
        state_dict = _load_safetensors(checkpoint_path)
        model = timm.create_model(model_name, pretrained=False, **timm_kwargs)
        try:
            model.load_state_dict(state_dict)
        except RuntimeError as error:
            raise ValueError(
                f"The checkpoint {checkpoint_path} does not fit timm model {model_name!r} built with {timm_kwargs}: "
                f"{error}\nPass the timm kwargs the checkpoint was trained with (e.g. num_classes=...)."
            ) from error
        return cls(model, name=model_name, weights=os.fspath(checkpoint_path))

    @property
    def classifier(self) -> nn.Linear:
        """The model's own final linear layer (not re-registered, so the state dict holds it once)."""
        return self.model.get_classifier()

    @property
    def feature_dim(self) -> int:
        """Width d_t of the pooled penultimate feature."""
        return self.classifier.in_features

    @property
    def num_classes(self) -> int:
        return self.classifier.out_features

    @property
    def classifier_weight(self) -> torch.Tensor:
        """Classifier weight W of shape `(num_classes, feature_dim)`; its rows are the class centres."""
        return self.classifier.weight.detach()

    @property
    def classifier_bias(self) -> torch.Tensor:
        """Classifier bias b of shape `(num_classes,)` (zeros for a classifier without bias)."""
        if self.classifier.bias is None:
            return self.classifier.weight.new_zeros(self.num_classes)
        return self.classifier.bias.detach()

    def train(self, mode: bool = True) -> "TimmTeacher":
        """Keeps the teacher in eval mode whatever `mode` is: its BatchNorm statistics and dropout stay frozen
        when the trainer calls `model.train()` on a module that contains it."""
        return super().train(False)

    # no_grad, not inference_mode: the outputs become loss targets next to tensors that require grad.
    @torch.no_grad()
    def forward(self, pixel_values: torch.Tensor) -> TeacherOutput:
        features = self.model.forward_head(self.model.forward_features(pixel_values), pre_logits=True)
        return TeacherOutput(features=features, logits=self.classifier(features))

    @property
    def in_chans(self) -> int:
        """Channels of the images the teacher (and so the student) reads: its first convolution's, else timm's."""
        return first_conv_in_channels(self.model) or timm.data.resolve_model_data_config(self.model)["input_size"][0]

    def data_config(self, image_size: int | None = None) -> dict[str, Any]:
        """The preprocessing of a distillation run, for timm's `create_transform`: the teacher's input size,
        interpolation, mean, std and crop, with its channel count (`in_chans`), at `image_size` if given.

        Teacher and student read the same tensors, so this is the one source of a run's transforms and of the image
        processor saved with the student. timm reports 3-channel values for a 1-channel model; they are averaged.
        """
        config = dict(timm.data.resolve_model_data_config(self.model))
        height, width = config["input_size"][1:] if image_size is None else (image_size, image_size)
        config["input_size"] = (self.in_chans, height, width)
        if self.in_chans == 1:
            config["mean"] = (float(sum(config["mean"]) / len(config["mean"])),)
            config["std"] = (float(sum(config["std"]) / len(config["std"])),)
        return config

    def class_names(self, *datasets) -> list[str] | None:
        """Class names for `id2label`: from a dataset's `ClassLabel` of the teacher's class count, else from timm's
        ImageNet info of the teacher; `None` when neither names them."""
        for dataset in datasets:
            feature = (getattr(dataset, "features", None) or {}).get("label")
            if isinstance(feature, ClassLabel) and feature.num_classes == self.num_classes:
                return list(feature.names)
        subset = timm.data.infer_imagenet_subset(self.model)
        if subset:
            names = timm.data.ImageNetInfo(subset).label_descriptions()
            if len(names) == self.num_classes:
                return names
        return None


def pretrained_weights_source(model: nn.Module) -> str | None:
    """Where timm loaded `model`'s pretrained weights from, in timm's order of preference: a local file, else
    `"hf-hub:<repo id>"`, else a URL, as its `pretrained_cfg` says; `None` when it names none."""
    cfg = getattr(model, "pretrained_cfg", None) or {}
    if cfg.get("file") and cfg.get("source") != "hf-hub":
        return cfg["file"]
    if cfg.get("hf_hub_id"):
        return f"hf-hub:{cfg['hf_hub_id']}"
    return cfg.get("url") or None


def first_conv_in_channels(module: nn.Module) -> int | None:
    """Input channels of the first `Conv2d` of `module` (the channels its images must have); `None` without one."""
    return next((m.in_channels for m in module.modules() if isinstance(m, nn.Conv2d)), None)


def _load_safetensors(checkpoint_path: str | os.PathLike) -> dict[str, torch.Tensor]:
    if not os.path.isfile(checkpoint_path):
        raise FileNotFoundError(f"Teacher checkpoint {checkpoint_path} does not exist (or is not a file).")
    try:
        return load_file(checkpoint_path)
    except SafetensorError as error:
        raise ValueError(
            f"Teacher checkpoint {checkpoint_path} is not a safetensors file ({error}). Pickle checkpoints are not "
            "loaded, for safety: convert it with safetensors.torch.save_file(state_dict, 'teacher.safetensors')."
        ) from error


__all__ = [
    "first_conv_in_channels",
    "pretrained_weights_source",
    "TeacherOutput",
    "TimmTeacher",
]
