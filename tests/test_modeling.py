import hashlib
import json
import re
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file
from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForImageClassification,
    ViTConfig,
    ViTForImageClassification,
    pipeline,
)

from gendd_hf import GenDDForImageClassification
from gendd_hf.diffusion import merge_tokens
from gendd_hf.sampling import content_seeds, image_generators
from helpers import tiny_model


PIXELS = torch.randn(3, 1, 28, 28, generator=torch.Generator().manual_seed(1))
TEACHER_FEATURES = torch.randn(3, 32, generator=torch.Generator().manual_seed(2))
LABELS = torch.tensor([0, 2, 1])


def test_training_forward_returns_both_losses_and_trains_the_student(model):
    model.train()
    out = model(PIXELS, labels=LABELS, teacher_features=TEACHER_FEATURES)
    assert torch.allclose(out.loss, out.diffusion_loss + out.probe_loss)
    assert out.logits.shape == (3, 3) and torch.equal(out.logits, out.probe_logits)
    out.loss.backward()
    assert model.student.conv1[0].weight.grad.abs().sum() > 0
    assert model.head.input_proj.weight.grad.abs().sum() > 0
    names = {name for name, _ in model.named_parameters()}
    assert "teacher_weight" not in names and "teacher_bias" not in names


def test_probe_is_trained_on_the_detached_feature(model):
    model.train()
    out = model(PIXELS, labels=LABELS, teacher_features=TEACHER_FEATURES)
    out.probe_loss.backward()
    assert model.student.conv1[0].weight.grad is None
    assert model.probe.weight.grad.abs().sum() > 0


def test_training_without_teacher_features_is_a_clear_error(model):
    model.train()
    with pytest.raises(ValueError, match="GenDD training needs `teacher_features`"):
        model(PIXELS, labels=LABELS)


def test_unlabeled_batches_use_the_teacher_softmax(model):
    model.train()
    z = model.extract_features(PIXELS)
    probs = model.classify_features(TEACHER_FEATURES).softmax(-1)
    torch.manual_seed(5)
    without = model.compute_losses(z, model.probe(z), TEACHER_FEATURES, None)
    torch.manual_seed(5)
    explicit = model.compute_losses(z, model.probe(z), TEACHER_FEATURES, probs)
    assert all(torch.equal(a, b) for a, b in zip(without, explicit))


def test_soft_labels_are_accepted(model):
    model.train()
    soft = torch.tensor([[0.9, 0.1, 0.0], [0.0, 0.5, 0.5], [0.2, 0.2, 0.6]])
    assert torch.isfinite(model(PIXELS, labels=soft, teacher_features=TEACHER_FEATURES).loss)


def test_channel_handling(model):
    model.eval()
    rgb = PIXELS.expand(-1, 3, -1, -1)
    assert torch.equal(model.extract_features(rgb), model.extract_features(PIXELS))  # grayscale as RGB: exact
    colour = torch.randn(3, 3, 28, 28)
    assert torch.allclose(model.extract_features(colour), model.extract_features(colour.mean(1, keepdim=True)))
    with pytest.raises(ValueError, match="have 2 channels but the student 'test_resnet' expects in_chans=1"):
        model.extract_features(torch.randn(1, 2, 28, 28))


def test_set_teacher_classifier_checks_shapes(model):
    with pytest.raises(ValueError, match=r"weight \(5, 32\).*expects \(3, 32\)"):
        model.set_teacher_classifier(torch.nn.Linear(32, 5))


def test_generate_features_is_deterministic_per_generator(model):
    model.eval()
    first = model.generate_features(PIXELS, generator=torch.Generator().manual_seed(0))
    again = model.generate_features(PIXELS, generator=torch.Generator().manual_seed(0))
    other = model.generate_features(PIXELS, generator=torch.Generator().manual_seed(1))
    assert first.shape == (3, 32) and torch.isfinite(first).all()
    assert torch.equal(first, again) and not torch.allclose(first, other)


