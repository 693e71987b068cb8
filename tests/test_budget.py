"""The budget curve (gendd_hf.bench.budget): its plan and order, the teacher's augmentation, the paired report, and a
run that is killed and started again without redoing its finished runs."""

import json
import re
import signal
import subprocess
import sys
import time
from dataclasses import asdict, replace
from functools import partial

import numpy as np
import pytest
import torch
from transformers import TrainerCallback

from gendd_hf.bench import budget, fashion_mnist
from gendd_hf.bench.budget import (
    BudgetRun,
    BudgetSettings,
    append_record,
    build_report,
    expected_seconds,
    plan_runs,
    restrict,
)
from gendd_hf.bench.fashion_mnist import MEAN, STD, BenchSettings, CropFlip
from recipe_helpers import ROOT, recipe_env


def test_plan_puts_every_first_seed_point_before_the_extra_seeds():
    runs = plan_runs(BudgetSettings())
    # 5 budgets x 3 methods, 2 settings x 3 budgets x 2 no-label methods, 2 more seeds x 3 budgets x 2 methods.
    assert len(runs) == 15 + 12 + 12 == len(set(runs))
    assert runs[:3] == [BudgetRun("fashion_mnist", m, 1, 0) for m in ("kd", "dkd", "gendd_full")]
    assert runs[12:15] == [BudgetRun("fashion_mnist", m, 16, 0) for m in ("kd", "dkd", "gendd_full")]
    assert {run.method for run in runs[15:27]} == {"gendd_unsup", "kl_unsup"}
    assert {run.setting for run in runs[15:27]} == {"fashion_mnist", "digits_nontarget"}
    assert all(run.seed == 0 for run in runs[:27]) and {run.seed for run in runs[27:]} == {1, 2}
    assert {(run.method, run.multiplier) for run in runs[27:]} == {
        (m, x) for m in ("kd", "gendd_full") for x in (4, 8, 16)
    }
    only = restrict(runs, multiplier=[16], method=["kd"], setting=None, seed=None)
    assert only == [BudgetRun("fashion_mnist", "kd", 16, seed) for seed in (0, 1, 2)]


def test_a_run_fingerprint_follows_what_changes_its_numbers_only():
    run, settings, plan = BudgetRun("fashion_mnist", "kd", 4, 1), BenchSettings(), BudgetSettings()
    reference = budget.run_fingerprint(run, settings, plan, "teacher-a.safetensors")
    same = [
        budget.run_fingerprint(
            run, replace(settings, seeds=(5,), lt_n_max=10, one_pass=False), plan, "teacher-a.safetensors"
        ),
        budget.run_fingerprint(
            run, settings, replace(plan, bootstrap_resamples=7, multipliers=(4,)), "teacher-a.safetensors"
        ),
    ]
    other = [
        budget.run_fingerprint(replace(run, seed=2), settings, plan, "teacher-a.safetensors"),
        budget.run_fingerprint(run, replace(settings, epochs=3.0), plan, "teacher-a.safetensors"),
        budget.run_fingerprint(run, settings, replace(plan, sampled_eval_size=1000), "teacher-a.safetensors"),
        budget.run_fingerprint(run, settings, plan, "teacher-b.safetensors"),
    ]
    assert same == [reference, reference] and reference not in other and len(set(other)) == 4


def test_crop_flip_crops_the_padded_image_and_flips_some():
    image = torch.arange(4.0).reshape(1, 1, 2, 2)  # [[0, 1], [2, 3]]
    black = -MEAN / STD
    padded = torch.full((4, 4), black)
    padded[1:3, 1:3] = image[0, 0]
    # Every 2x2 window of the 1-pixel padded image (3 x 3 offsets), as it is or flipped left-right.
    windows = [padded[i : i + 2, j : j + 2] for i in range(3) for j in range(3)]
    allowed = windows + [w.flip(-1) for w in windows]
    torch.manual_seed(0)
    seen = set()
    for _ in range(200):
        row = CropFlip([{"pixel_values": image[0], "labels": torch.tensor(3)}], padding=1)[0]
        assert row["labels"].item() == 3
        crop = row["pixel_values"][0]
        index = next(k for k, w in enumerate(allowed) if torch.equal(crop, w))
        seen.add(index)
    assert seen == set(range(18))  # all 9 offsets, each with and without the flip


