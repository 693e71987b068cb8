"""Pushing model folders with the real `huggingface_hub` client.

The loopback tests run against `tests/hub_server.py`, which answers every file as a regular (non-LFS) upload:
they cover repository creation, README metadata validation, the preupload / NDJSON commit protocol and
downloads, but NOT the LFS or xet transfer that the real Hub uses for large binaries such as `model.safetensors`.
`test_push_to_real_hub` covers that path when credentials for a test repository are given.
"""

import json
import os
import subprocess
import sys
import uuid

import pytest
import torch
from huggingface_hub import HfApi, constants, create_repo, hf_hub_download, upload_folder
from huggingface_hub.errors import HfHubHTTPError
from safetensors.torch import load, save_file

from gendd_hf.model_card import write_model_card
from hub_server import FAKE_TOKEN, FAKE_USER, fake_hub  # noqa: F401  (fake_hub is a fixture)


def make_model_folder(folder):
    """A small model folder: a rendered model card, a config and a safetensors file; returns {name: bytes}."""
    folder.mkdir(parents=True, exist_ok=True)
    write_model_card(
        folder,
        dict(
            model_name="gendd-push-test", teacher="t", student="test_resnet", dataset="zalando-datasets/fashion_mnist",
            sampled_accuracy={"top1": 0.5, "top5": 0.9}, probe_accuracy={"top1": 0.45, "top5": 0.88},
        ),
    )
    (folder / "config.json").write_text(json.dumps({"model_type": "gendd", "token_dim": 8}))
    save_file({"probe.weight": torch.arange(12.0).view(3, 4), "probe.bias": torch.ones(3)}, folder / "model.safetensors")
    return {path.name: path.read_bytes() for path in folder.iterdir()}


def test_upload_folder_reaches_fake_hub_byte_for_byte(fake_hub, tmp_path):
    """create_repo + upload_folder store exactly the folder's files with identical bytes (regular uploads only)."""
    expected = make_model_folder(tmp_path / "model")

    url = create_repo("gendd/push-test")
    commit = upload_folder(repo_id="gendd/push-test", folder_path=tmp_path / "model", commit_message="Add model")

    assert url == f"{fake_hub.endpoint}/gendd/push-test"
    repo = fake_hub.repo("gendd/push-test")
    assert repo.files == expected
    assert repo.commits == [{"oid": commit.oid, "summary": "Add model", "files": sorted(expected)}]
    assert load(repo.files["model.safetensors"])["probe.weight"].equal(torch.arange(12.0).view(3, 4))
    assert ("POST", "/api/validate-yaml") in fake_hub.requests  # the README front matter was checked
    assert fake_hub.tokens == {FAKE_TOKEN} and fake_hub.unhandled == []


def test_upload_file_download_and_unchanged_reupload(fake_hub, tmp_path):
    expected = make_model_folder(tmp_path / "model")
    api = HfApi()
    repo_id = create_repo("push-test-2").repo_id
    assert repo_id == f"{FAKE_USER}/push-test-2"
    create_repo(repo_id, exist_ok=True)  # 409 from the server, accepted

    api.upload_file(path_or_fileobj=tmp_path / "model" / "config.json", path_in_repo="nested/config.json",
                    repo_id=repo_id)
    upload_folder(repo_id=repo_id, folder_path=tmp_path / "model")
    upload_folder(repo_id=repo_id, folder_path=tmp_path / "model")  # unchanged: skipped, no new commit

    repo = fake_hub.repo(repo_id)
    assert repo.files == {**expected, "nested/config.json": expected["config.json"]}
    assert len(repo.commits) == 2
    downloaded = hf_hub_download(repo_id, "model.safetensors", cache_dir=tmp_path / "cache")
    assert open(downloaded, "rb").read() == expected["model.safetensors"]
    assert sorted(sibling.rfilename for sibling in api.model_info(repo_id).siblings) == sorted(repo.files)


def test_fake_hub_refuses_anonymous_writes(fake_hub):
    with pytest.raises(HfHubHTTPError) as error:
        create_repo("gendd/anonymous", token=False)
    assert error.value.response.status_code == 401
    assert fake_hub.repos == {}


def test_subprocess_inherits_the_fake_hub_environment(fake_hub, tmp_path):
    expected = make_model_folder(tmp_path / "model")
    script = (
        "import sys\n"
        "from huggingface_hub import create_repo, upload_folder\n"
        "create_repo('gendd/from-subprocess')\n"
        "upload_folder(repo_id='gendd/from-subprocess', folder_path=sys.argv[1])\n"
    )
    subprocess.run([sys.executable, "-c", script, str(tmp_path / "model")], check=True, timeout=120)
    assert fake_hub.repo("gendd/from-subprocess").files == expected


@pytest.mark.skipif(
    not (os.environ.get("GENDD_HF_TEST_TOKEN") and os.environ.get("GENDD_HF_TEST_REPO")),
    reason="pushes to the real Hub only when GENDD_HF_TEST_TOKEN and GENDD_HF_TEST_REPO (a model repo id) are set",
)
def test_push_to_real_hub(monkeypatch, tmp_path):
    """Upload the same folder (model.safetensors through LFS/xet) to a real test repository, read it back, clean up."""
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    token, repo_id = os.environ["GENDD_HF_TEST_TOKEN"], os.environ["GENDD_HF_TEST_REPO"]
    expected = make_model_folder(tmp_path / "model")
    api = HfApi(token=token)
    api.create_repo(repo_id, private=True, exist_ok=True)
    prefix = f"gendd-hf-test-{uuid.uuid4().hex[:8]}"
    try:
        api.upload_folder(repo_id=repo_id, folder_path=tmp_path / "model", path_in_repo=prefix)
        for name, content in expected.items():
            path = hf_hub_download(repo_id, f"{prefix}/{name}", token=token, cache_dir=tmp_path / "cache")
            assert open(path, "rb").read() == content, name
    finally:
        api.delete_folder(prefix, repo_id=repo_id)
