"""When does GenDD beat KD? The Fashion-MNIST benchmark's budget curve, paired on the same images, resumable.

`python -m gendd_hf.bench.budget` (also `python -m gendd_hf.bench.fashion_mnist budget`, `make bench-budget`) trains
kd, dkd and GenDD's full recipe (`gendd_full`) at 1x, 2x, 4x, 8x and 16x the bench's optimizer steps (469 at batch 256),
with three seeds at 4x, 8x and 16x for kd and gendd_full, and the no-label pair (gendd_unsup, kl_unsup) at 1x, 4x and
16x on the Fashion-MNIST images (labels unused) and on the non-target digits. Every other setting is the bench's
(`BenchSettings`), except the teacher (`BUDGET_TEACHER`: trained with random crop + flip, so that it stays above the
students; `--bench_teacher` takes the bench's) and `calibration_size` training images held out of the students'
training, on which each inference path's temperature is fitted.

Runs go in order of what they tell: every seed-0 point first (the labelled curve, then the no-label pair), then the
extra seeds. Each finished run is appended to `runs.jsonl` with the fingerprint of everything that determines it, and
its per-image correctness is saved beside it (`per_image/<run>-<fingerprint>.safetensors`, uint8); started again, the
command skips the finished runs, so an interrupted run loses at most the run in progress. `--report_only` rebuilds the
report from the finished runs.

Scoring: the probe path of every student on all test images; GenDD's sampled path (the paper's sampler) on the first
`sampled_eval_size` (2,000), where every probe is also scored. `budget.json` / `budget.md` hold the curve (mean and std
over seeds), the teacher's margin over the best student at every budget, the paired differences with 95% bootstrap
intervals over images (per seed; mean and std across seeds), calibration (temperature, ECE and NLL before and after it)
and error detection (AUROC of a wrong top-1 from the max softmax, and from the spread of GenDD's samples);
`budget_steps.png` and `budget_seconds.png` plot accuracy against optimizer steps and against training seconds.
"""

import argparse
import json
import math
import os
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np


BUDGET_METHODS = ("kd", "dkd", "gendd_full")
NO_LABEL_METHODS = ("gendd_unsup", "kl_unsup")
SAMPLED_METHODS = ("gendd_full", "gendd_unsup")  # the budget's methods with a sampled path
CALIBRATED_METHODS = ("kd", "dkd", "gendd_full")
SETTINGS = ("fashion_mnist", "digits_nontarget")

# The budget curve's teacher: the bench's resnet10t trained with random crop + flip (`CropFlip`) for 30 epochs (93.52,
# results/fashion_mnist_budget/teacher.json).
# Without augmentation it plateaus at 92.51, about 0.4 points above the 8x students; timm's resnet18, trained the same
# way, reached only 92.32 (docs/benchmarks.md). The bench itself keeps its own teacher.
BUDGET_TEACHER = dict(teacher_name="resnet10t", teacher_augmentation=True, teacher_epochs=30.0)
# Where the budget's teacher is cached: in the repository (.gitignore keeps its weights and curve, not its training
# folders), so that a fresh clone continues the curve with the same teacher instead of training it again for hours.
BUDGET_CACHE_DIR = "results/fashion_mnist_budget/cache"
# How far the teacher should stay above its best student (issue 22): below it, the curve measures learning from the
# labels more than distillation. The report states the margin at every budget.
TEACHER_MARGIN = 0.015

# (name, method and path of A, method and path of B, scored images): the paired comparisons, A minus B, at every
# (setting, multiplier, seed) where both runs are finished. "subset": the first `sampled_eval_size` test images.
COMPARISONS = (
    ("gendd_full sampled - kd", "fashion_mnist", ("gendd_full", "sampled"), ("kd", "probe"), "subset"),
    ("gendd_full sampled - dkd", "fashion_mnist", ("gendd_full", "sampled"), ("dkd", "probe"), "subset"),
    ("gendd_full sampled - probe", "fashion_mnist", ("gendd_full", "sampled"), ("gendd_full", "probe"), "subset"),
    ("gendd_full probe - kd", "fashion_mnist", ("gendd_full", "probe"), ("kd", "probe"), "all"),
    ("gendd_unsup sampled - kl_unsup", "fashion_mnist", ("gendd_unsup", "sampled"), ("kl_unsup", "probe"), "subset"),
    (
        "gendd_unsup sampled - kl_unsup",
        "digits_nontarget",
        ("gendd_unsup", "sampled"),
        ("kl_unsup", "probe"),
        "subset",
    ),
)


