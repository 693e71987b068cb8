"""The diffusion head computes every adaLN modulation in one matrix product and adds `1 + scale` through the bias:
it must equal the head as it was before (one product per layer, `x * (1 + scale) + shift`) to 1e-5 in output and
gradients, keep MAR's state_dict keys (saved checkpoints load), and run fewer matrix products."""

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

from gendd_hf.bench.head_speed import HeadBenchShapes, build_head, make_batch
from gendd_hf.diffusion_head import DiffusionHead


SHAPES = HeadBenchShapes(
    batch_size=4, student_dim=24, teacher_feature_dim=64, token_dim=16, diffusion_batch_mul=5, head_width=48
)


def per_layer_forward(head: DiffusionHead, noisy_tokens, timesteps, condition):
    """The head's forward before the fused modulation: each adaLN layer's own product, modulation `x * (1 + scale) +
    shift`, residual `x + gate * h`."""
    silu_y = F.silu(head.time_embed(timesteps) + condition)
    x = head.input_proj(noisy_tokens)
    for block in head.blocks:
        shift, scale, gate = block.adaLN_modulation[-1](silu_y).chunk(3, dim=-1)
        x = x + gate * block.mlp(block.in_ln(x) * (1 + scale) + shift)
    shift, scale = head.final_layer.adaLN_modulation[-1](silu_y).chunk(2, dim=-1)
    return head.final_layer.linear(head.final_layer.norm_final(x) * (1 + scale) + shift)


def _output_and_grads(forward):
    head, loss_fn = build_head(SHAPES, seed=0)
    batch = make_batch(SHAPES, seed=1)
    features = batch["student_features"].requires_grad_()
    condition = head.embed_condition(head.condition_norm(features)).unsqueeze(2)
    x_t = loss_fn.q_sample(batch["x_start"], batch["timesteps"], batch["noise"])
    output = forward(head, x_t, batch["timesteps"], condition)
    loss_fn(output, batch["x_start"], x_t, batch["timesteps"], batch["noise"]).mean().backward()
    return output.detach(), {name: p.grad for name, p in head.named_parameters()}, features.grad


def test_fused_head_equals_the_per_layer_head_in_output_and_gradients():
    output, grads, feature_grad = _output_and_grads(DiffusionHead.forward)
    reference, reference_grads, reference_feature_grad = _output_and_grads(per_layer_forward)
    assert output.shape == (4, 4, 5, 32)
    torch.testing.assert_close(output, reference, rtol=1e-5, atol=1e-5)
    assert grads.keys() == reference_grads.keys()
    for name, grad in grads.items():
        assert grad.abs().sum() > 0, name
        torch.testing.assert_close(grad, reference_grads[name], rtol=1e-5, atol=1e-5, msg=name)
    torch.testing.assert_close(feature_grad, reference_feature_grad, rtol=1e-5, atol=1e-5)


def test_sampling_shapes_equal_the_per_layer_head():
    head, _ = build_head(SHAPES, seed=0)
    generator = torch.Generator().manual_seed(3)
    noisy = torch.randn(4, 2, 4, 16, generator=generator)  # (B, draws, n, k)
    condition = torch.randn(2, 4, 1, 4, 48, generator=generator)  # (branches, B, 1, n, w)
    with torch.no_grad():
        fused = head(noisy, torch.tensor(731), condition)
        reference = per_layer_forward(head, noisy, torch.tensor(731), condition)
    torch.testing.assert_close(fused, reference, rtol=1e-5, atol=1e-5)


def test_state_dict_keys_are_mars():
    head = DiffusionHead(token_dim=4, condition_dim=6, num_tokens=2, width=8, depth=1, learn_sigma=True)
    assert sorted(head.state_dict()) == sorted(
        [
            "condition_norm.weight",
            "condition_norm.bias",
            "condition_embed.weight",
            "condition_embed.bias",
            "position_embed",
            "time_embed.mlp.0.weight",
            "time_embed.mlp.0.bias",
            "time_embed.mlp.2.weight",
            "time_embed.mlp.2.bias",
            "input_proj.weight",
            "input_proj.bias",
            "blocks.0.in_ln.weight",
            "blocks.0.in_ln.bias",
            "blocks.0.mlp.0.weight",
            "blocks.0.mlp.0.bias",
            "blocks.0.mlp.2.weight",
            "blocks.0.mlp.2.bias",
            "blocks.0.adaLN_modulation.1.weight",
            "blocks.0.adaLN_modulation.1.bias",
            "final_layer.linear.weight",
            "final_layer.linear.bias",
            "final_layer.adaLN_modulation.1.weight",
            "final_layer.adaLN_modulation.1.bias",
        ]
    )


class CountLinear(TorchFunctionMode):
    def __init__(self):
        super().__init__()
        self.calls = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        self.calls += func is F.linear
        return func(*args, **(kwargs or {}))


def test_one_matrix_product_gives_every_modulation():
    head, _ = build_head(SHAPES, seed=0)
    batch = make_batch(SHAPES, seed=1)
    condition = head.embed_condition(head.condition_norm(batch["student_features"])).unsqueeze(2)
    with CountLinear() as counter:
        head(batch["x_start"], batch["timesteps"], condition)
    # time MLP 2 + input 1 + modulations 1 + block MLPs 2 per block + output 1
    assert counter.calls == 2 + 1 + 1 + 2 * SHAPES.head_depth + 1
