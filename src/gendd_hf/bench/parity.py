"""Side by side with the official GenDD code: both implementations trained on the same work, on a CPU.

`python -m gendd_hf.bench.parity --reference_dir PATH` takes a local checkout of the official repository
(github.com/jiequancui/Generative-Distribution-Distillation, MIT; the user's own copy, never vendored here) and, for
each seed, trains

- the official `DiffModel` (stage 2) of `GenDD_cifar/`, wrapped around a timm student, with the official optimizer
  groups (`param_groups_setup`) and beta2 schedule (`helper.loops.beta2_schedule_cos`), no gradient clipping, and
- `GenDDForImageClassification` through `GenDDTrainer` with its defaults,

on the same teacher outputs (timm `resnet10t` on Fashion-MNIST, computed once), the same student initialisation,
the same batches in the same order, the same learning-rate schedule (cosine with warm-up) and the same number of
steps. Each arm draws its own training noise (timesteps, noise, mixup, dropout) from its own generators. It then
scores both paths of both models: the probe on the whole test set, the sampled path (64 DDPM steps, guidance 2, 5
samples; the official `forward_test_stage2`) on the first `sampled_eval_size` test images. gendd_hf's sampled path
is scored twice on the same noise: with the official sampler (no clamp; the parity comparison) and with its default
first-step clamp (`GenDDSamplingConfig.clamp_first_step`, a measured deviation; reported beside it).

Writes `parity.json` (settings, per-seed numbers, summary), `parity.md` and `per_image.safetensors` (each arm's
per-image correctness, for the paired comparison) to `--output_dir` (default `results/parity`). Target:
`|mean difference| <= max(0.5 point, one std)` on the probe and on the sampled path, std being the larger seed-to-seed
standard deviation of the two arms; each difference also gets a paired bootstrap 95% interval over the images of all
seeds.
"""

import argparse
import contextlib
import copy
import json
import math
import sys
import time
import types
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import get_cosine_schedule_with_warmup

from ..configuration_gendd import GenDDConfig, GenDDSamplingConfig
from ..metrics.statistics import paired_bootstrap
from ..modeling_gendd import GenDDForImageClassification
from ..trainer import GenDDTrainer
from .fashion_mnist import BenchSettings, make_logger, predict, prepare, top1, train_set, training_args


TOLERANCE = 0.5  # points; the target is max(TOLERANCE, one std)
# Summary rows: (path key, arm compared with the official arm's `sampled_top1`/`probe_top1`, label). The third row is
# gendd_hf's default sampler (first-step clamp) against the official sampler: a deviation, reported, not the target.
PATHS = (
    ("probe_top1", "probe_top1", "probe"),
    ("sampled_top1", "sampled_top1", "sampled (official sampler, no clamp)"),
    ("default_sampled_top1", "sampled_top1", "sampled (gendd_hf default: first-step clamp)"),
)


@dataclass
class ParitySettings:
    """The work both implementations do; stored in `parity.json`."""

    train_size: int = 20000
    teacher_epochs: float = 1.0
    epochs: float = 2.0
    batch_size: int = 256
    learning_rate: float = 2e-3
    warmup_ratio: float = 0.05
    weight_decay: float = 0.05
    token_dim: int = 64
    head_width: int = 256
    head_depth: int = 3
    diffusion_batch_mul: int = 2
    contraction: float = 0.9
    feature_mixup_beta: float = 1.0
    cond_drop_prob: float = 0.2
    num_inference_steps: int = 64
    guidance_scale: float = 2.0
    num_samples: int = 5
    sampled_eval_size: int = 1000
    seeds: tuple[int, ...] = (0, 1, 2)
    bf16: bool = False  # gendd_hf's arm trains in bfloat16 autocast (the official one stays in float32)

    @property
    def steps(self) -> int:
        return math.ceil(self.epochs * self.train_size / self.batch_size)

    def bench_settings(self) -> BenchSettings:
        """The benchmark's settings for the data, the teacher and the training arguments (float32: the teacher is the
        same with and without `bf16`, which only gendd_hf's arm takes)."""
        return replace(
            BenchSettings(),
            train_size=self.train_size,
            teacher_epochs=self.teacher_epochs,
            batch_size=self.batch_size,
            learning_rate=self.learning_rate,
            warmup_ratio=self.warmup_ratio,
            weight_decay=self.weight_decay,
            bf16=False,
        )


