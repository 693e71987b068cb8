"""Training speed of the GenDD diffusion head against a per-row baseline with the same weights and the same math.

GenDD repeats every (sample, token) row `diffusion_batch_mul` times through the head. The baseline here does what
the reference code does: every row computes its own condition `Linear(LayerNorm(z)) + PosEmbed(i)` and its own
timestep embedding, and every adaLN layer applies its own SiLU. `DiffusionHead` computes the condition once per
sample, the position embedding once per token, the timestep embedding once per distinct timestep, and SiLU(y) once
for all adaLN layers. One training step is the head's forward, the hybrid loss and the backward pass down to the
student feature; both implementations are timed in the same run, alternating, on the same inputs and noise.

Usage:
    python -m gendd_hf.bench.head_speed            # paper-like shapes: batch 64, d_s = d_t = 512, k = 64, m = 10,
                                                   # width 1024, depth 3 (about a minute per repetition on 2 CPU cores)
    python -m gendd_hf.bench.head_speed --small    # a quick run at small shapes
    python -m gendd_hf.bench.head_speed --device cuda
"""

import argparse
import statistics
import time
from dataclasses import asdict, dataclass

import torch

from ..diffusion import HybridDiffusionLoss, split_tokens, training_betas
from ..diffusion_head import DiffusionHead, timestep_embedding


@dataclass(frozen=True)
class HeadBenchShapes:
    """Shapes of one head training step; the defaults are the paper's (ResNet18 student, 512-d teacher)."""

    batch_size: int = 64
    student_dim: int = 512
    teacher_feature_dim: int = 512
    token_dim: int = 64
    diffusion_batch_mul: int = 10
    head_width: int = 1024
    head_depth: int = 3

    @property
    def num_tokens(self) -> int:
        return self.teacher_feature_dim // self.token_dim

    @property
    def rows(self) -> int:
        """Head rows per step: samples x tokens x repeats."""
        return self.batch_size * self.num_tokens * self.diffusion_batch_mul


SMALL_SHAPES = HeadBenchShapes(
    batch_size=16, student_dim=64, teacher_feature_dim=128, token_dim=16, diffusion_batch_mul=4, head_width=128
)


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return x * (1 + scale) + shift


def baseline_head_forward(
    head: DiffusionHead,
    noisy_tokens: torch.Tensor,
    timesteps: torch.Tensor,
    student_features: torch.Tensor,
    positions: torch.Tensor,
) -> torch.Tensor:
    """BASELINE: the head's math computed row by row, as the reference implementation does.

    Args:
        noisy_tokens (`torch.Tensor` of shape `(N, k)`), timesteps (`(N,)`), student_features (`(N, d_s)`: `z`
            repeated for each of its rows), positions (`(N,)`: the token index of each row).
    """
    condition = head.condition_embed(head.condition_norm(student_features)) + head.position_embed[positions]
    y = head.time_embed.mlp(timestep_embedding(timesteps, head.time_embed.frequency_dim)) + condition
    x = head.input_proj(noisy_tokens)
    for block in head.blocks:
        shift, scale, gate = block.adaLN_modulation(y).chunk(3, dim=-1)
        x = x + gate * block.mlp(modulate(block.in_ln(x), shift, scale))
    final = head.final_layer
    shift, scale = final.adaLN_modulation(y).chunk(2, dim=-1)
    return final.linear(modulate(final.norm_final(x), shift, scale))


def build_head(shapes: HeadBenchShapes, seed: int = 0) -> tuple[DiffusionHead, HybridDiffusionLoss]:
    """A head with random (non-zero) weights everywhere, and the paper's hybrid loss (cosine, learned range)."""
    torch.manual_seed(seed)
    head = DiffusionHead(
        token_dim=shapes.token_dim,
        condition_dim=shapes.student_dim,
        num_tokens=shapes.num_tokens,
        width=shapes.head_width,
        depth=shapes.head_depth,
        learn_sigma=True,
    )
    with torch.no_grad():  # the zero-initialised adaLN and output layers would hide differences
        for parameter in head.parameters():
            parameter.add_(0.02 * torch.randn_like(parameter))
    return head, HybridDiffusionLoss(training_betas(), learn_sigma=True)