@dataclass(frozen=True)
class BudgetSettings:
    """The budget's plan and scoring; the training settings are the bench's `BenchSettings`."""

    multipliers: tuple[int, ...] = (1, 2, 4, 8, 16)
    methods: tuple[str, ...] = BUDGET_METHODS
    seeds: tuple[int, ...] = (0, 1, 2)
    multi_seed_multipliers: tuple[int, ...] = (4, 8, 16)
    multi_seed_methods: tuple[str, ...] = ("kd", "gendd_full")
    no_label_methods: tuple[str, ...] = NO_LABEL_METHODS
    no_label_multipliers: tuple[int, ...] = (1, 4, 16)
    no_label_settings: tuple[str, ...] = SETTINGS
    sampled_eval_size: int = 2000  # test images of the sampled path (and of the paired comparisons with it)
    calibration_size: int = 5000  # the last training images, held out of the students' training
    calibration_sampled_size: int = 500  # of which the sampled path's temperature sees the first (it costs 0.1 s each)
    bootstrap_resamples: int = 10_000


BUDGET_QUICK = dict(
    multipliers=(1, 2),
    multi_seed_multipliers=(2,),
    seeds=(0, 1),
    no_label_multipliers=(1,),
    sampled_eval_size=100,
    calibration_size=500,
    calibration_sampled_size=50,
    bootstrap_resamples=1000,
)


@dataclass(frozen=True)
class BudgetRun:
    """One training run of the plan."""

    setting: str
    method: str
    multiplier: int
    seed: int

    @property
    def name(self) -> str:
        return f"{self.setting}-{self.method}-x{self.multiplier}-seed{self.seed}"


def plan_runs(budget: BudgetSettings) -> list[BudgetRun]:
    """Every run, most informative first: the first seed's labelled curve from the smallest budget up, then its
    no-label pair, then the other seeds at `multi_seed_multipliers`."""
    first, *others = budget.seeds
    runs = [BudgetRun("fashion_mnist", m, x, first) for x in budget.multipliers for m in budget.methods]
    runs += [
        BudgetRun(setting, m, x, first)
        for setting in budget.no_label_settings
        for x in budget.no_label_multipliers
        for m in budget.no_label_methods
    ]
    runs += [
        BudgetRun("fashion_mnist", m, x, seed)
        for seed in others
        for x in budget.multi_seed_multipliers
        for m in budget.multi_seed_methods
    ]
    return runs


def restrict(runs: list[BudgetRun], **allowed) -> list[BudgetRun]:
    """The runs whose fields are in `allowed[field]` for every field given (`None`: any)."""
    return [run for run in runs if all(v is None or getattr(run, k) in v for k, v in allowed.items())]


# Fields of `BenchSettings` that only the bench's own plan reads (its seeds, rows and long-tailed split).
BENCH_PLAN_FIELDS = (
    "seeds",
    "methods",
    "nontarget_methods",
    "lt_methods",
    "lt_imbalance_ratio",
    "lt_n_max",
    "one_pass",
)


def run_fingerprint(run: BudgetRun, bench_settings, budget: BudgetSettings, teacher_file: str) -> str:
    """What determines a run's numbers: the run, the bench's settings (but its plan), the scoring sizes and the
    teacher's weights. A field added to `BenchSettings` changes it, and the runs are trained again."""
    from .fashion_mnist import fingerprint

    bench = {name: value for name, value in asdict(bench_settings).items() if name not in BENCH_PLAN_FIELDS}
    scoring = {
        name: getattr(budget, name) for name in ("sampled_eval_size", "calibration_size", "calibration_sampled_size")
    }
    return fingerprint({"run": asdict(run), "bench": bench, "scoring": scoring, "teacher": teacher_file})


def per_image_path(output_dir: Path, run: BudgetRun, fingerprint: str) -> Path:
    return output_dir / "per_image" / f"{run.name}-{fingerprint}.safetensors"


def load_finished(output_dir: Path) -> dict[str, dict]:
    """The finished runs of `runs.jsonl` by fingerprint: lines that parse and whose per-image file exists (a line cut
    short by a kill is skipped)."""
    path, finished = output_dir / "runs.jsonl", {}
    if not path.exists():
        return finished
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        run = BudgetRun(**record["run"])
        if per_image_path(output_dir, run, record["fingerprint"]).exists():
            finished[record["fingerprint"]] = record
    return finished


def append_record(output_dir: Path, record: dict, per_image: dict[str, np.ndarray]) -> None:
    """Save the per-image arrays (written whole, then renamed), then append the record to `runs.jsonl` and flush it to
    disk: a record is only ever there with its arrays."""
    from safetensors.numpy import save_file

    path = per_image_path(output_dir, BudgetRun(**record["run"]), record["fingerprint"])
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    save_file({name: np.ascontiguousarray(array, dtype=np.uint8) for name, array in per_image.items()}, str(partial))
    os.replace(partial, path)
    results = output_dir / "runs.jsonl"
    text = results.read_bytes() if results.exists() else b""
    cut_short = bool(text) and not text.endswith(b"\n")  # the last line, cut short by a kill: end it
    with open(results, "a", encoding="utf-8") as file:
        file.write(("\n" if cut_short else "") + json.dumps(record) + "\n")
        file.flush()
        os.fsync(file.fileno())


def load_per_image(output_dir: Path, record: dict) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    return load_file(str(per_image_path(output_dir, BudgetRun(**record["run"]), record["fingerprint"])))


