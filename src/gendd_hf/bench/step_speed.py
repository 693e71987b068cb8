"""One training step at the paper's ImageNet shapes, KD against GenDD in the same run: the time of each part and its
FLOP count.

The step is the one `GenDDTrainer` takes with stored teacher outputs (`--teacher_outputs`: the teacher never runs):
a timm student at 224 px, its pooled feature through the linear probe (KD: cross-entropy + KD loss on the stored
teacher logits; GenDD: the probe's cross-entropy and the diffusion loss of `compute_losses` on the stored 512-d
teacher features, `diffusion_batch_mul` rows per token), the backward pass, then the Trainer's optimizer (fused
AdamW) over `parameter_groups`.
It is timed in three parts whose gradients are those of one backward pass: `student` (its forward, and its backward
from the gradient of its feature), `head` (probe, losses and their backward down to the student feature: for GenDD
the diffusion head) and `optimizer` (`step` and `zero_grad`). FLOPs are counted with `torch.utils.flop_counter`
(matrix products and convolutions, forward and backward; the optimizer's elementwise work is not counted).

`time_ratio` is GenDD's step time over KD's (the median of per-repetition ratios, KD and GenDD alternating);
`flop_ratio` the same for FLOPs; `overhead` = time_ratio / flop_ratio, the target being <= 1.1 (no cost beyond the
math). Variants (`--variants`) time the same step with channels-last student and inputs, bf16 autocast, and
`torch.compile` of the student and of the head's losses.

Usage:
    python -m gendd_hf.bench.step_speed                      # resnet18, batch 16, ImageNet preset's head (CPU: minutes)
    python -m gendd_hf.bench.step_speed --variants plain,channels_last,bf16,compile --output results/step_speed
    python -m gendd_hf.bench.step_speed --device cuda --batch_size 64
"""

import argparse
import json
import statistics
import tempfile
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, replace
from pathlib import Path


METHODS = ("kd", "gendd")
VARIANTS = ("plain", "channels_last", "bf16", "compile")
OVERHEAD_TARGET = 1.1  # largest time ratio over FLOP ratio (issue 25)


@dataclass(frozen=True)
class StepShapes:
    """Shapes of one step. Defaults: the paper's ImageNet pair (ResNet18 student at 224 px, 512-d ResNet34 features,
    1,000 classes), `GenDDConfig`'s head (token 64, width 1024, depth 3) and the ImageNet preset's
    `diffusion_batch_mul` (10); the batch is small for a CPU."""

    batch_size: int = 16
    image_size: int = 224
    student_name: str = "resnet18"
    teacher_feature_dim: int = 512
    num_labels: int = 1000
    token_dim: int = 64
    head_width: int = 1024
    head_depth: int = 3
    diffusion_batch_mul: int = 10

    def model(self):
        """A `GenDDForImageClassification` of these shapes, its weights from the global random state."""
        from ..configuration_gendd import GenDDConfig
        from ..modeling_gendd import GenDDForImageClassification

        config = GenDDConfig(
            student_name=self.student_name,
            teacher_feature_dim=self.teacher_feature_dim,
            token_dim=self.token_dim,
            head_width=self.head_width,
            head_depth=self.head_depth,
            diffusion_batch_mul=self.diffusion_batch_mul,
            num_labels=self.num_labels,
        )
        return GenDDForImageClassification(config)


@dataclass(frozen=True)
class StepOptions:
    """Speed switches: channels-last memory format of the student and its input, bf16 autocast, `torch.compile`."""

    channels_last: bool = False
    bf16: bool = False
    compile: bool = False
    compile_backend: str = "inductor"

    @classmethod
    def from_variant(cls, variant: str) -> "StepOptions":
        if variant not in VARIANTS:
            raise ValueError(f"Unknown variant {variant!r}; choose from {list(VARIANTS)}.")
        return cls(**({} if variant == "plain" else {variant: True}))


