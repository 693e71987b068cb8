"""The Trainer's speed switches with GenDD, on a tiny CPU run: `--bf16`, `--torch_compile` and `--channels_last` each
train with finite losses close to the plain run's, and compilation happens in the first steps only."""

import math

import pytest
import torch
from torch._dynamo.utils import counters
from transformers import TrainerCallback

from helpers import toy_trainer


pytestmark = pytest.mark.slow  # about a minute on 2 CPU cores
STEPS = 4


class CompiledGraphs(TrainerCallback):
    """torch.compile's count of compiled graphs at the end of each step."""

    def __init__(self):
        self.per_step = []

    def on_step_end(self, args, state, control, **kwargs):
        self.per_step.append(counters["stats"]["unique_graphs"])


def train_losses(tmp_path, name: str, callback=None, **switches):
    trainer = toy_trainer(tmp_path / name, max_steps=STEPS, **switches)
    if callback is not None:
        trainer.add_callback(callback)
    trainer.train()
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    assert len(losses) == STEPS and all(math.isfinite(loss) for loss in losses)
    return losses, trainer


@pytest.fixture(scope="module")
def plain_losses(tmp_path_factory):
    return train_losses(tmp_path_factory.mktemp("plain"), "plain")[0]


def test_bf16_trains_with_losses_close_to_float32(tmp_path, plain_losses):
    losses, _ = train_losses(tmp_path, "bf16", bf16=True)
    assert losses == pytest.approx(plain_losses, rel=0.05)


def test_channels_last_trains_the_same_and_saves_a_loadable_model(tmp_path, plain_losses):
    losses, trainer = train_losses(tmp_path, "channels_last", channels_last=True)
    assert losses == pytest.approx(plain_losses, rel=1e-3)
    conv = next(module for module in trainer.model.student.modules() if isinstance(module, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    trainer.save_model()
    reloaded = type(trainer.model).from_pretrained(trainer.args.output_dir)
    for name, value in trainer.model.state_dict().items():
        assert torch.equal(value, reloaded.state_dict()[name]), name


def test_torch_compile_trains_the_same_and_compiles_in_the_first_steps_only(tmp_path, plain_losses):
    torch._dynamo.reset()
    graphs = CompiledGraphs()
    losses, _ = train_losses(tmp_path, "compile", graphs, torch_compile=True, torch_compile_backend="aot_eager")
    assert losses == pytest.approx(plain_losses, rel=1e-4)
    # Compiled in the first step, never again: no graph break at data-dependent shapes, no recompilation.
    assert graphs.per_step[0] > 0
    assert graphs.per_step == [graphs.per_step[0]] * STEPS, (
        f"graphs compiled by the end of each step: {graphs.per_step}"
    )
