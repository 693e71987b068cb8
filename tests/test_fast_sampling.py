"""Fast inference: samplers by name at few steps, the one-step conditional mean, head-evaluation counts, and the
benchmark script end to end on a tiny saved model and dataset."""

import json
import math

import numpy as np
import pytest
import torch
from torch import nn

from gendd_hf.bench import fast_sampling
from gendd_hf.bench.fast_sampling import PAPER_SETTING, InferenceSetting, best_fast_setting, default_settings
from gendd_hf.data import dataset_from_arrays
from gendd_hf.diffusion import merge_tokens, split_tokens
from gendd_hf.image_processing import build_image_processor
from gendd_hf.sampling import estimate_mean_tokens, head_evaluations_per_image, make_scheduler
from helpers import tiny_model


PIXELS = torch.randn(3, 1, 28, 28, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize(
    "sampler, steps, guidance, samples, expected",
    [
        ("ddpm", 64, 2.0, 5, 64 * 2 * 5 * 8),  # the paper's setting, 8 tokens
        ("ddim", 4, 1.0, 1, 4 * 8),
        ("dpm_solver", 2, 2.0, 5, 2 * 2 * 5 * 8),
        ("mean", 64, 2.0, 5, 2 * 8),  # one step, one deterministic draw, whatever the chain settings
        ("mean", 1, 1.0, 1, 8),
    ],
)
def test_head_evaluations_per_image(sampler, steps, guidance, samples, expected):
    assert head_evaluations_per_image(sampler, steps, guidance, samples, num_tokens=8) == expected


def test_head_evaluations_reject_unknown_sampler():
    with pytest.raises(ValueError, match="Unknown sampler 'euler'"):
        head_evaluations_per_image("euler", 4, 1.0, 1, 8)


def _count_head_rows(model, **kwargs):
    """Rows the head evaluates per image, from the shapes of its calls (branches x draws x tokens per call)."""
    rows = []

    def hook(module, args, output):
        rows.append(output[..., 0].numel() // PIXELS.shape[0])

    handle = model.head.register_forward_hook(hook)
    model.generate_features(PIXELS, generator=torch.Generator().manual_seed(0), **kwargs)
    handle.remove()
    return sum(rows), len(rows)


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(sampler="ddpm", num_inference_steps=8, guidance_scale=2.0, num_samples=5),
        dict(sampler="ddim", num_inference_steps=2, guidance_scale=1.0, num_samples=3),
        dict(sampler="dpm_solver", num_inference_steps=4, guidance_scale=2.0, num_samples=1),
        dict(sampler="mean", num_inference_steps=8, guidance_scale=2.0, num_samples=5),
    ],
)
def test_counted_head_rows_match_head_evaluations_per_image(model, kwargs):
    model.eval()
    rows, calls = _count_head_rows(model, **kwargs)
    expected = head_evaluations_per_image(
        kwargs["sampler"], kwargs["num_inference_steps"], kwargs["guidance_scale"], kwargs["num_samples"], 4
    )
    assert rows == expected
    assert calls == (1 if kwargs["sampler"] == "mean" else kwargs["num_inference_steps"])


def test_guided_steps_share_one_call_and_modulate_once_per_draw_group(model, monkeypatch):
    inputs, modulation_inputs = [], []
    handle = model.head.register_forward_hook(lambda module, args, output: inputs.append(tuple(args[0].shape)))
    modulations = model.head.modulations

    def recorded_modulations(silu_y):
        modulation_inputs.append(tuple(silu_y.shape))
        return modulations(silu_y)

    monkeypatch.setattr(model.head, "modulations", recorded_modulations)
    model.eval()
    model.generate_features(PIXELS, num_inference_steps=3, num_samples=5, guidance_scale=2.0)
    handle.remove()
    # Tokens are not copied per branch; the adaLN modulations run per (branch, image, token), not per draw.
    assert inputs == [(3, 5, 4, 8)] * 3
    assert modulation_inputs == [(2, 3, 1, 4, 32)] * 3