def test_an_interrupted_teacher_training_resumes_from_its_last_epoch(tmp_path, monkeypatch):
    settings = BenchSettings(
        teacher_name="test_resnet", teacher_epochs=2.0, batch_size=16, bf16=False, teacher_augmentation=True
    )
    generator = torch.Generator().manual_seed(0)
    arrays = {
        "train_pixels": torch.randn(48, 1, 28, 28, generator=generator),
        "train_labels": torch.arange(48) % 10,
        "test_pixels": torch.randn(20, 1, 28, 28, generator=generator),
        "test_labels": torch.arange(20) % 10,
    }
    whole = fashion_mnist.get_teacher(settings, arrays, tmp_path / "whole", log=print)

    class KilledAfterTheFirstCheckpoint(TrainerCallback):
        def on_save(self, args, state, control, **kwargs):
            raise RuntimeError(f"killed at step {state.global_step}")

    trainer = partial(fashion_mnist.train_timm_classifier, callbacks=[KilledAfterTheFirstCheckpoint()])
    monkeypatch.setattr(fashion_mnist, "train_timm_classifier", trainer)
    with pytest.raises(RuntimeError, match="killed at step 3"):  # 48 images in batches of 16: 3 steps an epoch
        fashion_mnist.get_teacher(settings, arrays, tmp_path / "resumed", log=print)
    assert [p.name for p in (tmp_path / "resumed").glob("teacher-run-*/checkpoint-*")] == ["checkpoint-3"]
    monkeypatch.undo()
    resumed = fashion_mnist.get_teacher(settings, arrays, tmp_path / "resumed", log=print)
    expected = whole.model.state_dict()
    assert all(torch.equal(value, expected[name]) for name, value in resumed.model.state_dict().items())
    curve = fashion_mnist.teacher_curve(settings, tmp_path / "resumed")
    assert [entry["epoch"] for entry in curve] == [1.0, 2.0] and curve == fashion_mnist.teacher_curve(
        settings, tmp_path / "whole"
    )
    assert not list((tmp_path / "resumed").glob("teacher-run-*"))  # the checkpoints are removed once it is cached


def _record(method, multiplier, seed, steps, **scores):
    run = BudgetRun("fashion_mnist", method, multiplier, seed)
    return {
        "run": run.__dict__,
        "fingerprint": f"{method}{multiplier}{seed}",
        "steps": steps,
        "train_seconds": 10.0 * steps,
        "run_seconds": 10.0 * steps + 5.0,  # training and scoring
        **scores,
    }


