"""Temperature scaling (gendd_hf.calibration): the fit on logits, the per-sample logits of the sampled path, and the
temperatures a model saves, loads, applies in `forward` and the pipeline, and states on its card."""

import math

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import pipeline

from gendd_hf import GenDDConfig, GenDDForImageClassification
from gendd_hf.calibration import (
    calibrate_model,
    choose_inference_path,
    fit_temperature,
    main,
    path_logits_of_images,
)
from gendd_hf.data import build_transforms, load_fashion_mnist
from gendd_hf.model_card import ModelCardInfo, render_model_card
from helpers import tiny_config, tiny_model


def test_fit_temperature_by_hand():
    # Four images with logits (0, 2), three of class 1: the likelihood is best where softmax gives class 1 the
    # probability 3/4, i.e. 2 / T = log 3.
    logits = torch.tensor([[0.0, 2.0]] * 4)
    assert fit_temperature(logits, torch.tensor([1, 1, 1, 0])) == pytest.approx(2 / math.log(3), rel=1e-5)


def test_fit_temperature_recovers_the_temperature_that_drew_the_labels():
    generator = torch.Generator().manual_seed(0)
    logits = 3.0 * torch.randn(20_000, 5, generator=generator)
    labels = torch.multinomial((logits / 2.5).softmax(-1), 1, generator=generator).squeeze(1)
    assert fit_temperature(logits, labels) == pytest.approx(2.5, rel=0.04)


def test_sample_logits_average_to_the_sampled_path():
    model = tiny_model().eval()
    pixels = torch.randn(5, 1, 16, 16, generator=torch.Generator().manual_seed(1))
    logits, sample_logits = path_logits_of_images(model, pixels, "sampled", batch_size=2, return_sample_logits=True)
    assert sample_logits.shape == (5, model.sampling_config.num_samples, 3)
    with torch.no_grad():
        expected = model(pixels, inference_path="sampled").logits  # as forward (and the pipeline) samples
    assert torch.allclose(logits, expected, rtol=1e-4) and torch.allclose(sample_logits.mean(1), logits, rtol=1e-4)
    assert not torch.allclose(sample_logits[:, 0], sample_logits[:, 1])  # the samples differ
    with pytest.raises(ValueError, match="sampled"):
        path_logits_of_images(model, pixels, "probe", return_sample_logits=True)


DATA_CONFIG = {"input_size": (1, 28, 28), "mean": (0.5,), "std": (0.5,), "crop_pct": 1.0, "interpolation": "bilinear"}


def _fox_probe_model():
    model = tiny_model(inference_path="probe", pretrained_cfg=DATA_CONFIG)
    with torch.no_grad():  # the probe prefers "fox" whatever the image: logits (0, 1, 3)
        model.probe.weight.zero_()
        model.probe.bias.copy_(torch.tensor([0.0, 1.0, 3.0]))
    return model


def test_calibrate_model_stores_the_fitted_temperature_and_forward_applies_it():
    model = _fox_probe_model()
    pixels = torch.randn(4, 1, 16, 16, generator=torch.Generator().manual_seed(2))
    # Logits (0, 1, 3) on every image, labels fox, fox, dog, cat: the fit is the T of fit_temperature on them.
    labels = torch.tensor([2, 2, 1, 0])
    fitted = calibrate_model(model, [(pixels[:3], labels[:3]), (pixels[3:], labels[3:])], ["probe"])
    assert set(fitted) == {"temperatures"} and model.config.inference_path == "probe"
    temperature = fitted["temperatures"]["probe"]
    assert temperature == pytest.approx(fit_temperature(torch.tensor([[0.0, 1.0, 3.0]] * 4), labels), rel=1e-6)
    assert model.config.temperatures == {"probe": temperature} and temperature > 1.0
    with torch.no_grad():
        output = model.eval()(pixels)
    assert torch.allclose(output.logits, torch.tensor([0.0, 1.0, 3.0]) / temperature)
    assert torch.allclose(output.probe_logits, torch.tensor([0.0, 1.0, 3.0]))  # the raw probe logits stay
    assert model.temperature("sampled") == 1.0  # not fitted: no change


def _one_hot_logits(classes):
    return torch.nn.functional.one_hot(torch.tensor(classes), 3).float()


def test_the_sampled_path_is_served_only_where_its_interval_is_above_zero():
    # Ten images of class 0; the sampled path is right on all ten, the probe on the first five: difference 0.5. A
    # resample's difference is X / 10 with X ~ Binomial(10, 1/2): P(X <= 1) = 11/1024 ~ 1.1% < 2.5% < P(X <= 2) ~ 5.5%,
    # so the 95% interval is [0.2, 0.8], above zero.
    labels = [0] * 10
    choice = choose_inference_path(_one_hot_logits([0] * 5 + [1] * 5), _one_hot_logits([0] * 10), labels)
    assert choice["path"] == "sampled" and choice["difference"] == pytest.approx(0.5) and choice["images"] == 10
    assert (choice["low"], choice["high"]) == pytest.approx((0.2, 0.8))
    # The same on four images: four level draws have chance (1/2)^4 ~ 6% > 2.5%, so the low end is 0 -> the probe.
    choice = choose_inference_path(_one_hot_logits([0, 0, 1, 1]), _one_hot_logits([0] * 4), [0] * 4)
    assert choice["difference"] == pytest.approx(0.5) and choice["low"] == 0.0 and choice["path"] == "probe"
    # The probe ahead: the probe, with a negative difference.
    choice = choose_inference_path(_one_hot_logits([0] * 10), _one_hot_logits([0] * 5 + [2] * 5), labels)
    assert choice["path"] == "probe" and choice["difference"] == pytest.approx(-0.5) and choice["high"] < 0


