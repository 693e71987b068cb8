"""One-pass GenDD: the probe refitted to the head's estimate through the teacher classifier, by least squares, as a
library function, a training option and a command on a saved model."""

import json

import numpy as np
import pytest
import torch
from transformers import AutoModelForImageClassification

from gendd_hf import GenDDForImageClassification, one_pass
from gendd_hf.data import dataset_from_arrays
from gendd_hf.image_processing import build_image_processor
from gendd_hf.one_pass import OnePassConfig, distil_probe, fit_linear
from gendd_hf.training_args import GenDDTrainingArguments
from helpers import TRANSFORM, tiny_model, toy_dataset, toy_trainer


PIXELS = torch.randn(40, 1, 28, 28, generator=torch.Generator().manual_seed(3))


def test_fit_linear_solves_the_ridge_normal_equations_by_hand():
    # One input: minimise mean (w x + b - t)^2 + r w^2. With x centred (mean 0), b = mean(t) and
    # w = mean(x t) / (mean(x^2) + r).
    x = torch.tensor([[-2.0], [-1.0], [1.0], [2.0]])
    t = torch.tensor([[-3.0], [0.0], [2.0], [5.0]])
    for ridge in (0.0, 0.5):
        weight, bias = fit_linear(x, t, ridge)
        assert bias.item() == pytest.approx(1.0)  # mean(t); the bias is not penalised
        assert weight.item() == pytest.approx((6 + 0 + 2 + 10) / 4 / (10 / 4 + ridge))


def test_fit_linear_recovers_an_exact_linear_map():
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(200, 6, generator=generator)
    true_weight, true_bias = torch.randn(3, 6, generator=generator), torch.randn(3, generator=generator)
    weight, bias = fit_linear(x, x @ true_weight.T + true_bias, ridge=0.0)
    assert torch.allclose(weight, true_weight, atol=1e-5) and torch.allclose(bias, true_bias, atol=1e-5)


def test_distil_probe_fits_the_teacher_classifier_of_the_estimate(monkeypatch):
    """With an estimate that is linear in z, `A z + c`, the refitted probe is exactly `W (A z + c) + b`, on the images
    it was fitted on and on others."""
    model = tiny_model()
    generator = torch.Generator().manual_seed(1)
    a, c = torch.randn(32, model.student_feature_dim, generator=generator), torch.randn(32, generator=generator)
    calls = []

    def linear_estimate(z, **kwargs):
        calls.append(kwargs)
        return z @ a.T + c

    monkeypatch.setattr(model, "sample_features", linear_estimate)
    pixels = torch.randn(240, 1, 28, 28, generator=generator)
    report = distil_probe(model, pixels[:200].split(64), OnePassConfig(ridge=0.0))
    assert model.training  # restored to its mode
    with torch.no_grad():
        z = model.eval().extract_features(pixels)
        assert torch.allclose(model.probe(z), model.classify_features(z @ a.T + c), atol=1e-3)
    assert torch.equal(calls[0].pop("pixel_values"), pixels[:64])  # each image's noise is seeded from its pixels
    assert calls[0] == {"num_inference_steps": None, "guidance_scale": None, "num_samples": 1, "sampler": None}
    assert report["num_images"] == 200 and report["top1_agreement"] == 1.0 and report["mse"] < 1e-6
    assert model.config.one_pass["num_samples"] == 1 and model.config.one_pass["max_images"] == 10_000


def test_one_pass_probe_agrees_with_the_sampled_path_on_a_tiny_head():
    """On real sampled-path outputs the fit is least squares: its error is below that of the probe it replaces, and it
    agrees with the estimate's top-1 on most of the images it was fitted on (each image's one sample is an
    independent draw, so a linear map of z cannot follow all of them)."""
    model = tiny_model().eval()
    with torch.no_grad():
        z = model.extract_features(PIXELS)
        target = model.classify_features(model.sample_features(z, num_samples=1, pixel_values=PIXELS))
        before = (model.probe(z) - target).pow(2).mean().item()
    report = distil_probe(model, [PIXELS])
    assert report["mse"] < before
    assert report["top1_agreement"] > 0.5