@pytest.mark.parametrize("sampler", ["ddpm", "ddim", "dpm_solver"])
def test_samplers_by_name(model, sampler):
    model.eval()
    features = model.generate_features(PIXELS, sampler=sampler, generator=torch.Generator().manual_seed(0))
    assert features.shape == (3, 32) and torch.isfinite(features).all()


def test_sampled_logits_are_the_teacher_classifier_on_sampled_features(model):
    model.eval()
    out = model(PIXELS, generator=torch.Generator().manual_seed(3))
    features = model.generate_features(PIXELS, generator=torch.Generator().manual_seed(3))
    assert torch.allclose(out.logits, features @ model.teacher_weight.T + model.teacher_bias, atol=1e-5)
    probe = model(PIXELS, inference_path="probe")
    assert torch.equal(probe.logits, probe.probe_logits)
    assert torch.equal(model.path_logits(out.student_features, "sampled", torch.Generator().manual_seed(3)), out.logits)
    with pytest.raises(ValueError, match="Unknown inference_path 'projection'"):
        model.path_logits(out.student_features, "projection")


@pytest.mark.parametrize("guidance_scale, branches", [(2.0, 2), (1.0, 1)])
def test_one_head_call_per_step_batched_over_tokens_samples_and_branches(model, guidance_scale, branches):
    shapes = []
    hook = model.head.register_forward_hook(lambda module, args, output: shapes.append(tuple(args[0].shape)))
    model.eval()
    model.generate_features(PIXELS, num_inference_steps=8, num_samples=5, guidance_scale=guidance_scale)
    hook.remove()
    # (branches, B, num_samples, n_tokens, k) in one call per step; no branch dimension without guidance.
    expected = (3, 5, 4, 8)  # the guidance branches share the tokens; only the condition carries a branch axis
    assert shapes == [expected] * 8


def test_samples_are_averaged_over_draws(model):
    from gendd_hf.sampling import make_scheduler, sample_tokens

    model.eval()
    z = model.extract_features(PIXELS)
    condition = model.head.embed_condition(model.head.condition_norm(z))
    null = model.head.null_condition()
    tokens = sample_tokens(
        model.head, condition, null, make_scheduler("ddpm"), 8, 2.0, 2, generator=torch.Generator().manual_seed(4)
    )
    mean = model.sample_features(z, generator=torch.Generator().manual_seed(4))
    assert torch.allclose(merge_tokens(tokens).mean(1), mean)


DATA_CONFIG = {"input_size": (1, 28, 28), "mean": (0.5,), "std": (0.5,), "crop_pct": 1.0, "interpolation": "bilinear"}


def _save(model, folder):
    model.config.pretrained_cfg = DATA_CONFIG  # the image processor's config, saved in config.json
    model.save_pretrained(folder)


def test_save_load_identical_logits_through_auto_classes(model, tmp_path):
    model.eval()
    _save(model, tmp_path)
    expected = model(PIXELS, generator=torch.Generator().manual_seed(0)).logits
    for auto in (AutoModelForImageClassification, AutoModel):
        loaded = auto.from_pretrained(tmp_path)
        assert isinstance(loaded, GenDDForImageClassification) and not loaded.training
        assert torch.allclose(loaded(PIXELS, generator=torch.Generator().manual_seed(0)).logits, expected, atol=1e-5)
    assert AutoConfig.from_pretrained(tmp_path).teacher_feature_dim == 32
    assert (tmp_path / "model.safetensors").exists() and not list(tmp_path.glob("*.bin"))