# ---- the official code, imported from the user's checkout -----------------------------------------------------------
@dataclass
class Reference:
    """What the harness uses of the official code."""

    DiffModel: type
    param_groups_setup: types.FunctionType
    beta2_schedule_cos: types.FunctionType


def load_reference(reference_dir: str | Path) -> Reference:
    """Import `DiffModel`, `param_groups_setup` and `beta2_schedule_cos` from `reference_dir/GenDD_cifar`.

    `train_student_gendd.py` imports `tensorboard_logger` at the top; a stand-in module is registered when it is not
    installed (nothing here logs to it).
    """
    code = Path(reference_dir) / "GenDD_cifar"
    needed = [
        "models/diff_model.py",
        "diffloss.py",
        "diffusion/gaussian_diffusion.py",
        "helper/loops.py",
        "train_student_gendd.py",
    ]
    missing = [name for name in needed if not (code / name).is_file()]
    if missing:
        raise FileNotFoundError(
            f"--reference_dir {str(reference_dir)!r} is not a checkout of the official GenDD repository: "
            f"{', '.join(str(code / m) for m in missing)} missing. Clone "
            "https://github.com/jiequancui/Generative-Distribution-Distillation and pass its root folder."
        )
    sys.path.insert(0, str(code))
    sys.modules.setdefault("tensorboard_logger", types.ModuleType("tensorboard_logger"))
    from helper.loops import beta2_schedule_cos
    from models.diff_model import DiffModel
    from train_student_gendd import param_groups_setup

    return Reference(DiffModel, param_groups_setup, beta2_schedule_cos)


@contextlib.contextmanager
def cuda_calls_stay_on_cpu():
    """The official sampler moves its noise with `.cuda()`; on a machine without a GPU that call returns the tensor."""
    if torch.cuda.is_available():
        yield
        return
    original = torch.Tensor.cuda
    torch.Tensor.cuda = lambda self, *args, **kwargs: self
    try:
        yield
    finally:
        torch.Tensor.cuda = original


class ReferenceStudent(nn.Module):
    """A timm student in the interface of the official models: `forward(x, is_feat=True)` returns `([feature],
    logits)`, and `fc` is the linear classifier (the probe)."""

    def __init__(self, backbone: nn.Module, fc: nn.Linear):
        super().__init__()
        self.backbone = backbone
        self.fc = fc

    def forward(self, x, is_feat=False, preact=False):
        feature = self.backbone(x)
        logits = self.fc(feature)
        return ([feature], logits) if is_feat else logits


# ---- the two arms ---------------------------------------------------------------------------------------------------
def our_model(settings: ParitySettings, teacher) -> GenDDForImageClassification:
    model = GenDDForImageClassification(
        GenDDConfig(
            student_name="test_resnet",
            student_kwargs={"in_chans": 1},
            teacher_feature_dim=teacher.feature_dim,
            token_dim=settings.token_dim,
            head_width=settings.head_width,
            head_depth=settings.head_depth,
            diffusion_batch_mul=settings.diffusion_batch_mul,
            contraction=settings.contraction,
            feature_mixup_beta=settings.feature_mixup_beta,
            cond_drop_prob=settings.cond_drop_prob,
            num_labels=teacher.num_classes,
        )
    )
    model.set_teacher_classifier(teacher.classifier_weight, teacher.classifier_bias)
    model.sampling_config = GenDDSamplingConfig(
        num_inference_steps=settings.num_inference_steps,
        guidance_scale=settings.guidance_scale,
        num_samples=settings.num_samples,
    )
    return model


