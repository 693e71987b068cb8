"""Trainer callbacks: GenDD's beta2 schedule, and progress lines for log files."""

import math

from transformers import ProgressCallback, TrainerCallback
from transformers.trainer_utils import has_length

from .progress import LogProgress


def cosine_beta2(step: int, total_steps: int, start: float = 0.95, end: float = 0.999) -> float:
    r"""AdamW's beta2 at optimizer step `step` (0-based) of `total_steps`, rising from `start` to `end` on a cosine:

        beta2(s) = end - (end - start) * (1 + cos(pi * s / (S - 1))) / 2

    so the first step uses `start` and the last step, `S - 1`, uses `end` (GenDD: 0.95 -> 0.999), as in the GenDD code.
    """
    if total_steps < 1:
        raise ValueError(f"total_steps must be >= 1, got {total_steps}.")
    progress = min(max(step / max(total_steps - 1, 1), 0.0), 1.0)
    return end - (end - start) * (1 + math.cos(math.pi * progress)) / 2


class AdamBeta2Callback(TrainerCallback):
    """Sets beta2 of every optimizer group with `betas` to `cosine_beta2(global_step, max_steps, start, end)` before
    each optimizer step. It depends only on the step, so a resumed run gets the same values as an uninterrupted one.

    Args:
        start (`float`): beta2 at the first step.
        end (`float`): beta2 at the end of training.
    """

    def __init__(self, start: float, end: float):
        self.start = start
        self.end = end

    def on_step_begin(self, args, state, control, optimizer=None, **kwargs):
        beta2 = cosine_beta2(state.global_step, state.max_steps, self.start, self.end)
        for group in optimizer.param_groups:
            if "betas" in group:
                group["betas"] = (group["betas"][0], beta2)


class LogProgressCallback(ProgressCallback):
    """transformers' `ProgressCallback` for a log file: the training steps and the evaluation batches (the sampled
    path's included) as a short line now and then ([`~gendd_hf.progress.LogProgress`]) instead of tqdm bars, and the
    logs as lines. [`GenDDTrainer`] uses it in place of `ProgressCallback` when stderr is not a terminal.
    """

    def on_train_begin(self, args, state, control, **kwargs):
        # A resumed run starts at its checkpoint's step: those steps count as done but are not timed (the ETA).
        if state.is_world_process_zero:
            self.training_bar = LogProgress(total=state.max_steps, desc="train", unit="step", initial=state.global_step)
        self.current_step = state.global_step

    def on_prediction_step(self, args, state, control, eval_dataloader=None, **kwargs):
        if state.is_world_process_zero and has_length(eval_dataloader):
            if self.prediction_bar is None:  # after the first batch: there is no event before it
                self.prediction_bar = LogProgress(total=len(eval_dataloader), desc="evaluate", unit="batch", initial=1)
            else:
                self.prediction_bar.update(1)


__all__ = ["AdamBeta2Callback", "LogProgressCallback", "cosine_beta2"]