def path_scores(logits, labels, temperature: float, sample_logits=None) -> dict:
    """ECE and NLL of one path's logits at temperature 1 and at `temperature`; AUROC of predicting a wrong top-1 from
    the max softmax (and, given the per-sample logits `(N, S, C)`, from the spread of the samples' softmax: its
    variance over the samples, summed over the classes)."""
    from ..metrics.statistics import auroc, expected_calibration_error, negative_log_likelihood, softmax

    logits, labels = np.asarray(logits, dtype=np.float64), np.asarray(labels)
    wrong = logits.argmax(-1) != labels
    scores = {"temperature": temperature}
    for suffix, t in (("before", 1.0), ("after", temperature)):
        probabilities = softmax(logits, t)
        scores[f"ece_{suffix}"] = expected_calibration_error(probabilities, labels)
        scores[f"nll_{suffix}"] = negative_log_likelihood(logits, labels, t)
        scores[f"auroc_max_softmax_{suffix}"] = auroc(-probabilities.max(-1), wrong)
    if sample_logits is not None:
        spread = softmax(np.asarray(sample_logits, dtype=np.float64)).var(axis=1).sum(-1)
        scores["auroc_spread"] = auroc(spread, wrong)
    return scores


class BudgetContext:
    """The data, teacher and training sets shared by the runs of one invocation."""

    def __init__(self, bench_settings, budget: BudgetSettings, output_dir: Path, cache_dir: Path, log):
        from .fashion_mnist import prepare, top1, train_set

        self.settings, self.budget, self.output_dir, self.log = bench_settings, budget, output_dir, log
        self.data, self.teacher = prepare(bench_settings, cache_dir, log)
        self.teacher_info = teacher_info(bench_settings, cache_dir, self.data["teacher_test_logits"], self.data)
        self.teacher_file = self.teacher_info["file"]
        subset = slice(0, budget.sampled_eval_size)
        self.teacher_info["test_top1_on_subset"] = top1(
            self.data["teacher_test_logits"][subset], self.data["test_labels"][subset]
        )
        full = train_set(self.data, "train")
        kept = len(full) - budget.calibration_size
        if kept <= 0:
            raise ValueError(f"calibration_size={budget.calibration_size} leaves no training image of {len(full)}.")
        self.base_steps = math.ceil(bench_settings.epochs * len(full) / bench_settings.batch_size)
        self.train_sets = {
            "fashion_mnist": full.subset(np.arange(kept)),
            "digits_nontarget": train_set(self.data, "digits"),
        }
        self.calibration_pixels = self.data["train_pixels"][kept:]
        self.calibration_labels = self.data["train_labels"][kept:]


def train_and_score(run: BudgetRun, context: BudgetContext) -> tuple[dict, dict[str, np.ndarray]]:
    """Train one run's student and score it: `(record, per-image correctness)`."""
    from ..calibration import path_logits_of_images
    from .fashion_mnist import top1, train_student

    settings, budget, data = context.settings, context.budget, context.data
    train, steps = context.train_sets[run.setting], context.base_steps * run.multiplier
    labels, subset = data["test_labels"], slice(0, budget.sampled_eval_size)
    start = time.perf_counter()
    model = train_student(
        run.method, run.seed, train, steps, settings, context.teacher, context.output_dir / "runs" / run.setting
    )
    record = {
        "steps": steps,
        "epochs": steps * settings.batch_size / len(train),
        "train_seconds": time.perf_counter() - start,
        "load_average": os.getloadavg()[0],  # above ~2 on 2 cores: the run shared the machine
    }
    probe = path_logits_of_images(model, data["test_pixels"], "probe")
    per_image = {"probe_correct": (probe.argmax(-1) == labels).numpy()}
    record["probe_top1"] = top1(probe, labels)
    record["probe_top1_on_subset"] = top1(probe[subset], labels[subset])
    sampled = None
    if run.method in SAMPLED_METHODS:
        start = time.perf_counter()
        sampled, sample_logits = path_logits_of_images(
            model,
            data["test_pixels"][subset],
            "sampled",
            show_progress=True,
            return_sample_logits=True,
            seed=run.seed,
        )
        record["sampled_seconds"] = time.perf_counter() - start
        record["sampled_top1"] = top1(sampled, labels[subset])
        per_image["sampled_correct"] = (sampled.argmax(-1) == labels[subset]).numpy()
    if run.method in CALIBRATED_METHODS and run.setting == "fashion_mnist":
        temperature = held_out_temperature(model, "probe", context, len(context.calibration_labels), run.seed)
        record["calibration"] = {"probe": path_scores(probe, labels, temperature)}
        if sampled is not None:
            temperature = held_out_temperature(model, "sampled", context, budget.calibration_sampled_size, run.seed)
            record["calibration"]["sampled"] = path_scores(sampled, labels[subset], temperature, sample_logits)
    return record, per_image


