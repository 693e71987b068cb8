"""GenDDTrainer on a learnable toy problem: 3 classes of 16x16 grayscale images (a bright band whose row is the
class), a `test_resnet` student and a frozen `test_resnet` teacher, all on the CPU."""

import math
import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from transformers import HfArgumentParser, TrainerCallback

from gendd_hf import GenDDForImageClassification, TimmTeacher
from gendd_hf.callbacks import cosine_beta2
from gendd_hf.data import ImageCollator, build_transforms, mixup_fn
from gendd_hf.losses import dkd_loss
from gendd_hf.trainer import GenDDTrainer, NonFiniteLossError
from gendd_hf.training_args import GenDDTrainingArguments
from helpers import (
    NUM_CLASSES,
    SIZE,
    TEACHER_DIM,
    TRANSFORM,
    CrashAtStep,
    tiny_config,
    tiny_model,
    toy_args,
    toy_dataset,
    toy_model,
    toy_teacher,
    toy_trainer,
)


LOSS_TERMS = {
    "ce": {"ce_loss"},
    "kd": {"ce_loss", "kd_loss"},
    "dkd": {"ce_loss", "dkd_loss"},
    "kl_unsup": {"kd_loss"},
    "gendd": {"diffusion_loss", "probe_loss"},
    "gendd_unsup": {"diffusion_loss", "probe_loss"},
}


def training_logs(trainer):
    return [entry for entry in trainer.state.log_history if "loss" in entry]


def snapshot(module):
    return {name: value.detach().clone() for name, value in module.state_dict().items()}


def changed(before, module, prefix):
    after = module.state_dict()
    return any(not torch.equal(value, after[name]) for name, value in before.items() if name.startswith(prefix))


# ---- methods ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("method", list(LOSS_TERMS))
def test_each_method_trains_what_it_uses_and_logs_its_terms(tmp_path, method):
    trainer = toy_trainer(tmp_path, method=method, max_steps=2, gradient_accumulation_steps=2)
    model, teacher = trainer.model, trainer.teacher
    before, teacher_before = snapshot(model), snapshot(teacher)
    trainer.train()

    logs = training_logs(trainer)
    assert len(logs) == 2
    for entry in logs:
        assert set(entry) >= LOSS_TERMS[method] | {"loss", "learning_rate"}
        assert not set(entry) & (set().union(*LOSS_TERMS.values()) - LOSS_TERMS[method])
        # `loss` is the sum of the terms, each averaged over the accumulated micro-batches like `loss` itself.
        assert entry["loss"] == pytest.approx(sum(entry[name] for name in LOSS_TERMS[method]), rel=1e-5)

    is_gendd = method.startswith("gendd")
    assert changed(before, model, "student.") and changed(before, model, "probe.")
    assert changed(before, model, "head.") == is_gendd
    trainable = {name.split(".")[0] for name, p in model.named_parameters() if p.requires_grad}
    frozen = {name.split(".")[0] for name, p in model.named_parameters() if not p.requires_grad}
    expected = ({"student", "head", "probe"}, set()) if is_gendd else ({"student", "probe"}, {"head"})
    assert (trainable, frozen) == expected
    assert all(torch.equal(value, teacher.state_dict()[name]) for name, value in teacher_before.items())
    assert not teacher.training
    assert torch.equal(model.teacher_weight, teacher.classifier_weight)
    assert model.config.inference_path == ("sampled" if is_gendd else "probe")
    assert model.config.contraction == (0.0 if method == "gendd_unsup" else 0.9)


