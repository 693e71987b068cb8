"""The distillation methods by name, and the logit-distillation baselines that GenDD is compared against, as pure
functions.

Every loss takes `(batch, num_classes)` logits, averages over the batch (the `batchmean` of a KL divergence) and
returns a scalar tensor, so a trainer can weight and sum them freely.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


METHODS = ("ce", "kd", "dkd", "kl_unsup", "gendd", "gendd_unsup")
"""`ce`: the student alone; `kd`: Hinton KD; `dkd`: decoupled KD; `kl_unsup`: KL to the teacher without labels;
`gendd`: Generative Distribution Distillation; `gendd_unsup`: GenDD without labels (contraction lambda 0)."""
GENDD_METHODS = ("gendd", "gendd_unsup")
UNSUPERVISED_METHODS = ("kl_unsup", "gendd_unsup")
DKD_DEFAULTS: dict[str, dict[str, float]] = {
    # Decoupled KD (Zhao et al., CVPR 2022), settings of its public reference configurations (mdistiller).
    # CIFAR-100: alpha 1, beta 8, T 4, loss ramped in over 20 epochs.
    "cifar100": {"alpha": 1.0, "beta": 8.0, "temperature": 4.0, "warmup_epochs": 20.0},
    # ImageNet: alpha keeps its default of 1, beta 0.5 (ResNet34 -> ResNet18; ResNet50 -> MobileNet uses 2.0),
    # T 1, one warm-up epoch.
    "imagenet": {"alpha": 1.0, "beta": 0.5, "temperature": 1.0, "warmup_epochs": 1.0},
}
"""Published DKD hyper-parameters per benchmark, to pass as `dkd_loss(..., **DKD_DEFAULTS["imagenet"])`."""


def _check_logits(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> None:
    if student_logits.ndim != 2 or student_logits.shape != teacher_logits.shape:
        raise ValueError(
            f"Expected student and teacher logits of the same shape (batch, num_classes), got "
            f"{tuple(student_logits.shape)} and {tuple(teacher_logits.shape)}; flatten extra dimensions first."
        )
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}; use 1.0 for no softening.")


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 4.0) -> torch.Tensor:
    r"""Classic knowledge distillation loss (Hinton, Vinyals & Dean, "Distilling the Knowledge in a Neural Network",
    arXiv 1503.02531).

        L_KD = T^2 * KL( softmax(t / T) || softmax(s / T) ), averaged over the batch.

    The T^2 factor keeps the gradient magnitude independent of the temperature: the gradient with respect to the
    student logits is `T * (softmax(s / T) - softmax(t / T)) / batch`.

    Args:
        student_logits (`torch.Tensor` of shape `(batch, num_classes)`): student outputs.
        teacher_logits (`torch.Tensor` of shape `(batch, num_classes)`): teacher outputs (detach them beforehand).
        temperature (`float`, *optional*, defaults to 4.0): softening temperature T.

    Returns:
        `torch.Tensor`: scalar loss.
    """
    _check_logits(student_logits, teacher_logits, temperature)
    log_p_student = F.log_softmax(student_logits / temperature, dim=-1)
    log_p_teacher = F.log_softmax(teacher_logits / temperature, dim=-1)
    kl = F.kl_div(log_p_student, log_p_teacher, reduction="batchmean", log_target=True)
    return kl * temperature**2


# The unsupervised baseline of the GenDD paper ("KL", unlabeled CC3M images) is KD without labels: the same loss.
kl_unsup_loss = kd_loss


def decoupled_kd_terms(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor, temperature: float = 4.0
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""The two parts of Decoupled KD (Zhao et al., "Decoupled Knowledge Distillation", CVPR 2022, Eq. 2-4).

    With p = softmax(logits / T) and y the label:

        TCKD = KL( [p^t_y, 1 - p^t_y] || [p^s_y, 1 - p^s_y] )      (target class, a binary distribution)
        NCKD = KL( softmax(t_{-y} / T) || softmax(s_{-y} / T) )    (the C - 1 non-target classes, renormalised)

    both multiplied by T^2 and averaged over the batch. Classic KD decomposes as KD = TCKD + (1 - p^t_y) * NCKD.

    Args:
        student_logits (`torch.Tensor` of shape `(batch, num_classes)`): student outputs.
        teacher_logits (`torch.Tensor` of shape `(batch, num_classes)`): teacher outputs.
        labels (`torch.LongTensor` of shape `(batch,)`): ground-truth class indices (hard labels only: DKD needs
            one target class per sample).
        temperature (`float`, *optional*, defaults to 4.0): softening temperature T.

    Returns:
        `tuple(torch.Tensor, torch.Tensor)`: scalar `(tckd, nckd)`.
    """
    _check_logits(student_logits, teacher_logits, temperature)
    batch, num_classes = student_logits.shape
    if labels.shape != (batch,) or labels.is_floating_point():
        raise ValueError(
            f"DKD needs integer class indices of shape ({batch},), got {labels.dtype} of shape {tuple(labels.shape)}; "
            "pass hard labels (argmax of soft targets)."
        )
    target_mask = F.one_hot(labels, num_classes).bool()

    def binary_and_non_target_log_probs(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        scaled = logits / temperature
        log_partition = scaled.logsumexp(dim=-1, keepdim=True)
        non_target = scaled[~target_mask].view(batch, num_classes - 1)
        # log p_y and log(1 - p_y) = logsumexp(non-target) - logsumexp(all), exact without 1 - p cancellation
        log_binary = (
            torch.cat([scaled[target_mask].view(batch, 1), non_target.logsumexp(dim=-1, keepdim=True)], dim=-1)
            - log_partition
        )
        return log_binary, F.log_softmax(non_target, dim=-1)

    student_binary, student_non_target = binary_and_non_target_log_probs(student_logits)
    teacher_binary, teacher_non_target = binary_and_non_target_log_probs(teacher_logits)
    scale = temperature**2
    tckd = F.kl_div(student_binary, teacher_binary, reduction="batchmean", log_target=True) * scale
    nckd = F.kl_div(student_non_target, teacher_non_target, reduction="batchmean", log_target=True) * scale
    return tckd, nckd


def dkd_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    labels: torch.Tensor,
    alpha: float = 1.0,
    beta: float = 8.0,
    temperature: float = 4.0,
    epoch: float | None = None,
    warmup_epochs: float = 20.0,
) -> torch.Tensor:
    r"""Decoupled KD loss (Zhao et al., CVPR 2022): `warmup * (alpha * TCKD + beta * NCKD)`.

    The defaults are the paper's CIFAR-100 setting; see [`DKD_DEFAULTS`] for ImageNet. The paper ramps the loss in
    linearly, `warmup = min(epoch / warmup_epochs, 1)`, counting epochs from 1 as its reference code does; pass
    `epoch=None` (the default) to skip the ramp.

    Args:
        student_logits (`torch.Tensor` of shape `(batch, num_classes)`): student outputs.
        teacher_logits (`torch.Tensor` of shape `(batch, num_classes)`): teacher outputs.
        labels (`torch.LongTensor` of shape `(batch,)`): ground-truth class indices.
        alpha (`float`, *optional*, defaults to 1.0): weight of the target-class term TCKD.
        beta (`float`, *optional*, defaults to 8.0): weight of the non-target-class term NCKD.
        temperature (`float`, *optional*, defaults to 4.0): softening temperature T.
        epoch (`float`, *optional*): current (possibly fractional) epoch for the warm-up ramp; `None` disables it.
        warmup_epochs (`float`, *optional*, defaults to 20.0): length of the ramp in epochs.

    Returns:
        `torch.Tensor`: scalar loss.
    """
    if warmup_epochs <= 0:
        raise ValueError(f"warmup_epochs must be > 0, got {warmup_epochs}; pass epoch=None to disable the warm-up.")
    tckd, nckd = decoupled_kd_terms(student_logits, teacher_logits, labels, temperature)
    warmup = 1.0 if epoch is None else min(epoch / warmup_epochs, 1.0)
    return warmup * (alpha * tckd + beta * nckd)