def test_calibrate_model_can_choose_the_path_to_serve_and_save_it(tmp_path):
    model = _fox_probe_model()  # the probe always says "fox"; the sampled path comes from the random head
    pixels = torch.randn(6, 1, 16, 16, generator=torch.Generator().manual_seed(3))
    labels = torch.tensor([2, 2, 2, 1, 0, 2])
    with pytest.raises(ValueError, match="choose_path compares both"):
        calibrate_model(model, [(pixels, labels)], ["probe"], choose_path=True)
    model.config.inference_path = "sampled"
    result = calibrate_model(model, [(pixels, labels)], choose_path=True, seed=4)
    expected = choose_inference_path(
        path_logits_of_images(model, pixels, "probe"), path_logits_of_images(model, pixels, "sampled", seed=4), labels
    )
    assert result["inference_path"] == expected and set(result["temperatures"]) == {"probe", "sampled"}
    # The probe is right on four of the six: a resample of only those four is level, chance at least (4/6)^6 ~ 9%
    # > 2.5%, so the sampled path's interval cannot lie above zero.
    assert model.config.inference_path == "probe" == expected["path"]
    model.save_pretrained(tmp_path / "chosen")
    assert GenDDForImageClassification.from_pretrained(tmp_path / "chosen").config.inference_path == "probe"


def test_a_saved_temperature_survives_from_pretrained_and_changes_the_pipeline_scores(tmp_path):
    model = _fox_probe_model()
    image = Image.fromarray((np.random.default_rng(0).random((40, 30)) * 255).astype("uint8"), mode="L")
    model.save_pretrained(tmp_path / "plain")
    model.config.temperatures = {"probe": 2.0}
    model.save_pretrained(tmp_path / "tempered")
    loaded = GenDDForImageClassification.from_pretrained(tmp_path / "tempered")
    assert loaded.config.temperatures == {"probe": 2.0} and loaded.temperature() == 2.0
    assert GenDDForImageClassification.from_pretrained(tmp_path / "plain").temperature() == 1.0
    plain = pipeline("image-classification", model=str(tmp_path / "plain"))(image)
    tempered = pipeline("image-classification", model=str(tmp_path / "tempered"))(image)
    assert [p["label"] for p in tempered] == [p["label"] for p in plain] == ["fox", "dog", "cat"]
    assert plain[0]["score"] == pytest.approx(torch.tensor([0.0, 1.0, 3.0]).softmax(-1)[2].item(), rel=1e-5)
    assert tempered[0]["score"] == pytest.approx(torch.tensor([0.0, 0.5, 1.5]).softmax(-1)[2].item(), rel=1e-5)


def test_temperatures_are_checked_and_stated_on_the_card():
    with pytest.raises(ValueError, match="temperatures"):
        GenDDConfig(**{**tiny_config().to_dict(), "temperatures": {"probe": 0.0}})
    with pytest.raises(ValueError, match="temperatures"):
        tiny_config(temperatures={"teacher": 1.5})
    model = tiny_model(temperatures={"probe": 1.25, "sampled": 0.4})
    info = ModelCardInfo.from_model(model, model_name="m", teacher="t", dataset="d")
    card = render_model_card(info)
    assert "divided by its temperature\n(probe 1.250, sampled 0.400;" in card
    untempered = render_model_card(ModelCardInfo.from_model(tiny_model(), model_name="m", teacher="t", dataset="d"))
    assert "No temperature was fitted" in untempered and "No temperature was fitted" not in card


def test_the_command_line_saves_the_temperatures_fitted_on_a_held_out_split(tmp_path):
    torch.manual_seed(0)
    model = GenDDForImageClassification(tiny_config(id2label=dict(enumerate("abcdefghij")), pretrained_cfg=DATA_CONFIG))
    model.set_teacher_classifier(torch.randn(10, 32), torch.randn(10))
    model.sampling_config = model.sampling_config.update(num_inference_steps=8, num_samples=2)
    model.save_pretrained(tmp_path / "model")
    argv = [str(tmp_path / "model"), "--dataset_name", "fashion_mnist", "--split", "test", "--num_images", "40"]
    result = main([*argv, "--choose_path"])
    fitted = result["temperatures"]
    rows = load_fashion_mnist()["test"].select(range(40))
    transform = build_transforms(DATA_CONFIG, is_training=False)
    pixels, labels = torch.stack([transform(image) for image in rows["image"]]), torch.tensor(rows["label"])
    loaded = GenDDForImageClassification.from_pretrained(tmp_path / "model")
    assert set(loaded.config.temperatures) == {"probe", "sampled"} and loaded.config.temperatures == pytest.approx(
        fitted
    )
    logits = {path: path_logits_of_images(loaded, pixels, path) for path in ("probe", "sampled")}
    for path, path_logits in logits.items():
        assert fitted[path] == pytest.approx(fit_temperature(path_logits, labels), rel=1e-4)
    choice = choose_inference_path(logits["probe"], logits["sampled"], labels)
    assert result["inference_path"]["path"] == choice["path"] == loaded.config.inference_path
    assert result["inference_path"]["difference"] == pytest.approx(choice["difference"])
