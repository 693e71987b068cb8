"""`export_student` writes the student and its probe as a plain transformers classifier with the probe's logits, through
`to_timm_classifier`, the student -> timm conversion it shares with the cross-entropy teachers."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file
from transformers import AutoModelForImageClassification, TimmWrapperForImageClassification, pipeline
from transformers.testing_utils import CaptureLogger

from gendd_hf import modeling_gendd
from gendd_hf.image_processing import build_image_processor
from helpers import tiny_model


RGB_PIXELS = torch.randn(4, 3, 28, 28, generator=torch.Generator().manual_seed(0))


def _probe_logits(model, pixels):
    with torch.no_grad():
        return model(pixels, inference_path="probe").logits


def test_to_timm_classifier_is_the_probe_path_as_timm_builds_it():
    """The one student -> timm conversion (export_student and the cross-entropy teachers use it): the student with the
    probe as timm's classifier, loaded with the strict key check, the random state left as it was."""
    model = tiny_model(student_kwargs={}).eval()
    state = torch.get_rng_state()
    classifier = model.to_timm_classifier()
    assert torch.equal(torch.get_rng_state(), state)
    assert (type(classifier).__name__, classifier.num_classes, classifier.training) == ("ResNet", 3, False)
    torch.testing.assert_close(classifier.fc.weight, model.probe.weight, rtol=0, atol=0)
    with torch.no_grad():
        assert torch.allclose(classifier(RGB_PIXELS), _probe_logits(model, RGB_PIXELS), atol=1e-6)
    model.student.extra = torch.nn.Linear(1, 1)  # a layer timm's network does not have
    with pytest.raises(RuntimeError, match=r'Unexpected key\(s\) in state_dict: "extra.weight"'):
        model.to_timm_classifier()


def test_rgb_student_exports_with_identical_logits_and_timm_wrapper_layout(tmp_path):
    model = tiny_model(student_kwargs={}).eval()
    model.export_student(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["model_type"] == "timm_wrapper" and config["architecture"] == "test_resnet"
    assert config["label_names"] == ["cat", "dog", "fox"] and config["num_classes"] == 3
    weights = load_file(tmp_path / "model.safetensors")
    assert all(key.startswith("timm_model.") for key in weights)
    assert torch.allclose(weights["timm_model.fc.weight"], model.probe.weight.detach(), atol=1e-5)
    loaded = AutoModelForImageClassification.from_pretrained(tmp_path)
    assert isinstance(loaded, TimmWrapperForImageClassification) and loaded.config.id2label[2] == "fox"
    with torch.no_grad():
        assert torch.allclose(loaded(RGB_PIXELS).logits, _probe_logits(model, RGB_PIXELS), atol=1e-5)


def test_grayscale_student_exports_as_rgb_with_the_channel_average(tmp_path):
    model = tiny_model().eval()  # in_chans=1: the GenDD model averages RGB input over the channels
    exported = model.export_student(tmp_path)
    assert exported.config.model_args["in_chans"] == 3
    first_conv = load_file(tmp_path / "model.safetensors")["timm_model.conv1.0.weight"]
    assert first_conv.shape[1] == 3 and torch.allclose(
        first_conv[:, 1], model.student.conv1[0].weight[:, 0] / 3, atol=1e-5
    )
    expected = _probe_logits(model, RGB_PIXELS)
    with torch.no_grad():
        assert torch.allclose(exported(RGB_PIXELS).logits, expected, atol=1e-6)
        gray = RGB_PIXELS[:, :1].expand(-1, 3, -1, -1)
        assert torch.allclose(exported(gray).logits, _probe_logits(model, RGB_PIXELS[:, :1]), atol=1e-6)


def test_export_loads_without_gendd_hf_and_classifies_through_the_pipeline(tmp_path):
    model = tiny_model().eval()
    model.config.pretrained_cfg = {"input_size": (1, 28, 28), "mean": (0.5,), "std": (0.5,), "crop_pct": 1.0}
    folder = tmp_path / "exported"
    processor = build_image_processor(model)
    model.export_student(folder)
    save_file({"pixels": RGB_PIXELS}, tmp_path / "pixels.safetensors")
    image = Image.fromarray((np.random.default_rng(0).random((28, 28)) * 255).astype("uint8"), mode="L")
    script = f"""
import sys
sys.modules["gendd_hf"] = None  # the package must not be importable
import torch
from safetensors.torch import load_file
from transformers import AutoModelForImageClassification
model = AutoModelForImageClassification.from_pretrained({str(folder)!r})
print(type(model).__name__)
with torch.no_grad():
    print(repr(model(load_file({str(tmp_path / "pixels.safetensors")!r})["pixels"]).logits.tolist()))
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    name, logits = result.stdout.strip().splitlines()[-2:]
    assert name == "TimmWrapperForImageClassification"
    assert torch.allclose(torch.tensor(eval(logits)), _probe_logits(model, RGB_PIXELS), atol=1e-6)
    # The pipeline (RGB conversion, the saved processor) gives the probe path's answer for the same image, computed on
    # the pipeline's device (an accelerator when there is one).
    classifier = pipeline("image-classification", model=str(folder))
    predictions = classifier(image)
    pixel_values = processor(image.convert("RGB"), return_tensors="pt")["pixel_values"].to(classifier.device)
    expected = _probe_logits(model.to(classifier.device), pixel_values)[0].softmax(-1)
    scores = {entry["label"]: entry["score"] for entry in predictions}
    assert sorted(scores) == ["cat", "dog", "fox"]
    for index, label in model.config.id2label.items():
        assert abs(scores[label] - expected[index].item()) < 1e-5


def test_cifar_zoo_student_warns_that_loading_needs_gendd_hf(tmp_path):
    model = tiny_model(student_name="cifar_resnet20", student_kwargs={}).eval()
    with CaptureLogger(modeling_gendd.logger) as captured:
        exported = model.export_student(tmp_path)
    assert "'cifar_resnet20' is not one of timm's own models: `import gendd_hf`" in captured.out
    with torch.no_grad():
        pixels = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
        assert torch.allclose(exported(pixels).logits, _probe_logits(model, pixels), atol=1e-5)