@pytest.mark.parametrize("method", ["ce", "kd", "kl_unsup", "dkd"])
def test_baseline_losses_follow_their_formulas(tmp_path, method):
    trainer = toy_trainer(tmp_path, method=method, kd_temperature=3.0)
    dataset = toy_dataset(n=6)
    batch = ImageCollator(TRANSFORM)([dataset[i] for i in range(6)])
    model = trainer.model.eval()
    with torch.no_grad():
        loss = trainer.compute_loss(model, batch)
        student = model.probe(model.extract_features(batch["pixel_values"]))
        teacher = trainer.teacher(batch["pixel_values"]).logits
    labels, t = batch["labels"], 3.0
    ce = F.cross_entropy(student, labels)
    p_teacher = F.softmax(teacher / t, dim=1)
    kl = t**2 * (p_teacher * (p_teacher.log() - F.log_softmax(student / t, dim=1))).sum(1).mean()
    # DKD takes the published ImageNet settings (alpha 1, beta 0.5, T 1); no warm-up outside training.
    dkd = dkd_loss(student, teacher, labels, alpha=1.0, beta=0.5, temperature=1.0)
    expected = {"ce": ce, "kd": ce + kl, "kl_unsup": kl, "dkd": ce + dkd}[method]
    torch.testing.assert_close(loss, expected)


def test_stage1_loss_is_cross_entropy_through_the_projection_and_teacher_classifier(tmp_path):
    trainer = toy_trainer(tmp_path, stage="pretrain")
    dataset = toy_dataset(n=6)
    batch = ImageCollator(TRANSFORM)([dataset[i] for i in range(6)])
    model = trainer.model.eval()
    with torch.no_grad():
        loss = trainer.compute_loss(model, batch)
        projected = model.feature_projection(model.extract_features(batch["pixel_values"]))
        logits = projected @ trainer.teacher.classifier_weight.T + trainer.teacher.classifier_bias
    torch.testing.assert_close(loss, F.cross_entropy(logits, batch["labels"]))


def test_the_teacher_may_be_a_timm_model(tmp_path):
    trainer = toy_trainer(tmp_path, teacher=toy_teacher().model)
    assert isinstance(trainer.teacher, TimmTeacher) and not trainer.teacher.training
    with pytest.raises(TypeError, match="teacher must be a TimmTeacher, a timm model or a timm model name"):
        toy_trainer(tmp_path, teacher=3)


@pytest.mark.parametrize("method", ["ce", "gendd"])
def test_loss_decreases_on_a_learnable_problem(tmp_path, method):
    trainer = toy_trainer(tmp_path, method=method, max_steps=24, logging_steps=4, warmup_steps=2)
    trainer.train()
    losses = [entry["loss"] for entry in training_logs(trainer)]
    assert len(losses) == 6
    assert sum(losses[-2:]) < 0.8 * sum(losses[:2]), losses


def test_unsupervised_methods_ignore_labels_and_use_the_teacher_softmax(tmp_path):
    trainer = toy_trainer(tmp_path, method="gendd_unsup", dataset=toy_dataset(labeled=False), max_steps=1)
    trainer.train()
    assert {"diffusion_loss", "probe_loss"} <= set(training_logs(trainer)[0])


def test_kd_with_timm_mixup_uses_soft_labels_and_gendd_turns_feature_mixup_off(tmp_path):
    mixup = mixup_fn(NUM_CLASSES, mixup_alpha=0.2, cutmix_alpha=1.0)
    calls = []

    def recording_mixup(pixel_values, labels):
        mixed, soft = mixup(pixel_values, labels)
        calls.append(soft)
        return mixed, soft

    toy_trainer(tmp_path, method="kd", mixup=recording_mixup, max_steps=1).train()
    assert calls[0].shape == (8, NUM_CLASSES) and torch.allclose(calls[0].sum(1), torch.ones(8))
    trainer = toy_trainer(tmp_path, method="gendd", mixup=mixup, max_steps=1)
    assert trainer.model.config.feature_mixup_beta == 0.0


def test_precomputed_teacher_features_are_used_and_the_teacher_is_never_run(tmp_path):
    class ExplodingTeacher(TimmTeacher):
        def forward(self, pixel_values):
            raise AssertionError("the teacher must not run when the batch carries its outputs")

    teacher = ExplodingTeacher(toy_teacher().model)
    dataset = toy_dataset()
    with torch.no_grad():
        pixels = torch.stack([TRANSFORM(image) for image in dataset["image"]])
        features = toy_teacher()(pixels).features
    dataset = dataset.add_column("teacher_features", features.tolist())
    collator = ImageCollator(TRANSFORM, extra_columns=("teacher_features",))
    trainer = toy_trainer(tmp_path, method="kd", teacher=teacher, dataset=dataset, collator=collator, max_steps=2)
    trainer.train()
    assert {"ce_loss", "kd_loss"} <= set(training_logs(trainer)[0])

    with pytest.raises(ValueError, match="precomputed 'teacher_features' of un-mixed images"):
        toy_trainer(
            tmp_path, teacher=teacher, dataset=dataset, collator=collator, mixup=mixup_fn(NUM_CLASSES, mixup_alpha=0.2)
        ).train()