def make_batch(shapes: HeadBenchShapes, seed: int = 0) -> dict[str, torch.Tensor]:
    """Student features `(B, d_s)`, target tokens, timesteps and noise `(B, n, m, ...)` of one training step."""
    generator = torch.Generator().manual_seed(seed)
    repeats = shapes.diffusion_batch_mul
    target = torch.randn(shapes.batch_size, shapes.teacher_feature_dim, generator=generator)
    x_start = split_tokens(target, shapes.token_dim).unsqueeze(2).expand(-1, -1, repeats, -1)
    return {
        "student_features": torch.randn(shapes.batch_size, shapes.student_dim, generator=generator),
        "x_start": x_start,
        "timesteps": torch.randint(0, 1000, x_start.shape[:-1], generator=generator),
        "noise": torch.randn(x_start.shape, generator=generator),
    }


def training_loss(
    head: DiffusionHead, loss_fn: HybridDiffusionLoss, batch: dict[str, torch.Tensor], baseline: bool = False
) -> torch.Tensor:
    """The mean hybrid loss of one step, through `DiffusionHead` (as `compute_losses` calls it) or the baseline."""
    x_start, timesteps, noise = batch["x_start"], batch["timesteps"], batch["noise"]
    x_t = loss_fn.q_sample(x_start, timesteps, noise)
    student_features = batch["student_features"]
    if baseline:
        batch_size, num_tokens, repeats, _ = x_start.shape
        rows = student_features[:, None, None].expand(batch_size, num_tokens, repeats, -1)
        positions = torch.arange(num_tokens, device=x_start.device)[None, :, None].expand(
            batch_size, num_tokens, repeats
        )
        output = baseline_head_forward(
            head, x_t.flatten(0, 2), timesteps.flatten(), rows.flatten(0, 2), positions.flatten()
        ).reshape(*x_start.shape[:-1], -1)
    else:
        output = head(x_t, timesteps, head.embed_condition(head.condition_norm(student_features)).unsqueeze(2))
    return loss_fn(output, x_start, x_t, timesteps, noise).mean()


def time_training_step(head, loss_fn, batch, baseline: bool) -> float:
    """Seconds of one forward + backward (gradients to the head and to the student feature), waiting for the
    device to finish."""
    head.zero_grad(set_to_none=True)
    batch = {**batch, "student_features": batch["student_features"].detach().requires_grad_()}
    device = batch["x_start"].device
    start = time.perf_counter()
    training_loss(head, loss_fn, batch, baseline=baseline).backward()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


def benchmark(shapes: HeadBenchShapes, repeats: int = 3, warmup: int = 1, device: str = "cpu") -> dict:
    """Time both implementations alternately (the order flips each repetition, the machine being noisy).

    Returns the median seconds of each and `speedup`, the median over repetitions of baseline / DiffusionHead.
    """
    head, loss_fn = build_head(shapes)
    head, loss_fn = head.to(device), loss_fn.to(device)
    batch = {name: tensor.to(device) for name, tensor in make_batch(shapes).items()}
    times = {"baseline": [], "gendd_head": []}
    for repetition in range(warmup + repeats):
        order = ("baseline", "gendd_head") if repetition % 2 == 0 else ("gendd_head", "baseline")
        step = {name: time_training_step(head, loss_fn, batch, baseline=name == "baseline") for name in order}
        if repetition >= warmup:
            for name, seconds in step.items():
                times[name].append(seconds)
    ratios = [base / ours for base, ours in zip(times["baseline"], times["gendd_head"])]
    return {
        "shapes": {**asdict(shapes), "rows": shapes.rows},
        "baseline_s": statistics.median(times["baseline"]),
        "gendd_head_s": statistics.median(times["gendd_head"]),
        "speedup": statistics.median(ratios),
        "device": str(device),
        "times": times,
    }


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--small", action="store_true", help="small shapes for a quick run")
    parser.add_argument("--repeats", type=int, default=3, help="timed repetitions of each implementation")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args(argv)
    shapes = SMALL_SHAPES if args.small else HeadBenchShapes()
    result = benchmark(shapes, repeats=args.repeats, device=args.device)
    print(f"head training step (forward + backward) on {args.device}, {shapes.rows} rows: {result['shapes']}")
    print(f"{'implementation':<44} {'median s':>9}")
    print(f"{'baseline (per-row condition, timestep, SiLU)':<44} {result['baseline_s']:>9.3f}")
    print(f"{'DiffusionHead (shared)':<44} {result['gendd_head_s']:>9.3f}")
    print(f"speedup (median of per-repetition ratios): {result['speedup']:.2f}x")
    return result


if __name__ == "__main__":
    main()
