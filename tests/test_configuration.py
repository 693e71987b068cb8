import pytest

from gendd_hf import GenDDConfig, GenDDSamplingConfig


def test_defaults_match_the_paper():
    config = GenDDConfig()
    assert (config.token_dim, config.head_width, config.head_depth) == (64, 1024, 3)
    assert (config.num_train_timesteps, config.noise_schedule, config.learn_sigma) == (1000, "cosine", True)
    assert (config.cond_drop_prob, config.contraction, config.feature_mixup_beta) == (0.2, 0.9, 1.0)
    assert config.num_tokens == 512 // 64
    sampling = GenDDSamplingConfig()
    assert (sampling.sampler, sampling.num_inference_steps, sampling.guidance_scale, sampling.num_samples) == (
        "ddpm",
        64,
        2.0,
        5,
    )
    assert sampling.clamp_first_step and sampling.seed == 0


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (
            {"teacher_feature_dim": 100, "token_dim": 64},
            "token_dim=64 is invalid: it must divide teacher_feature_dim=100",
        ),
        ({"contraction": 1.5}, r"contraction=1.5 is invalid: lambda must lie in \[0, 1\]"),
        ({"contraction": -0.1}, "contraction=-0.1 is invalid"),
        ({"cond_drop_prob": 1.0}, r"cond_drop_prob=1.0 is invalid: use a probability in \[0, 1\)"),
        ({"token_dim": 0}, "token_dim=0 is invalid: use an integer >= 1"),
        ({"head_width": 2.5}, "head_width=2.5 is invalid"),
        ({"head_depth": 0}, "head_depth=0 is invalid"),
        ({"diffusion_batch_mul": 0}, "diffusion_batch_mul=0 is invalid"),
        ({"num_train_timesteps": 0}, "num_train_timesteps=0 is invalid"),
        ({"teacher_feature_dim": -64}, "teacher_feature_dim=-64 is invalid"),
        ({"noise_schedule": "sigmoid"}, "noise_schedule='sigmoid' is invalid: use one of"),
        ({"inference_path": "teacher"}, "inference_path='teacher' is invalid"),
        ({"learn_sigma": "yes"}, "learn_sigma='yes' is invalid"),
        ({"feature_mixup_beta": -1.0}, "feature_mixup_beta=-1.0 is invalid"),
        ({"student_kwargs": [1]}, r"student_kwargs=\[1\] is invalid"),
        ({"pretrained_cfg": {"mean": [0.5]}}, "pretrained_cfg=.* is invalid: give timm's data config"),
    ],
)
def test_invalid_values_raise_naming_the_field(kwargs, message):
    with pytest.raises(ValueError, match=message):
        GenDDConfig(**kwargs)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"num_samples": 0}, "GenDDSamplingConfig.num_samples=0 is invalid: use an integer >= 1"),
        ({"num_inference_steps": 2.5}, "num_inference_steps=2.5 is invalid"),
        ({"sampler": "euler"}, r"sampler='euler' is invalid: use one of \['ddpm', 'ddim', 'dpm_solver'"),
        ({"guidance_scale": -2.0}, "guidance_scale=-2.0 is invalid"),
        ({"seed": -1}, "seed=-1 is invalid"),
        ({"clamp_first_step": "yes"}, "clamp_first_step='yes' is invalid"),
    ],
)
def test_invalid_sampling_values_raise_naming_the_field(kwargs, message):
    with pytest.raises(ValueError, match=message):
        GenDDSamplingConfig(**kwargs)
    with pytest.raises(ValueError, match=message):
        GenDDSamplingConfig().update(**kwargs)


def test_sampling_config_round_trip_and_overrides(tmp_path):
    sampling = GenDDSamplingConfig(sampler="ddim", num_inference_steps=8, seed=3)
    sampling.save_pretrained(tmp_path)
    assert (tmp_path / "sampling_config.json").is_file()
    assert GenDDSamplingConfig.from_pretrained(tmp_path) == sampling
    (tmp_path / "empty").mkdir()
    assert GenDDSamplingConfig.from_pretrained(tmp_path / "empty") is None
    assert sampling.update(num_samples=2, guidance_scale=None) == GenDDSamplingConfig(
        sampler="ddim", num_inference_steps=8, seed=3, num_samples=2
    )
    with pytest.raises(ValueError, match=r"has no field \['steps'\]"):
        sampling.update(steps=4)
    # A config.json written before sampling_config.json existed keeps its sampling fields.
    legacy = GenDDConfig(sampler="mean", guidance_scale=1.0)
    assert GenDDSamplingConfig.from_model_config(legacy) == GenDDSamplingConfig(sampler="mean", guidance_scale=1.0)


def test_round_trip_keeps_every_field(tmp_path):
    config = GenDDConfig(
        student_name="resnet10t",
        student_kwargs={"in_chans": 1},
        token_dim=32,
        contraction=0.5,
        pretrained_cfg={"input_size": (1, 28, 28), "mean": (0.5,)},
        id2label={0: "a", 1: "b"},
    )
    config.save_pretrained(tmp_path)
    loaded = GenDDConfig.from_pretrained(tmp_path)
    assert loaded.to_dict() == config.to_dict()
    assert loaded.in_chans == 1 and loaded.id2label == {0: "a", 1: "b"}