# ---- optimisation -------------------------------------------------------------------------------------------------
def test_cosine_beta2_hand_computed():
    # The GenDD code's progress s / (S - 1): 5 steps reach 0.999 at the last one, s = 4.
    assert cosine_beta2(0, 5) == pytest.approx(0.95)
    assert cosine_beta2(1, 5) == pytest.approx(0.999 - 0.049 * (1 + math.sqrt(0.5)) / 2)  # 0.95717588
    assert cosine_beta2(2, 5) == pytest.approx(0.9745)
    assert cosine_beta2(3, 5) == pytest.approx(0.99182412)
    assert cosine_beta2(4, 5) == pytest.approx(0.999)
    assert cosine_beta2(0, 1) == pytest.approx(0.95)
    with pytest.raises(ValueError, match="total_steps"):
        cosine_beta2(0, 0)


def test_each_optimizer_step_uses_the_scheduled_beta2_and_a_cosine_learning_rate(tmp_path):
    class RecordBetas(TrainerCallback):
        betas, lrs = [], []

        def on_optimizer_step(self, args, state, control, optimizer=None, **kwargs):
            self.betas.append([group["betas"][1] for group in optimizer.param_groups])
            self.lrs.append(optimizer.param_groups[0]["lr"])

    trainer = toy_trainer(tmp_path, method="ce", max_steps=5)
    trainer.add_callback(RecordBetas)
    trainer.train()
    assert len(RecordBetas.betas[0]) == 1  # one group: everything outside the head decays
    assert RecordBetas.betas == [[pytest.approx(b)] for b in (0.95, 0.95717588, 0.9745, 0.99182412, 0.999)]
    # Cosine decay without warm-up: lr * (1 + cos(pi * s / 5)) / 2.
    assert RecordBetas.lrs == pytest.approx([3e-3 * (1 + math.cos(math.pi * s / 5)) / 2 for s in range(5)])


def test_stage1_keeps_adam_beta2_and_nothing_clips_gradients(tmp_path):
    class RecordBetas(TrainerCallback):
        betas = []

        def on_optimizer_step(self, args, state, control, optimizer=None, **kwargs):
            self.betas.append(optimizer.param_groups[0]["betas"][1])

    trainer = toy_trainer(tmp_path, method="gendd", stage="pretrain", max_steps=2)
    assert trainer.args.max_grad_norm == 0.0  # the GenDD code does not clip
    trainer.add_callback(RecordBetas)
    trainer.train()
    assert RecordBetas.betas == [0.999, 0.999]  # the GenDD code's stage 1: AdamW's default betas


def test_optimizer_groups_follow_the_gendd_code(tmp_path):
    # The reference decays every trained parameter outside its diffusion module (the student's norms and biases
    # too) and the condition LayerNorm, which lives outside that module; the head itself takes head_weight_decay.
    trainer = toy_trainer(tmp_path, method="gendd", weight_decay=0.05, head_weight_decay=0.01)
    optimizer = trainer.create_optimizer()
    names = {id(p): name for name, p in trainer.model.named_parameters()}
    groups = {group["name"]: group for group in optimizer.param_groups}
    assert {name: group["weight_decay"] for name, group in groups.items()} == {"decay": 0.05, "head": 0.01}
    grouped = {name: {names[id(p)] for p in group["params"]} for name, group in groups.items()}
    assert {
        "student.conv1.0.weight",
        "student.bn1.weight",
        "student.bn1.bias",
        "probe.weight",
        "probe.bias",
        "head.condition_norm.weight",
        "head.condition_norm.bias",
    } <= grouped["decay"]
    assert {
        "head.input_proj.weight",
        "head.input_proj.bias",
        "head.blocks.0.mlp.0.weight",
        "head.blocks.0.in_ln.weight",
        "head.position_embed",
    } <= grouped["head"]
    assert not any(
        name.startswith("head.")
        for name in grouped["decay"] - {"head.condition_norm.weight", "head.condition_norm.bias"}
    )
    assert set().union(*grouped.values()) == set(names.values())  # gendd trains every parameter

    baseline = toy_trainer(tmp_path, method="kd").create_optimizer()
    assert {group["name"] for group in baseline.param_groups} == {"decay"}  # the head is frozen