def batch_order(num_rows: int, settings: ParitySettings, seed: int) -> torch.Tensor:
    """The rows of every batch of the run, in order: one permutation per epoch, cut to `steps` full batches."""
    generator = torch.Generator().manual_seed(seed)
    epochs = math.ceil(settings.steps * settings.batch_size / num_rows)
    order = torch.cat([torch.randperm(num_rows, generator=generator) for _ in range(epochs)])
    return order[: settings.steps * settings.batch_size]


def train_ours(model, train, order, settings, seed, output_dir):
    args = training_args(
        output_dir,
        "gendd",
        1.0,
        seed,
        settings.bench_settings(),
        train_sampling_strategy="sequential",
        bf16=settings.bf16,
    )
    GenDDTrainer(model, args, train_dataset=train.subset(order)).train()


def train_reference(reference: Reference, model, train, order, settings, seed, output_dir):
    """The official stage-2 step (`diff_loss + CE(probe)`, AdamW on `param_groups_setup`'s groups with betas (0.9,
    0.95) and beta2 on `beta2_schedule_cos`), on our batches and learning-rate schedule."""
    options = types.SimpleNamespace(
        weight_decay=settings.weight_decay, diff_weight_decay=0.0, adam_beta_min=0.95, adam_beta_max=0.999
    )
    optimizer = torch.optim.AdamW(
        reference.param_groups_setup(nn.ModuleList([model]), options),
        betas=(0.9, options.adam_beta_min),
        lr=settings.learning_rate,
    )
    warmup = training_args(output_dir, "gendd", 1.0, seed, settings.bench_settings()).get_warmup_steps(settings.steps)
    scheduler = get_cosine_schedule_with_warmup(optimizer, warmup, settings.steps)
    criterion = nn.CrossEntropyLoss()
    model.train()
    for step in range(settings.steps):
        rows = order[step * settings.batch_size : (step + 1) * settings.batch_size]
        batch = train.subset(rows).columns
        diff_loss, logits = model(batch["pixel_values"], y=batch["labels"], target_feature=batch["teacher_features"])
        loss = diff_loss + criterion(logits, batch["labels"])
        optimizer.zero_grad()
        loss.backward()
        beta2 = reference.beta2_schedule_cos(step, settings.steps - 1, options)
        for group in optimizer.param_groups:
            group["betas"] = (group["betas"][0], beta2)
        optimizer.step()
        scheduler.step()


@torch.no_grad()
def reference_logits(model, pixels: torch.Tensor, sampled: bool, batch_size: int = 500) -> torch.Tensor:
    """The official model's logits: `forward_test_stage2`'s sampled ones, or its probe's (`model.fc`)."""
    model.eval()
    logits = []
    with cuda_calls_stay_on_cpu():
        for i in range(0, len(pixels), batch_size):
            batch = pixels[i : i + batch_size]
            logits.append(model(batch)[0] if sampled else model.model(batch))
    return torch.cat(logits)


