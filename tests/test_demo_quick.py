"""`make demo-quick`: the README's main job end to end on real Fashion-MNIST, at smoke size (under 3 minutes): the
teacher, KD, GenDD, the one-pass student, and the saved GenDD student through the Auto classes and the pipeline."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import AutoImageProcessor, AutoModelForImageClassification, pipeline

import gendd_hf  # noqa: F401  (registers GenDD with the Auto classes)
from gendd_hf.data import FASHION_MNIST_LABEL_NAMES, load_fashion_mnist


ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_demo_quick_trains_distils_and_saves_a_loadable_student(tmp_path):
    command = [
        sys.executable,
        "-m",
        "gendd_hf.bench.fashion_mnist",
        "demo",
        "--quick",
        "--output_dir",
        str(tmp_path / "demo"),
        "--cache_dir",
        str(tmp_path / "cache"),
    ]
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "HF_HOME": str(tmp_path / "hf_home"),
        "HF_DATASETS_CACHE": str(tmp_path / "hf_datasets"),
    }
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    assert "| fashion_mnist | gendd |" in result.stdout and "AutoModelForImageClassification" in result.stdout

    # The teacher is cached as safetensors (beside its training curve, json); every model learned (chance is 10%).
    cached = sorted(path.suffix for path in (tmp_path / "cache").glob("teacher-*") if path.is_file())
    assert cached == [".json", ".safetensors"]
    results = json.loads((tmp_path / "demo" / "results.json").read_text())
    assert results["teacher_top1"] > 0.6
    records = {record["method"]: record for record in results["records"]}
    assert set(records) == {"kd", "gendd", "gendd_one_pass"}
    assert records["kd"]["probe_top1"] > 0.4
    # 141 steps: GenDD's backbone learns (probe), its head barely starts to (sampled, 100 images, chance 10%).
    assert records["gendd"]["probe_top1"] > 0.4 and records["gendd"]["sampled_top1"] > 0.15
    assert (tmp_path / "demo" / "results.md").read_text() in result.stdout

    # The saved GenDD student loads through the Auto class; the pipeline gives its sampled-path answer, by name.
    folder = tmp_path / "demo" / "gendd-student"
    model = AutoModelForImageClassification.from_pretrained(folder).eval()
    assert list(model.config.id2label.values()) == FASHION_MNIST_LABEL_NAMES
    classifier, processor = (
        pipeline("image-classification", model=str(folder)),
        AutoImageProcessor.from_pretrained(folder),
    )
    model.to(classifier.device)  # the pipeline runs on an accelerator when there is one; the noise is drawn there
    for image in load_fashion_mnist()["test"].select(range(5))["image"]:
        named = classifier(image)[0]["label"]  # each image's noise comes from the saved sampling seed
        with torch.no_grad():
            pixel_values = processor(image.convert("RGB"), return_tensors="pt")["pixel_values"]
            logits = model(pixel_values.to(classifier.device)).logits
        assert named == FASHION_MNIST_LABEL_NAMES[logits.argmax(-1).item()]

    # The one-pass row: the probe refitted to the head's estimate, scored on the same test images.
    assert records["gendd_one_pass"]["seed"] == 0 and 0.0 <= records["gendd_one_pass"]["agreement_with_sampled"] <= 1
    assert records["gendd_one_pass"]["probe_top1"] > 0.4
    assert records["gendd_one_pass"]["train_seconds"] > records["gendd"]["train_seconds"]
    sampling = json.loads((folder / "sampling_config.json").read_text())
    assert (sampling["num_inference_steps"], sampling["num_samples"]) == (16, 2)  # the quick run's sampler, saved
    card = (folder / "README.md").read_text()
    assert f"{100 * records['gendd']['probe_top1']:.2f}" in card
