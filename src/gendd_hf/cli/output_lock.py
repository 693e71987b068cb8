"""One run per output folder: the lock file that a recipe's run holds in its `output_dir` while it trains, evaluates,
saves and pushes, so that a second run started into the same folder is refused instead of overwriting its checkpoints
and model. The lock names the process that holds it; a lock left by a process that has died (killed, out of memory)
is taken over, so a crashed run never blocks its own relaunch (`--resume_from_checkpoint latest`)."""

import json
import os
import socket
import time
from pathlib import Path


LOCK_NAME = ".gendd_run.lock"
"""The lock file in `output_dir`: JSON with the holder's `pid`, `host` and `started` time."""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: only checks that the process exists
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, under another user
        return True
    return True


class OutputDirLock:
    """A context manager holding `output_dir/.gendd_run.lock` for one run.

    Args:
        output_dir (`str`): the run's output folder (created if needed).
        overwrite (`bool`, *optional*, defaults to `False`): take the folder even when another live run holds it
            (`--overwrite_output_dir`).
        active (`bool`, *optional*, defaults to `True`): whether this process takes the lock; under several processes
            only the main one does (`training_args.process_index == 0`), the others hold nothing.

    A lock of this very process (a run started again in the same Python process) or of a process that no longer exists
    on this host is taken over. A lock of another host cannot be checked: it is refused, and the message says to
    delete the file if that run is over.
    """

    def __init__(self, output_dir: str | os.PathLike, overwrite: bool = False, active: bool = True):
        self.path = Path(output_dir) / LOCK_NAME
        self.overwrite = overwrite
        self.active = active
        self.record = {"pid": os.getpid(), "host": socket.gethostname()}
        self.created = False

    def holder(self) -> dict | None:
        """The record of the run holding the lock, `None` when nobody does (no file, or a dead process of this
        host). An unreadable file (a run killed while writing it) counts as held by nobody."""
        try:
            holder = json.loads(self.path.read_text())
        except (FileNotFoundError, json.JSONDecodeError, UnicodeDecodeError):
            return None
        if not isinstance(holder, dict) or not isinstance(holder.get("pid"), int):
            return None
        if holder.get("host") == self.record["host"] and (holder["pid"] == os.getpid() or not _alive(holder["pid"])):
            return None
        return holder

    def __enter__(self) -> "OutputDirLock":
        if not self.active:
            return self
        self.created = not self.path.parent.exists()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_name(f"{LOCK_NAME}.{os.getpid()}")
        temporary.write_text(json.dumps({**self.record, "started": time.time()}))
        try:
            while True:
                holder = self.holder()
                if holder is not None and not self.overwrite:
                    raise RuntimeError(self._in_use(holder))
                if holder is not None or self.path.exists():  # taken over: a dead run's, ours, or with consent
                    os.replace(temporary, self.path)
                    return self
                try:
                    os.link(temporary, self.path)  # atomic, and fails if another run created it meanwhile
                    return self
                except FileExistsError:
                    continue  # look at that run's record
        finally:
            temporary.unlink(missing_ok=True)

    def _in_use(self, holder: dict) -> str:
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(holder.get("started", 0)))
        return (
            f"output_dir {str(self.path.parent)!r} is in use by another run: process {holder['pid']} on host "
            f"{holder.get('host')!r}, since {since} (lock file {self.path}). Two runs in one folder would overwrite "
            "each other's checkpoints and model. Wait for it to finish, choose another --output_dir, or pass "
            "--overwrite_output_dir to write into it anyway (if that run is over, e.g. its machine went down, you may "
            "also delete the lock file)."
        )

    def __exit__(self, *exc_info) -> None:
        if not self.active:
            return
        try:
            holder = json.loads(self.path.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return
        if holder.get("pid") == os.getpid() and holder.get("host") == self.record["host"]:
            self.path.unlink(missing_ok=True)
            if self.created and not any(self.path.parent.iterdir()):  # a run refused before writing anything
                self.path.parent.rmdir()


__all__ = ["LOCK_NAME", "OutputDirLock"]
