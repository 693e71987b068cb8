"""The serving benchmark end to end on a tiny saved model: four paths, one run, ratios to the plain student."""

import functools
import json

import pytest
import torch

from gendd_hf.bench import serving
from gendd_hf.bench.fast_sampling import FAST_SETTING, InferenceSetting
from helpers import tiny_model


@pytest.fixture
def folder(tmp_path):
    model = tiny_model()
    model.config.pretrained_cfg = {"input_size": (1, 28, 28), "mean": (0.5,), "std": (0.5,), "crop_pct": 1.0}
    model.save_pretrained(tmp_path / "model")
    return tmp_path / "model"


def test_serving_measures_four_paths_in_one_run(folder, tmp_path, capsys, monkeypatch):
    # Each path's throughput over 0.05 s instead of the benchmark's 2 s: 8 s less, the same code path and report.
    monkeypatch.setattr(serving, "measure", functools.partial(serving.measure, min_seconds=0.05))
    report = serving.main(
        [
            "--model",
            str(folder),
            "--batch_size",
            "8",
            "--latency_images",
            "2",
            "--fast",
            "sampler=ddim,num_inference_steps=2",
            "--output",
            str(tmp_path / "out"),
        ]
    )
    paths = report["paths"]
    assert list(paths) == ["plain", "one_pass", "probe_in_gendd", "fast", "paper"]
    assert paths["fast"]["setting"] == "ddim 2 steps g2 x1" and paths["paper"]["setting"] == "ddpm 64 steps g2 x5"
    for row in paths.values():
        assert row["images_per_second"] > 0 and row["pipeline_seconds"] > 0
        assert row["batch_cost_ratio"] == pytest.approx(paths["plain"]["images_per_second"] / row["images_per_second"])
    assert paths["plain"]["batch_cost_ratio"] == 1.0
    # 64 steps x 2 branches x 5 samples of the head cost more than the probe path.
    assert paths["paper"]["images_per_second"] < paths["probe_in_gendd"]["images_per_second"]
    printed = capsys.readouterr().out
    assert (
        "| one_pass | - |" in printed
        and "| probe_in_gendd | - |" in printed
        and "<= 1.05x" in printed
        and "<= 2x" in printed
    )
    assert json.loads((tmp_path / "out" / "serving.json").read_text())["batch_size"] == 8


def test_parse_setting_overrides_the_fast_setting_and_names_bad_keys():
    assert serving.parse_setting("num_samples=3") == InferenceSetting(
        FAST_SETTING.sampler, FAST_SETTING.num_inference_steps, FAST_SETTING.guidance_scale, 3
    )
    with pytest.raises(ValueError, match=r"unknown keys \['steps'\]"):
        serving.parse_setting("steps=4")


def test_one_pass_paths_are_the_probe_logits(folder, tmp_path):
    """Both paths timed for one pass give the probe's logits: the GenDD model on the probe path, and its export
    (the served one-pass student) up to float rounding of the spread first convolution."""
    from transformers import AutoModelForImageClassification

    from gendd_hf import GenDDForImageClassification

    model = GenDDForImageClassification.from_pretrained(folder).eval()
    pixels = torch.randn(2, 1, 28, 28).expand(2, 3, 28, 28)  # a grayscale image converted to RGB
    model.config.inference_path = "probe"
    model.export_student(tmp_path / "export")
    exported = AutoModelForImageClassification.from_pretrained(tmp_path / "export").eval()
    with torch.no_grad():
        probe = model.probe(model.extract_features(pixels))
        assert torch.equal(model(pixels).logits, probe)
        torch.testing.assert_close(exported(pixels).logits, probe, rtol=1e-4, atol=1e-5)