def test_optimizer_groups_put_ln_parameters_in_the_no_decay_group(tmp_path):
    # The official rule is by name: a student norm called ln_1 (as in ViTs) is not decayed in GenDD's main stage,
    # but is decayed in stage 1 (the official stage-1 scripts decay every parameter) and by the baselines.
    from gendd_hf.trainer import parameter_groups

    model = tiny_model()
    model.student.ln_1 = torch.nn.LayerNorm(4)
    grouped = {}
    for method, stage in (("gendd", "main"), ("gendd", "pretrain"), ("kd", "main")):
        args = GenDDTrainingArguments(output_dir=str(tmp_path), method=method, stage=stage, report_to="none")
        names = {id(p): name for name, p in model.named_parameters()}
        grouped[method, stage] = {g["name"]: {names[id(p)] for p in g["params"]} for g in parameter_groups(model, args)}
    assert {"student.ln_1.weight", "student.ln_1.bias"} <= grouped["gendd", "main"]["head"]
    assert "student.bn1.weight" in grouped["gendd", "main"]["decay"]
    for key in (("gendd", "pretrain"), ("kd", "main")):
        assert {"student.ln_1.weight", "student.ln_1.bias"} <= grouped[key]["decay"]


# ---- evaluation ---------------------------------------------------------------------------------------------------
def test_evaluate_reports_top1_top5_of_both_paths_as_computed_by_hand(tmp_path):
    num_classes = 7
    model = toy_model(num_labels=num_classes)
    generator = torch.Generator().manual_seed(3)
    model.set_teacher_classifier(torch.randn(num_classes, TEACHER_DIM, generator=generator), torch.zeros(num_classes))
    with torch.no_grad():
        for parameter in model.head.parameters():
            parameter.add_(0.05 * torch.randn(parameter.shape, generator=generator))
        model.probe.weight.mul_(50)  # spread the probe's logits so that top-1 and top-5 differ from chance
    dataset = toy_dataset(n=10, num_classes=num_classes)
    pixels = torch.stack([TRANSFORM(image) for image in dataset["image"]])
    labels = torch.tensor(dataset["label"])
    dataset = dataset.add_column("teacher_features", torch.randn(10, TEACHER_DIM, generator=generator).tolist())
    args = toy_args(
        tmp_path,
        per_device_eval_batch_size=4,
        eval_seed=5,
        eval_num_inference_steps=3,
        eval_guidance_scale=1.5,
        eval_num_samples=2,
    )
    trainer = GenDDTrainer(
        model, args, eval_dataset=dataset, data_collator=ImageCollator(TRANSFORM, extra_columns=("teacher_features",))
    )

    rng_state = torch.get_rng_state()
    metrics = trainer.evaluate()
    assert torch.equal(torch.get_rng_state(), rng_state)  # evaluation leaves the training RNG alone
    assert {k for k in metrics if "top" in k} == {
        "eval_sampled_top1",
        "eval_sampled_top5",
        "eval_probe_top1",
        "eval_probe_top5",
    }
    assert math.isfinite(metrics["eval_loss"])

    model.eval()
    with torch.no_grad():
        features = model.extract_features(pixels)
        # Each image's noise comes from eval_seed and its pixels, whatever its batch (4, 4, 2 in the Trainer, 10 here).
        sampled = model.classify_features(
            model.sample_features(
                features, num_inference_steps=3, guidance_scale=1.5, num_samples=2, seed=5, pixel_values=pixels
            )
        )
        logits = {"sampled": sampled, "probe": model.probe(features)}
    for path, path_logits in logits.items():
        top5 = path_logits.topk(5, dim=1).indices
        assert metrics[f"eval_{path}_top1"] == pytest.approx((top5[:, 0] == labels).float().mean().item())
        assert metrics[f"eval_{path}_top5"] == pytest.approx((top5 == labels[:, None]).any(1).float().mean().item())
    assert 0 < metrics["eval_probe_top1"] < metrics["eval_probe_top5"] < 1

    again = trainer.evaluate()
    assert {k: again[k] for k in metrics if "top" in k or k == "eval_loss"} == {
        k: metrics[k] for k in metrics if "top" in k or k == "eval_loss"
    }


