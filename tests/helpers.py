"""Helpers shared by the test modules (plain functions and constants, not fixtures; those are in conftest.py).

- `tiny_config` / `tiny_model`: tiny GenDD models that run in milliseconds on the CPU.
- `toy_*`: GenDDTrainer on a learnable toy problem: 3 classes of 16x16 grayscale images (a bright band whose row is
  the class), a `test_resnet` student and a frozen `test_resnet` teacher, all on the CPU.
- `same_card_but_repo_id`: two GenDD model cards compared but for the repository they name.
"""

import numpy as np
import timm
import torch
from huggingface_hub import ModelCard
from transformers import TrainerCallback

from gendd_hf import GenDDConfig, GenDDForImageClassification, GenDDSamplingConfig, TimmTeacher
from gendd_hf.data import ImageCollator, build_transforms, dataset_from_arrays
from gendd_hf.model_card import RECORDED_FIELDS_KEY
from gendd_hf.trainer import GenDDTrainer
from gendd_hf.training_args import GenDDTrainingArguments


# ---- tiny GenDD models ----------------------------------------------------------------------------------------------
def tiny_config(**overrides) -> GenDDConfig:
    """A 1-channel `test_resnet` student (96-d feature), a 32-d teacher space cut into four 8-d tokens."""
    kwargs = dict(
        student_name="test_resnet",
        student_kwargs={"in_chans": 1},
        teacher_feature_dim=32,
        token_dim=8,
        head_width=32,
        head_depth=2,
        diffusion_batch_mul=2,
        id2label={0: "cat", 1: "dog", 2: "fox"},
    )
    kwargs.update(overrides)
    return GenDDConfig(**kwargs)


TINY_SAMPLING = dict(num_inference_steps=8, num_samples=2)


def tiny_model(seed: int = 0, sampling: dict | None = None, **overrides) -> GenDDForImageClassification:
    """`tiny_config(**overrides)` with random teacher classifier and head, sampling 8 steps x 2 samples unless
    `sampling` says otherwise."""
    torch.manual_seed(seed)
    model = GenDDForImageClassification(tiny_config(**overrides))
    model.sampling_config = GenDDSamplingConfig(**{**TINY_SAMPLING, **(sampling or {})})
    model.set_teacher_classifier(torch.randn(3, 32), torch.randn(3))
    # Non-zero head outputs, so that sampling exercises every branch (the head starts at zero).
    for parameter in model.head.parameters():
        parameter.data.add_(0.05 * torch.randn_like(parameter))
    return model


# ---- the toy training problem ---------------------------------------------------------------------------------------
NUM_CLASSES = 3
SIZE = 16
TEACHER_DIM = 96  # test_resnet's pooled feature
TRANSFORM = build_transforms({"input_size": (1, SIZE, SIZE), "mean": (0.5,), "std": (0.5,)}, False, "small")


def toy_dataset(n: int = 48, labeled: bool = True, seed: int = 0, num_classes: int = NUM_CLASSES):
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % num_classes
    images = rng.integers(0, 60, (n, SIZE, SIZE)).astype(np.uint8)
    for image, label in zip(images, labels, strict=True):
        image[5 * (label % 3) : 5 * (label % 3) + 5] += 150
    names = [f"class_{c}" for c in range(num_classes)]
    return dataset_from_arrays(images, labels if labeled else None, names if labeled else None)


def toy_teacher(seed: int = 1, **kwargs) -> TimmTeacher:
    torch.manual_seed(seed)
    return TimmTeacher(timm.create_model("test_resnet", **{"in_chans": 1, "num_classes": NUM_CLASSES, **kwargs}))


def toy_model(seed: int = 0, **overrides) -> GenDDForImageClassification:
    torch.manual_seed(seed)
    kwargs = dict(
        student_name="test_resnet",
        student_kwargs={"in_chans": 1},
        teacher_feature_dim=TEACHER_DIM,
        token_dim=32,
        head_width=32,
        head_depth=1,
        diffusion_batch_mul=2,
        num_labels=NUM_CLASSES,
    )
    model = GenDDForImageClassification(GenDDConfig(**{**kwargs, **overrides}))
    model.sampling_config = GenDDSamplingConfig(num_inference_steps=4, num_samples=1)
    return model


def toy_args(tmp_path, **overrides) -> GenDDTrainingArguments:
    kwargs = dict(
        output_dir=str(tmp_path / "out"),
        use_cpu=True,
        report_to="none",
        disable_tqdm=True,
        per_device_train_batch_size=8,
        per_device_eval_batch_size=16,
        learning_rate=3e-3,
        max_steps=4,
        logging_steps=1,
        save_strategy="no",
        seed=0,
    )
    return GenDDTrainingArguments(**{**kwargs, **overrides})


def toy_trainer(tmp_path, model=None, teacher="default", dataset=None, collator=None, mixup=None, **arg_overrides):
    return GenDDTrainer(
        toy_model() if model is None else model,
        toy_args(tmp_path, **arg_overrides),
        teacher=toy_teacher() if teacher == "default" else teacher,
        mixup_fn=mixup,
        train_dataset=toy_dataset() if dataset is None else dataset,
        eval_dataset=toy_dataset(n=10, seed=1),
        data_collator=collator or ImageCollator(TRANSFORM),
    )


class CrashAtStep(TrainerCallback):
    def __init__(self, step):
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            raise KeyboardInterrupt(f"killed at step {state.global_step}")


# ---- model cards ----------------------------------------------------------------------------------------------------
def same_card_but_repo_id(pushed: str, local: str, repo_id: str, local_repo_id: str | None) -> bool:
    """Whether two GenDD cards say the same (text, metadata with `datasets` and `model-index`, recorded fields) but
    for the repository id of their loading example."""

    def facts(card: str, repo: str | None):
        card = ModelCard(card, ignore_metadata_errors=False)
        metadata = card.data.to_dict()
        assert metadata[RECORDED_FIELDS_KEY].pop("repo_id") == repo
        return metadata, card.text.replace(f'"{repo or "path/to/this/model"}"', '"REPO"')

    return facts(pushed, repo_id) == facts(local, local_repo_id)
