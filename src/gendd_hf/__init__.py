"""gendd_hf: Generative Distribution Distillation (arXiv 2507.14503) for the Hugging Face ecosystem.

Importing the package registers `GenDDConfig` and `GenDDForImageClassification` with transformers' Auto classes.
"""

import sys
from pathlib import Path


# `python -m gendd_hf.<entry point> --help` prints help/<entry point>.txt, that module's --help (kept current by
# tests/test_recipe_help.py), before the imports below, which take seconds: the recipes' fast --help, for the modules.
_ARGV = getattr(sys, "orig_argv", [])
if "-m" in _ARGV and _ARGV[_ARGV.index("-m") + 2 :] in (["-h"], ["--help"]):
    _HELP = Path(__file__).with_name("help") / f"{_ARGV[_ARGV.index('-m') + 1]}.txt"
    if _HELP.is_file():
        sys.exit(print(_HELP.read_text(), end=""))

from transformers import (
    AutoConfig,
    AutoImageProcessor,
    AutoModel,
    AutoModelForImageClassification,
    TimmWrapperImageProcessor,
)

from . import models  # noqa: F401  (registers the CIFAR model zoo with timm)
from .configuration_gendd import GenDDConfig, GenDDSamplingConfig
from .modeling_gendd import GenDDForImageClassification, GenDDImageClassifierOutput, GenDDPreTrainedModel
from .teacher import TeacherOutput, TimmTeacher
from .trainer import GenDDTrainer, NonFiniteLossError
from .training_args import GenDDTrainingArguments


AutoConfig.register(GenDDConfig.model_type, GenDDConfig)
AutoModel.register(GenDDConfig, GenDDForImageClassification)
AutoModelForImageClassification.register(GenDDConfig, GenDDForImageClassification)
# The image processor (config.json's `pretrained_cfg`) applies timm's transform with either backend. transformers lists
# it under the PIL backend only and asks for torchvision's whenever torchvision is installed, then warns that "the
# torchvision backend is not available": registered for both, it loads without that false warning.
AutoImageProcessor.register(
    GenDDConfig, image_processor_classes={"pil": TimmWrapperImageProcessor, "torchvision": TimmWrapperImageProcessor}
)
# Saved folders carry their code and an auto_map, so `trust_remote_code=True` loads them without gendd_hf.
GenDDConfig.register_for_auto_class()
GenDDForImageClassification.register_for_auto_class("AutoModelForImageClassification")

__version__ = "0.1.0"

__all__ = [
    "GenDDConfig",
    "GenDDForImageClassification",
    "GenDDImageClassifierOutput",
    "GenDDPreTrainedModel",
    "GenDDSamplingConfig",
    "GenDDTrainer",
    "GenDDTrainingArguments",
    "NonFiniteLossError",
    "TeacherOutput",
    "TimmTeacher",
]