def test_baselines_report_the_probe_path_only(tmp_path):
    trainer = toy_trainer(tmp_path, method="ce")
    metrics = trainer.evaluate()
    assert {k for k in metrics if "top" in k} == {"eval_probe_top1", "eval_probe_top5"}
    predictions = trainer.predict(toy_dataset(n=10, seed=1)).predictions
    assert isinstance(predictions, tuple) and predictions[0].shape == (10, NUM_CLASSES)


# ---- stage 1 ------------------------------------------------------------------------------------------------------
def test_stage1_projection_is_linear_or_the_identity_for_equal_widths():
    # The official code projects with nn.Linear(d_s, d_t) only when the widths differ (nn.Sequential() otherwise).
    projection = tiny_model().add_feature_projection()  # test_resnet's 96-d feature -> a 32-d teacher space
    assert isinstance(projection, torch.nn.Linear) and (projection.in_features, projection.out_features) == (96, 32)
    assert isinstance(
        GenDDForImageClassification(tiny_config(teacher_feature_dim=96)).add_feature_projection(), torch.nn.Identity
    )


def test_stage1_trains_student_and_projection_then_init_from_starts_stage2(tmp_path):
    # The toy student and teacher are both 96-d: the projection is the identity, so stage 1 trains the student alone.
    stage1 = toy_trainer(tmp_path, stage="pretrain", max_steps=3)
    model = stage1.model
    before = snapshot(model)
    stage1.train()
    assert isinstance(model.feature_projection, torch.nn.Identity)
    assert changed(before, model, "student.")
    assert not changed(before, model, "head.") and not changed(before, model, "probe.")
    assert set(training_logs(stage1)[0]) >= {"ce_loss"}
    metrics = stage1.evaluate()
    assert {k for k in metrics if "top" in k} == {"eval_projection_top1", "eval_projection_top5"}
    stage1.save_model(str(tmp_path / "stage1"))

    saved = load_file(tmp_path / "stage1" / "model.safetensors")
    assert not any(name.startswith("feature_projection.") for name in saved)
    stage2 = toy_trainer(tmp_path, model=toy_model(seed=7), init_from=str(tmp_path / "stage1"), max_steps=1)
    student = stage2.model.student.state_dict()
    assert all(
        torch.equal(student[name.removeprefix("student.")], value)
        for name, value in saved.items()
        if name.startswith("student.")
    )
    assert not hasattr(stage2.model, "feature_projection")
    stage2.train()


def test_init_from_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="init_from='.*nowhere' does not exist"):
        toy_trainer(tmp_path, init_from=str(tmp_path / "nowhere"))
    folder = tmp_path / "pickled"
    folder.mkdir()
    torch.save(toy_model().state_dict(), folder / "pytorch_model.bin")
    with pytest.raises(ValueError, match="no model.safetensors .only safetensors"):
        toy_trainer(tmp_path, init_from=str(folder))
    save_file({"probe.weight": torch.zeros(3, 96)}, folder / "model.safetensors")
    with pytest.raises(ValueError, match="no 'student.\\*' weights"):
        toy_trainer(tmp_path, init_from=str(folder))
    other = toy_model(student_kwargs={"in_chans": 3})
    other.save_pretrained(folder)
    with pytest.raises(ValueError, match="does not fit student_name='test_resnet'"):
        toy_trainer(tmp_path, init_from=str(folder))


