"""The GenDD diffusion head: MAR's adaLN MLP ("SimpleMLPAdaLN") conditioned on the student feature, the
token position and the timestep.

The condition `y = TimeEmbed(t) + Linear(LayerNorm(z)) + PosEmbed(i)` is built from parts that are computed
once per distinct value and broadcast: the student condition once per sample, the position embedding once
per token, the timestep embedding once per distinct timestep. `LayerNorm(z)` is taken by the caller before
feature mixup and condition dropout, as in the reference (`cls_projector`), so the dropped ("null") condition is
`Linear(0) + PosEmbed(i)`. `SiLU(y)` is computed once, and the modulations of all adaLN layers (shift,
scale, gate of each block, shift and scale of the final layer) come from it in one matrix product with the layers'
weights side by side (`DiffusionHead.modulations`); they are computed at the shape of `y`, not of the tokens: in
sampling, where `y` does not depend on the draw, once per (branch, sample, token) and broadcast over the draws. The
weights stay in each layer's `adaLN_modulation` (MAR's layout), so the state_dict keys are MAR's.

This module travels with saved models (``trust_remote_code``), so it imports only torch.
"""

import math

import torch
import torch.nn.functional as F
from torch import nn


def timestep_embedding(timesteps: torch.Tensor, dim: int = 256, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal timestep embedding `[cos(t * w_j), sin(t * w_j)]` with `w_j = max_period^(-j / (dim / 2))`."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=timesteps.device) / half)
    args = timesteps.float().unsqueeze(-1) * freqs
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


class TimestepEmbedder(nn.Module):
    """Sinusoidal frequencies (256) followed by a 2-layer MLP; embeds each distinct timestep once."""

    def __init__(self, width: int, frequency_dim: int = 256):
        super().__init__()
        self.frequency_dim = frequency_dim
        self.mlp = nn.Sequential(nn.Linear(frequency_dim, width), nn.SiLU(), nn.Linear(width, width))

    def forward(self, timesteps: torch.Tensor) -> torch.Tensor:
        if torch.compiler.is_compiling():  # the size of `unique` depends on the data: torch.compile would break there
            return self.mlp(timestep_embedding(timesteps, self.frequency_dim).to(self.mlp[0].weight.dtype))
        unique, inverse = torch.unique(timesteps, return_inverse=True)
        embedded = self.mlp(timestep_embedding(unique, self.frequency_dim).to(self.mlp[0].weight.dtype))
        return embedded[inverse]


class AdaLNResBlock(nn.Module):
    """LayerNorm -> shift/scale -> Linear-SiLU-Linear -> gated residual.

    `adaLN_modulation` is `SiLU -> Linear` (MAR's layout); the head computes every layer's modulation at once
    (`DiffusionHead.modulations`) and `forward` takes this block's `shift`, `1 + scale` and `gate`.
    """

    def __init__(self, width: int):
        super().__init__()
        self.in_ln = nn.LayerNorm(width, eps=1e-6)
        self.mlp = nn.Sequential(nn.Linear(width, width), nn.SiLU(), nn.Linear(width, width))
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(width, 3 * width))

    def forward(self, x: torch.Tensor, shift: torch.Tensor, one_plus_scale: torch.Tensor, gate: torch.Tensor):
        # x + gate * MLP(LN(x) * (1 + scale) + shift), each multiply-add in one pass
        return torch.addcmul(x, gate, self.mlp(torch.addcmul(shift, self.in_ln(x), one_plus_scale)))


class AdaLNFinalLayer(nn.Module):
    """LayerNorm -> shift/scale -> output projection; `forward` takes `shift` and `1 + scale` like `AdaLNResBlock`."""

    def __init__(self, width: int, out_dim: int):
        super().__init__()
        self.norm_final = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.linear = nn.Linear(width, out_dim)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(width, 2 * width))

    def forward(self, x: torch.Tensor, shift: torch.Tensor, one_plus_scale: torch.Tensor) -> torch.Tensor:
        return self.linear(torch.addcmul(shift, self.norm_final(x), one_plus_scale))