def synchronize(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


class TrainingStep:
    """One method's model, optimizer and step function, with its three parts timed separately.

    Args:
        method (`str`): `"kd"` or `"gendd"`.
        shapes (`StepShapes`): model and batch shapes.
        options (`StepOptions`): speed switches.
        device (`str`): where the step runs.
        seed (`int`): seed of the weights and of the batch.
    """

    def __init__(self, method: str, shapes: StepShapes, options: StepOptions, device: str = "cpu", seed: int = 0):
        import torch
        from transformers import Trainer

        from ..losses import kd_loss, soft_cross_entropy
        from ..trainer import parameter_groups
        from ..training_args import GenDDTrainingArguments

        if method not in METHODS:
            raise ValueError(f"Unknown method {method!r}; choose from {list(METHODS)}.")
        self.method, self.options, self.device = method, options, torch.device(device)
        torch.manual_seed(seed)
        model = shapes.model()
        model.set_teacher_classifier(0.05 * torch.randn(shapes.num_labels, shapes.teacher_feature_dim))
        self.model = model.to(self.device).train()
        memory_format = torch.channels_last if options.channels_last else torch.contiguous_format
        self.model.student.to(memory_format=memory_format)
        if method == "kd":  # frozen, as GenDDTrainer freezes what a method does not use
            self.model.head.requires_grad_(False)
        # The Trainer's optimizer (fused AdamW) over its parameter groups, with the ImageNet preset's settings.
        args = GenDDTrainingArguments(
            output_dir=str(Path(tempfile.gettempdir()) / "gendd_step_speed"),
            method=method,
            learning_rate=2e-3,
            weight_decay=0.02,
            report_to="none",
            use_cpu=self.device.type == "cpu",
        )
        optimizer_cls, optimizer_kwargs = Trainer.get_optimizer_cls_and_kwargs(args, self.model)
        self.optimizer = optimizer_cls(parameter_groups(self.model, args), **optimizer_kwargs)

        generator = torch.Generator().manual_seed(seed)
        size = (shapes.batch_size, 3, shapes.image_size, shapes.image_size)
        teacher_features = torch.rand(shapes.batch_size, shapes.teacher_feature_dim, generator=generator)
        batch = {
            "pixel_values": torch.randn(size, generator=generator),
            "labels": torch.randint(0, shapes.num_labels, (shapes.batch_size,), generator=generator),
            "teacher_features": teacher_features,
        }
        self.batch = {name: tensor.to(self.device) for name, tensor in batch.items()}
        self.batch["teacher_logits"] = model.classify_features(self.batch["teacher_features"]).detach()
        self.batch["pixel_values"] = self.batch["pixel_values"].contiguous(memory_format=memory_format)

        def head_loss(student_features, labels, teacher_features, teacher_logits):
            if method == "gendd":  # GenDDForImageClassification.forward's losses
                probe_logits = model.probe(student_features.detach())
                diffusion_loss, probe_loss = model.compute_losses(
                    student_features, probe_logits, teacher_features, labels
                )
                return diffusion_loss + probe_loss
            logits = model.probe(student_features)  # GenDDTrainer's KD terms
            return soft_cross_entropy(logits, labels) + kd_loss(logits, teacher_logits)

        self.student = model.student
        self.head_loss = head_loss
        if options.compile:
            self.student = torch.compile(model.student, backend=options.compile_backend)
            self.head_loss = torch.compile(head_loss, backend=options.compile_backend)

    def autocast(self):
        import torch

        return torch.autocast(self.device.type, dtype=torch.bfloat16) if self.options.bf16 else nullcontext()

    def run(self) -> dict[str, float]:
        """One step; returns the seconds of `student`, `head`, `optimizer` and the `loss`."""
        batch, device = self.batch, self.device
        synchronize(device)
        start = time.perf_counter()
        with self.autocast():
            features = self.student(batch["pixel_values"])
        synchronize(device)
        forward_end = time.perf_counter()
        leaf = features.detach().float().requires_grad_()
        with self.autocast():
            loss = self.head_loss(leaf, batch["labels"], batch["teacher_features"], batch["teacher_logits"])
        loss.backward()
        synchronize(device)
        head_end = time.perf_counter()
        features.backward(leaf.grad.to(features.dtype))
        synchronize(device)
        backward_end = time.perf_counter()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        synchronize(device)
        end = time.perf_counter()
        return {
            "student": (forward_end - start) + (backward_end - head_end),
            "head": head_end - forward_end,
            "optimizer": end - backward_end,
            "loss": float(loss.detach()),
        }

    def count_flops(self) -> dict[str, int]:
        """FLOPs of the student (forward and backward) and of the head part (forward and backward) of one step."""
        import torch
        from torch.utils.flop_counter import FlopCounterMode

        batch = self.batch
        with FlopCounterMode(display=False) as student_counter:
            features = self.model.student(batch["pixel_values"])
            features.backward(torch.ones_like(features))
        leaf = features.detach().requires_grad_()
        with FlopCounterMode(display=False) as head_counter:
            self.head_loss(leaf, batch["labels"], batch["teacher_features"], batch["teacher_logits"]).backward()
        self.optimizer.zero_grad(set_to_none=True)
        return {"student": student_counter.get_total_flops(), "head": head_counter.get_total_flops()}


def compile_counters() -> dict[str, int]:
    """torch.compile's frame and recompilation counts so far in this process."""
    from torch._dynamo.utils import counters

    return {"frames_compiled": counters["stats"]["unique_graphs"], "recompiles": sum(counters["recompiles"].values())}


def benchmark(
    shapes: StepShapes,
    options: StepOptions = StepOptions(),
    repeats: int = 3,
    warmup: int = 1,
    device: str = "cpu",
) -> dict:
    """Time KD's and GenDD's steps alternately (the order flips each repetition) after `warmup` steps each.

    Returns per method the median seconds of each part and of the step, the FLOPs of each part, and `time_ratio`,
    `flop_ratio` and `overhead` (GenDD over KD).
    """
    steps = {method: TrainingStep(method, shapes, options, device) for method in METHODS}
    flops = {method: step.count_flops() for method, step in steps.items()}
    times = {method: [] for method in METHODS}
    losses = {method: [] for method in METHODS}
    for repetition in range(warmup + repeats):
        order = METHODS if repetition % 2 == 0 else METHODS[::-1]
        for method in order:
            result = steps[method].run()
            losses[method].append(result.pop("loss"))
            if repetition >= warmup:
                times[method].append({**result, "step": sum(result.values())})
    per_method = {}
    for method in METHODS:
        medians = {part: statistics.median(t[part] for t in times[method]) for part in times[method][0]}
        total_flops = sum(flops[method].values())
        per_method[method] = {
            "seconds": medians,
            "images_per_second": shapes.batch_size / medians["step"],
            "gflops": {**{part: n / 1e9 for part, n in flops[method].items()}, "step": total_flops / 1e9},
            "losses": losses[method],
        }
    time_ratio = statistics.median(g["step"] / k["step"] for k, g in zip(times["kd"], times["gendd"]))
    flop_ratio = per_method["gendd"]["gflops"]["step"] / per_method["kd"]["gflops"]["step"]
    return {
        "shapes": asdict(shapes),
        "options": asdict(options),
        "device": str(device),
        "repeats": repeats,
        "methods": per_method,
        "time_ratio": time_ratio,
        "flop_ratio": flop_ratio,
        "overhead": time_ratio / flop_ratio,
        "times": times,
        **({"compile": compile_counters()} if options.compile else {}),
    }


def format_markdown(results: dict[str, dict]) -> str:
    """A table per variant: seconds of each part, images/s, GFLOPs; then the ratios."""
    lines = []
    for variant, result in results.items():
        lines += [
            f"### {variant} ({result['device']}, batch {result['shapes']['batch_size']}, "
            f"median of {result['repeats']})",
            "",
            "| method | student s | head s | optimizer s | step s | images/s | student GFLOP | head GFLOP |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for method, row in result["methods"].items():
            s, g = row["seconds"], row["gflops"]
            lines.append(
                f"| {method} | {s['student']:.3f} | {s['head']:.3f} | {s['optimizer']:.3f} | {s['step']:.3f} | "
                f"{row['images_per_second']:.1f} | {g['student']:.1f} | {g['head']:.1f} |"
            )
        lines += [
            "",
            f"GenDD / KD: time {result['time_ratio']:.2f}x, FLOPs {result['flop_ratio']:.2f}x, overhead "
            f"{result['overhead']:.2f}x (target <= {OVERHEAD_TARGET}).",
        ]
        if "compile" in result:
            lines.append(f"torch.compile: {result['compile']}.")
        lines.append("")
    return "\n".join(lines)


def write_results(folder: Path, name: str, results: dict, markdown: str) -> None:
    """`results` as `folder/name.json` and `markdown` as `folder/name.md`."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.json").write_text(json.dumps(results, indent=2) + "\n")
    (folder / f"{name}.md").write_text(markdown)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    defaults = StepShapes()
    for name in ("batch_size", "image_size", "head_width", "head_depth", "diffusion_batch_mul"):
        parser.add_argument(f"--{name}", type=int, default=getattr(defaults, name))
    parser.add_argument("--student_name", default=defaults.student_name)
    parser.add_argument("--variants", default="plain", help=f"comma-separated, from {','.join(VARIANTS)}")
    parser.add_argument("--repeats", type=int, default=3, help="timed steps of each method")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--output", type=Path, help="folder for step_speed.json and step_speed.md")
    return parser


def main(argv=None) -> dict:
    args = build_parser().parse_args(argv)
    shapes = replace(
        StepShapes(),
        **{name: getattr(args, name) for name in ("batch_size", "image_size", "head_width", "head_depth")},
        diffusion_batch_mul=args.diffusion_batch_mul,
        student_name=args.student_name,
    )
    results = {}
    for variant in args.variants.split(","):
        results[variant] = benchmark(shapes, StepOptions.from_variant(variant), args.repeats, device=args.device)
        print(format_markdown({variant: results[variant]}), flush=True)
        if args.output:  # after each variant: a long run keeps what it measured
            write_results(args.output, "step_speed", results, format_markdown(results))
    return results


if __name__ == "__main__":
    main()