# ---- checkpoints --------------------------------------------------------------------------------------------------
def test_killed_and_resumed_run_ends_with_the_same_weights(tmp_path, full_determinism):
    # GenDD draws timesteps, noise, feature-mixup and condition-drop masks; the images are randomly cropped and flipped.
    augment = build_transforms({"input_size": (1, SIZE, SIZE), "mean": (0.5,), "std": (0.5,)}, True, "small")
    settings = dict(
        method="gendd",
        collator=ImageCollator(augment),
        max_steps=6,
        gradient_accumulation_steps=2,
        save_strategy="steps",
        save_steps=3,
        data_seed=3,
        full_determinism=True,
    )
    reference = toy_trainer(tmp_path / "reference", **settings)
    reference.train()

    killed = toy_trainer(tmp_path / "run", **settings)
    killed.add_callback(CrashAtStep(4))
    with pytest.raises(KeyboardInterrupt):
        killed.train()
    checkpoint = tmp_path / "run" / "out" / "checkpoint-3"
    # Weights in safetensors; the .pt/.pth/.bin files are the Trainer's own state (the .py files: trust_remote_code).
    assert {name for name in os.listdir(checkpoint) if not name.endswith(".py")} == {
        "config.json",
        "model.safetensors",
        "optimizer.pt",
        "rng_state.pth",
        "sampling_config.json",
        "scheduler.pt",
        "trainer_state.json",
        "training_args.bin",
    }

    resumed = toy_trainer(tmp_path / "run", model=toy_model(seed=11), **settings)
    resumed.train(resume_from_checkpoint=str(checkpoint))
    expected = reference.model.state_dict()
    assert all(torch.equal(value, expected[name]) for name, value in resumed.model.state_dict().items())
    assert training_logs(resumed)[-1]["diffusion_loss"] == training_logs(reference)[-1]["diffusion_loss"]


def test_resume_from_a_path_that_is_not_a_checkpoint(tmp_path):
    trainer = toy_trainer(tmp_path)
    with pytest.raises(FileNotFoundError, match="resume_from_checkpoint='.*missing' does not exist"):
        trainer.train(resume_from_checkpoint=str(tmp_path / "missing"))
    toy_model().save_pretrained(tmp_path / "saved_model")
    with pytest.raises(ValueError, match="not a Trainer checkpoint: trainer_state.json missing"):
        trainer.train(resume_from_checkpoint=str(tmp_path / "saved_model"))
    (tmp_path / "file.txt").write_text("not a checkpoint")
    with pytest.raises(ValueError, match="not a Trainer checkpoint: model.safetensors, trainer_state.json missing"):
        trainer.train(resume_from_checkpoint=str(tmp_path / "file.txt"))


def test_nan_loss_stops_training_and_keeps_the_last_good_checkpoint(tmp_path):
    class NaNTeacher(TimmTeacher):
        calls = 0

        def forward(self, pixel_values):
            output = super().forward(pixel_values)
            NaNTeacher.calls += 1
            if NaNTeacher.calls == 3:
                output.features[0, 0] = float("nan")
            return output

    trainer = toy_trainer(
        tmp_path, teacher=NaNTeacher(toy_teacher().model), max_steps=6, save_strategy="steps", save_steps=2
    )
    with pytest.raises(NonFiniteLossError, match=r"loss is nan at step 3 .*last checkpoint is .*checkpoint-2"):
        trainer.train()
    output_dir = tmp_path / "out"
    assert sorted(os.listdir(output_dir)) == ["checkpoint-2"]
    weights = load_file(output_dir / "checkpoint-2" / "model.safetensors")
    assert all(torch.isfinite(value).all() for value in weights.values())
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())  # no optimizer step used the NaN