def test_trust_remote_code_without_the_package(model, tmp_path):
    model.eval()
    _save(model, tmp_path)
    save_file({"pixels": PIXELS}, tmp_path.parent / "pixels.safetensors")
    expected = model(PIXELS, generator=torch.Generator().manual_seed(0)).logits
    script = f"""
import sys
sys.modules["gendd_hf"] = None  # the package must not be importable
import torch
from transformers import AutoModelForImageClassification
model = AutoModelForImageClassification.from_pretrained({str(tmp_path)!r}, trust_remote_code=True)
assert type(model).__module__.startswith("transformers_modules"), type(model).__module__
from safetensors.torch import load_file
pixels = load_file({str(tmp_path.parent / "pixels.safetensors")!r})["pixels"]
logits = model(pixels, generator=torch.Generator().manual_seed(0)).logits
print(repr(logits.tolist()))
"""
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path.parent, check=False
    )
    assert result.returncode == 0, result.stderr
    remote = torch.tensor(eval(result.stdout.strip().splitlines()[-1]))
    assert torch.allclose(remote, expected, atol=1e-5)


def test_a_folder_of_another_model_type_is_refused(tmp_path):
    # transformers alone only warns, then gives a random student and a zero teacher classifier.
    config = ViTConfig(
        image_size=8,
        patch_size=4,
        num_channels=1,
        hidden_size=8,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=8,
        num_labels=3,
    )
    ViTForImageClassification(config).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match=r"holds a 'vit' model, not a GenDD model .*AutoModelForImageClassification"):
        GenDDForImageClassification.from_pretrained(tmp_path)


def test_truncated_weights_are_an_error_naming_the_file(model, tmp_path):
    _save(model, tmp_path)
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.raises(OSError, match=f"weights {re.escape(str(weights))}: the safetensors file is truncated"):
        GenDDForImageClassification.from_pretrained(tmp_path)


def test_image_classification_pipeline_returns_label_names(tmp_path):
    model = tiny_model(inference_path="probe")
    with torch.no_grad():  # make the probe prefer "fox" whatever the image
        model.probe.weight.zero_()
        model.probe.bias.copy_(torch.tensor([0.0, 1.0, 3.0]))
    _save(model, tmp_path)
    classifier = pipeline("image-classification", model=str(tmp_path))
    image = Image.fromarray((np.random.default_rng(0).random((40, 30)) * 255).astype("uint8"), mode="L")
    predictions = classifier(image)
    assert [p["label"] for p in predictions] == ["fox", "dog", "cat"]
    expected = torch.tensor([0.0, 1.0, 3.0]).softmax(-1)
    assert predictions[0]["score"] == pytest.approx(expected[2].item(), rel=1e-5)


def test_training_records_the_target_range_used_to_clamp_the_first_step(model, monkeypatch):
    assert not torch.isfinite(model.target_min).any() and model.first_step_range(model.sampling_config) is None
    model.train()
    model(PIXELS, labels=LABELS, teacher_features=TEACHER_FEATURES)
    from gendd_hf import sampling
    from gendd_hf.diffusion import contract

    target = contract(TEACHER_FEATURES, LABELS, model.teacher_weight, model.config.contraction)
    assert torch.equal(model.target_min, target.amin(0)) and torch.equal(model.target_max, target.amax(0))
    model.eval()
    # A one-step DDIM chain returns its (first) step's x_0 prediction: clamped to the recorded range.
    with torch.no_grad():
        model.head.final_layer.linear.bias.add_(3.0)  # epsilon far off: x_0 from t = 999 would be ~1e5
    one_step = dict(sampler="ddim", num_inference_steps=1, num_samples=1, generator=torch.Generator().manual_seed(0))
    features = model.generate_features(PIXELS, **one_step)
    # Within float32 round-off of x_0 -> epsilon -> x_0 at sqrt(abar) ~ 5e-5.
    assert (features >= model.target_min - 1e-2).all() and (features <= model.target_max + 1e-2).all()
    model.sampling_config = model.sampling_config.update(clamp_first_step=False)
    assert (
        model.generate_features(PIXELS, **{**one_step, "generator": torch.Generator().manual_seed(0)}).abs().max() > 1e3
    )
    model.sampling_config = model.sampling_config.update(clamp_first_step=True)
    # Only the first step of a chain is clamped.
    calls = []
    clamp = sampling.clamp_denoised
    monkeypatch.setattr(sampling, "clamp_denoised", lambda *args: calls.append(1) or clamp(*args))
    model.generate_features(PIXELS, num_inference_steps=8, num_samples=2)
    assert len(calls) == 1


