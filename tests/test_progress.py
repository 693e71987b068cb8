"""Progress in a log file: short whole lines instead of tqdm's carriage-return redraws, for training, evaluation (the
sampled path's) and the teacher-output precompute; tqdm stays on a terminal."""

import io
from types import SimpleNamespace

import datasets
import huggingface_hub.utils
import pytest
import transformers.utils.logging
from tqdm.auto import tqdm
from transformers import ProgressCallback

from gendd_hf.callbacks import LogProgressCallback
from gendd_hf.progress import LogProgress, progress_bar, quiet_library_bars_in_log_files
from helpers import toy_trainer


class Terminal(io.StringIO):
    def isatty(self):
        return True


def lines_of(text: str) -> list[str]:
    assert "\r" not in text
    return text.splitlines()


def test_a_log_file_gets_a_short_line_every_tenth_and_at_the_end():
    log = io.StringIO()
    with progress_bar(total=1000, desc="teacher outputs", unit="img", file=log) as bar:
        assert isinstance(bar, LogProgress)
        for _ in range(999):
            bar.update(1)
        bar.update(1)
    lines = lines_of(log.getvalue())
    assert len(lines) == 10 and all(len(line) < 100 for line in lines)
    assert lines[0].startswith("teacher outputs: 100/1000 img (10%) in ") and " s/img, ~" in lines[0]
    assert lines[-1].startswith("teacher outputs: 1000/1000 img (100%) in ") and "left" not in lines[-1]


def test_lines_also_come_with_time_and_without_a_total(monkeypatch):
    clock = iter(range(0, 10_000, 30))  # 30 s per reading of the clock
    monkeypatch.setattr("gendd_hf.progress.time", SimpleNamespace(monotonic=lambda: next(clock)))
    log = io.StringIO()
    bar = LogProgress(desc="stream", unit="batch", file=log, every_seconds=60)
    for _ in range(5):
        bar.update(2)
    bar.close()
    bar.close()  # the last line once
    assert lines_of(log.getvalue()) == [
        "stream: 4 batch in 60 s, 15 s/batch",
        "stream: 8 batch in 2.0 min, 15 s/batch",
        "stream: 10 batch in 3.0 min, 18 s/batch",
    ]


def test_a_terminal_or_a_disabled_bar_gets_tqdm():
    assert isinstance(progress_bar(total=3, file=Terminal()), tqdm)
    assert isinstance(progress_bar(total=3, file=io.StringIO(), disable=True), tqdm)


@pytest.mark.parametrize("terminal", [False, True])
def test_the_trainer_writes_progress_lines_when_stderr_is_not_a_terminal(tmp_path, monkeypatch, capsys, terminal):
    if terminal:
        monkeypatch.setattr("sys.stderr", Terminal())
    trainer = toy_trainer(tmp_path, disable_tqdm=False, max_steps=20, logging_steps=10, per_device_eval_batch_size=4)
    kinds = [type(callback) for callback in trainer.callback_handler.callbacks]
    assert (LogProgressCallback in kinds, ProgressCallback in kinds) == (not terminal, terminal)
    if terminal:
        return
    trainer.train()
    trainer.evaluate()  # 10 images in 3 batches (the sampled and the probe path of each); the first is not timed
    captured = capsys.readouterr()
    progress = lines_of(captured.err)
    assert [line.split(" in ")[0] for line in progress] == [
        f"train: {step}/20 step ({5 * step}%)" for step in (2, 4, 6, 8, 10, 12, 14, 16, 18, 20)
    ] + ["evaluate: 2/3 batch (67%)", "evaluate: 3/3 batch (100%)"]
    assert all(len(line) < 100 for line in progress)
    logs = lines_of(captured.out)  # the Trainer's logs, one line each
    assert sum("'loss'" in line for line in logs) == 2 and any("'train_runtime'" in line for line in logs)


@pytest.mark.parametrize("terminal", [False, True])
def test_the_libraries_own_bars_are_off_in_a_log_file(monkeypatch, terminal):
    if terminal:
        monkeypatch.setattr("sys.stderr", Terminal())
    try:
        quiet_library_bars_in_log_files()
        states = (
            datasets.is_progress_bar_enabled(),
            huggingface_hub.utils.are_progress_bars_disabled(),
            transformers.utils.logging.is_progress_bar_enabled(),
        )
        assert states == (terminal, not terminal, terminal)  # enabled, disabled, enabled on a terminal
    finally:
        datasets.enable_progress_bars()
        huggingface_hub.utils.enable_progress_bars()
        transformers.utils.logging.enable_progress_bar()


def test_a_resumed_run_times_only_its_own_steps(monkeypatch, capsys):
    """Resumed at step 15 of 20, 30 s per clock reading: the line counts 17/20 done but times two steps in 30 s
    (15 s/step), so the three left take ~45 s, not 17 steps in 30 s (1.76 s/step, ~5 s left)."""
    clock = iter(range(0, 10_000, 30))
    monkeypatch.setattr("gendd_hf.progress.time", SimpleNamespace(monotonic=lambda: next(clock)))
    callback, control = LogProgressCallback(), SimpleNamespace()
    state = SimpleNamespace(is_world_process_zero=True, max_steps=20, global_step=15)
    callback.on_train_begin(None, state, control)
    state.global_step = 17
    callback.on_step_end(None, state, control)
    assert lines_of(capsys.readouterr().err) == ["train: 17/20 step (85%) in 30 s, 15 s/step, ~45 s left"]