def test_report_pairs_the_same_images_and_states_the_budget_from_which_gendd_is_ahead(tmp_path):
    settings = BudgetSettings(sampled_eval_size=4, bootstrap_resamples=2000)
    # 1x: on the first 4 images GenDD's sampled path is right on all, KD on images 0 and 2: +50 points, but the paired
    # differences (0, 1, 0, 1) give a resample of mean 0 with probability 1/16 > 2.5%: the interval reaches 0, "level".
    # 2x: KD wrong on all four, GenDD right: +100 points, interval [1, 1], "ahead".
    kd_1x, kd_2x = [1, 0, 1, 0, 1, 1, 1, 1], [0, 0, 0, 0, 1, 1, 1, 1]
    gendd_probe = [1, 1, 0, 0, 0, 0, 0, 0]
    for multiplier, kd in ((1, kd_1x), (2, kd_2x)):
        append_record(
            tmp_path,
            _record("kd", multiplier, 0, 100 * multiplier, probe_top1=np.mean(kd)),
            {"probe_correct": np.array(kd)},
        )
        append_record(
            tmp_path,
            _record("gendd_full", multiplier, 0, 100 * multiplier, probe_top1=0.25, sampled_top1=1.0),
            {"probe_correct": np.array(gendd_probe), "sampled_correct": np.ones(4)},
        )
    records = list(budget.load_finished(tmp_path).values())
    teacher = {"name": "resnet10t", "epochs": 30.0, "augmentation": "crop", "test_top1": 0.95, "curve": None}
    teacher["test_top1_on_subset"] = 1.0
    report = build_report(records, tmp_path, settings, base_steps=100, teacher=teacher)
    headline = {p["multiplier"]: p for p in report["paired"] if p["comparison"] == "gendd_full sampled - kd"}
    assert headline[1]["difference"]["mean"] == pytest.approx(0.5) and headline[1]["verdict"] == "level"
    assert headline[1]["per_seed"][0]["low"] == 0.0 and headline[1]["per_seed"][0]["images"] == 4
    assert headline[2]["difference"]["mean"] == pytest.approx(1.0) and headline[2]["verdict"] == "ahead"
    assert report["answer"]["fashion_mnist: gendd_full sampled - kd"].startswith("ahead from 2x (200 steps)")
    # The sampled path minus its own probe on the same 4 images: 1 - 0.5.
    gap = [p for p in report["paired"] if p["comparison"] == "gendd_full sampled - probe"]
    assert [p["difference"]["mean"] for p in gap] == pytest.approx([0.5, 0.5])
    assert [p["verdict"] for p in gap] == ["level", "level"]  # differences (0, 0, 1, 1): a resample of 0 is likely
    assert report["answer"]["fashion_mnist: path to serve"].startswith("the probe from 1x (100 steps)")
    # Probe against probe on all 8 images: (2 - 6) / 8 at 1x.
    probes = {p["multiplier"]: p for p in report["paired"] if p["comparison"] == "gendd_full probe - kd"}
    assert probes[1]["difference"]["mean"] == pytest.approx(-0.5) and probes[1]["per_seed"][0]["images"] == 8
    assert report["train_seconds_total"] == pytest.approx(10.0 * (100 + 100 + 200 + 200))
    assert report["run_seconds_total"] == pytest.approx(report["train_seconds_total"] + 4 * 5.0)
    point = next(p for p in report["points"] if (p["method"], p["multiplier"]) == ("kd", 1))
    assert point["probe_top1"] == {"mean": 0.75, "std": None, "seeds": 1}
    # The teacher: 95 on all 8 images, 100 on the 4 of the sampled path, where GenDD's sampled path is right on all.
    margins = {m["multiplier"]: m for m in report["teacher_margins"]}
    assert margins[1]["probe"] == {"method": "kd", "top1": 0.75, "margin": pytest.approx(0.2)}
    assert margins[2]["sampled"] == {"method": "gendd_full", "top1": 1.0, "margin": 0.0}
    assert not margins[1]["enough"] and not margins[2]["enough"]
    assert report["answer"]["fashion_mnist: teacher margin"] == (
        "not kept (1.5 points over the best student) at any measured budget; at 2x the best student (gendd_full) "
        "is 0.00 points below the teacher"
    )
    report.update(bench_teacher=teacher, settings=asdict(BenchSettings()), budget_settings=asdict(settings))
    table = budget.markdown(report)
    assert (
        "| fashion_mnist | gendd_full sampled - kd | 200 | 4 | 100.00 | s0: +100.00 [+100.00, +100.00] | ahead |"
        in table
    )
    assert "| fashion_mnist | kd | 100 | 1 | 75.00 | - | - | 1000 |" in table
    assert "| 200 | kd 50.00 | +45.00 | gendd_full 100.00 | +0.00 | no |" in table
    assert "- fashion_mnist: gendd_full sampled - kd: ahead from 2x (200 steps)" in table


def test_the_plot_draws_each_training_set_in_its_own_panel_and_y_range():
    def point(setting, method, steps, top1):
        top1 = {"mean": top1, "std": None, "seeds": 1}
        return {"setting": setting, "method": method, "steps": steps, "probe_top1": top1}

    report = {
        "points": [
            point("fashion_mnist", "kd", 100, 0.90),
            point("fashion_mnist", "kd", 200, 0.92),
            point("digits_nontarget", "kl_unsup", 100, 0.20),
        ]
    }
    fig = budget.figure(report, "steps", "steps")
    fashion, digits = fig.axes
    assert fashion.get_title() == "trained on fashion_mnist images"
    assert digits.get_title() == "trained on digits_nontarget images"
    # Each panel spans its own points only: 90-92 is not squashed by digits' 20.
    assert fashion.get_ylim()[0] > 80 and digits.get_ylim()[1] < 30
    assert [t.get_text() for t in fashion.get_legend().get_texts()] == ["kd (probe)"]


def test_the_teacher_margin_is_kept_up_to_the_budget_where_a_student_first_comes_within_it():
    def point(method, multiplier, probe, sampled=None):
        entry = {"setting": "fashion_mnist", "method": method, "multiplier": multiplier, "steps": 10 * multiplier}
        entry["probe_top1"] = {"mean": probe}
        return entry | ({"sampled_top1": {"mean": sampled}} if sampled is not None else {})

    teacher = {"test_top1": 0.93, "test_top1_on_subset": 0.94}
    points = [
        point("kd", 1, 0.90),
        point("gendd_full", 1, 0.88, sampled=0.92),  # 0.94 - 0.92 = 2 points: kept
        point("kd", 2, 0.915),  # 1.5 points exactly: kept
        point("gendd_full", 2, 0.90, sampled=0.92),
        point("kd", 4, 0.92),  # 1 point: lost
        point("gendd_full", 4, 0.91, sampled=0.925),
        point("kl_unsup", 4, 0.99),  # no labels: not a student of the labelled curve
    ]
    points.append({**point("kd", 4, 0.99), "setting": "digits_nontarget"})
    margins = budget.teacher_margins(points, teacher)
    assert [m["enough"] for m in margins] == [True, True, False]
    assert margins[2]["probe"] == {"method": "kd", "top1": 0.92, "margin": pytest.approx(0.01)}
    assert margins[2]["sampled"] == {"method": "gendd_full", "top1": 0.925, "margin": pytest.approx(0.015)}
    assert budget.margin_answer(margins)["fashion_mnist: teacher margin"] == (
        "kept (1.5 points over the best student) up to 2x; at 4x the best student (kd) is 1.00 points below the teacher"
    )


