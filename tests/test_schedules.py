"""gendd_hf.schedules: the official scripts' per-epoch learning-rate schedules, against numbers written from them."""

import math

import pytest
import torch
from torch.optim.lr_scheduler import LambdaLR

from gendd_hf.schedules import EpochSchedule, epoch_scheduler
from gendd_hf.training_args import GenDDTrainingArguments


def test_imagenet_cosine_hand_computed():
    # GenDD_imagenet/main_supervised_gendd.py adjust_learning_rate_cos, res34 -> res18 script: lr 2e-3, 100 epochs,
    # warmup_epochs 10, min_lr 1e-6; one step per epoch here.
    lr, floor = 2e-3, 1e-6
    schedule = EpochSchedule(num_training_steps=100, num_epochs=100, warmup_epochs=10, min_lr_ratio=floor / lr)
    expected = {
        0: 2e-4,  # lr * (0 + 1) / 10
        4: 1e-3,
        9: 2e-3,  # the warm-up ends at the full rate
        10: floor + (lr - floor) * 0.5 * (1 + math.cos(math.pi * 1 / 90)),
        54: floor + (lr - floor) * 0.5 * (1 + math.cos(math.pi * 45 / 90)),
        99: floor,  # the last epoch trains at the floor
    }
    assert [lr * schedule(epoch) for epoch in expected] == pytest.approx(list(expected.values()), rel=1e-12)


def test_cifar_step_hand_computed():
    # GenDD_cifar/train_student_gendd.py adjust_learning_rate, sh/train_res56_res20_gendd.sh: lr 1e-3, epochs 1..240,
    # warmup_epochs 50, x0.1 after epochs 150, 180, 210. In 0-based epochs e (here 2 steps each):
    lr = 1e-3
    schedule = EpochSchedule(480, 240, warmup_epochs=50, lr_decay_epochs=(150, 180, 210))
    expected = {
        0: 1e-3 / 50,  # epoch 1: lr * 1 / 50
        1: 1e-3 / 50,  # same epoch, second step
        96: 1e-3 * 49 / 50,  # epoch 49, the last warm-up value
        98: 1e-3 * 49 / 50,  # epoch 50: no longer < 50, nothing is set: held
        299: 1e-3 * 49 / 50,  # epoch 150
        300: 1e-4,  # epoch 151 > 150: lr * 0.1, the warm-up value replaced
        360: 1e-5,
        420: 1e-6,
        479: 1e-6,
    }
    assert [lr * schedule(step) for step in expected] == pytest.approx(list(expected.values()), rel=1e-12)
    # Without warm-up (the cross-entropy teachers), the full rate until the first decay.
    assert EpochSchedule(240, 240, lr_decay_epochs=(150,))(149) == 1.0
    assert EpochSchedule(240, 240, warmup_epochs=1, lr_decay_epochs=(150,))(0) == 1.0


def test_cifar_stage1_cosine_hand_computed():
    # GenDD_cifar/train_student_pretrain.py adjust_learning_rate_cos: epochs 1..50, no warm-up, floor 0:
    # lr * 0.5 * (1 + cos(pi * epoch / 50)); 0-based e = epoch - 1.
    schedule = EpochSchedule(50, 50)
    assert [schedule(e) for e in (0, 24, 49)] == pytest.approx(
        [0.5 * (1 + math.cos(math.pi / 50)), 0.5 * (1 + math.cos(math.pi * 25 / 50)), 0.0]
    )


def scheduler_args(tmp_path, **overrides):
    kwargs = dict(
        output_dir=str(tmp_path),
        num_train_epochs=4,
        learning_rate=1.0,
        lr_scheduler_type="constant_with_warmup",
        lr_scheduler_kwargs='{"lr_decay_epochs": [2, 3], "warmup_epochs": 2}',
        use_cpu=True,
        report_to="none",
    )
    return GenDDTrainingArguments(**{**kwargs, **overrides})


def run_schedule(scheduler, optimizer, steps):
    learning_rates = []
    for _ in range(steps):
        learning_rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return learning_rates


def test_epoch_scheduler_from_training_arguments(tmp_path):
    parameter = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([parameter], lr=1.0)
    scheduler = epoch_scheduler(scheduler_args(tmp_path), optimizer, num_training_steps=8)
    # 2 steps an epoch: epoch 0 warms up to 1/2 and holds it, x0.1 from epoch 2, x0.01 from epoch 3.
    assert run_schedule(scheduler, optimizer, 8) == pytest.approx([0.5, 0.5, 0.5, 0.5, 0.1, 0.1, 0.01, 0.01])

    # A checkpointed scheduler resumes where it stopped.
    resumed = LambdaLR(torch.optim.SGD([parameter], lr=1.0), EpochSchedule(1, 1))
    resumed.load_state_dict(scheduler.state_dict())
    assert resumed.lr_lambdas[0] == scheduler.lr_lambdas[0]
    assert resumed.last_epoch == 8

    # The cosine with a floor, counted over num_epochs of a max_steps run (num_train_epochs is then unused).
    args = scheduler_args(
        tmp_path,
        lr_scheduler_type="cosine",
        lr_scheduler_kwargs='{"warmup_epochs": 1, "min_lr": 0.1, "num_epochs": 2}',
        max_steps=4,
    )
    optimizer = torch.optim.SGD([parameter], lr=1.0)
    assert run_schedule(epoch_scheduler(args, optimizer, 4), optimizer, 4) == pytest.approx([1, 1, 0.1, 0.1])


def test_epoch_scheduler_only_for_its_arguments(tmp_path):
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    assert epoch_scheduler(scheduler_args(tmp_path, lr_scheduler_kwargs="{}"), optimizer, 8) is None
    plain_cosine = scheduler_args(tmp_path, lr_scheduler_type="cosine", lr_scheduler_kwargs='{"num_cycles": 0.5}')
    assert epoch_scheduler(plain_cosine, optimizer, 8) is None  # transformers' own cosine
    with pytest.raises(ValueError, match="use --lr_scheduler_type constant_with_warmup"):
        epoch_scheduler(scheduler_args(tmp_path, lr_scheduler_type="cosine"), optimizer, 8)
    with pytest.raises(ValueError, match="use --lr_scheduler_type cosine"):
        epoch_scheduler(scheduler_args(tmp_path, lr_scheduler_kwargs='{"min_lr": 0.1}'), optimizer, 8)
    bad = scheduler_args(tmp_path, lr_scheduler_kwargs='{"lr_decay_epochs": [2], "gamma": 0.5}')
    with pytest.raises(ValueError, match="not \\['gamma'\\]"):
        epoch_scheduler(bad, optimizer, 8)
    with pytest.raises(ValueError, match="set --warmup_steps 0"):
        epoch_scheduler(scheduler_args(tmp_path, warmup_steps=2), optimizer, 8)
    with pytest.raises(ValueError, match="warmup_epochs=-1 must be >= 0"):
        epoch_scheduler(
            scheduler_args(tmp_path, lr_scheduler_kwargs='{"lr_decay_epochs": [], "warmup_epochs": -1}'), optimizer, 8
        )
    # A run shorter than the warm-up is warm-up throughout (a smoke test of a recipe), as in the official loop.
    short = scheduler_args(tmp_path, lr_scheduler_type="cosine", lr_scheduler_kwargs='{"warmup_epochs": 10}')
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    assert run_schedule(epoch_scheduler(short, optimizer, 4), optimizer, 4) == pytest.approx([0.1, 0.2, 0.3, 0.4])
