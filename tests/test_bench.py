"""The benchmark's full-recipe row and the parity harness's plumbing and arithmetic (the harness
itself needs the official code, which CI does not have; tests/test_parity_fixture.py holds the numbers it recorded)."""

import math

import pytest
import torch

from gendd_hf.bench import fashion_mnist, parity
from gendd_hf.bench.fashion_mnist import ArrayDataset, BenchSettings, train_student
from gendd_hf.teacher import TimmTeacher


def _tiny_teacher():
    torch.manual_seed(0)
    return TimmTeacher.from_timm("test_resnet", pretrained=False, in_chans=1, num_classes=10)


def test_full_recipe_is_stage1_then_gendd_from_its_student_within_the_same_steps(tmp_path, monkeypatch):
    teacher = _tiny_teacher()
    generator = torch.Generator().manual_seed(0)
    pixels = torch.randn(64, 1, 28, 28, generator=generator)
    with torch.no_grad():
        output = teacher(pixels)
    train = ArrayDataset(
        pixel_values=pixels,
        labels=torch.randint(0, 10, (64,), generator=generator),
        teacher_features=output.features,
        teacher_logits=output.logits,
    )
    settings = BenchSettings(
        batch_size=16, head_width=16, token_dim=teacher.feature_dim // 2, bf16=False, stage1_fraction=0.25
    )
    runs = []
    real_trainer = fashion_mnist.GenDDTrainer

    class RecordingTrainer(real_trainer):
        def train(self, *args, **kwargs):
            student_before = {k: v.clone() for k, v in self.model.student.state_dict().items()}
            result = super().train(*args, **kwargs)
            runs.append((self.args.stage, self.state.global_step, self.args.init_from, student_before))
            return result

    monkeypatch.setattr(fashion_mnist, "GenDDTrainer", RecordingTrainer)
    model = train_student("gendd_full", 0, train, 12, settings, teacher, tmp_path)
    assert [(stage, steps) for stage, steps, _, _ in runs] == [("pretrain", 3), ("main", 9)]
    stage1_folder = tmp_path / "gendd_full-seed0" / "stage1"
    assert runs[1][2] == str(stage1_folder) and (stage1_folder / "model.safetensors").is_file()
    # Stage 2 started from the student that stage 1 trained, not from a fresh one.
    from gendd_hf import GenDDForImageClassification

    stage1 = GenDDForImageClassification.from_pretrained(stage1_folder)
    assert all(torch.equal(value, stage1.student.state_dict()[name]) for name, value in runs[1][3].items())
    assert not all(torch.equal(value, runs[0][3][name]) for name, value in runs[1][3].items())
    assert model.config.contraction == 0.9 and model.config.inference_path == "sampled"


def test_parity_summary_by_hand():
    records = [
        {
            "seed": seed,
            "official": {"probe_top1": o_probe, "sampled_top1": o_sampled},
            "gendd_hf": {"probe_top1": g_probe, "sampled_top1": g_sampled, "default_sampled_top1": g_default},
        }
        for seed, (o_probe, g_probe, o_sampled, g_sampled, g_default) in enumerate(
            [(70.0, 71.0, 74.0, 73.0, 74.0), (72.0, 71.0, 76.0, 73.0, 76.0), (71.0, 71.0, 75.0, 73.0, 75.4)]
        )
    ]
    summary = parity.summarize(records)
    probe, sampled, default = summary["probe_top1"], summary["sampled_top1"], summary["default_sampled_top1"]
    # probe: means 71 and 71, stds 1 and 0 -> difference 0, target max(0.5, 1) = 1, met.
    assert probe["mean_difference"] == pytest.approx(0.0) and probe["target"] == pytest.approx(1.0) and probe["met"]
    # sampled: means 75 and 73, stds 1 and 0 -> difference -2, target 1, not met.
    assert sampled["mean_difference"] == pytest.approx(-2.0) and sampled["official_std"] == pytest.approx(1.0)
    assert not sampled["met"]
    # the default sampler against the official sampled column: means 75.133 and 75 -> +0.133; no per-image data given.
    assert default["mean_difference"] == pytest.approx(0.4 / 3) and default["official_mean"] == pytest.approx(75.0)
    assert default["met"] and "paired" not in default