@pytest.mark.parametrize("sampler", ["ddim", "dpm_solver"])
@pytest.mark.parametrize("steps", [1, 16])
def test_few_step_samplers_run_at_any_step_count(model, sampler, steps):
    model.eval()
    features = model.generate_features(
        PIXELS, sampler=sampler, num_inference_steps=steps, num_samples=1, generator=torch.Generator().manual_seed(0)
    )
    assert features.shape == (3, 32) and torch.isfinite(features).all()


class GaussianDenoiser(nn.Module):
    """The exact epsilon-predictor for targets `N(mu, s^2 I)` with `mu` given as the condition (width = k)."""

    def __init__(self, alphas_cumprod, variance, token_dim):
        super().__init__()
        self.alphas_cumprod, self.variance, self.token_dim = alphas_cumprod, variance, token_dim

    def forward(self, sample, timestep, mu):
        a, s2 = self.alphas_cumprod[timestep], self.variance
        posterior_mean = mu + a.sqrt() * s2 / (a * s2 + 1 - a) * (sample - a.sqrt() * mu)  # E[x_0 | x_t]
        return (sample - a.sqrt() * posterior_mean) / (1 - a).sqrt()


@pytest.mark.parametrize("timestep", [300, 500, 900])
def test_mean_estimate_is_exact_up_to_the_stated_pull_toward_the_centre(timestep):
    alphas_cumprod = make_scheduler("ddpm").alphas_cumprod
    variance = 0.3
    mu = torch.randn(2, 3, 4, generator=torch.Generator().manual_seed(0))  # (B, n, k)
    centre = torch.full((3, 4), 0.5)
    head = GaussianDenoiser(alphas_cumprod, variance, token_dim=4)
    estimate = estimate_mean_tokens(head, mu, torch.zeros(3, 4), alphas_cumprod, timestep, 1.0, centre)
    a = alphas_cumprod[timestep].item()
    pull = a * variance / (a * variance + 1 - a)
    assert estimate.shape == (2, 1, 3, 4)
    assert torch.allclose(estimate[:, 0], mu + pull * (centre - mu), atol=1e-5)
    # With the centre at the true mean the estimate is exact.
    exact = estimate_mean_tokens(head, mu, torch.zeros(3, 4), alphas_cumprod, timestep, 1.0, mu.unsqueeze(1))
    assert torch.allclose(exact[:, 0], mu, atol=1e-5)


def test_mean_sampler_is_the_x0_prediction_at_the_configured_timestep(model):
    model.train()
    targets = torch.randn(3, 32, generator=torch.Generator().manual_seed(2))
    model(PIXELS, labels=torch.tensor([0, 1, 2]), teacher_features=targets)  # records the target range
    model.eval()
    config = model.sampling_config
    z = model.extract_features(PIXELS)
    features = model.sample_features(z, sampler="mean")
    # By hand: x_t = sqrt(abar) c at t = mean_timestep, guided epsilon, x_0 = (x_t - sqrt(1 - abar) eps) / sqrt(abar).
    abar = make_scheduler("ddpm").alphas_cumprod[config.mean_timestep]
    centre = split_tokens((model.target_min + model.target_max) / 2, 8)
    x_t = (abar.sqrt() * centre).expand(3, 4, 8)
    t = torch.tensor(config.mean_timestep)
    eps_cond = model.head(x_t, t, model.head.embed_condition(model.head.condition_norm(z)))[..., :8]
    eps_uncond = model.head(x_t, t, model.head.null_condition())[..., :8]
    eps = eps_uncond + config.guidance_scale * (eps_cond - eps_uncond)
    x_start = (x_t - (1 - abar).sqrt() * eps) / abar.sqrt()
    assert torch.allclose(features, merge_tokens(x_start), atol=1e-5)
    assert torch.equal(features, model.sample_features(z, sampler="mean"))  # deterministic, no generator