class DiffusionHead(nn.Module):
    """Denoiser for teacher-feature tokens: predicts epsilon (and the variance values when `learn_sigma`).

    Args:
        token_dim (`int`): `k`, the size of one token.
        condition_dim (`int`): `d_s`, the student feature width.
        num_tokens (`int`): `n = d_t / k`, the number of token positions.
        width (`int`): hidden width `w` (1024 in the paper).
        depth (`int`): number of adaLN residual blocks (3 in the paper).
        learn_sigma (`bool`): output `2k` channels (epsilon, variance values) instead of `k`.
    """

    def __init__(self, token_dim: int, condition_dim: int, num_tokens: int, width: int, depth: int, learn_sigma: bool):
        super().__init__()
        self.token_dim = token_dim
        self.condition_norm = nn.LayerNorm(condition_dim)
        self.condition_embed = nn.Linear(condition_dim, width)
        self.position_embed = nn.Parameter(torch.zeros(num_tokens, width))
        self.time_embed = TimestepEmbedder(width)
        self.input_proj = nn.Linear(token_dim, width)
        self.blocks = nn.ModuleList(AdaLNResBlock(width) for _ in range(depth))
        self.final_layer = AdaLNFinalLayer(width, 2 * token_dim if learn_sigma else token_dim)
        self.reset_parameters()

    def reset_parameters(self):
        """MAR's initialisation: Xavier linears, N(0, 0.02) time MLP, zero adaLN and output layers; positions
        N(0, 1), the default of the reference's `nn.Embedding`, which its initialisation leaves alone (with
        N(0, 0.02) the tokens are hard to tell apart early: -6.4 probe points in the parity run of issue 13)."""
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.LayerNorm) and module.elementwise_affine:
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        nn.init.normal_(self.position_embed, std=1.0)
        nn.init.normal_(self.time_embed.mlp[0].weight, std=0.02)
        nn.init.normal_(self.time_embed.mlp[2].weight, std=0.02)
        for block in [*self.blocks, self.final_layer]:
            nn.init.zeros_(block.adaLN_modulation[-1].weight)
            nn.init.zeros_(block.adaLN_modulation[-1].bias)
        nn.init.zeros_(self.final_layer.linear.weight)
        nn.init.zeros_(self.final_layer.linear.bias)

    def embed_condition(self, normed_features: torch.Tensor) -> torch.Tensor:
        """`(..., d_s)` normalised student features `condition_norm(z)` -> `(..., n, w)`: `Linear(.) + PosEmbed(i)`
        per token."""
        return self.condition_embed(normed_features).unsqueeze(-2) + self.position_embed

    def null_condition(self) -> torch.Tensor:
        """`(n, w)`: the dropped condition of classifier-free guidance, `Linear(0) + PosEmbed(i)`."""
        return self.condition_embed.bias + self.position_embed

    def forward(self, noisy_tokens: torch.Tensor, timesteps: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        """Predict the head output for noisy tokens.

        Args:
            noisy_tokens (`torch.Tensor` of shape `(..., k)`): `x_t`.
            timesteps (`torch.Tensor` broadcastable to `noisy_tokens.shape[:-1]`): integer timesteps, one per row
                in training, a single one (0-d) in sampling.
            condition (`torch.Tensor` broadcastable to `(..., w)`): from `embed_condition`.

        Returns:
            `torch.Tensor` of shape `(..., 2k)` (epsilon, variance values) or `(..., k)`, broadcast over all inputs.
        """
        modulations = self.modulations(F.silu(self.time_embed(timesteps) + condition))
        x = self.input_proj(noisy_tokens)
        for index, block in enumerate(self.blocks):
            x = block(x, *modulations[3 * index : 3 * index + 3])
        return self.final_layer(x, *modulations[-2:])

    def modulations(self, silu_y: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Every adaLN layer's modulation from `SiLU(y)` `(..., w)` in one matrix product: `(shift, 1 + scale, gate)`
        of each block, then `(shift, 1 + scale)` of the final layer, each `(..., w)` (views of one tensor). The 1 is
        added to the scale's bias, not to a tensor of rows."""
        linears = [layer.adaLN_modulation[-1] for layer in (*self.blocks, self.final_layer)]
        biases = []
        for linear in linears:
            shift, scale, *gate = linear.bias.split(linear.in_features)
            biases += [shift, scale + 1, *gate]
        weight = torch.cat([linear.weight for linear in linears])
        return F.linear(silu_y, weight, torch.cat(biases)).split(linears[0].in_features, dim=-1)