def test_the_path_to_serve_is_the_probe_from_the_budget_where_sampling_stops_being_ahead_for_good():
    def rows(*verdicts):
        return [
            {
                "comparison": "gendd_full sampled - probe",
                "setting": "fashion_mnist",
                "multiplier": 2**i,
                "steps": 100 * 2**i,
                "verdict": verdict,
            }
            for i, verdict in enumerate(verdicts)
        ]

    serve = budget.path_to_serve
    assert serve(rows("ahead", "level", "behind"))["fashion_mnist: path to serve"].startswith("the probe from 2x (200")
    assert serve(rows("level", "ahead", "level"))["fashion_mnist: path to serve"].startswith("the probe from 4x (400")
    assert serve(rows("ahead", "level", "ahead"))["fashion_mnist: path to serve"].startswith("the sampled path: ahead")
    assert serve([]) == {}


def test_a_record_after_a_line_cut_short_by_a_kill_is_kept(tmp_path):
    first = _record("kd", 1, 0, 100, probe_top1=0.5)
    append_record(tmp_path, first, {"probe_correct": np.array([1, 0])})
    with open(tmp_path / "runs.jsonl", "a") as file:  # a kill in the middle of writing the next line
        file.write('{"run": {"setting": "fashion_mnist", "method": "dkd"')
    second = _record("kd", 2, 0, 200, probe_top1=1.0)
    append_record(tmp_path, second, {"probe_correct": np.array([1, 1])})
    assert budget.load_finished(tmp_path) == {first["fingerprint"]: first, second["fingerprint"]: second}


def _budget_command(tmp_path):
    return [
        sys.executable,
        "-m",
        "gendd_hf.bench.fashion_mnist",
        "budget",
        "--quick",
        "--teacher_name",
        "test_resnet",
        "--teacher_epochs",
        "0.25",
        "--methods",
        "kd",
        "dkd",
        "--multipliers",
        "1",
        "--seeds",
        "0",
        "--output_dir",
        str(tmp_path / "out"),
        "--cache_dir",
        str(tmp_path / "cache"),
        "--calibration_size",
        "128",
        "--sampled_eval_size",
        "20",
        "--set",
        "train_size=640",
        "test_size=200",
        "epochs=0.2",
        "token_dim=32",
    ]


@pytest.mark.slow
def test_the_eta_weighs_each_run_by_its_methods_seconds_per_step():
    def record(method, multiplier, train_seconds, run_seconds):
        run = BudgetRun("fashion_mnist", method, multiplier, 0)
        return {"run": asdict(run), "train_seconds": train_seconds, "run_seconds": run_seconds}

    # 10 steps per 1x: kd trains at 1 s/step and scores in 10 s; gendd_full at 3 s/step, scoring 100 s.
    records = [record("kd", 1, 10.0, 20.0), record("kd", 2, 20.0, 30.0), record("gendd_full", 1, 30.0, 130.0)]
    assert expected_seconds(BudgetRun("fashion_mnist", "gendd_full", 2, 1), records, 10) == pytest.approx(160.0)
    assert expected_seconds(BudgetRun("fashion_mnist", "kd", 4, 1), records, 10) == pytest.approx(50.0)
    # dkd has no finished run: every method's mean, (1 + 1 + 3) / 3 s/step and (10 + 10 + 100) / 3 s of scoring.
    assert expected_seconds(BudgetRun("fashion_mnist", "dkd", 3, 0), records, 10) == pytest.approx(50.0 + 40.0)
    assert expected_seconds(BudgetRun("fashion_mnist", "dkd", 3, 0), [], 10) == 30.0  # nothing finished: its steps