def test_one_pass_training_option_refits_the_probe_on_the_training_images(tmp_path):
    trainer = toy_trainer(tmp_path, method="gendd", one_pass=True)
    trainer.train()
    model = trainer.model
    assert trainer.one_pass_report["num_images"] == 48
    assert any("one_pass_top1_agreement" in entry for entry in trainer.state.log_history)
    # The same fit, by hand, on the training images as the collator preprocesses them.
    dataset = toy_dataset()
    pixels = torch.stack([TRANSFORM(image.convert("L")) for image in dataset["image"]])
    with torch.no_grad():
        z = model.eval().extract_features(pixels)
        target = model.classify_features(model.sample_features(z, num_samples=1, pixel_values=pixels))
        weight, bias = fit_linear(z, target, OnePassConfig().ridge)
        assert torch.allclose(model.probe(z), z @ weight.T + bias, atol=1e-4)


@pytest.mark.parametrize("overrides", [dict(method="kd"), dict(method="gendd", stage="pretrain")])
def test_one_pass_needs_a_gendd_main_stage(tmp_path, overrides):
    with pytest.raises(ValueError, match="one_pass distils the diffusion head"):
        GenDDTrainingArguments(output_dir=str(tmp_path), one_pass=True, **overrides)


def test_one_pass_command_on_a_saved_model(tmp_path, capsys):
    model = tiny_model()
    model.config.pretrained_cfg = {"input_size": (1, 28, 28), "mean": (0.5,), "std": (0.5,), "crop_pct": 1.0}
    model.save_pretrained(tmp_path / "model")
    rng = np.random.default_rng(0)
    images = (rng.random((12, 28, 28)) * 255).astype("uint8")
    dataset_from_arrays(images).save_to_disk(str(tmp_path / "data"))  # unlabeled: one-pass needs no labels

    report = one_pass.main(
        [
            "--model",
            str(tmp_path / "model"),
            "--dataset",
            str(tmp_path / "data"),
            "--split",
            "train",
            "--output_dir",
            str(tmp_path / "one-pass"),
            "--export",
            str(tmp_path / "plain"),
        ]
    )
    assert report["num_images"] == 12 and "saved to" in capsys.readouterr().out
    saved = json.loads((tmp_path / "one-pass" / "config.json").read_text())
    assert saved["inference_path"] == "probe" and saved["one_pass"]["max_images"] is None
    fitted = GenDDForImageClassification.from_pretrained(tmp_path / "one-pass").eval()
    plain = AutoModelForImageClassification.from_pretrained(tmp_path / "plain").eval()
    processor = build_image_processor(fitted)
    pixel_values = processor(
        [image.convert("RGB") for image in dataset_from_arrays(images[:4])["image"]], return_tensors="pt"
    )["pixel_values"]
    with torch.no_grad():
        expected = fitted(pixel_values).logits  # the probe path, one forward pass
        assert torch.allclose(plain(pixel_values).logits, expected, rtol=1e-4, atol=1e-3)
        # ... and it is the fit to the sampled path on those images.
        z = fitted.extract_features(pixel_values)
        target = fitted.classify_features(fitted.sample_features(z, num_samples=1, pixel_values=pixel_values))
    assert not torch.allclose(expected, model.eval().probe(z))  # the probe changed
    assert (expected.argmax(-1) == target.argmax(-1)).float().mean() >= 0.75


def test_max_images_stops_the_fit():
    model = tiny_model()
    assert distil_probe(model, PIXELS.split(16), OnePassConfig(max_images=20))["num_images"] == 32  # 2 batches
    with pytest.raises(ValueError, match="max_images=0 is invalid"):
        OnePassConfig(max_images=0)