def run_seed(
    reference: Reference, data, teacher, settings: ParitySettings, seed: int, output_dir: Path, log
) -> tuple[dict, dict[str, torch.Tensor]]:
    """Train and score both arms on one seed: the record of `parity.json` and each arm's per-image correctness
    (`"official/probe_top1"`, ..., `"gendd_hf/default_sampled_top1"`, boolean)."""
    train = train_set(data, "train")
    order = batch_order(len(train), settings, seed)
    test_pixels, test_labels = data["test_pixels"], data["test_labels"]
    subset = slice(0, settings.sampled_eval_size)

    torch.manual_seed(seed)
    ours = our_model(settings, teacher)
    # The same student and probe initialisation for the official model.
    student = ReferenceStudent(copy.deepcopy(ours.student), copy.deepcopy(ours.probe))
    classifier = nn.Linear(teacher.feature_dim, teacher.num_classes)
    classifier.load_state_dict({"weight": teacher.classifier_weight, "bias": teacher.classifier_bias})
    torch.manual_seed(seed)
    np.random.seed(seed)  # the official feature mixup draws from numpy
    official = reference.DiffModel(
        model=student,
        classifier=classifier,
        feature_dim=ours.student_feature_dim,
        target_dim=teacher.feature_dim,
        smooth=settings.contraction,
        num_sampling=settings.num_samples,
        stage="stage-2",
        beta=settings.feature_mixup_beta,
        diffloss_d=settings.head_depth,
        diffloss_w=settings.head_width,
        num_sampling_steps=str(settings.num_inference_steps),
        diffusion_batch_mul=settings.diffusion_batch_mul,
        token_dim=settings.token_dim,
        cond_drop_prob=settings.cond_drop_prob,
    )
    if settings.guidance_scale != 2.0:
        raise ValueError("The official sampler fixes guidance 2.0 (forward_test_stage2); keep guidance_scale=2.0.")

    record, correct = {"seed": seed}, {}
    for name, train_fn in (
        (
            "official",
            lambda: train_reference(
                reference, official, train, order, settings, seed, output_dir / f"official-seed{seed}"
            ),
        ),
        ("gendd_hf", lambda: train_ours(ours, train, order, settings, seed, output_dir / f"gendd_hf-seed{seed}")),
    ):
        torch.manual_seed(seed)
        start = time.perf_counter()
        train_fn()
        train_seconds = time.perf_counter() - start
        torch.manual_seed(seed)
        start = time.perf_counter()
        if name == "official":
            logits = {
                "probe_top1": reference_logits(official, test_pixels, sampled=False),
                "sampled_top1": reference_logits(official, test_pixels[subset], sampled=True),
            }
        else:
            logits = {
                "probe_top1": predict(ours, test_pixels, "probe"),
                "sampled_top1": predict(ours, test_pixels[subset], "sampled", seed=seed, clamp_first_step=False),
                "default_sampled_top1": predict(ours, test_pixels[subset], "sampled", seed=seed),
            }
        record[name] = {}
        for path, path_logits in logits.items():
            correct[f"{name}/{path}"] = path_logits.argmax(-1) == test_labels[: len(path_logits)]
            record[name][path] = 100 * top1(path_logits, test_labels[: len(path_logits)])
        record[name] |= {"train_seconds": train_seconds, "eval_seconds": time.perf_counter() - start}
        log(f"seed {seed} {name:8s}: " + ", ".join(f"{k} {v:.2f}" for k, v in record[name].items()))
    return record, correct


# ---- the fixture of tests/test_parity_fixture.py -----------------------------------------------------------------
FIXTURE_SIZES = dict(token_dim=4, num_tokens=3, condition_dim=6, width=16, depth=2)
# The official head's parameter names -> `DiffusionHead`'s.
HEAD_NAMES = {
    "net.time_embed.": "time_embed.",
    "net.cond_embed.": "condition_embed.",
    "net.pos_embed.weight": "position_embed",
    "net.input_proj.": "input_proj.",
    "net.res_blocks.": "blocks.",
    "net.final_layer.": "final_layer.",
}


def head_state_dict(official_state: dict) -> dict:
    """The official `DiffLoss` weights under `DiffusionHead`'s names (its `condition_norm` is the official
    `cls_projector`, outside `DiffLoss`)."""
    renamed = {}
    for name, value in official_state.items():
        prefix = next(p for p in HEAD_NAMES if name.startswith(p))
        renamed[HEAD_NAMES[prefix] + name[len(prefix) :]] = value
    return renamed


