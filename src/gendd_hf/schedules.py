"""The step learning-rate decay of the CIFAR distillation literature (CRD/DKD: x0.1 at epochs 150/180/210 of 240),
which transformers lacks; `GenDDTrainer` uses it when `lr_scheduler_kwargs` asks for it."""

from dataclasses import dataclass

import torch
from torch.optim.lr_scheduler import LambdaLR

from .training_args import GenDDTrainingArguments


@dataclass(frozen=True)
class StepDecay:
    """Learning-rate multiplier of optimizer step `step`: linear warm-up over `num_warmup_steps`, then times
    `lr_decay_rate` at each epoch of `lr_decay_epochs` reached, epochs counted as fractions of `num_train_epochs`
    over `num_training_steps` (so with `max_steps` the milestones keep their place in the run). A callable object,
    so that `LambdaLR` saves and restores it with a checkpoint."""

    num_training_steps: int
    num_train_epochs: float
    lr_decay_epochs: tuple[float, ...]
    lr_decay_rate: float = 0.1
    num_warmup_steps: int = 0

    def __call__(self, step: int) -> float:
        warmup = step / self.num_warmup_steps if step < self.num_warmup_steps else 1.0
        epoch = step * self.num_train_epochs / self.num_training_steps
        return warmup * self.lr_decay_rate ** sum(epoch >= milestone for milestone in self.lr_decay_epochs)


def step_decay_scheduler(
    args: GenDDTrainingArguments, optimizer: torch.optim.Optimizer, num_training_steps: int
) -> LambdaLR | None:
    """The step schedule asked for by `args.lr_scheduler_kwargs = {"lr_decay_epochs": [...], "lr_decay_rate": r}`
    (with `lr_scheduler_type="constant_with_warmup"`), else `None`: warm-up over `args.warmup_steps`, then the
    learning rate times `r` (default 0.1) at each listed epoch, e.g. 150, 180 and 210 of 240 in CRD/DKD.

    transformers has no such schedule (and ignores `lr_scheduler_kwargs` for a constant one), so
    `GenDDTrainer.create_scheduler` calls this first.
    """
    kwargs = dict(args.lr_scheduler_kwargs or {})
    if "lr_decay_epochs" not in kwargs:
        return None
    scheduler_type = getattr(args.lr_scheduler_type, "value", args.lr_scheduler_type)
    if scheduler_type != "constant_with_warmup":
        raise ValueError(
            f"lr_scheduler_kwargs sets lr_decay_epochs={kwargs['lr_decay_epochs']}, a step schedule, but "
            f"lr_scheduler_type={scheduler_type!r}: use --lr_scheduler_type constant_with_warmup with it."
        )
    unknown = set(kwargs) - {"lr_decay_epochs", "lr_decay_rate"}
    if unknown:
        raise ValueError(
            f"lr_scheduler_kwargs of the step schedule takes lr_decay_epochs and lr_decay_rate, not {sorted(unknown)}."
        )
    schedule = StepDecay(
        num_training_steps=num_training_steps,
        num_train_epochs=args.num_train_epochs,
        lr_decay_epochs=tuple(float(epoch) for epoch in kwargs["lr_decay_epochs"]),
        lr_decay_rate=float(kwargs.get("lr_decay_rate", 0.1)),
        num_warmup_steps=args.get_warmup_steps(num_training_steps),
    )
    return LambdaLR(optimizer, schedule)


__all__ = ["StepDecay", "step_decay_scheduler"]