def test_nan_loss_puts_the_model_in_memory_back_at_the_last_optimizer_step(tmp_path):
    class NaNImageAtBatch(ImageCollator):
        calls = 0

        def __call__(self, examples):
            batch = super().__call__(examples)
            NaNImageAtBatch.calls += 1
            if NaNImageAtBatch.calls == 6:  # the second micro-batch of step 3
                batch["pixel_values"][0] = float("nan")
            return batch

    trainer = toy_trainer(
        tmp_path,
        collator=NaNImageAtBatch(TRANSFORM),
        max_steps=4,
        gradient_accumulation_steps=2,
        save_strategy="steps",
        save_steps=2,
    )
    with pytest.raises(NonFiniteLossError, match=r"loss is nan at step 3 .*back at its state after step 2"):
        trainer.train()
    # The bad forward had put NaN in the BatchNorm statistics and the target range, and the first micro-batch of
    # step 3 had moved them too: all are back, so the model in memory is the one checkpoint-2 holds.
    state = trainer.model.state_dict()
    saved = load_file(tmp_path / "out" / "checkpoint-2" / "model.safetensors")
    assert {"student.bn1.running_mean", "target_min", "target_max"} <= saved.keys()
    assert all(torch.equal(state[name], value) for name, value in saved.items())
    assert all(torch.isfinite(value).all() for value in state.values() if value.is_floating_point())


# ---- bad input ----------------------------------------------------------------------------------------------------
def dataset_with_label(label: int):
    """The toy images with `label` in place of every other class, as plain integers (a ClassLabel refuses them)."""
    labels = np.arange(48) % NUM_CLASSES
    labels[::2] = label
    return toy_dataset(labeled=False).add_column("label", labels.tolist())


@pytest.mark.parametrize(
    "method, label, message",
    [
        (
            "gendd",
            -1,
            r"Got label -1 in a training batch, but labels must be class indices in 0\.\.2 \(num_labels=3\): "
            r"label the data with the model's classes .* A negative label usually marks an image without class",
        ),
        (
            "ce",
            3,
            r"Got label 3 in a training batch, but labels must be class indices in 0\.\.2 \(num_labels=3\) or "
            r"-100 \(skipped\): label the data with the model's classes",
        ),
        (
            "gendd",
            -100,
            r"Got label -100 \(the ignore index: an image without class\) in a training batch, but only the "
            r"cross-entropy of method 'ce' or 'kd' or of stage 'pretrain'.* skips it; here labels must be "
            r"class indices in 0\.\.2 .* Drop the images without class",
        ),
    ],
)
def test_labels_that_are_not_classes_fail_before_the_forward(tmp_path, method, label, message):
    trainer = toy_trainer(tmp_path, method=method, dataset=dataset_with_label(label))
    before = snapshot(trainer.model)
    with pytest.raises(ValueError, match=message):
        trainer.train()
    assert not changed(before, trainer.model, "")  # no forward ran: the BatchNorm statistics are untouched


def test_label_minus_100_is_skipped_by_the_cross_entropy_in_training_only(tmp_path):
    dataset = dataset_with_label(-100)
    trainer = toy_trainer(tmp_path, method="ce", dataset=dataset, max_steps=2)
    trainer.train()
    assert all(math.isfinite(entry["ce_loss"]) for entry in training_logs(trainer))
    with pytest.raises(ValueError, match=r"Got label -100 .* in an evaluation batch"):
        trainer.evaluate(dataset)  # top-1 scores every image


def test_a_method_that_needs_labels_on_unlabeled_data(tmp_path):
    with pytest.raises(ValueError, match="method='gendd' needs labels, but the batch has no 'labels'"):
        toy_trainer(tmp_path, dataset=toy_dataset(labeled=False)).train()


@pytest.mark.parametrize(
    "student_chans,teacher_chans,message",
    [
        (3, 1, "pixel_values have 1 channels but the student 'test_resnet' expects in_chans=3"),
        (1, 3, "pixel_values have 1 channels but the teacher expects 3"),
    ],
)
def test_image_channels_that_do_not_match(tmp_path, student_chans, teacher_chans, message):
    trainer = toy_trainer(
        tmp_path,
        model=toy_model(student_kwargs={"in_chans": student_chans}),
        teacher=toy_teacher(in_chans=teacher_chans),
    )
    with pytest.raises(ValueError, match=message):
        trainer.train()