@torch.no_grad()
def record_fixture(reference_dir: Path, path: Path, seed: int = 0) -> dict:
    """Run the official `DiffLoss` with fixed random weights and save its numbers for the CI parity test.

    Records, for given `x_start`, timesteps (0, 999 and others) and noise, the per-row training loss and its MSE
    and VLB terms (`GaussianDiffusion.training_losses`), and one 64-step guided sampling chain (`DiffLoss.sample`,
    guidance 2.0): the starting noise, the noise drawn at each step and the output. Every parameter is drawn from
    N(0, 0.3^2) (the official initialisation zeros the adaLN and output layers), so every path of the head counts.
    """
    sys.path.insert(0, str(Path(reference_dir) / "GenDD_cifar"))
    load_reference(reference_dir)
    from diffloss import DiffLoss

    torch.manual_seed(seed)
    sizes = FIXTURE_SIZES
    diffloss = DiffLoss(
        target_channels=sizes["token_dim"],
        z_channels=sizes["condition_dim"],
        depth=sizes["depth"],
        width=sizes["width"],
        num_sampling_steps="64",
        num_chunks=sizes["num_tokens"],
    )
    for parameter in diffloss.parameters():
        parameter.copy_(0.3 * torch.randn_like(parameter))
    k, n = sizes["token_dim"], sizes["num_tokens"]

    rows = 8
    loss_inputs = {
        "loss_x_start": torch.randn(rows, k),
        "loss_timesteps": torch.tensor([0, 1, 2, 250, 500, 750, 998, 999]),
        "loss_noise": torch.randn(rows, k),
        "loss_condition": torch.randn(rows, sizes["condition_dim"]),
        "loss_positions": torch.arange(rows) % n,
    }
    terms = diffloss.train_diffusion.training_losses(
        diffloss.net,
        loss_inputs["loss_x_start"],
        loss_inputs["loss_timesteps"],
        model_kwargs=dict(c=loss_inputs["loss_condition"], chunk_idx=loss_inputs["loss_positions"]),
        noise=loss_inputs["loss_noise"],
    )

    batch = 2  # conditions of the chain; rows (condition, token), unconditional copies appended for guidance
    condition = torch.randn(batch, sizes["condition_dim"])
    z = condition.unsqueeze(1).expand(batch, n, -1).reshape(batch * n, -1)
    positions = torch.arange(n).repeat(batch)
    drawn = []
    randn, randn_like = torch.randn, torch.randn_like

    def recording(draw):
        def wrapped(*args, **kwargs):
            drawn.append(draw(*args, **kwargs))
            return drawn[-1]

        return wrapped

    torch.randn, torch.randn_like = recording(randn), recording(randn_like)
    try:
        with cuda_calls_stay_on_cpu():
            chain = diffloss.sample(torch.cat([z, torch.zeros_like(z)]), torch.cat([positions, positions]), cfg=2.0)
    finally:
        torch.randn, torch.randn_like = randn, randn_like
    half = batch * n  # the unconditional half of every draw is never used
    fixture = {
        **head_state_dict(diffloss.state_dict()),
        **loss_inputs,
        "loss": terms["loss"],
        "loss_mse": terms["mse"],
        "loss_vb": terms["vb"],
        "chain_condition": condition,
        "chain_initial_noise": drawn[0],
        "chain_step_noise": torch.stack([noise[:half] for noise in drawn[1:]]),
        "chain_output": chain[:half],
    }
    fixture = {name: value.contiguous() for name, value in fixture.items()}

    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(
        fixture,
        str(path),
        metadata={
            "produced_by": "python -m gendd_hf.bench.parity --reference_dir PATH --record_fixture " + str(path),
            "reference_commit": reference_commit(Path(reference_dir)),
            "seed": str(seed),
            **{name: str(value) for name, value in sizes.items()},
        },
    )
    return fixture


