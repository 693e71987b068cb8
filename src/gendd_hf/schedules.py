"""The learning-rate schedules of GenDD's official scripts, set once per epoch as they do, which transformers lacks:
the cosine with per-epoch warm-up and a floor (ImageNet's and CIFAR's `adjust_learning_rate_cos`) and CIFAR's step
decay with its per-epoch warm-up (`adjust_learning_rate`, x0.1 at epochs 150/180/210 of 240). `GenDDTrainer` uses
them when `lr_scheduler_kwargs` asks for them (`warmup_epochs`, `min_lr`, `lr_decay_epochs`); the recipes do."""

import math
from dataclasses import dataclass

import torch
from torch.optim.lr_scheduler import LambdaLR

from .training_args import GenDDTrainingArguments


EPOCH_SCHEDULE_KWARGS = ("warmup_epochs", "min_lr", "lr_decay_epochs", "lr_decay_rate", "num_epochs")
"""`lr_scheduler_kwargs` keys of the official per-epoch schedules."""


@dataclass(frozen=True)
class EpochSchedule:
    r"""Learning-rate multiplier of optimizer step `step`, constant within an epoch, as the official GenDD scripts set
    it at the start of each epoch `e` (0-based; `e = floor(step * num_epochs / num_training_steps)`, so that with
    `max_steps` the epochs keep their place in the run). `W` is `warmup_epochs`, `E` is `num_epochs`.

    - Cosine (`lr_decay_epochs=None`; ImageNet's and CIFAR's `adjust_learning_rate_cos`, the same formula in 0-based
      epochs): `(e + 1) / W` while `e < W`, then `m + (1 - m) (1 + cos(pi (e - W + 1) / (E - W))) / 2`, with
      `m = min_lr_ratio`, so the last epoch trains at the floor (1e-6 on ImageNet, 0 on CIFAR).
    - Step decay (CIFAR's `adjust_learning_rate`): `(e + 1) / W` while `e + 1 < W`, then held at `(W - 1) / W` (the
      last warm-up value: the official loop sets nothing more until a decay) and `lr_decay_rate ** k` from the `k`-th
      epoch of `lr_decay_epochs` reached on (a decay replaces the warm-up value).

    A callable object, so that `LambdaLR` saves and restores it with a checkpoint.
    """

    num_training_steps: int
    num_epochs: float
    warmup_epochs: int = 0
    min_lr_ratio: float = 0.0
    lr_decay_epochs: tuple[float, ...] | None = None
    lr_decay_rate: float = 0.1

    def epoch(self, step: int) -> int:
        return math.floor(step * self.num_epochs / self.num_training_steps)

    def __call__(self, step: int) -> float:
        epoch, warmup = self.epoch(step), self.warmup_epochs
        if self.lr_decay_epochs is not None:
            decays = sum(epoch >= milestone for milestone in self.lr_decay_epochs)
            if decays:
                return self.lr_decay_rate**decays
            if epoch + 1 < warmup:
                return (epoch + 1) / warmup
            return (warmup - 1) / warmup if warmup >= 2 else 1.0
        if epoch < warmup:
            return (epoch + 1) / warmup
        progress = (epoch - warmup + 1) / (self.num_epochs - warmup)
        return self.min_lr_ratio + (1 - self.min_lr_ratio) * (1 + math.cos(math.pi * progress)) / 2


def epoch_scheduler(
    args: GenDDTrainingArguments, optimizer: torch.optim.Optimizer, num_training_steps: int
) -> LambdaLR | None:
    """The official per-epoch schedule that `args.lr_scheduler_kwargs` asks for, else `None` (transformers' own):

    - `--lr_scheduler_type cosine --lr_scheduler_kwargs '{"warmup_epochs": 10, "min_lr": 1e-6}'`: the ImageNet cosine;
    - `--lr_scheduler_type constant_with_warmup --lr_scheduler_kwargs '{"lr_decay_epochs": [150, 180, 210],
      "lr_decay_rate": 0.1, "warmup_epochs": 50}'`: CIFAR's step decay.

    `num_epochs` (default `num_train_epochs`) counts the epochs of a `max_steps` run. The warm-up is in epochs here,
    so `warmup_steps` must be 0. See [`EpochSchedule`].
    """
    kwargs = dict(args.lr_scheduler_kwargs or {})
    scheduler_type = getattr(args.lr_scheduler_type, "value", args.lr_scheduler_type)
    step = "lr_decay_epochs" in kwargs
    if not step and not {"warmup_epochs", "min_lr"} & set(kwargs):
        return None
    expected = "constant_with_warmup" if step else "cosine"
    if scheduler_type != expected:
        raise ValueError(
            f"lr_scheduler_kwargs={kwargs} asks for the official {'step' if step else 'cosine'} schedule, but "
            f"lr_scheduler_type={scheduler_type!r}: use --lr_scheduler_type {expected} with it."
        )
    allowed = set(EPOCH_SCHEDULE_KWARGS) - ({"min_lr"} if step else {"lr_decay_epochs", "lr_decay_rate"})
    unknown = set(kwargs) - allowed
    if unknown:
        raise ValueError(
            f"lr_scheduler_kwargs of the official {'step' if step else 'cosine'} schedule takes {sorted(allowed)}, "
            f"not {sorted(unknown)}."
        )
    if args.warmup_steps:
        raise ValueError(
            f"warmup_steps={args.warmup_steps} and lr_scheduler_kwargs={kwargs}: the official schedules warm up per "
            "epoch; give the warm-up as lr_scheduler_kwargs' warmup_epochs and set --warmup_steps 0."
        )
    num_epochs = float(kwargs.get("num_epochs", args.num_train_epochs))
    warmup_epochs = int(kwargs.get("warmup_epochs", 0))
    if warmup_epochs < 0:
        raise ValueError(f"lr_scheduler_kwargs' warmup_epochs={warmup_epochs} must be >= 0.")
    schedule = EpochSchedule(
        num_training_steps=num_training_steps,
        num_epochs=num_epochs,
        warmup_epochs=warmup_epochs,
        min_lr_ratio=float(kwargs.get("min_lr", 0.0)) / args.learning_rate,
        lr_decay_epochs=tuple(float(epoch) for epoch in kwargs["lr_decay_epochs"]) if step else None,
        lr_decay_rate=float(kwargs.get("lr_decay_rate", 0.1)),
    )
    return LambdaLR(optimizer, schedule)


__all__ = ["EPOCH_SCHEDULE_KWARGS", "EpochSchedule", "epoch_scheduler"]