def soft_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    r"""Cross-entropy against hard labels or soft probability targets, averaged over the batch.

        L = -(1 / B) * sum_b sum_c q_bc * log softmax(logits_b)_c

    with q the one-hot label, or a probability vector such as the targets produced by `timm.data.Mixup`
    (mixup / cutmix / label smoothing).

    Args:
        logits (`torch.Tensor` of shape `(batch, num_classes)`): predictions.
        targets (`torch.Tensor`): integer class indices of shape `(batch,)` or float probabilities of shape
            `(batch, num_classes)`.

    Returns:
        `torch.Tensor`: scalar loss.
    """
    if logits.ndim != 2:
        raise ValueError(f"Expected logits of shape (batch, num_classes), got {tuple(logits.shape)}.")
    hard = targets.shape == logits.shape[:1] and not targets.is_floating_point()
    soft = targets.shape == logits.shape and targets.is_floating_point()
    if not (hard or soft):
        raise ValueError(
            f"targets must be integer labels of shape {tuple(logits.shape[:1])} or float probabilities of shape "
            f"{tuple(logits.shape)}, got {targets.dtype} of shape {tuple(targets.shape)}."
        )
    # F.cross_entropy accepts both forms: class indices, or class probabilities of the logits' shape.
    return F.cross_entropy(logits, targets)


__all__ = [
    "DKD_DEFAULTS",
    "GENDD_METHODS",
    "METHODS",
    "UNSUPERVISED_METHODS",
    "decoupled_kd_terms",
    "dkd_loss",
    "kd_loss",
    "kl_unsup_loss",
    "soft_cross_entropy",
]
