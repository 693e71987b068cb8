"""gendd_hf: Generative Distribution Distillation (arXiv 2507.14503) for the Hugging Face ecosystem.

Importing the package registers `GenDDConfig` and `GenDDForImageClassification` with transformers' Auto classes.
"""

from transformers import AutoConfig, AutoModel, AutoModelForImageClassification

from . import models  # noqa: F401  (registers the CIFAR model zoo with timm)
from .configuration_gendd import GenDDConfig, GenDDSamplingConfig
from .modeling_gendd import GenDDForImageClassification, GenDDImageClassifierOutput, GenDDPreTrainedModel
from .teacher import TeacherOutput, TimmTeacher
from .trainer import GenDDTrainer, NonFiniteLossError
from .training_args import GenDDTrainingArguments


AutoConfig.register(GenDDConfig.model_type, GenDDConfig)
AutoModel.register(GenDDConfig, GenDDForImageClassification)
AutoModelForImageClassification.register(GenDDConfig, GenDDForImageClassification)
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