def test_sampler_mean_is_one_config_field_away():
    fast = tiny_model(sampling={"sampler": "mean"}).eval()
    paper = tiny_model().eval()
    rows, calls = _count_head_rows(fast)
    assert calls == 1 and rows == 2 * 4
    assert _count_head_rows(paper)[0] == 8 * 2 * 2 * 4  # tiny config: 8 steps, 2 samples
    with torch.no_grad():
        logits = fast(PIXELS).logits
        expected = fast.classify_features(fast.sample_features(fast.extract_features(PIXELS), sampler="mean"))
    assert torch.allclose(logits, expected)


def test_unknown_sampler_names_the_choices(model):
    model.eval()
    choices = r"\['ddpm', 'ddim', 'dpm_solver', 'mean'\]"
    with pytest.raises(ValueError, match=rf"sampler='euler' is invalid: use one of {choices}"):
        model.generate_features(PIXELS, sampler="euler")


def test_default_settings_cover_the_curve():
    settings = default_settings(steps=(1, 4))
    names = [setting.name for setting in settings]
    assert names[:2] == ["probe", "ddpm 64 steps g2 x5"]
    assert "ddim 1 steps g1 x1" in names and "dpm_solver 4 steps g2 x5" in names and "ddpm 4 steps g2 x1" in names
    assert names[-2:] == ["mean g1", "mean g2"]
    assert len(settings) == 2 + 3 * 2 * 2 * 2 + 2
    assert len(default_settings(steps=(2,), samplers=("ddim",))) == 2 + 4 + 2
    assert PAPER_SETTING.head_evaluations(8) == 5120 and InferenceSetting().head_evaluations(8) == 0


def _row(setting, evaluations, top1):
    return {"setting": setting.name, **setting.__dict__, "head_evaluations_per_image": evaluations, "top1": top1}


def test_best_fast_setting_needs_20x_fewer_evaluations_and_top1_within_0_3():
    paper = _row(PAPER_SETTING, 5120, 90.0)
    probe = _row(InferenceSetting(), 0, 95.0)  # not a sampled setting
    slow_but_good = _row(InferenceSetting("ddim", 16, 2.0, 5), 1280, 91.0)  # only 4x fewer
    too_weak = _row(InferenceSetting("ddim", 1, 1.0, 1), 8, 89.6)  # 0.4 points below
    ok = _row(InferenceSetting("ddim", 2, 2.0, 1), 32, 89.75)
    tied = _row(InferenceSetting("mean", 1, 2.0, 1), 16, 89.75)
    assert best_fast_setting([paper, probe, slow_but_good, too_weak, ok, tied])["setting"] == "mean g2"
    assert best_fast_setting([paper, probe, slow_but_good, too_weak]) is None