# ---- summary ----------------------------------------------------------------------------------------------------
def summarize(records: list[dict], correct: list[dict] | None = None) -> dict:
    """Per row of `PATHS`: each arm's mean and std over seeds, the mean difference (gendd_hf - official), the target
    `max(TOLERANCE, larger std)` and whether it is met; with `correct` (each seed's per-image correctness, as
    `run_seed` returns it), also the paired bootstrap 95% interval of the difference over the images of all seeds
    (`paired`, in points). Rows whose gendd_hf key no record has are left out."""
    summary = {}
    for path, official_path, _ in PATHS:
        if not all(path in r["gendd_hf"] for r in records):
            continue
        arms = {
            "official": np.array([r["official"][official_path] for r in records]),
            "gendd_hf": np.array([r["gendd_hf"][path] for r in records]),
        }
        std = {arm: float(values.std(ddof=1)) if len(values) > 1 else 0.0 for arm, values in arms.items()}
        difference = float(arms["gendd_hf"].mean() - arms["official"].mean())
        target = max(TOLERANCE, *std.values())
        summary[path] = {
            **{f"{arm}_mean": float(values.mean()) for arm, values in arms.items()},
            **{f"{arm}_std": value for arm, value in std.items()},
            "mean_difference": difference,
            "target": target,
            "met": abs(difference) <= target,
        }
        if correct is not None:
            ours = torch.cat([c[f"gendd_hf/{path}"] for c in correct])
            theirs = torch.cat([c[f"official/{official_path}"] for c in correct])
            paired = paired_bootstrap(ours.numpy(), theirs.numpy())
            summary[path]["paired"] = {k: 100 * paired[k] for k in ("difference", "low", "high")} | {
                "images": paired["images"]
            }
    return summary


def markdown(results: dict) -> str:
    settings, summary = results["settings"], results["summary"]
    lines = [
        f"Official GenDD code (`GenDD_cifar`, commit `{results['reference_commit']}`) and gendd_hf, trained side by "
        f"side on the same work: teacher timm `resnet10t` ({settings['teacher_epochs']:g} epoch on "
        f"{settings['train_size']:,} Fashion-MNIST images, {results['teacher_top1']:.2f} top-1), student timm "
        f"`test_resnet` with the same initialisation, {results['steps']} steps at batch {settings['batch_size']} in "
        f"the same order, AdamW lr {settings['learning_rate']:g} cosine, head width {settings['head_width']} depth "
        f"{settings['head_depth']} multiplier {settings['diffusion_batch_mul']}, lambda {settings['contraction']}. "
        f"Probe: all 10,000 test images; sampled ({settings['num_inference_steps']} steps, guidance "
        f"{settings['guidance_scale']:g}, {settings['num_samples']} samples): the first "
        f"{settings['sampled_eval_size']}."
        + (" gendd_hf's arm trained in bfloat16 autocast, the official one in float32." if settings["bf16"] else ""),
        "",
        "| seed | official probe | gendd_hf probe | official sampled | gendd_hf sampled (no clamp) | "
        "gendd_hf sampled (default clamp) |",
        "|---|---|---|---|---|---|",
    ]
    for record in results["records"]:
        ours = record["gendd_hf"]
        lines.append(
            f"| {record['seed']} | {record['official']['probe_top1']:.2f} | {ours['probe_top1']:.2f} | "
            f"{record['official']['sampled_top1']:.2f} | {ours['sampled_top1']:.2f} | "
            + (f"{ours['default_sampled_top1']:.2f} |" if "default_sampled_top1" in ours else "- |")
        )
    lines += [
        "",
        "| path | official | gendd_hf | difference | paired 95% CI (images x seeds) | target | met |",
        "|---|---|---|---|---|---|---|",
    ]
    labels = {path: label for path, _, label in PATHS}
    for path, entry in summary.items():
        paired = entry.get("paired")
        interval = f"{paired['low']:+.2f} to {paired['high']:+.2f} ({paired['images']:,})" if paired else "-"
        met = "yes" if entry["met"] else "no"
        met = met if path != "default_sampled_top1" else f"({met}; a deviation)"
        lines.append(
            f"| {labels[path]} | {entry['official_mean']:.2f} ± {entry['official_std']:.2f} | "
            f"{entry['gendd_hf_mean']:.2f} ± {entry['gendd_hf_std']:.2f} | {entry['mean_difference']:+.2f} | "
            f"{interval} | ±{entry['target']:.2f} | {met} |"
        )
    return "\n".join(lines) + "\n"


