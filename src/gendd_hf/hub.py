"""Pushing GenDD models and Trainer checkpoints to the Hugging Face Hub, and resuming from a pushed checkpoint.

Two kinds of folders travel, each with its own files:

- a model folder (`save_pretrained` output, model card, metrics): the `PUSHED_FILES` only, what a user loads;
- a Trainer checkpoint, pushed with `hub_strategy="checkpoint"` (as `last-checkpoint/`) or `"all_checkpoints"` (as
  `checkpoint-N/`): what the Trainer needs to resume, which includes the torch pickles of the run's own state
  (`optimizer.pt`, `scheduler.pt`, `rng_state.pth`, `scaler.pt` with mixed precision), but never
  `training_args.bin` (the pickled arguments, `hub_token` included, which resuming does not read).

Resuming from a checkpoint downloaded with [`download_checkpoint`] (`resume_from_checkpoint="hub"` of
`GenDDTrainer.train`) loads those pickles as the Trainer always does, with `torch.load(weights_only=True)`: tensors
and plain containers only, no code runs. They are still the run's own files: resume only from a repository that you,
or someone you trust, pushed to.
"""

import fnmatch
import os
import shutil

from huggingface_hub import CommitInfo, create_repo, snapshot_download, upload_folder


PUSHED_FILES = ["*.safetensors", "*.json", "*.py", "README.md"]
"""Files of a model folder that travel: weights, config, sampling config and image processor, the model code for
`trust_remote_code`, metrics, and the model card. The Trainer's `training_args.bin` and the `.pt`/`.pth` files of
checkpoints are pickles for resuming a run, not for downloading a model."""
NOT_PUSHED = ["checkpoint-*", "runs/*", "_*"]
"""Sub-folders of `output_dir` left out: Trainer checkpoints and TensorBoard logs."""
CHECKPOINT_NOT_PUSHED = ["training_args.bin"]
"""Files of a Trainer checkpoint left out of its push: the pickled `TrainingArguments` (with `hub_token`)."""
HUB_CHECKPOINT = "last-checkpoint"
"""Folder of the Hub repository that `hub_strategy="checkpoint"` pushes the latest checkpoint to."""


def upload_model_folder(
    folder: str | os.PathLike,
    repo_id: str,
    token: str | None = None,
    revision: str | None = None,
    commit_message: str = "Upload GenDD model",
    run_as_future: bool = False,
):
    """Upload the `PUSHED_FILES` of `folder` to the existing repository `repo_id` in one commit (a `Future` of it
    with `run_as_future=True`)."""
    return upload_folder(
        repo_id=repo_id,
        folder_path=folder,
        allow_patterns=PUSHED_FILES,
        ignore_patterns=NOT_PUSHED,
        token=token,
        revision=revision,
        commit_message=commit_message,
        run_as_future=run_as_future,
    )


def push_model_folder(
    folder: str | os.PathLike,
    repo_id: str,
    token: str | None = None,
    private: bool | None = None,
    revision: str | None = None,
    commit_message: str = "Upload GenDD model",
) -> CommitInfo:
    """Create `repo_id` if needed and upload the `PUSHED_FILES` of `folder` to it in one commit.

    Args:
        folder (`str` or `os.PathLike`): the saved model folder (`save_pretrained` output plus `README.md`).
        repo_id (`str`): `"name"` (under the token's user) or `"namespace/name"`.
        token (`str`, *optional*): a write token; defaults to the one `huggingface_hub` finds (`HF_TOKEN`, login).
        private (`bool`, *optional*): visibility of a repository created here; an existing one keeps its own.
        revision (`str`, *optional*): branch to commit to (default `main`).
        commit_message (`str`, *optional*): the commit's title.

    Returns:
        `huggingface_hub.CommitInfo` of the upload.
    """
    repo = create_repo(repo_id, token=token, private=private, exist_ok=True)
    return upload_model_folder(folder, repo.repo_id, token=token, revision=revision, commit_message=commit_message)


def upload_checkpoint(
    checkpoint: str | os.PathLike,
    repo_id: str,
    path_in_repo: str = HUB_CHECKPOINT,
    token: str | None = None,
    revision: str | None = None,
    commit_message: str = "Upload checkpoint",
    run_as_future: bool = False,
):
    """Upload a Trainer checkpoint folder to `path_in_repo` of `repo_id`, all but `CHECKPOINT_NOT_PUSHED` (see the
    module docstring for the pickles it holds)."""
    return upload_folder(
        repo_id=repo_id,
        folder_path=checkpoint,
        path_in_repo=path_in_repo,
        ignore_patterns=CHECKPOINT_NOT_PUSHED,
        token=token,
        revision=revision,
        commit_message=commit_message,
        run_as_future=run_as_future,
    )


def copy_model_files(checkpoint: str | os.PathLike, folder: str | os.PathLike) -> list[str]:
    """Copy the model files of a Trainer checkpoint (its `PUSHED_FILES` but `trainer_state.json`) into `folder`, as
    the Trainer does before a checkpoint push, without saving the model again; returns their names."""
    names = sorted(
        name
        for name in os.listdir(checkpoint)
        if name != "trainer_state.json"
        and os.path.isfile(os.path.join(checkpoint, name))
        and any(fnmatch.fnmatch(name, pattern) for pattern in PUSHED_FILES)
    )
    for name in names:
        shutil.copy(os.path.join(checkpoint, name), os.path.join(folder, name))
    return names


def download_checkpoint(
    repo_id: str, path_in_repo: str = HUB_CHECKPOINT, revision: str | None = None, token: str | None = None
) -> str:
    """Download the checkpoint folder `path_in_repo` of `repo_id` into the Hub cache; returns its local path, for
    `Trainer.train(resume_from_checkpoint=...)`."""
    snapshot = snapshot_download(repo_id, allow_patterns=[f"{path_in_repo}/*"], revision=revision, token=token)
    folder = os.path.join(snapshot, path_in_repo)
    if not os.path.isdir(folder):
        raise FileNotFoundError(
            f"The Hub repository {repo_id!r} has no {path_in_repo}/ folder to resume from. Checkpoints are pushed "
            "there by a run with push_to_hub and hub_strategy='checkpoint' (--hub_strategy checkpoint), or as "
            "checkpoint-N/ with hub_strategy='all_checkpoints' (then resume_from_checkpoint='hub:checkpoint-N')."
        )
    return folder


__all__ = [
    "CHECKPOINT_NOT_PUSHED",
    "HUB_CHECKPOINT",
    "NOT_PUSHED",
    "PUSHED_FILES",
    "copy_model_files",
    "download_checkpoint",
    "push_model_folder",
    "upload_checkpoint",
    "upload_model_folder",
]
