"""Parity with the official GenDD code without the official code: numbers recorded once from its `DiffLoss`.

`tests/fixtures/official_diffloss.safetensors` was written by::

    python -m gendd_hf.bench.parity --reference_dir <checkout of jiequancui/Generative-Distribution-Distillation> \
        --record_fixture tests/fixtures/official_diffloss.safetensors

(its metadata names the commit): the official head with random weights (every parameter N(0, 0.3^2)), its per-row
training loss (MSE + VLB) for given x_start, timesteps and noise, and one 64-step DDPM chain with guidance 2.0 (the
starting noise, the noise of every step and the output). Our head, loaded with the same weights, must give the same
numbers: the loss to 1e-5, the chain to 1e-4 (relative, with 1e-4 absolute near zero: random weights make the first
step, at t = 999, push the chain to ~1e5, where float32 holds about 7 digits).
"""

from pathlib import Path

import pytest
import torch
from diffusers.schedulers import scheduling_ddpm
from safetensors import safe_open
from safetensors.torch import load_file

from gendd_hf import sampling
from gendd_hf.diffusion import HybridDiffusionLoss, training_betas
from gendd_hf.diffusion_head import DiffusionHead
from gendd_hf.sampling import make_scheduler, sample_tokens


FIXTURE = Path(__file__).parent / "fixtures" / "official_diffloss.safetensors"


@pytest.fixture(scope="module")
def recorded():
    with safe_open(str(FIXTURE), "pt") as handle:
        sizes = {
            name: int(value)
            for name, value in handle.metadata().items()
            if name in ("token_dim", "num_tokens", "condition_dim", "width", "depth")
        }
    tensors = load_file(str(FIXTURE))
    head = DiffusionHead(
        token_dim=sizes["token_dim"],
        condition_dim=sizes["condition_dim"],
        num_tokens=sizes["num_tokens"],
        width=sizes["width"],
        depth=sizes["depth"],
        learn_sigma=True,
    )
    weights = {name: value for name, value in tensors.items() if not name.startswith(("loss", "chain"))}
    missing, unexpected = head.load_state_dict(weights, strict=False)
    # The condition LayerNorm is the official `cls_projector`, outside DiffLoss: the fixture's conditions are its
    # output.
    assert set(missing) == {"condition_norm.weight", "condition_norm.bias"} and not unexpected
    return head.eval(), tensors


def test_training_loss_matches_the_official_code(recorded):
    head, tensors = recorded
    loss_fn = HybridDiffusionLoss(training_betas())
    x_start, timesteps, noise = tensors["loss_x_start"], tensors["loss_timesteps"], tensors["loss_noise"]
    condition = head.condition_embed(tensors["loss_condition"]) + head.position_embed[tensors["loss_positions"]]
    with torch.no_grad():
        x_t = loss_fn.q_sample(x_start, timesteps, noise)
        output = head(x_t, timesteps, condition)
        loss = loss_fn(output, x_start, x_t, timesteps, noise)
        mse = ((output[:, : head.token_dim] - noise) ** 2).mean(-1)
    assert timesteps.tolist()[:1] == [0] and 999 in timesteps.tolist()  # the decoder term and the last step
    torch.testing.assert_close(mse, tensors["loss_mse"], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(loss - mse, tensors["loss_vb"], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(loss, tensors["loss"], rtol=1e-5, atol=1e-5)


def test_sampling_chain_matches_the_official_code(recorded, monkeypatch):
    head, tensors = recorded
    step_noise = iter(tensors["chain_step_noise"])
    # The chain's random draws are the recorded ones: the starting noise, then each step's (diffusers draws none at
    # t = 0, the official code draws one and masks it).
    monkeypatch.setattr(sampling, "randn_tensor", lambda shape, **kwargs: tensors["chain_initial_noise"].reshape(shape))
    monkeypatch.setattr(scheduling_ddpm, "randn_tensor", lambda shape, **kwargs: next(step_noise).reshape(shape))
    condition = head.embed_condition(tensors["chain_condition"])
    tokens = sample_tokens(
        head,
        condition,
        head.null_condition(),
        make_scheduler("ddpm"),
        num_inference_steps=64,
        guidance_scale=2.0,
        num_samples=1,
    )
    expected = tensors["chain_output"].reshape(tokens.shape)
    assert expected.abs().max() > 1e3  # the regime where the first step's amplification shows
    torch.testing.assert_close(tokens, expected, rtol=1e-4, atol=1e-4)
    assert len(list(step_noise)) == 1  # 63 steps drew noise, the last one (t = 0) none
