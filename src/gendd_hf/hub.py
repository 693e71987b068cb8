"""Pushing a trained GenDD folder to the Hugging Face Hub: the files a user loads, never the resume-only pickles."""

import os

from huggingface_hub import CommitInfo, create_repo, upload_folder


PUSHED_FILES = ["*.safetensors", "*.json", "*.py", "README.md"]
"""Files of a model folder that travel: weights, config and image processor, the model code for
`trust_remote_code`, metrics, and the model card. The Trainer's `training_args.bin` and the `.pt`/`.pth` files of
checkpoints are pickles for resuming a run on the machine that wrote them, not for downloading."""
NOT_PUSHED = ["checkpoint-*", "runs/*", "_*"]
"""Sub-folders of `output_dir` left out: Trainer checkpoints and TensorBoard logs."""


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
    return upload_folder(
        repo_id=repo.repo_id,
        folder_path=folder,
        allow_patterns=PUSHED_FILES,
        ignore_patterns=NOT_PUSHED,
        token=token,
        revision=revision,
        commit_message=commit_message,
    )


__all__ = ["NOT_PUSHED", "PUSHED_FILES", "push_model_folder"]