def held_out_temperature(model, path: str, context: BudgetContext, size: int, seed: int) -> float:
    """The temperature of `path` fitted on the first `size` held-out training images (`calibrate_model`)."""
    from ..calibration import calibrate_model

    held_out = (context.calibration_pixels[:size], context.calibration_labels[:size])
    return calibrate_model(model, [held_out], [path], seed=seed)["temperatures"][path]


def expected_seconds(run: BudgetRun, records: list[dict], base_steps: int) -> float:
    """What `run` should take, for the budget's ETA: the finished runs' training seconds per step for its method (of
    every method where none of its own has finished) times its steps, plus their mean scoring seconds, which do not
    grow with the steps. A GenDD step costs about 3.5 KD steps here, so counting steps alone misleads. Without
    finished runs: its steps."""
    steps = base_steps * run.multiplier
    same = [r for r in records if r["run"]["method"] == run.method] or records
    if not same:
        return float(steps)
    per_step = np.mean([r["train_seconds"] / (base_steps * r["run"]["multiplier"]) for r in same])
    scoring = np.mean([r["run_seconds"] - r["train_seconds"] for r in same])
    return float(per_step * steps + scoring)


def run_budget(
    bench_settings,
    budget: BudgetSettings,
    output_dir: Path,
    cache_dir: Path,
    only: dict | None = None,
    report_only: bool = False,
) -> dict:
    """Train the runs of the plan (restricted by `only`: `setting`, `method`, `multiplier`, `seed` -> allowed values)
    that `runs.jsonl` does not hold yet, one at a time, appending each; then write the report of every finished run of
    these settings. Returns the report."""
    from ..progress import LogProgress
    from .fashion_mnist import make_logger

    output_dir.mkdir(parents=True, exist_ok=True)
    started, log = time.perf_counter(), make_logger()
    context = BudgetContext(bench_settings, budget, output_dir, cache_dir, log)
    plan = plan_runs(budget)
    runs = restrict(plan, **(only or {}))
    prints = {run: run_fingerprint(run, bench_settings, budget, context.teacher_file) for run in plan}
    finished = load_finished(output_dir)
    todo = [] if report_only else [run for run in runs if prints[run] not in finished]
    log(f"budget: {len(runs) - len(todo)} of {len(runs)} runs finished already; {len(todo)} to train")
    known = [finished[prints[run]] for run in plan if prints[run] in finished]
    work = {run: max(1, round(expected_seconds(run, known, context.base_steps))) for run in runs}
    progress = LogProgress(
        total=sum(work.values()),
        desc="budget (seconds estimated from the finished runs)" if known else "budget (steps)",
        unit="s" if known else "step",
        initial=sum(work[run] for run in runs if run not in todo),
        every_percent=0,
    )
    for index, run in enumerate(todo, 1):
        log(f"run {index}/{len(todo)}: {run.name} ({context.base_steps * run.multiplier} steps)")
        start = time.perf_counter()
        record, per_image = train_and_score(run, context)
        record = {"run": asdict(run), "fingerprint": prints[run], **record, "run_seconds": time.perf_counter() - start}
        append_record(output_dir, record, per_image)
        finished[prints[run]] = record
        log(f"{run.name}: " + ", ".join(f"{k} {v:.4f}" for k, v in record.items() if isinstance(v, float)))
        progress.update(work[run])
    progress.close()
    records = [finished[prints[run]] for run in plan if prints[run] in finished]  # the report: the whole plan's
    report = build_report(records, output_dir, budget, context.base_steps, context.teacher_info)
    report.update(
        bench_teacher=bench_teacher_info(),
        settings=asdict(bench_settings),
        budget_settings=asdict(budget),
        wall_seconds_this_invocation=time.perf_counter() - started,
    )
    write_report(report, output_dir, log)
    return report


def bench_teacher_info() -> dict:
    """Which teacher the bench (`make bench`, the 1x point of its table) uses: `BenchSettings`' own."""
    from .fashion_mnist import BenchSettings

    bench = BenchSettings()
    return {"name": bench.teacher_name, "epochs": bench.teacher_epochs, "augmentation": "none"}


def mean_std(values) -> dict:
    values = [v for v in values if v is not None]
    return {
        "mean": float(np.mean(values)),
        "std": float(np.std(values, ddof=1)) if len(values) > 1 else None,
        "seeds": len(values),
    }


