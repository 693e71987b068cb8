"""Pushing model folders, Trainer runs (`push_to_hub`, `hub_strategy`, resuming from a pushed checkpoint) and
`model.push_to_hub` with the real `huggingface_hub` client.

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
from pathlib import Path

import numpy as np
import pytest
import torch
from huggingface_hub import HfApi, ModelCard, constants, create_repo, hf_hub_download, snapshot_download, upload_folder
from huggingface_hub.errors import HfHubHTTPError
from PIL import Image
from safetensors.torch import load, save_file
from transformers import AutoImageProcessor, TimmWrapperImageProcessor, TrainerCallback, pipeline

from gendd_hf.data import ImageCollator
from gendd_hf.hub import push_model_folder
from gendd_hf.image_processing import build_image_processor
from gendd_hf.model_card import write_model_card
from gendd_hf.modeling_gendd import GenDDForImageClassification
from gendd_hf.trainer import GenDDTrainer
from helpers import (
    SIZE,
    TRANSFORM,
    CrashAtStep,
    same_card_but_repo_id,
    tiny_model,
    toy_args,
    toy_dataset,
    toy_model,
    toy_teacher,
)
from hub_server import FAKE_TOKEN, FAKE_USER


def make_model_folder(folder):
    """A small model folder: a rendered model card, a config and a safetensors file; returns {name: bytes}."""
    folder.mkdir(parents=True, exist_ok=True)
    write_model_card(
        folder,
        dict(
            model_name="gendd-push-test",
            teacher="t",
            student="test_resnet",
            dataset="zalando-datasets/fashion_mnist",
            sampled_accuracy={"top1": 0.5, "top5": 0.9},
            probe_accuracy={"top1": 0.45, "top5": 0.88},
        ),
    )
    (folder / "config.json").write_text(json.dumps({"model_type": "gendd", "token_dim": 8}))
    save_file(
        {"probe.weight": torch.arange(12.0).view(3, 4), "probe.bias": torch.ones(3)}, folder / "model.safetensors"
    )
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

    api.upload_file(
        path_or_fileobj=tmp_path / "model" / "config.json", path_in_repo="nested/config.json", repo_id=repo_id
    )
    upload_folder(repo_id=repo_id, folder_path=tmp_path / "model")
    upload_folder(repo_id=repo_id, folder_path=tmp_path / "model")  # unchanged: skipped, no new commit

    repo = fake_hub.repo(repo_id)
    assert repo.files == {**expected, "nested/config.json": expected["config.json"]}
    assert len(repo.commits) == 2
    downloaded = hf_hub_download(repo_id, "model.safetensors", cache_dir=tmp_path / "cache")
    assert open(downloaded, "rb").read() == expected["model.safetensors"]
    assert sorted(sibling.rfilename for sibling in api.model_info(repo_id).siblings) == sorted(repo.files)


def test_push_model_folder_sends_the_model_files_only(fake_hub, tmp_path):
    """A saved output folder pushed afterwards: weights, configs, code and card, never the Trainer's pickles, logs or
    checkpoints."""
    expected = make_model_folder(tmp_path / "model")
    (tmp_path / "model" / "training_args.bin").write_bytes(b"pickle")
    for folder in ("checkpoint-1", "runs"):
        (tmp_path / "model" / folder).mkdir()
        (tmp_path / "model" / folder / "config.json").write_text("{}")
    commit = push_model_folder(tmp_path / "model", "gendd/saved-folder", commit_message="Add saved folder")
    repo = fake_hub.repo("gendd/saved-folder")
    assert repo.files == expected and repo.commits[-1]["oid"] == commit.oid


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


# ---- the Trainer's Hub machinery and `model.push_to_hub` ------------------------------------------------------------
def _trainer(tmp_path, output, max_steps=4, model_card=None, callbacks=(), **hub_args):
    """A toy `GenDDTrainer` (test_trainer's: 1-channel 16x16 images, `test_resnet` teacher and student) whose model has
    an evaluation transform, hence an image processor; 32 images of batch 8: 4 steps an epoch."""
    model = toy_model()
    model.config.pretrained_cfg = {
        "input_size": (1, SIZE, SIZE),
        "mean": (0.5,),
        "std": (0.5,),
        "crop_pct": 1.0,
        "interpolation": "bilinear",
        "crop_mode": "center",
    }
    args = toy_args(
        tmp_path / output, max_steps=max_steps, save_strategy="steps", save_steps=2, data_seed=3, **hub_args
    )
    return GenDDTrainer(
        model,
        args,
        teacher=toy_teacher(),
        train_dataset=toy_dataset(n=32),
        eval_dataset=toy_dataset(n=10, seed=1),
        data_collator=ImageCollator(TRANSFORM),
        processing_class=build_image_processor(model),
        model_card=model_card,
        callbacks=list(callbacks),
    )


def _pipeline_answers(folder):
    image = Image.fromarray((np.random.default_rng(3).random((20, 20)) * 255).astype("uint8"), mode="L")
    return pipeline("image-classification", model=str(folder))(image, top_k=3)


class RecordSteps(TrainerCallback):
    def __init__(self):
        self.steps = []

    def on_step_end(self, args, state, control, **kwargs):
        self.steps.append(state.global_step)


def test_trainer_pushes_checkpoints_and_the_final_model_with_the_gendd_card(fake_hub, tmp_path):
    """`push_to_hub` + `hub_strategy="checkpoint"`: each save pushes the model folder and `last-checkpoint/` (with the
    resume pickles, never `training_args.bin`); `trainer.push_to_hub()` sends the final folder with the image
    processor and the GenDD card; `pipeline()` loads the downloaded repository."""
    card = {
        "dataset": "someone/toy-images",
        "train_split": "train",
        "eval_dataset": "someone/toy-eval",
        "eval_split": "validation",
        "license": "mit",
    }
    trainer = _trainer(
        tmp_path,
        "run",
        model_card=card,
        push_to_hub=True,
        hub_model_id="gendd/trainer-push",
        hub_strategy="checkpoint",
        hub_always_push=True,
    )
    trainer.train()
    trainer.evaluate()
    commit = trainer.push_to_hub()

    repo = fake_hub.repo("gendd/trainer-push")
    out = tmp_path / "run" / "out"
    assert [c["summary"] for c in repo.commits] == [
        "Training in progress, step 2",
        "Training in progress, step 2, checkpoint",
        "Training in progress, step 4",
        "Training in progress, step 4, checkpoint",
        "End of training",
    ]
    assert commit.oid == repo.head
    checkpoint = {name.removeprefix("last-checkpoint/") for name in repo.files if name.startswith("last-checkpoint/")}
    assert {
        "model.safetensors",
        "config.json",
        "sampling_config.json",
        "trainer_state.json",
        "optimizer.pt",
        "scheduler.pt",
        "rng_state.pth",
        "modeling_gendd.py",
    } <= checkpoint
    assert "training_args.bin" not in checkpoint and "training_args.bin" in os.listdir(out / "checkpoint-4")
    assert json.loads(repo.files["last-checkpoint/trainer_state.json"])["global_step"] == 4
    assert repo.files["last-checkpoint/model.safetensors"] == (out / "checkpoint-4" / "model.safetensors").read_bytes()
    root = {name for name in repo.files if "/" not in name}
    assert {
        "model.safetensors",
        "config.json",
        "sampling_config.json",
        "README.md",
        "configuration_gendd.py",
        "modeling_gendd.py",
    } <= root
    assert not any(name.endswith((".bin", ".pt", ".pth")) for name in root) and "training_args.bin" in os.listdir(out)
    assert not any(name.startswith(("checkpoint-", "runs/")) for name in repo.files)
    assert repo.files["model.safetensors"] == (out / "model.safetensors").read_bytes()

    readme = repo.files["README.md"].decode()
    metadata = ModelCard(readme, ignore_metadata_errors=False).data.to_dict()
    assert metadata["license"] == "mit" and metadata["datasets"] == ["someone/toy-images", "someone/toy-eval"]
    assert {entry["dataset"]["type"] for entry in metadata["model-index"][0]["results"]} == {"someone/toy-eval"}
    for expected in [
        "Generative Distribution Distillation",
        "| GenDD optimizer steps | 4 |",
        "timm `test_resnet` (weights not recorded)",
        "[someone/toy-images](https://huggingface.co/datasets/someone/toy-images), split `train`",
        'from_pretrained("gendd/trainer-push")',
    ]:
        assert expected in readme, expected
    assert "epochs |" not in readme and "diffusion head | " in readme  # steps, and the evaluated accuracies

    local = snapshot_download("gendd/trainer-push", cache_dir=tmp_path / "cache")
    assert _pipeline_answers(local) == _pipeline_answers(out)
    assert fake_hub.unhandled == []


def test_resume_from_the_hub_checkpoint_continues_at_the_next_step(fake_hub, tmp_path, full_determinism):
    """A run of 6 steps pushed with `hub_strategy="checkpoint"` is killed in step 5, after its checkpoint of step 4 (an
    epoch) went up; another machine resumes from the Hub's `last-checkpoint/` with `resume_from_checkpoint="hub"`,
    trains steps 5 and 6 only, and ends with the weights of a run that was never interrupted."""
    settings = {"max_steps": 6, "full_determinism": True, "hub_model_id": "gendd/resume-test"}
    killed = _trainer(
        tmp_path,
        "killed",
        callbacks=[CrashAtStep(5)],
        push_to_hub=True,
        hub_strategy="checkpoint",
        hub_always_push=True,
        **settings,
    )
    with pytest.raises(KeyboardInterrupt):
        killed.train()
    killed.push_in_progress.wait_until_done()
    reference = _trainer(tmp_path, "reference", max_steps=6, full_determinism=True)
    reference.train()

    steps = RecordSteps()
    resumed = _trainer(tmp_path, "resumed", callbacks=[steps], **settings)  # reads, does not push
    resumed.train(resume_from_checkpoint="hub")
    assert steps.steps == [5, 6] and resumed.state.global_step == 6
    expected = reference.model.state_dict()
    assert all(torch.equal(value, expected[name]) for name, value in resumed.model.state_dict().items())
    assert len(fake_hub.repo("gendd/resume-test").commits) == 4  # the resumed run pushed nothing

    with pytest.raises(FileNotFoundError, match=r"has no checkpoint-9/ folder to resume from"):
        resumed.train(resume_from_checkpoint="hub:checkpoint-9")
    without_repo = _trainer(tmp_path, "no-repo", max_steps=6)
    with pytest.raises(ValueError, match=r"hub_model_id is not set: pass hub_model_id='namespace/name'"):
        without_repo.train(resume_from_checkpoint="hub")


def test_all_checkpoints_pushes_each_checkpoint_folder(fake_hub, tmp_path):
    trainer = _trainer(
        tmp_path,
        "run",
        push_to_hub=True,
        hub_model_id="gendd/all-checkpoints",
        hub_strategy="all_checkpoints",
        hub_always_push=True,
    )
    trainer.train()
    files = fake_hub.repo("gendd/all-checkpoints").files
    assert {"checkpoint-2/trainer_state.json", "checkpoint-4/trainer_state.json"} <= set(files)
    assert not any(name.startswith("last-checkpoint/") or name.endswith("training_args.bin") for name in files)


def test_a_loaded_models_card_survives_model_and_trainer_pushes(fake_hub, tmp_path):
    """A model loaded from a folder pushes that folder's card (teacher, data, steps, results, `datasets` and
    `model-index`), with `model.push_to_hub` and with a Trainer's push that did not train it; a card passed as
    `model_card` replaces it."""
    card = {"dataset": "someone/toy-images", "eval_dataset": "someone/toy-eval", "eval_split": "validation"}
    trained = _trainer(tmp_path, "run", model_card={**card, "license": "mit"})
    trained.train()
    trained.evaluate()
    trained.save_model()
    trained.create_model_card()
    folder = Path(trained.args.output_dir)
    local = (folder / "README.md").read_text()
    metadata = ModelCard(local).data
    assert metadata.datasets == ["someone/toy-images", "someone/toy-eval"] and metadata.eval_results

    model = GenDDForImageClassification.from_pretrained(folder)
    assert model.model_card == local
    model.push_to_hub("gendd/student-copy")
    pushed = fake_hub.repo("gendd/student-copy").files["README.md"].decode()
    assert same_card_but_repo_id(pushed, local, "gendd/student-copy", None)
    assert 'from_pretrained("gendd/student-copy")' in pushed and "No accuracy has been measured" not in pushed

    trainer = GenDDTrainer(
        model,
        toy_args(tmp_path / "push", push_to_hub=True, hub_model_id="gendd/trainer-copy"),
        data_collator=ImageCollator(TRANSFORM),
    )
    trainer.push_to_hub()
    pushed = fake_hub.repo("gendd/trainer-copy").files["README.md"].decode()
    assert same_card_but_repo_id(pushed, local, "gendd/trainer-copy", None)

    model.push_to_hub("gendd/student-copy", model_card={"teacher": "timm `resnet18`", "dataset": "my photos"})
    replaced = ModelCard(fake_hub.repo("gendd/student-copy").files["README.md"].decode())
    assert "timm `resnet18`" in replaced.text and "datasets" not in replaced.data.to_dict()
    assert fake_hub.unhandled == []


def test_model_push_to_hub_uploads_the_image_processor_sampling_settings_and_gendd_card(fake_hub, tmp_path):
    model = tiny_model()
    model.config.pretrained_cfg = {
        "input_size": (1, 28, 28),
        "mean": (0.5,),
        "std": (0.5,),
        "crop_pct": 1.0,
        "interpolation": "bilinear",
        "crop_mode": "center",
    }
    model.sampling_config = model.sampling_config.update(sampler="ddim", num_inference_steps=3, seed=4)
    card = {
        "teacher": "timm `resnet34.tv_in1k`",
        "dataset": "zalando-datasets/fashion_mnist",
        "license": "mit",
        "sampled_accuracy": {"top1": 0.5},
    }
    commit = model.push_to_hub("model-push", model_card=card, tags=["demo"])

    repo = fake_hub.repo(f"{FAKE_USER}/model-push")
    assert [c["oid"] for c in repo.commits] == [commit.oid]
    assert {
        "model.safetensors",
        "config.json",
        "sampling_config.json",
        "README.md",
        "configuration_gendd.py",
        "modeling_gendd.py",
    } <= set(repo.files)
    assert json.loads(repo.files["sampling_config.json"])["num_inference_steps"] == 3
    card_data = ModelCard(repo.files["README.md"].decode(), ignore_metadata_errors=False).data
    assert card_data.license == "mit" and card_data.datasets == ["zalando-datasets/fashion_mnist"]
    assert "demo" in card_data.tags and "gendd" in card_data.tags
    assert "`ddim` sampler, 3 steps" in repo.files["README.md"].decode()

    local = snapshot_download(f"{FAKE_USER}/model-push", cache_dir=tmp_path / "cache")
    processor = AutoImageProcessor.from_pretrained(local)  # transformers keeps a timm processor in config.json
    assert isinstance(processor, TimmWrapperImageProcessor) and processor.data_config["input_size"] == (1, 28, 28)
    model.save_pretrained(tmp_path / "saved")
    assert _pipeline_answers(local) == _pipeline_answers(tmp_path / "saved")

    # Without model_card, a new push keeps the repository's card (as transformers does).
    model.sampling_config = model.sampling_config.update(num_inference_steps=5)
    model.push_to_hub("model-push")
    assert len(repo.commits) == 2 and repo.commits[-1]["files"] == ["sampling_config.json"]
    assert ModelCard(repo.files["README.md"].decode()).data.license == "mit"

    model.config.pretrained_cfg = None
    with pytest.raises(ValueError, match="config.pretrained_cfg is None: the repository would have no evaluation"):
        model.push_to_hub("model-push")