def reference_commit(reference_dir: Path) -> str:
    import subprocess

    result = subprocess.run(
        ["git", "-C", str(reference_dir), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
    )
    return result.stdout.strip() or "unknown"


def save_seed(settings: ParitySettings, runs_dir: Path, record: dict, correct: dict[str, torch.Tensor]) -> None:
    """Keep one finished seed (`runs/seed{N}.json` with the settings, `runs/seed{N}.safetensors`): a harness that is
    stopped and started again with the same settings skips it."""
    runs_dir.mkdir(parents=True, exist_ok=True)
    save_file({k: v.to(torch.uint8) for k, v in correct.items()}, str(runs_dir / f"seed{record['seed']}.safetensors"))
    (runs_dir / f"seed{record['seed']}.json").write_text(json.dumps({"settings": asdict(settings), "record": record}))


def finished_seed(settings: ParitySettings, runs_dir: Path, seed: int) -> tuple[dict, dict] | None:
    """The record and per-image correctness `save_seed` kept for `seed` under the same settings, else None."""
    saved = runs_dir / f"seed{seed}.json"
    if not saved.is_file() or not (runs_dir / f"seed{seed}.safetensors").is_file():
        return None
    kept = json.loads(saved.read_text())
    if kept["settings"] != json.loads(json.dumps(asdict(settings))):
        return None
    return kept["record"], {k: v.bool() for k, v in load_file(str(runs_dir / f"seed{seed}.safetensors")).items()}


def run(reference_dir: Path, settings: ParitySettings, output_dir: Path, cache_dir: Path) -> dict:
    log = make_logger()
    reference = load_reference(reference_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    data, teacher = prepare(settings.bench_settings(), cache_dir, log)
    records, correct = [], []
    for seed in settings.seeds:
        record, seed_correct = finished_seed(settings, output_dir / "runs", seed) or run_seed(
            reference, data, teacher, settings, seed, output_dir / "runs", log
        )
        save_seed(settings, output_dir / "runs", record, seed_correct)
        records.append(record)
        correct.append(seed_correct)
    results = {
        "settings": asdict(settings),
        "steps": settings.steps,
        "reference_commit": reference_commit(reference_dir),
        "teacher_top1": 100 * top1(data["teacher_test_logits"], data["test_labels"]),
        "records": records,
        "summary": summarize(records, correct),
    }
    (output_dir / "parity.json").write_text(json.dumps(results, indent=2))
    save_file(
        {f"seed{r['seed']}/{key}": value.to(torch.uint8) for r, c in zip(records, correct) for key, value in c.items()},
        str(output_dir / "per_image.safetensors"),
    )
    table = markdown(results)
    (output_dir / "parity.md").write_text(table)
    print("\n" + table)
    return results


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reference_dir", required=True, help="root of a checkout of the official GenDD repository")
    parser.add_argument("--output_dir", default="results/parity")
    parser.add_argument("--cache_dir", default="cache/fashion_mnist", help="where the trained teacher is kept")
    parser.add_argument("--seeds", type=int, nargs="+", default=None)
    parser.add_argument("--train_size", type=int, default=None, help="training images (default 20,000)")
    parser.add_argument("--sampled_eval_size", type=int, default=None, help="test images of the sampled path")
    parser.add_argument("--bf16", action="store_true", help="train gendd_hf's arm in bfloat16 autocast")
    parser.add_argument(
        "--record_fixture",
        default=None,
        help="only record the official DiffLoss's numbers for the CI test into this safetensors file",
    )
    args = parser.parse_args(argv)
    if args.record_fixture:
        return record_fixture(Path(args.reference_dir), Path(args.record_fixture))
    settings = ParitySettings()
    overrides = {
        "seeds": tuple(args.seeds) if args.seeds else None,
        "train_size": args.train_size,
        "sampled_eval_size": args.sampled_eval_size,
        "bf16": args.bf16 or None,
    }
    settings = replace(settings, **{k: v for k, v in overrides.items() if v is not None})
    return run(Path(args.reference_dir), settings, Path(args.output_dir), Path(args.cache_dir))


if __name__ == "__main__":
    main()