def test_parity_paired_interval_pools_the_images_of_all_seeds():
    """Two seeds of 4 images: gendd_hf right on 3 + 2, the official arm on 2 + 2 -> paired difference 1/8 = 12.5
    points over 8 images. Only one image differs, so a resample's difference is k/8 with k ~ Binomial(8, 1/8): no
    draw of it in 34% of resamples (the 2.5th percentile is 0), 3 or more in 9%, 4 or more in 1.7% (the 97.5th is
    3/8 = 37.5 points)."""
    records = [
        {"seed": s, "official": {"probe_top1": 50.0, "sampled_top1": 50.0}, "gendd_hf": {"probe_top1": 50.0}}
        for s in (0, 1)
    ]
    ours = [torch.tensor([1, 1, 1, 0]), torch.tensor([1, 1, 0, 0])]
    theirs = [torch.tensor([1, 1, 0, 0]), torch.tensor([1, 1, 0, 0])]
    correct = [{"gendd_hf/probe_top1": o.bool(), "official/probe_top1": t.bool()} for o, t in zip(ours, theirs)]
    paired = parity.summarize(records, correct)["probe_top1"]["paired"]
    assert set(parity.summarize(records, correct)) == {"probe_top1"}  # rows gendd_hf did not score are left out
    assert paired["difference"] == pytest.approx(12.5) and paired["images"] == 8
    assert paired["low"] == 0.0 and paired["high"] == pytest.approx(37.5)


def test_parity_keeps_each_finished_seed_for_the_same_settings_only(tmp_path):
    settings = parity.ParitySettings(seeds=(0, 1))
    record = {"seed": 1, "official": {"probe_top1": 70.0}, "gendd_hf": {"probe_top1": 71.0}}
    correct = {"official/probe_top1": torch.tensor([True, False]), "gendd_hf/probe_top1": torch.tensor([True, True])}
    assert parity.finished_seed(settings, tmp_path, 1) is None
    parity.save_seed(settings, tmp_path, record, correct)
    kept_record, kept_correct = parity.finished_seed(settings, tmp_path, 1)
    assert kept_record == record and kept_correct.keys() == correct.keys()
    assert all(torch.equal(kept_correct[k], correct[k]) for k in correct)
    assert parity.finished_seed(settings, tmp_path, 0) is None
    assert parity.finished_seed(parity.ParitySettings(seeds=(0, 1), sampled_eval_size=20), tmp_path, 1) is None


def test_parity_needs_a_checkout_of_the_official_code(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a checkout of the official GenDD repository.*GenDD_cifar"):
        parity.load_reference(tmp_path)


def test_parity_batches_are_whole_epochs_in_a_seeded_order():
    settings = parity.ParitySettings(train_size=100, batch_size=32, epochs=2.0)
    order = parity.batch_order(100, settings, seed=3)
    assert settings.steps == math.ceil(2 * 100 / 32) == 7 and len(order) == 7 * 32
    assert sorted(order[:100].tolist()) == list(range(100))  # the first epoch is a permutation
    assert torch.equal(order, parity.batch_order(100, settings, seed=3))
    assert not torch.equal(order, parity.batch_order(100, settings, seed=4))


def test_the_table_has_no_spread_for_one_seed_and_no_empty_column():
    """The demo's single seed: values without "± 0.00", and no many / medium / few columns without a long-tailed row;
    several seeds: mean ± std, and every column that some row fills."""
    runs = [("fashion_mnist", "kd", {"probe_top1": 0.89}), ("fashion_mnist", "gendd", {"sampled_top1": 0.864})]
    records = [
        {"setting": setting, "method": method, "seed": seed, "probe_top1": 0.85 + seed / 100, "train_seconds": 40.0}
        | values
        for seed in (0, 1, 2)
        for setting, method, values in runs
    ]
    one = fashion_mnist.markdown_table(fashion_mnist.summarize(records[:2]), BenchSettings(seeds=(0,)), 0.9)
    assert "±" not in one and "seed 0." in one and "long-tailed" not in one
    assert "| setting | method | probe top-1 | sampled top-1 | train s |\n" in one
    assert (
        "| fashion_mnist | gendd | 85.00 | 86.40 | 40 |\n" in one and "| fashion_mnist | kd | 89.00 | - | 40 |\n" in one
    )

    records.append({"setting": "long_tailed", "method": "kd", "seed": 0, "probe_top1": 0.8, "shot_few": 0.7})
    three = fashion_mnist.markdown_table(fashion_mnist.summarize(records), BenchSettings(seeds=(0, 1, 2)), 0.9)
    assert "3 seeds, mean ± std." in three and "| few (probe) | train s |\n" in three
    assert "| fashion_mnist | gendd | 86.00 ± 1.00 | 86.40 ± 0.00 | - | 40 ± 0 |\n" in three
    assert "| long_tailed | kd | 80.00 | - | 70.00 | - |\n" in three