def test_a_killed_budget_run_continues_without_redoing_finished_runs(tmp_path):
    env = recipe_env(tmp_path)
    log = open(tmp_path / "first.log", "w")
    process = subprocess.Popen(_budget_command(tmp_path), cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    results = tmp_path / "out" / "runs.jsonl"
    deadline = time.monotonic() + 240
    while not (results.exists() and results.read_text().endswith("\n")) and process.poll() is None:
        assert time.monotonic() < deadline, "no run finished in time"
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    log.close()
    first_lines = results.read_text().splitlines()
    assert process.returncode == -signal.SIGKILL and 1 <= len(first_lines) <= 2
    first_log = (tmp_path / "first.log").read_text()
    assert "budget: 0 of 2 runs finished already" in first_log and "budget.json" not in first_log

    second = subprocess.run(_budget_command(tmp_path), cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    output = second.stdout + second.stderr
    done = [BudgetRun(**json.loads(line)["run"]).name for line in first_lines]
    assert f"budget: {len(first_lines)} of 2 runs finished already" in output
    assert all(f"run 1/{2 - len(first_lines)}: {name}" not in output for name in done)  # not trained again
    lines = results.read_text().splitlines()
    assert lines[: len(first_lines)] == first_lines and len(lines) == 2  # kept as they were; nothing twice
    # The progress line counts the finished runs as done, in seconds estimated from them.
    assert re.search(r"budget \(seconds estimated from the finished runs\): (\d+)/\1 s \(100%\)", output)
    report = json.loads((tmp_path / "out" / "budget.json").read_text())
    assert {(p["method"], p["multiplier"]) for p in report["points"]} == {("kd", 1), ("dkd", 1)}
    assert {c["method"] for c in report["calibration"]} == {"kd", "dkd"}
    assert report["teacher"]["augmentation"].startswith("random crop") and report["teacher"]["curve"]
    per_image = sorted(p.name for p in (tmp_path / "out" / "per_image").iterdir())
    assert len(per_image) == 2 and all(name.endswith(".safetensors") for name in per_image)
    # --teacher_only loads the cached teacher (it trains nothing) and writes what the report says of it.
    teacher = budget.main([*_budget_command(tmp_path)[4:], "--teacher_only"])
    assert json.loads((tmp_path / "out" / "teacher.json").read_text()) == teacher
    assert teacher["curve"] == report["teacher"]["curve"] and teacher["test_top1"] == report["teacher"]["test_top1"]


def test_the_augmented_teacher_is_scored_on_the_test_images_as_they_are(tmp_path, monkeypatch):
    """Crop and flip are for the teacher's training images only: the Trainer's per-epoch evaluation (the teacher's
    curve) sees the test images unaltered, through whatever collator the training uses, while training rows vary."""
    settings = BenchSettings(teacher_name="test_resnet", teacher_epochs=1.0, bf16=False, teacher_augmentation=True)
    generator = torch.Generator().manual_seed(0)
    arrays = {
        "train_pixels": torch.randn(8, 1, 28, 28, generator=generator),
        "train_labels": torch.arange(8),
        "test_pixels": torch.randn(6, 1, 28, 28, generator=generator),
        "test_labels": torch.arange(6),
    }
    seen = {}

    def record(architecture, label_names, args, train, evaluation, **kwargs):
        collate = kwargs.get("data_collator") or torch.utils.data.default_collate
        seen["eval"] = collate([evaluation[i] for i in range(len(evaluation))])["pixel_values"]
        seen["train"] = [collate([train[0]])["pixel_values"][0] for _ in range(20)]
        raise RuntimeError("recorded")

    monkeypatch.setattr(fashion_mnist, "train_timm_classifier", record)
    with pytest.raises(RuntimeError, match="recorded"):
        fashion_mnist.get_teacher(settings, arrays, tmp_path, log=print)
    assert torch.equal(seen["eval"], arrays["test_pixels"])
    assert any(not torch.equal(crop, arrays["train_pixels"][0]) for crop in seen["train"])


def test_the_repository_keeps_the_budget_teachers_weights_and_curve_but_not_its_training_folders():
    cache = budget.BUDGET_CACHE_DIR

    def ignored(path):
        result = subprocess.run(["git", "check-ignore", "-q", "--no-index", f"{cache}/{path}"], cwd=ROOT)
        assert result.returncode in (0, 1), "git check-ignore failed"
        return result.returncode == 0

    assert not ignored("teacher-resnet18-0123abcd.safetensors") and not ignored("teacher-resnet18-0123abcd.json")
    assert ignored("teacher/model.safetensors")  # the timm folder of the latest teacher, rebuilt from the weights
    assert ignored("teacher-run-teacher-resnet18-0123abcd/checkpoint-235/model.safetensors")  # removed when done