# ---- reproducible answers ---------------------------------------------------------------------------------------
def test_an_image_gets_the_same_sampled_logits_alone_and_in_any_batch(model):
    model.eval()
    batch = torch.randn(6, 1, 28, 28, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        together = model(batch).logits
        again = model(batch).logits
        alone = torch.cat([model(image[None]).logits for image in batch])
        reordered = model(batch.flip(0)).logits.flip(0)
        other_mates = model(torch.cat([batch[2:3], torch.randn(4, 1, 28, 28)])).logits[0]
    assert torch.equal(together, again)
    # Equal up to the float rounding of batched kernels in the student; the noise is the same by construction.
    assert torch.allclose(alone, together, atol=1e-5) and torch.allclose(reordered, together, atol=1e-5)
    assert torch.allclose(other_mates, together[2], atol=1e-5)
    assert (alone.argmax(-1) == together.argmax(-1)).all()
    # The seed decides the noise; a generator overrides it (and then draws the batch's noise at once).
    reseeded = model.generate_features(batch, seed=1)
    assert not torch.allclose(reseeded, model.generate_features(batch))
    model.sampling_config = model.sampling_config.update(seed=1)
    assert torch.equal(model.generate_features(batch), reseeded)
    drawn = model.generate_features(batch, generator=torch.Generator().manual_seed(0))
    assert not torch.allclose(drawn, reseeded)


def test_each_image_draws_its_own_noise_seeded_from_its_pixels():
    # The seed of an image is a 64-bit BLAKE2b digest of its bytes keyed with the sampling seed (hand-computed here):
    # equal images draw equal noise, different images independent noise, unlike one seed shared by every image.
    rows = torch.stack([PIXELS[0], PIXELS[0], PIXELS[1]])
    seeds = content_seeds(rows, 5)
    digest = hashlib.blake2b(PIXELS[1].numpy().tobytes(), digest_size=8, key=b"5").digest()
    assert seeds[2] == int.from_bytes(digest, "little")
    assert seeds[0] == seeds[1] != seeds[2]
    assert all(a != b for a, b in zip(seeds, content_seeds(rows, 6)))
    first_draws = [torch.randn(4, generator=generator) for generator in image_generators(seeds, torch.device("cpu"))]
    assert torch.equal(first_draws[0], first_draws[1]) and not torch.allclose(first_draws[0], first_draws[2])
    # Through the model: the two copies of one image get the same features, the other image another draw.
    model = tiny_model().eval()
    features = model.generate_features(rows)
    assert torch.equal(features[0], features[1])
    assert torch.allclose(model.generate_features(rows[2:]), features[2:], atol=1e-5)


def test_sampling_config_is_saved_loaded_and_overridden(model, tmp_path):
    model.eval()
    model.sampling_config = model.sampling_config.update(sampler="ddim", num_inference_steps=3, seed=4)
    _save(model, tmp_path)
    assert (tmp_path / "sampling_config.json").is_file()
    loaded = AutoModelForImageClassification.from_pretrained(tmp_path).eval()
    assert loaded.sampling_config == model.sampling_config
    with torch.no_grad():
        assert torch.allclose(loaded(PIXELS).logits, model(PIXELS).logits, atol=1e-5)
    changed = GenDDForImageClassification.from_pretrained(tmp_path, sampling_config={"num_inference_steps": 5})
    assert changed.sampling_config == model.sampling_config.update(num_inference_steps=5)
    # A folder saved before sampling_config.json existed: the defaults.
    (tmp_path / "sampling_config.json").unlink()
    assert GenDDForImageClassification.from_pretrained(tmp_path).sampling_config.sampler == "ddpm"


def test_pipeline_answers_like_the_model_every_call_and_takes_sampling_settings(model, tmp_path):
    _save(model, tmp_path)
    image = Image.fromarray((np.random.default_rng(3).random((28, 28)) * 255).astype("uint8"), mode="L")
    classifier = pipeline("image-classification", model=str(tmp_path))
    answers = [classifier(image, top_k=3) for _ in range(3)]
    assert answers[0] == answers[1] == answers[2]
    pixel_values = classifier.image_processor(image.convert("RGB"), return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        expected = model.eval()(pixel_values.to(model.device)).logits.softmax(-1)[0]
    scores = {entry["label"]: entry["score"] for entry in answers[0]}
    assert scores == pytest.approx({model.config.id2label[i]: p.item() for i, p in enumerate(expected)}, rel=1e-4)
    fast = pipeline("image-classification", model=str(tmp_path), model_kwargs={"sampling_config": {"sampler": "mean"}})
    assert fast.model.sampling_config.sampler == "mean"


def test_the_image_processor_is_timms_evaluation_transform(model, tmp_path):
    from transformers import AutoImageProcessor, TimmWrapperImageProcessor

    model.config.pretrained_cfg = {
        "input_size": (1, 24, 24),
        "mean": (0.4,),
        "std": (0.2,),
        "crop_pct": 0.875,
        "interpolation": "bicubic",
        "crop_mode": "center",
    }
    model.save_pretrained(tmp_path)
    processor = AutoImageProcessor.from_pretrained(tmp_path)
    assert isinstance(processor, TimmWrapperImageProcessor)
    from gendd_hf.data import build_transforms

    image = Image.fromarray((np.random.default_rng(4).random((40, 30)) * 255).astype("uint8"), mode="L")
    ours = build_transforms(model.config.pretrained_cfg, is_training=False)(image)  # the recipes' evaluation
    theirs = processor(image.convert("RGB"), return_tensors="pt")["pixel_values"][0]
    assert theirs.shape == (3, 24, 24) and torch.equal(theirs[0], ours[0]) and torch.equal(theirs[1], theirs[0])


def test_weights_without_the_buffers_the_sampler_needs_are_refused_by_name(model, tmp_path):
    """Before: the folder loaded, `teacher_weight` and `target_min` held uninitialised memory, logits were NaN."""
    _save(model, tmp_path)
    weights = load_file(tmp_path / "model.safetensors")
    del weights["teacher_weight"], weights["target_min"]
    save_file(weights, tmp_path / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(ValueError, match=r"lack buffers the model needs: \['target_min', 'teacher_weight'\]"):
        GenDDForImageClassification.from_pretrained(tmp_path)


def test_a_config_without_pretrained_cfg_is_an_error_not_the_students_defaults(model, tmp_path):
    """Before: `from_pretrained` and `pipeline` silently preprocessed with the student's timm defaults."""
    _save(model, tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    del config["pretrained_cfg"]
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="has no pretrained_cfg, the evaluation transform .* Add it to config.json"):
        GenDDForImageClassification.from_pretrained(tmp_path)
    with pytest.raises(ValueError, match="has no pretrained_cfg"):
        pipeline("image-classification", model=str(tmp_path))


@pytest.mark.parametrize(
    "text, problem", [("", "is empty"), ('{"sampler": "ddim",', "is not valid JSON"), ("[1]", "holds a list")]
)
def test_a_corrupt_or_empty_sampling_config_names_the_file_and_the_fix(model, tmp_path, text, problem):
    _save(model, tmp_path)
    path = tmp_path / "sampling_config.json"
    path.write_text(text)
    message = f"sampling config {re.escape(str(path))} {problem}.* delete it to sample with the defaults"
    with pytest.raises(ValueError, match=message):
        GenDDForImageClassification.from_pretrained(tmp_path)
