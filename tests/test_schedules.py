"""gendd_hf.schedules: the step-decay learning-rate schedule of the CIFAR KD recipes."""

import pytest
import torch
from torch.optim.lr_scheduler import LambdaLR

from gendd_hf.schedules import StepDecay, step_decay_scheduler
from gendd_hf.training_args import GenDDTrainingArguments


def test_step_decay_hand_computed():
    # One step per epoch over 240 epochs, x0.1 at 150, 180, 210.
    decay = StepDecay(num_training_steps=240, num_train_epochs=240, lr_decay_epochs=(150, 180, 210))
    assert [decay(step) for step in (0, 149, 150, 179, 180, 209, 210, 239)] == pytest.approx(
        [1, 1, 0.1, 0.1, 0.01, 0.01, 0.001, 0.001]
    )
    # Two steps per epoch, 10 warm-up steps, rate 0.5: step 5 is half-way up, step 300 is epoch 150.
    decay = StepDecay(480, 240, (150,), lr_decay_rate=0.5, num_warmup_steps=10)
    assert [decay(step) for step in (0, 5, 10, 299, 300)] == pytest.approx([0, 0.5, 1, 1, 0.5])


def scheduler_args(tmp_path, **overrides):
    kwargs = dict(
        output_dir=str(tmp_path),
        num_train_epochs=4,
        lr_scheduler_type="constant_with_warmup",
        lr_scheduler_kwargs='{"lr_decay_epochs": [2, 3]}',
        warmup_steps=2,
        use_cpu=True,
        report_to="none",
    )
    return GenDDTrainingArguments(**{**kwargs, **overrides})


def test_step_decay_scheduler_from_training_arguments(tmp_path):
    parameter = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([parameter], lr=1.0)
    scheduler = step_decay_scheduler(scheduler_args(tmp_path), optimizer, num_training_steps=8)
    learning_rates = []
    for _ in range(8):
        learning_rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert learning_rates == pytest.approx([0, 0.5, 1, 1, 0.1, 0.1, 0.01, 0.01])

    # A checkpointed scheduler resumes where it stopped.
    resumed = LambdaLR(torch.optim.SGD([parameter], lr=1.0), StepDecay(1, 1, ()))
    resumed.load_state_dict(scheduler.state_dict())
    assert resumed.lr_lambdas[0] == scheduler.lr_lambdas[0]
    assert resumed.last_epoch == 8


def test_step_decay_scheduler_only_for_its_arguments(tmp_path):
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    assert step_decay_scheduler(scheduler_args(tmp_path, lr_scheduler_kwargs="{}"), optimizer, 8) is None
    with pytest.raises(ValueError, match="use --lr_scheduler_type constant_with_warmup"):
        step_decay_scheduler(scheduler_args(tmp_path, lr_scheduler_type="cosine"), optimizer, 8)
    bad = scheduler_args(tmp_path, lr_scheduler_kwargs='{"lr_decay_epochs": [2], "gamma": 0.5}')
    with pytest.raises(ValueError, match="not \\['gamma'\\]"):
        step_decay_scheduler(bad, optimizer, 8)