def test_benchmark_script_end_to_end(tmp_path, capsys):
    model = tiny_model()
    model.config.pretrained_cfg = {"input_size": (1, 28, 28), "mean": (0.5,), "std": (0.5,), "crop_pct": 1.0}
    model.save_pretrained(tmp_path / "model")
    other = tiny_model(1)
    other.config.pretrained_cfg = model.config.pretrained_cfg
    other.save_pretrained(tmp_path / "other")
    processor = build_image_processor(model)
    rng = np.random.default_rng(0)
    images = (rng.random((6, 28, 28)) * 255).astype("uint8")
    labels = np.array([0, 1, 2, 0, 1, 2])
    dataset_from_arrays(images, labels, label_names=["cat", "dog", "fox"]).save_to_disk(str(tmp_path / "data"))

    report = fast_sampling.main(
        [
            "--model",
            str(tmp_path / "model"),
            str(tmp_path / "other"),
            "--dataset",
            str(tmp_path / "data"),
            "--num_eval",
            "5",
            "--steps",
            "1,2",
            "--samplers",
            "ddim,dpm_solver",
            "--batch_size",
            "3",
            "--output",
            str(tmp_path / "out"),
        ]
    )
    printed = capsys.readouterr().out
    assert "| ddpm 64 steps g2 x5 | ddpm | 64 | 2.0 | 5 | 2560 |" in printed  # 64 x 2 x 5 x 4 tokens
    assert "| mean g2 | mean |" in printed and ("Best fast setting" in printed or "No fast setting" in printed)
    saved = json.loads((tmp_path / "out" / "fast_sampling.json").read_text())
    assert saved["num_eval"] == 5 and len(saved["results"]) == len(default_settings((1, 2), ("ddim", "dpm_solver")))
    assert (tmp_path / "out" / "fast_sampling.md").read_text().startswith("| setting |")
    rows = {row["setting"]: row for row in report["results"]}
    # The probe row is the probe's top-1 on the same five images, preprocessed as the pipeline does.
    pixels = processor(
        [image.convert("RGB") for image in dataset_from_arrays(images[:5])["image"]], return_tensors="pt"
    )["pixel_values"]
    with torch.no_grad():
        probe_top1 = model.eval()(pixels, inference_path="probe").logits.argmax(-1) == torch.tensor(labels[:5])
    assert rows["probe"]["top1_per_model"][0] == pytest.approx(100 * probe_top1.float().mean().item())
    # Top-1 is the mean over the two models.
    for row in report["results"]:
        assert row["top1"] == pytest.approx(sum(row["top1_per_model"]) / 2)
    assert rows["probe"]["head_evaluations_per_image"] == 0
    assert all(math.isfinite(row["images_per_second"]) and row["images_per_second"] > 0 for row in report["results"])
    assert report["best_fast"] == best_fast_setting(report["results"])


def test_synthetic_errors_measure_each_setting_against_the_64_step_chain():
    settings = [
        InferenceSetting(),
        InferenceSetting("ddpm", 64, 1.0, 1),
        InferenceSetting("ddim", 2, 2.0, 1),
        InferenceSetting("mean", 1, 1.0),
    ]
    errors = fast_sampling.synthetic_errors(settings, steps=20, draws=8)
    assert set(errors) == {"ddpm 64 steps g1 x1", "ddim 2 steps g2 x1", "mean g1"}  # no probe row
    assert errors["ddpm 64 steps g1 x1"] == 0.0  # the reference chain itself, same noise
    assert all(math.isfinite(error) and error > 0 for name, error in errors.items() if name != "ddpm 64 steps g1 x1")


def test_best_fast_setting_with_synthetic_errors_needs_both():
    paper = _row(PAPER_SETTING, 5120, 90.0)
    ok = _row(InferenceSetting("ddim", 2, 2.0, 1), 32, 89.9)
    better_but_biased = _row(InferenceSetting("mean", 1, 2.0, 1), 16, 90.1)
    synthetic = {ok["setting"]: 0.05, better_but_biased["setting"]: 0.4}
    assert best_fast_setting([paper, ok, better_but_biased])["setting"] == "mean g2"
    assert best_fast_setting([paper, ok, better_but_biased], synthetic)["setting"] == "ddim 2 steps g2 x1"


def test_within_target_keeps_only_the_settings_cheap_enough_to_be_chosen():
    every = default_settings((1, 2, 4, 8, 16), ("ddim",))
    kept = default_settings((1, 2, 4, 8, 16), ("ddim",), within_target=True)
    budget = PAPER_SETTING.head_evaluations(1) / 20  # 640 / 20 = 32 rows per token
    assert kept[:2] == every[:2]  # the probe and the paper's sampler, the references
    assert [s for s in every[2:] if s.head_evaluations(1) <= budget] == kept[2:]
    # 16 steps with guidance costs 16 x 2 = 32 (kept); 8 steps x 5 samples 40 and 4 steps x 2 x 5 40 (dropped).
    names = {s.name for s in kept}
    assert "ddim 16 steps g2 x1" in names and "ddim 8 steps g1 x5" not in names and "ddim 4 steps g2 x5" not in names