def build_report(records: list[dict], output_dir: Path, budget: BudgetSettings, base_steps: int, teacher: dict) -> dict:
    """The curve, the teacher's margin over it, the paired comparisons, calibration and the verdict, from finished run
    records and the teacher's `teacher_info` (with its top-1 on the sampled path's images)."""
    from ..metrics.statistics import paired_bootstrap

    by_key = {(r["run"]["setting"], r["run"]["method"], r["run"]["multiplier"], r["run"]["seed"]): r for r in records}
    points = []
    for setting, method, multiplier in sorted(
        {key[:3] for key in by_key}, key=lambda k: (SETTINGS.index(k[0]), k[2], k[1])
    ):
        rows = [r for key, r in by_key.items() if key[:3] == (setting, method, multiplier)]
        point = {"setting": setting, "method": method, "multiplier": multiplier, "steps": rows[0]["steps"]}
        for name in ("probe_top1", "probe_top1_on_subset", "sampled_top1", "train_seconds"):
            if name in rows[0]:
                point[name] = mean_std([r.get(name) for r in rows])
        points.append(point)

    paired = []
    for name, setting, (method_a, path_a), (method_b, path_b), images in COMPARISONS:
        for multiplier in sorted({key[2] for key in by_key if key[0] == setting}):
            seeds = sorted(k[3] for k in by_key if k[:3] == (setting, method_a, multiplier))
            per_seed = []
            for seed in seeds:
                other = by_key.get((setting, method_b, multiplier, seed))
                if other is None:
                    continue
                a = load_per_image(output_dir, by_key[(setting, method_a, multiplier, seed)])[f"{path_a}_correct"]
                b = load_per_image(output_dir, other)[f"{path_b}_correct"]
                size = len(a) if images == "all" else min(len(a), budget.sampled_eval_size)
                result = paired_bootstrap(a[:size], b[:size], budget.bootstrap_resamples, seed=seed)
                per_seed.append({"seed": seed, **result})
            if per_seed:
                differences = mean_std([s["difference"] for s in per_seed])
                paired.append(
                    {
                        "comparison": name,
                        "setting": setting,
                        "multiplier": multiplier,
                        "steps": base_steps * multiplier,
                        "per_seed": per_seed,
                        "difference": differences,
                        "verdict": verdict(per_seed),
                    }
                )

    calibration = []
    groups: dict[tuple, list[dict]] = {}
    for r in records:
        for path, scores in r.get("calibration", {}).items():
            groups.setdefault((r["run"]["method"], path, r["run"]["multiplier"]), []).append(scores)
    for (method, path, multiplier), rows in sorted(groups.items(), key=lambda item: (item[0][2], item[0][:2])):
        entry = {"method": method, "path": path, "multiplier": multiplier, "seeds": len(rows)}
        entry.update({name: float(np.mean([row[name] for row in rows])) for name in rows[0]})
        calibration.append(entry)

    margins = teacher_margins(points, teacher)
    return {
        "base_steps": base_steps,
        "teacher": teacher,
        "teacher_margins": margins,
        "runs": len(records),
        "train_seconds_total": float(sum(r["train_seconds"] for r in records)),
        "run_seconds_total": float(sum(r["run_seconds"] for r in records)),
        "points": points,
        "paired": paired,
        "calibration": calibration,
        "answer": {**answer(paired), **margin_answer(margins)},
    }


def verdict(per_seed: list[dict]) -> str:
    """ "ahead" when every seed's interval lies above zero, "behind" when every one lies below, else "level"."""
    if all(s["low"] > 0 for s in per_seed):
        return "ahead"
    if all(s["high"] < 0 for s in per_seed):
        return "behind"
    return "level"


def teacher_margins(points: list[dict], teacher: dict) -> list[dict]:
    """At every labelled Fashion-MNIST budget: the teacher's test top-1 minus the best student's, on the same images
    (the probes on all of them, the sampled paths on the subset), and whether it reaches `TEACHER_MARGIN`."""
    margins = []
    labelled = [p for p in points if p["setting"] == "fashion_mnist" and p["method"] in BUDGET_METHODS]
    for multiplier in sorted({p["multiplier"] for p in labelled}):
        row = {"multiplier": multiplier}
        for path, name, reference in (
            ("probe", "probe_top1", teacher["test_top1"]),
            ("sampled", "sampled_top1", teacher["test_top1_on_subset"]),
        ):
            scored = [p for p in labelled if p["multiplier"] == multiplier and name in p]
            if scored:
                best = max(scored, key=lambda p: p[name]["mean"])
                row.update({"steps": best["steps"], path: {"method": best["method"], "top1": best[name]["mean"]}})
                row[path]["margin"] = reference - best[name]["mean"]
        row["enough"] = all(row[path]["margin"] >= TEACHER_MARGIN for path in ("probe", "sampled") if path in row)
        margins.append(row)
    return margins


def margin_answer(margins: list[dict]) -> dict[str, str]:
    """The largest budget up to which the teacher keeps `TEACHER_MARGIN` over every student, in words."""
    if not margins:
        return {}
    kept = None
    for row in margins:
        if not row["enough"]:
            break
        kept = row
    last = margins[-1]
    closest = min((last[path] for path in ("probe", "sampled") if path in last), key=lambda entry: entry["margin"])
    text = (
        f"{'kept' if kept else 'not kept'} ({TEACHER_MARGIN * 100:g} points over the best student) "
        + (f"up to {kept['multiplier']}x" if kept else "at any measured budget")
        + f"; at {last['multiplier']}x the best student ({closest['method']}) is {closest['margin'] * 100:.2f} points"
        " below the teacher"
    )
    return {"fashion_mnist: teacher margin": text}