def test_teacher_and_dataset_class_counts_that_differ(tmp_path):
    with pytest.raises(ValueError, match="The teacher has 4 classes but the model has num_labels=3"):
        toy_trainer(tmp_path, teacher=toy_teacher(num_classes=4))
    with pytest.raises(ValueError, match="The train_dataset 'label' column has 4 classes but .* num_labels=3"):
        toy_trainer(tmp_path, dataset=toy_dataset(num_classes=4))


def test_teacher_feature_dim_not_divisible_by_token_dim(tmp_path):
    model = toy_model(teacher_feature_dim=128, token_dim=64)
    with pytest.raises(
        ValueError,
        match="96 dims .* teacher_feature_dim=128: set teacher_feature_dim=96 .*"
        "token_dim=64 does not divide 96; e.g. token_dim=32",
    ):
        toy_trainer(tmp_path, model=model)


def test_training_without_an_accelerator_does_not_warn_about_pin_memory(tmp_path, recwarn):
    trainer = toy_trainer(tmp_path, use_cpu=False, max_steps=1)  # not use_cpu, which turns pinning off itself
    assert trainer.args.dataloader_pin_memory == torch.accelerator.is_available()
    trainer.train()
    assert not [warning for warning in recwarn if "pin_memory" in str(warning.message)]


def test_arguments_parse_from_the_command_line_and_are_validated(tmp_path):
    (args,) = HfArgumentParser(GenDDTrainingArguments).parse_args_into_dataclasses(
        ["--output_dir", str(tmp_path), "--method", "kd", "--eval_inference_paths", "probe", "--warmup_steps", "0.05"]
    )
    assert (args.method, args.eval_inference_paths, args.warmup_steps) == ("kd", ["probe"], 0.05)
    assert (args.lr_scheduler_type, args.remove_unused_columns, args.ddp_find_unused_parameters) == (
        "cosine",
        False,
        False,
    )
    with pytest.raises(ValueError, match="method='distill' is invalid"):
        toy_args(tmp_path, method="distill")
    with pytest.raises(ValueError, match="adam_beta2_start=1.0 is invalid"):
        toy_args(tmp_path, adam_beta2_start=1.0)
    with pytest.raises(ValueError, match="eval_inference_paths=.* is invalid"):
        toy_args(tmp_path, eval_inference_paths=["teacher"])
    with pytest.raises(ValueError, match="method='dkd' needs hard labels"):
        toy_trainer(tmp_path, method="dkd", mixup=mixup_fn(NUM_CLASSES, mixup_alpha=0.2))
    with pytest.raises(ValueError, match="trains without labels"):
        toy_trainer(tmp_path, method="kl_unsup", mixup=mixup_fn(NUM_CLASSES, mixup_alpha=0.2))
    with pytest.raises(ValueError, match="no teacher was given"):
        toy_trainer(tmp_path, teacher=None)
    assert toy_args(tmp_path, method="dkd", dkd_defaults="cifar100", dkd_beta=2.0).dkd_kwargs == {
        "alpha": 1.0,
        "beta": 2.0,
        "temperature": 4.0,
        "warmup_epochs": 20.0,
    }


def test_hub_flags_without_push_to_hub_warn_that_nothing_will_be_pushed(tmp_path, recwarn):
    with pytest.warns(UserWarning, match="hub_strategy='checkpoint' given without push_to_hub: nothing will be pushed"):
        toy_args(tmp_path, hub_strategy="checkpoint")
    with pytest.warns(UserWarning, match="hub_model_id='me/run' and hub_strategy='end' given without push_to_hub"):
        toy_args(tmp_path, hub_model_id="me/run", hub_strategy="end")
    recwarn.clear()
    toy_args(tmp_path, hub_model_id="me/run", push_to_hub=True)
    toy_args(tmp_path, hub_model_id="me/run", resume_from_checkpoint="hub")  # the repo to resume from
    assert not [warning for warning in recwarn if "push_to_hub" in str(warning.message)]
