"""Progress that stays readable in a log file: a tqdm bar on a terminal, a short line now and then elsewhere.

tqdm redraws its bar with carriage returns; written to a file, a long job's bar becomes one line of tens of kilobytes.
[`progress_bar`] gives tqdm on a terminal and a [`LogProgress`] otherwise (a file, a pipe, a job scheduler's log).
"""

import sys
import time
from typing import IO

from tqdm.auto import tqdm


def is_terminal(stream: IO | None = None) -> bool:
    """Whether `stream` (default: `sys.stderr`, where tqdm writes) is an interactive terminal."""
    stream = sys.stderr if stream is None else stream
    return bool(getattr(stream, "isatty", lambda: False)())


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.1f} min" if seconds < 5400 else f"{seconds / 3600:.1f} h"


class LogProgress:
    """A stand-in for a tqdm bar that writes whole lines: one when progress has moved by `every_percent` of `total` or
    `every_seconds` have passed since the last line, and one at the end, such as

        train: 470/940 step (50%) in 3.2 min, 0.41 s/step, ~3.2 min left

    Args:
        total (`int`, *optional*): the count at the end; `None` (a stream) drops the percentages.
        desc (`str`, *optional*): what is counted, at the start of each line.
        unit (`str`, *optional*, defaults to `"it"`): the unit of the count.
        file (`IO`, *optional*): where the lines go; `sys.stderr` by default, as tqdm.
        initial (`int`, *optional*, defaults to 0): the count already done when the bar starts, not timed (as tqdm's).
        every_percent (`float`, *optional*, defaults to 10): a line at least this often, in percent of `total`.
        every_seconds (`float`, *optional*, defaults to 60): and at least this often, in seconds.
    """

    def __init__(
        self,
        total: int | None = None,
        desc: str = "",
        unit: str = "it",
        file: IO | None = None,
        initial: int = 0,
        every_percent: float = 10,
        every_seconds: float = 60,
    ):
        self.total = total
        self.desc = desc
        self.unit = unit
        self.file = file
        self.every_percent = every_percent
        self.every_seconds = every_seconds
        self.n = self._initial = self._last_n = initial
        self._start = self._last_time = time.monotonic()
        self._lines = 0
        self._closed = False

    def __enter__(self) -> "LogProgress":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def update(self, n: int = 1) -> None:
        self.n += n
        now = time.monotonic()
        moved = self.total and 100 * (self.n - self._last_n) / self.total >= self.every_percent
        if self.n != self._last_n and (moved or now - self._last_time >= self.every_seconds):
            self._line(now)

    def close(self) -> None:
        """Writes the last line (unless the last update wrote it)."""
        if not self._closed and (self.n != self._last_n or not self._lines):
            self._line(time.monotonic())
        self._closed = True

    def write(self, text: str) -> None:
        """Prints `text` on its own line, to stdout as `tqdm.write` does."""
        print(text, flush=True)

    def _line(self, now: float) -> None:
        elapsed = now - self._start
        count = f"{self.n}/{self.total}" if self.total else f"{self.n}"
        parts = [f"{self.desc}: " if self.desc else "", f"{count} {self.unit}"]
        if self.total:
            parts.append(f" ({100 * self.n / self.total:.0f}%)")
        parts.append(f" in {_duration(elapsed)}")
        if self.n > self._initial:
            rate = elapsed / (self.n - self._initial)
            parts.append(f", {rate:.3g} s/{self.unit}")
            if self.total and self.n < self.total:
                parts.append(f", ~{_duration(rate * (self.total - self.n))} left")
        print("".join(parts), file=self.file or sys.stderr, flush=True)
        self._last_n, self._last_time = self.n, now
        self._lines += 1


def progress_bar(
    total: int | None = None,
    desc: str = "",
    unit: str = "it",
    disable: bool = False,
    file: IO | None = None,
    **tqdm_kwargs,
) -> "tqdm | LogProgress":
    """A tqdm bar on a terminal; otherwise a [`LogProgress`] that writes a short line now and then. Both count with
    `update(n)` and end with `close()` (or a `with` block).

    Args:
        total, desc, unit, disable, file: as for tqdm (`file` defaults to `sys.stderr`).
        tqdm_kwargs: further tqdm arguments, used on a terminal only.
    """
    if disable or is_terminal(file):
        return tqdm(total=total, desc=desc, unit=unit, disable=disable, file=file, **tqdm_kwargs)
    return LogProgress(total=total, desc=desc, unit=unit, file=file)


def quiet_library_bars_in_log_files() -> None:
    """Where stderr is not a terminal, turn off the tqdm bars of transformers (saving shards), datasets (`map`,
    loading) and huggingface_hub (downloads, uploads): in a log file each is a line of carriage returns. Progress of our
    own ([`progress_bar`], the trainer's `LogProgressCallback`) still comes as lines. For the recipes' entry points."""
    if is_terminal():
        return
    import datasets
    import huggingface_hub.utils
    import transformers.utils.logging

    datasets.disable_progress_bars()
    huggingface_hub.utils.disable_progress_bars()
    transformers.utils.logging.disable_progress_bar()


__all__ = ["LogProgress", "is_terminal", "progress_bar", "quiet_library_bars_in_log_files"]