def answer(paired: list[dict]) -> dict[str, str]:
    """For each comparison and setting: the smallest budget from which A is ahead of B at every measured budget up to
    the largest, or that it is not."""
    answers = {}
    for name, setting in dict.fromkeys((p["comparison"], p["setting"]) for p in paired):
        rows = sorted(
            (p for p in paired if (p["comparison"], p["setting"]) == (name, setting)), key=lambda p: p["steps"]
        )
        ahead_from = None
        for row in reversed(rows):
            if row["verdict"] != "ahead":
                break
            ahead_from = row
        key = f"{setting}: {name}"
        if ahead_from is None:
            answers[key] = (
                f"not ahead (95% interval above zero) at {rows[-1]['multiplier']}x, the largest budget measured"
            )
        else:
            answers[key] = (
                f"ahead from {ahead_from['multiplier']}x ({ahead_from['steps']} steps) up to "
                f"{rows[-1]['multiplier']}x, every seed's 95% interval above zero"
            )
    answers.update(path_to_serve(paired))
    return answers


def path_to_serve(paired: list[dict]) -> dict[str, str]:
    """Which of GenDD's paths to serve, by budget: the probe (one forward pass) from the smallest budget from which
    the sampled path is not ahead of it (its paired interval reaches or crosses zero for some seed) at every measured
    budget up to the largest; the sampled path below it."""
    rows = sorted((p for p in paired if p["comparison"] == "gendd_full sampled - probe"), key=lambda p: p["steps"])
    if not rows:
        return {}
    probe_from = None
    for row in reversed(rows):
        if row["verdict"] == "ahead":
            break
        probe_from = row
    if probe_from is None:
        text = f"the sampled path: ahead of the probe at {rows[-1]['multiplier']}x, the largest budget measured"
    else:
        text = (
            f"the probe from {probe_from['multiplier']}x ({probe_from['steps']} steps): the sampled path is not ahead "
            f"of it from there up to {rows[-1]['multiplier']}x"
        )
    return {f"{rows[0]['setting']}: path to serve": text}


def _percent(entry: dict | None) -> str:
    if not entry:
        return "-"
    std = "" if entry["std"] is None else f" ± {entry['std'] * 100:.2f}"
    return f"{entry['mean'] * 100:.2f}{std}"


def markdown(report: dict) -> str:
    teacher, bench = report["teacher"], report["bench_teacher"]
    settings, budget = report["settings"], report["budget_settings"]
    curve = teacher["curve"]
    curve_text = ", ".join(f"{c['epoch']:g}: {c['test_top1'] * 100:.2f}" for c in curve) if curve else "not recorded"
    lines = [
        "# Fashion-MNIST budget curve",
        "",
        f"Teacher: timm `{teacher['name']}`, {teacher['epochs']:g} epochs, augmentation: {teacher['augmentation']}; "
        f"test top-1 {teacher['test_top1'] * 100:.2f}. Its test top-1 by epoch: {curve_text}. The bench (`make bench`, "
        f"the 1x point of its table) uses `{bench['name']}`, {bench['epochs']:g} epochs, no augmentation.",
        "",
        f"Student `{settings['student_name']}`; steps: optimizer steps at batch {settings['batch_size']} "
        f"({report['base_steps']} = 1x, the bench's). The students train on all but the last "
        f"{budget['calibration_size']} training images, held out for the temperatures. Probe: all test images; "
        f"sampled: the paper's sampler ({settings['num_inference_steps']} steps, guidance "
        f"{settings['guidance_scale']}, "
        f"{settings['num_samples']} samples) on the first {budget['sampled_eval_size']} test images, where "
        "'probe (subset)' scores every probe too. Mean ± std over seeds (no ± for one seed).",
        "",
        "## Answers",
        "",
        *[f"- {key}: {text}." for key, text in report["answer"].items()],
        "",
        "## Accuracy (%)",
        "",
        "| setting | method | steps | seeds | probe | probe (subset) | sampled (subset) | train s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for p in report["points"]:
        seconds = p["train_seconds"]["mean"]
        lines.append(
            f"| {p['setting']} | {p['method']} | {p['steps']} | {p['probe_top1']['seeds']} | "
            f"{_percent(p.get('probe_top1'))} | {_percent(p.get('probe_top1_on_subset'))} | "
            f"{_percent(p.get('sampled_top1'))} | {seconds:.0f} |"
        )
    lines += [
        "",
        "## Teacher margin (points: the teacher's top-1 minus the best student's on the same images)",
        "",
        f"The teacher scores {teacher['test_top1'] * 100:.2f} on all test images and "
        f"{teacher['test_top1_on_subset'] * 100:.2f} on the first {budget['sampled_eval_size']}.",
        "",
        f"| steps | best probe | margin | best sampled (subset) | margin | >= {TEACHER_MARGIN * 100:g} |",
        "|---|---|---|---|---|---|",
    ]
    for m in report["teacher_margins"]:
        cells = [
            f"{m[p]['method']} {m[p]['top1'] * 100:.2f} | {m[p]['margin'] * 100:+.2f}" if p in m else "- | -"
            for p in ("probe", "sampled")
        ]
        lines.append(f"| {m['steps']} | {cells[0]} | {cells[1]} | {'yes' if m['enough'] else 'no'} |")
    lines += [
        "",
        "## Paired differences (points, A - B on the same images)",
        "",
        f"95% percentile bootstrap over images ({budget['bootstrap_resamples']} resamples) per seed; across seeds, "
        "mean ± std. 'ahead' / 'behind': every seed's interval above / below zero.",
        "",
        "| setting | comparison | steps | images | difference | per seed: difference [95% CI] | verdict |",
        "|---|---|---|---|---|---|---|",
    ]
    for p in report["paired"]:
        seeds = "; ".join(
            f"s{s['seed']}: {s['difference'] * 100:+.2f} [{s['low'] * 100:+.2f}, {s['high'] * 100:+.2f}]"
            for s in p["per_seed"]
        )
        lines.append(
            f"| {p['setting']} | {p['comparison']} | {p['steps']} | {p['per_seed'][0]['images']} | "
            f"{_percent(p['difference'])} | {seeds} | {p['verdict']} |"
        )
    lines += [
        "",
        "## Calibration and error detection (mean over seeds)",
        "",
        "Temperature fitted per path on the held-out training images (NLL, L-BFGS on log T; the sampled path on the "
        f"first {budget['calibration_sampled_size']}). ECE (15 bins) and NLL on the test images of the path (probe: "
        f"all; sampled: the first {budget['sampled_eval_size']}) at T = 1 and at the fitted T. AUROC: predicting a "
        "wrong top-1 from the max softmax (at T = 1), and for the sampled path from the spread of its samples "
        "(variance of their softmax over the samples, summed over the classes).",
        "",
        "| method | path | steps x | T | ECE before | ECE after | NLL before | NLL after | AUROC max softmax | "
        "AUROC spread |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for c in report["calibration"]:
        spread = f"{c['auroc_spread']:.3f}" if "auroc_spread" in c else "-"
        lines.append(
            f"| {c['method']} | {c['path']} | {c['multiplier']} | {c['temperature']:.3f} | "
            f"{c['ece_before'] * 100:.2f} | {c['ece_after'] * 100:.2f} | {c['nll_before']:.3f} | "
            f"{c['nll_after']:.3f} | {c['auroc_max_softmax_before']:.3f} | {spread} |"
        )
    lines += [
        "",
        f"{report['runs']} runs: {report['train_seconds_total'] / 3600:.2f} h of training, "
        f"{report['run_seconds_total'] / 3600:.2f} h with scoring (the teacher's training not included).",
    ]
    return "\n".join(lines) + "\n"


def figure(report: dict, x_key: str, label: str):
    """One panel per training set, each with its own y-range, so that the close with-labels curves stay readable."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    settings = list(dict.fromkeys(p["setting"] for p in report["points"]))
    fig, axes = plt.subplots(1, len(settings), figsize=(7 * len(settings), 4.5), squeeze=False)
    for ax, setting in zip(axes[0], settings):
        for method in dict.fromkeys(p["method"] for p in report["points"] if p["setting"] == setting):
            rows = [p for p in report["points"] if (p["setting"], p["method"]) == (setting, method)]
            for key, style, path in (("probe_top1", "-", "probe"), ("sampled_top1", "--", "sampled")):
                rows_with = [p for p in rows if key in p]
                if not rows_with:
                    continue
                x = [p[x_key] if x_key == "steps" else p[x_key]["mean"] for p in rows_with]
                y = [p[key]["mean"] * 100 for p in rows_with]
                err = [(p[key]["std"] or 0.0) * 100 for p in rows_with]
                ax.errorbar(x, y, yerr=err, fmt=style, marker="o", capsize=3, label=f"{method} ({path})")
        ax.set_xscale("log", base=2)
        ax.set_xlabel(label)
        ax.set_ylabel("Fashion-MNIST test top-1 (%)")
        ax.set_title(f"trained on {setting} images")
        ax.legend(fontsize=7)
    fig.suptitle("Accuracy against training budget")
    fig.tight_layout()
    return fig


def plot(report: dict, output_dir: Path) -> list[Path]:
    """Accuracy against optimizer steps and against training seconds (mean over seeds, std as error bars)."""
    import matplotlib.pyplot as plt

    paths = []
    for x_key, label, name in (
        ("steps", f"optimizer steps (batch {report['settings']['batch_size']})", "budget_steps.png"),
        ("train_seconds", "training seconds (measured in the same run)", "budget_seconds.png"),
    ):
        fig = figure(report, x_key, label)
        paths.append(output_dir / name)
        fig.savefig(paths[-1], dpi=120)
        plt.close(fig)
    return paths


def write_report(report: dict, output_dir: Path, log) -> None:
    (output_dir / "budget.json").write_text(json.dumps(report, indent=2))
    table = markdown(report)
    (output_dir / "budget.md").write_text(table)
    paths = plot(report, output_dir)
    print("\n" + table, flush=True)
    log(f"results: {output_dir / 'budget.json'}, {output_dir / 'budget.md'}, {', '.join(map(str, paths))}")


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m gendd_hf.bench.budget", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a small smoke run (the bench's --quick, smaller plan)")
    parser.add_argument("--output_dir", default="results/fashion_mnist_budget")
    parser.add_argument(
        "--cache_dir",
        default=BUDGET_CACHE_DIR,
        help=f"where the trained teachers are kept (default {BUDGET_CACHE_DIR})",
    )
    parser.add_argument("--multipliers", type=int, nargs="+", help="train only these budgets (times 469 steps)")
    parser.add_argument("--seeds", type=int, nargs="+", help="train only these seeds")
    parser.add_argument("--methods", nargs="+", help="train only these methods")
    parser.add_argument("--settings", nargs="+", choices=SETTINGS, help="train only these training sets")
    parser.add_argument("--teacher_name", help=f"timm teacher (default {BUDGET_TEACHER['teacher_name']})")
    parser.add_argument("--teacher_epochs", type=float, help=f"default {BUDGET_TEACHER['teacher_epochs']:g}")
    parser.add_argument(
        "--bench_teacher", action="store_true", help="use the bench's teacher (2 epochs, no augmentation)"
    )
    parser.add_argument("--teacher_only", action="store_true", help="train (or load) the teacher, report it, stop")
    parser.add_argument("--report_only", action="store_true", help="write the report of the finished runs, train none")
    parser.add_argument("--sampled_eval_size", type=int, help="test images of the sampled path (default 2000)")
    parser.add_argument("--calibration_size", type=int, help="training images held out (default 5000)")
    parser.add_argument(
        "--set",
        nargs="+",
        default=[],
        metavar="FIELD=VALUE",
        help="override fields of the bench's settings (BenchSettings), e.g. train_size=640 epochs=0.5 (values as JSON)",
    )
    args = parser.parse_args(argv)

    from .fashion_mnist import QUICK, BenchSettings

    budget = BudgetSettings(**(BUDGET_QUICK if args.quick else {}))
    budget = replace(
        budget,
        **{
            name: getattr(args, name)
            for name in ("sampled_eval_size", "calibration_size")
            if getattr(args, name) is not None
        },
    )
    settings = replace(
        BenchSettings(), **{**(QUICK if args.quick else {}), "sampled_eval_size": budget.sampled_eval_size}
    )
    if not args.bench_teacher:
        settings = replace(settings, **BUDGET_TEACHER)
    overrides = {"teacher_name": args.teacher_name, "teacher_epochs": args.teacher_epochs}
    settings = replace(settings, **{k: v for k, v in overrides.items() if v is not None}, **parse_fields(args.set))
    output_dir, cache_dir = Path(args.output_dir), Path(args.cache_dir)
    if args.teacher_only:
        return write_teacher(settings, output_dir, cache_dir)
    only = {"multiplier": args.multipliers, "seed": args.seeds, "method": args.methods, "setting": args.settings}
    return run_budget(settings, budget, output_dir, cache_dir, only, args.report_only)


def teacher_info(settings, cache_dir: Path, test_logits, arrays: dict) -> dict:
    """The teacher of `settings`: its architecture, epochs, augmentation, cached file, test top-1 (from its
    `test_logits`) and its test top-1 after each training epoch."""
    from .fashion_mnist import teacher_checkpoint, teacher_curve, top1

    return {
        "name": settings.teacher_name,
        "epochs": settings.teacher_epochs,
        "augmentation": "random crop (4-pixel padding) + flip" if settings.teacher_augmentation else "none",
        "file": teacher_checkpoint(settings, cache_dir).name,
        "test_top1": top1(test_logits, arrays["test_labels"]),
        "curve": teacher_curve(settings, cache_dir),
    }


def parse_fields(pairs: list[str]) -> dict:
    """`["train_size=640", "teacher_name=test_resnet"]` -> `{"train_size": 640, "teacher_name": "test_resnet"}`: each
    value read as JSON, or kept as a string when it is not JSON."""
    fields = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep:
            raise ValueError(f"--set takes FIELD=VALUE pairs, got {pair!r}.")
        try:
            fields[name] = json.loads(value)
        except json.JSONDecodeError:
            fields[name] = value
    return fields


def write_teacher(settings, output_dir: Path, cache_dir: Path) -> dict:
    """`--teacher_only`: train (or load) the teacher and write `teacher.json` (its test top-1 and training curve)."""
    from .fashion_mnist import get_teacher, load_arrays, make_logger, teacher_outputs

    log = make_logger()
    arrays = load_arrays(settings)
    teacher = get_teacher(settings, arrays, cache_dir, log)
    info = teacher_info(settings, cache_dir, teacher_outputs(teacher, arrays["test_pixels"])[1], arrays)
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "teacher.json").write_text(json.dumps(info, indent=2))
    log(f"teacher test top-1 {info['test_top1']:.4f}; {output_dir / 'teacher.json'}")
    return info


if __name__ == "__main__":
    main()
