"""The recipes of `recipes/` end to end, offline, on tiny local data of each format they read.

Every recipe runs as users run it (`python recipes/X.py ...`, one under `accelerate launch`) on data these tests write:
an imagefolder, parquet files and webdataset tar shards of 32x32 images of 6 classes (a bright band whose row is the
class), with a `test_resnet` teacher saved as safetensors. The ImageNet recipe pushes to the loopback fake Hub of
`hub_server.py`, which answers every file as a regular upload: LFS/xet transfers are not covered here
(`test_hub_push.py::test_push_to_real_hub` covers them against the real Hub when credentials are set).
"""

import json
import os
import runpy
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from datasets import Dataset, Image
from PIL import Image as PILImage
from safetensors.torch import load_file
from transformers import AutoModelForImageClassification, TrainerCallback, pipeline

from gendd_hf.cli import parse_recipe_args, run_recipe
from gendd_hf.cli.output_lock import LOCK_NAME, OutputDirLock
from gendd_hf.cli.run import warn_on_small_images
from gendd_hf.data import load_image_dataset
from gendd_hf.hub import PUSHED_FILES
from gendd_hf.teacher import TimmTeacher
from gendd_hf.teacher_outputs import (
    TeacherOutputsMismatchError,
    TeacherOutputsSettings,
    ViewConfig,
    finalize_teacher_outputs,
    precompute_teacher_outputs,
)
from helpers import same_card_but_repo_id
from hub_server import FAKE_TOKEN, serve_fake_hub
from recipe_helpers import (
    NAMES,
    QUIET,
    RECIPES,
    SIZE,
    TINY,
    band_image,
    recipe_env,
    run_script,
    teacher_args,
    write_recipe_data,
)


IMAGENET_DEFAULTS = runpy.run_path(str(RECIPES / "train_imagenet.py"))["DEFAULTS"]
CIFAR_DEFAULTS = runpy.run_path(str(RECIPES / "train_cifar100.py"))["DEFAULTS"]
pytestmark = pytest.mark.usefixtures("datasets_cache_in_tmp_path")  # conftest.py


def python(script: str, *args: str) -> list[str]:
    return [sys.executable, str(RECIPES / script), *args]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_recipe_data(tmp_path_factory.mktemp("recipe_data"))


def read_json(path: Path) -> dict:
    return json.loads(path.read_text())


def same_weights(folder_a: Path, folder_b: Path) -> bool:
    a, b = load_file(folder_a / "model.safetensors"), load_file(folder_b / "model.safetensors")
    return a.keys() == b.keys() and all(torch.equal(a[name], b[name]) for name in a)


# ---- ImageNet recipe: imagefolder, A2 (RandAugment, mixup, cutmix), checkpoints, push -------------------------------
# Deterministic kernels, so that the resumed run can be compared bit for bit on a GPU too.
# The tests of this run are marked slow: the run, in a subprocess, takes ~10 s on 2 CPU cores.
IMAGENET_RUN = [
    *TINY,
    *QUIET,
    "--recipe",
    "a2",
    "--max_steps",
    "8",
    "--per_device_train_batch_size",
    "7",
    "--save_strategy",
    "steps",
    "--save_steps",
    "4",
    "--seed",
    "3",
    "--full_determinism",
    "true",
]


@pytest.fixture(scope="module")
def imagenet_run(data, tmp_path_factory):
    """`train_imagenet.py --recipe a2` for 8 steps of 7 images (24 images: 4 steps an epoch, the last of 3 images, an
    odd batch for mixup), checkpoints every 4 steps, pushed to a fake Hub. Returns the output folder and the Hub."""
    tmp = tmp_path_factory.mktemp("imagenet")
    with serve_fake_hub() as hub:
        env = recipe_env(
            tmp, HF_HUB_OFFLINE=None, TRANSFORMERS_OFFLINE=None, HF_ENDPOINT=hub.endpoint, HF_TOKEN=FAKE_TOKEN
        )
        run_script(
            python(
                "train_imagenet.py",
                "--dataset_name",
                str(data["imagefolder"]),
                *teacher_args(data),
                *IMAGENET_RUN,
                "--output_dir",
                str(tmp / "out"),
                "--push_to_hub",
                "--hub_model_id",
                "gendd/recipe-test",
            ),
            env,
        )
    return {"output_dir": tmp / "out", "hub": hub, "tmp": tmp}


@pytest.mark.slow
def test_imagenet_recipe_saves_a_loadable_folder_with_its_model_card(imagenet_run):
    out = imagenet_run["output_dir"]
    assert {
        "model.safetensors",
        "config.json",
        "modeling_gendd.py",
        "sampling_config.json",
        "README.md",
        "eval_results.json",
        "checkpoint-4",
        "checkpoint-8",
    } <= set(os.listdir(out))
    assert "sampling_config.json" in os.listdir(out / "checkpoint-4")
    config = read_json(out / "config.json")
    # Sized by the teacher (96-d feature, 6 classes), names from the imagefolder, A2 turns feature mixup off.
    assert config["teacher_feature_dim"] == 96 and config["id2label"] == {str(i): n for i, n in enumerate(NAMES)}
    assert config["feature_mixup_beta"] == 0.0 and config["contraction"] == 0.9
    # The evaluation transform, which is also the image processor's config.
    assert config["pretrained_cfg"] == {
        "input_size": [3, SIZE, SIZE],
        "interpolation": "bilinear",
        "mean": [0.5] * 3,
        "std": [0.5] * 3,
        "crop_pct": 0.95,
        "crop_mode": "center",
    }
    assert config["image_processor_type"] == "TimmWrapperImageProcessor"

    metrics = read_json(out / "eval_results.json")
    assert {"eval_sampled_top1", "eval_sampled_top5", "eval_probe_top1", "eval_probe_top5"} <= set(metrics)
    card = (out / "README.md").read_text()
    for expected in [
        "timm `test_resnet`, weights from the local file `teacher.safetensors` (not on the Hub)",
        "**Student backbone** (timm): `test_resnet`",
        "**Training data**: `imagefolder` (local files, not on the Hub), split `train`\n",
        "**Evaluation data**: `imagefolder` (local files, not on the Hub), split `validation`",
        "**Training method**: `gendd`",
        "**lambda = 0.9**",
        "tokens of 32 dimensions",
        "| GenDD optimizer steps | 8 |",
        "| learning rate | 0.002 (cosine schedule) |",
        "| batch size | 7 |",
        "8 optimizer steps",
        "Augmentation `a2`, mixup 0.1, cutmix 1.0",
        f"diffusion head | {100 * metrics['eval_sampled_top1']:.2f} | {100 * metrics['eval_sampled_top5']:.2f} |",
        f"no sampling) | {100 * metrics['eval_probe_top1']:.2f} | {100 * metrics['eval_probe_top5']:.2f} |",
        'from_pretrained("gendd/recipe-test")',
    ]:
        assert expected in card, expected

    model = AutoModelForImageClassification.from_pretrained(out).eval()
    classifier = pipeline("image-classification", model=str(out), top_k=2)
    predictions = classifier(band_image(2, np.random.default_rng(5)))
    assert len(predictions) == 2 and {p["label"] for p in predictions} <= set(NAMES)
    assert model.config.inference_path == "sampled"


@pytest.mark.slow
def test_push_sends_the_final_folder_without_pickles_or_checkpoints(imagenet_run):
    out, hub = imagenet_run["output_dir"], imagenet_run["hub"]
    repo = hub.repo("gendd/recipe-test")
    local = {
        path.name: path.read_bytes()
        for path in out.iterdir()
        if path.is_file() and any(path.match(pattern) for pattern in PUSHED_FILES)
    }
    assert repo.files == local  # byte for byte, as regular (non-LFS) uploads
    assert {
        "model.safetensors",
        "config.json",
        "configuration_gendd.py",
        "modeling_gendd.py",
        "sampling_config.json",
        "README.md",
        "eval_results.json",
    } <= set(repo.files)
    assert "training_args.bin" in os.listdir(out) and not any(
        name.endswith((".bin", ".pt", ".pth")) or "/" in name for name in repo.files
    )
    # The Trainer's pushes (hub_strategy every_save: the model folder at each checkpoint), then the final one.
    summaries = [commit["summary"] for commit in repo.commits]
    assert summaries[0] == "Training in progress, step 4" and summaries[-1] == "GenDD gendd: end of training"
    assert set(summaries[1:-1]) <= {"Training in progress, step 8"}
    assert hub.unhandled == []


@pytest.mark.slow
def test_the_recipes_card_survives_a_push_of_the_loaded_model(imagenet_run, fake_hub):
    """The recipe-trained student, loaded from its folder and pushed with `model.push_to_hub` (as docs/recipes.md
    shows), goes up with the folder's card: its teacher, data, steps, results and metadata, not "not recorded"."""
    out = imagenet_run["output_dir"]
    model = AutoModelForImageClassification.from_pretrained(out)
    model.push_to_hub("gendd/recipe-copy")
    local = (out / "README.md").read_text()
    pushed = fake_hub.repo("gendd/recipe-copy").files["README.md"].decode()
    assert same_card_but_repo_id(pushed, local, "gendd/recipe-copy", "gendd/recipe-test")
    assert "| GenDD optimizer steps | 8 |" in pushed and "not recorded" not in pushed


@pytest.mark.slow
def test_resume_from_a_recipe_checkpoint_ends_with_the_same_weights(imagenet_run, data, tmp_path):
    """Resumed at the end of an epoch (step 4 of 8), the run ends bit-identical to the uninterrupted one: RandAugment,
    mixup/cutmix and GenDD's noise all restart from the checkpoint's RNG states. (A checkpoint in the middle of an
    epoch resumes correctly too, but not bit-identically: the data loader draws the next batch's augmentation before
    the checkpoint is written.)"""
    out = imagenet_run["output_dir"]
    run_script(
        python(
            "train_imagenet.py",
            "--dataset_name",
            str(data["imagefolder"]),
            *teacher_args(data),
            *IMAGENET_RUN,
            "--output_dir",
            str(tmp_path / "resumed"),
            "--resume_from_checkpoint",
            str(out / "checkpoint-4"),
        ),
        recipe_env(tmp_path),
    )
    assert same_weights(out, tmp_path / "resumed")
    assert (
        read_json(tmp_path / "resumed" / "eval_results.json")["eval_sampled_top1"]
        == read_json(out / "eval_results.json")["eval_sampled_top1"]
    )


@pytest.mark.slow
def test_evaluate_model_recipe_scores_the_folder_as_training_did(imagenet_run, data, tmp_path):
    out = imagenet_run["output_dir"]
    run_script(
        python(
            "evaluate_model.py",
            "--model_name_or_path",
            str(out),
            "--dataset_name",
            str(data["imagefolder"]),
            "--output_dir",
            str(tmp_path / "eval"),
            *QUIET[:6],
            "--per_device_eval_batch_size",
            "4",
            "--shot_metrics_split",
            "train",
        ),
        recipe_env(tmp_path),
    )
    scores = read_json(tmp_path / "eval" / "eval_results.json")
    trained = read_json(out / "eval_results.json")
    names = ["eval_sampled_top1", "eval_sampled_top5", "eval_probe_top1", "eval_probe_top5"]
    shots = [f"eval_{path}_{group}_top1" for path in ("sampled", "probe") for group in ("many", "medium", "few")]
    assert set(scores) == set(names + shots)
    # Same transform, batches and sampling seed, without the teacher: the same numbers.
    assert {name: scores[name] for name in names} == {name: trained[name] for name in names}
    # 4 training images per class: every class is few-shot, and the validation split is balanced (2 per class), so
    # the few-shot top-1 (a mean of per-class accuracies) is the top-1; the empty groups are NaN.
    for path in ("sampled", "probe"):
        assert scores[f"eval_{path}_few_top1"] == pytest.approx(scores[f"eval_{path}_top1"])
        assert np.isnan(scores[f"eval_{path}_many_top1"]) and np.isnan(scores[f"eval_{path}_medium_top1"])


# ---- CIFAR-100 recipe: parquet, under accelerate launch -------------------------------------------------------------
@pytest.mark.slow
def test_cifar100_recipe_trains_kd_on_parquet_under_accelerate_launch(data, tmp_path):
    out = tmp_path / "out"
    launch = [
        str(Path(sys.executable).parent / "accelerate"),
        "launch",
        "--num_processes",
        "1",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
    ]
    run_script(
        [
            *launch,
            str(RECIPES / "train_cifar100.py"),
            "--dataset_name",
            str(data["parquet"]),
            *teacher_args(data, "cifar_teacher", "cifar_resnet20"),
            "--method",
            "kd",
            *TINY[2:],
            "--max_steps",
            "3",
            "--per_device_train_batch_size",
            "8",
            *QUIET,
            "--output_dir",
            str(out),
        ],
        recipe_env(tmp_path),
    )
    metrics = read_json(out / "eval_results.json")
    assert {name for name in metrics if "top" in name} == {"eval_probe_top1", "eval_probe_top5"}
    config = read_json(out / "config.json")
    assert config["student_name"] == "cifar_resnet20" and config["teacher_feature_dim"] == 64
    assert config["id2label"]["5"] == "owl" and config["inference_path"] == "probe"
    assert config["pretrained_cfg"]["crop_pct"] == 1.0  # the "small" preset evaluates with a plain resize
    assert config["pretrained_cfg"]["mean"] == pytest.approx([0.5071, 0.4867, 0.4408])
    card = (out / "README.md").read_text()
    assert "**Training method**: `kd` (a distillation baseline" in card and "| kd optimizer steps | 3 |" in card


# ---- unsupervised recipe: streamed webdataset shards, labelled evaluation set ---------------------------------------
def test_cc3m_recipe_streams_unlabeled_shards_and_evaluates_on_labeled_data(data, tmp_path):
    out = tmp_path / "out"
    run_script(
        python(
            "train_cc3m_unsupervised.py",
            "--dataset_name",
            str(data["wds"]),
            "--eval_dataset_name",
            str(data["imagefolder"]),
            *teacher_args(data),
            *TINY,
            "--max_steps",
            "4",
            "--per_device_train_batch_size",
            "8",
            "--shuffle_buffer_size",
            "8",
            *QUIET,
            "--output_dir",
            str(out),
        ),
        recipe_env(tmp_path),
    )
    metrics = read_json(out / "eval_results.json")
    assert {"eval_sampled_top1", "eval_probe_top1", "eval_loss"} <= set(metrics)
    config = read_json(out / "config.json")
    assert config["contraction"] == 0.0 and config["id2label"]["0"] == "bee"  # names from the evaluation set
    card = (out / "README.md").read_text()
    assert "**Training method**: `gendd_unsup` (GenDD without labels)" in card
    assert "**lambda = 0.0** (unsupervised: no labels)" in card and "4 optimizer steps" in card
    # The training data is named (streamed, unlabelled), apart from the evaluation data; local paths are not links.
    assert (
        "**Training data**: `wds` (local files, not on the Hub), split `train`, streamed, used without its labels"
    ) in card
    assert "**Evaluation data**: `imagefolder` (local files, not on the Hub), split `validation`" in card
    assert "| GenDD optimizer steps | 4 |" in card and "huggingface.co/datasets" not in card


# ---- arguments ------------------------------------------------------------------------------------------------------
def test_defaults_are_layered_script_recipe_preset_then_command_line(capsys):
    args, training_args = parse_recipe_args(
        ["--output_dir", "x", "--recipe", "a1", "--cutmix_alpha", "0.5"],
        IMAGENET_DEFAULTS,
        {"regular": {}, "a1": {"mixup_alpha": 0.2, "cutmix_alpha": 1.0}},
    )
    assert (args.dataset_name, args.teacher_name, training_args.learning_rate) == (
        "imagenet-1k",
        "resnet34.tv_in1k",
        2e-3,
    )
    assert (args.mixup_alpha, args.cutmix_alpha) == (0.2, 0.5)  # the recipe's, then the command line's

    args, training_args = parse_recipe_args(
        ["--preset", "cifar100-resnet56-resnet20", "--learning_rate", "0.5"],
        CIFAR_DEFAULTS,
        script="train_cifar100.py",
    )
    assert (args.teacher_name, args.student_name) == ("cifar_resnet56", "cifar_resnet20")
    assert training_args.output_dir == "outputs/cifar100-resnet56-resnet20"  # a GenDDTrainingArguments field
    assert training_args.learning_rate == 0.5
    with pytest.raises(ValueError, match="runs with recipes/train_cifar100.py, not train_imagenet.py"):
        parse_recipe_args(["--preset", "cifar100-resnet56-resnet20"], IMAGENET_DEFAULTS, script="train_imagenet.py")
    with pytest.raises(ValueError, match="Unknown preset 'cifar100-resnet56-resnet2'"):
        parse_recipe_args(["--preset", "cifar100-resnet56-resnet2"], CIFAR_DEFAULTS)
    with pytest.raises(SystemExit) as exit_info:
        parse_recipe_args(["--list-presets"], CIFAR_DEFAULTS)
    assert exit_info.value.code == 0 and "cifar100-resnet56-resnet20" in capsys.readouterr().out


def test_data_config_follows_the_teacher():
    torch.manual_seed(0)
    gray = TimmTeacher(timm.create_model("test_resnet", in_chans=1, num_classes=3))
    config = gray.data_config(image_size=28)
    # timm reports 3-channel values for a 1-channel model; the recipe uses one channel.
    assert config["input_size"] == (1, 28, 28) and config["mean"] == (0.5,) and config["std"] == (0.5,)
    assert TimmTeacher(timm.create_model("test_resnet")).data_config()["input_size"] == (3, 160, 160)


@pytest.mark.slow
def test_the_pipeline_on_the_saved_folder_reproduces_the_recipes_evaluation_exactly(imagenet_run, data):
    from transformers import pipeline

    out = imagenet_run["output_dir"]
    metrics = read_json(out / "eval_results.json")
    validation = load_image_dataset(str(data["imagefolder"]), split="validation")
    classifier = pipeline("image-classification", model=str(out))
    predicted = [NAMES.index(classifier(image, top_k=1)[0]["label"]) for image in validation["image"]]
    top1 = float(np.mean(np.array(predicted) == np.array(validation["label"])))
    # The same 12 answers: equal counts (the metric is stored as a float32 fraction).
    assert len(predicted) == 12 and round(top1 * 12) == round(metrics["eval_sampled_top1"] * 12)


# ---- bad input ------------------------------------------------------------------------------------------------------
def run_in_process(data, tmp_path, *args, dataset="imagefolder", callbacks=None):
    argv = [
        "--dataset_name",
        str(data[dataset]),
        *TINY,
        "--max_steps",
        "1",
        "--per_device_train_batch_size",
        "4",
        *QUIET,
        "--output_dir",
        str(tmp_path / "out"),
        *args,
    ]
    if "--teacher_name" not in args:
        argv += teacher_args(data)
    return run_recipe(*parse_recipe_args(argv, IMAGENET_DEFAULTS), callbacks=callbacks)


@pytest.mark.parametrize(
    "case, args, error, message",
    [
        (
            "labels missing",
            ["--eval_dataset_name", "@imagefolder"],
            ValueError,
            r"--method gendd needs labels, but '.*wds' \(train\) has no label column \(columns: \['image'\]\)\. Pass "
            r"--label_column NAME, or train without labels with --method gendd_unsup",
        ),
        (
            "channels",
            ["--student_kwargs", '{"in_chans": 1}'],
            ValueError,
            r"takes 3-channel images but the student is built with in_chans=1; "
            r".*--student_kwargs '\{\"in_chans\": 3\}'",
        ),
        (
            "class count",
            [
                "--teacher_name",
                "test_resnet",
                "--teacher_checkpoint",
                "@teacher4",
                "--teacher_kwargs",
                '{"num_classes": 4}',
            ],
            ValueError,
            r"The train dataset 'label' column has 6 classes but the model and teacher have num_labels=4",
        ),
        (
            "label out of range",
            [
                "--teacher_name",
                "test_resnet",
                "--teacher_checkpoint",
                "@teacher4",
                "--teacher_kwargs",
                '{"num_classes": 4}',
                "--eval_split",
                "",
            ],
            ValueError,
            r"The train dataset has label 5 but the teacher has 4 classes \(0\.\.3\)",
        ),
        (
            "token dim",
            ["--token_dim", "64"],
            ValueError,
            r"token_dim=64 is invalid: it must divide teacher_feature_dim=96",
        ),
        (
            "teacher checkpoint missing",
            [
                "--teacher_name",
                "test_resnet",
                "--teacher_checkpoint",
                "@tmp/none",
                "--teacher_kwargs",
                '{"num_classes": 6}',
            ],
            FileNotFoundError,
            r"Teacher checkpoint .*none does not exist",
        ),
        (
            "teacher checkpoint a pickle",
            [
                "--teacher_name",
                "test_resnet",
                "--teacher_checkpoint",
                "@tmp/pickle.pt",
                "--teacher_kwargs",
                '{"num_classes": 6}',
            ],
            ValueError,
            r"is not a safetensors file",
        ),
        (
            "resume checkpoint missing",
            ["--resume_from_checkpoint", "@tmp/checkpoint-7"],
            FileNotFoundError,
            r"resume_from_checkpoint='.*checkpoint-7' does not exist",
        ),
        (
            "resume from a folder that is no checkpoint",
            ["--resume_from_checkpoint", "@tmp"],
            ValueError,
            r"is not a Trainer checkpoint: model.safetensors, trainer_state.json missing",
        ),
        (
            "resume from the latest checkpoint of none",
            ["--resume_from_checkpoint", "latest"],
            FileNotFoundError,
            r"resume_from_checkpoint='latest' resumes from the latest checkpoint-N folder of output_dir='.*out', "
            r"but it has none: start without resume_from_checkpoint",
        ),
        (
            "stream without max_steps",
            ["--streaming", "--max_steps", "-1", "--method", "gendd_unsup", "--eval_split", ""],
            ValueError,
            r"A streamed training set has no length: pass --max_steps N",
        ),
        ("bad JSON", ["--student_kwargs", "{in_chans: 1}"], ValueError, r"--student_kwargs must be a JSON object"),
        (  # before: a PIL error at the first batch
            "image size 0",
            ["--image_size", "0"],
            ValueError,
            r"--image_size 0 is invalid: every image is resized to image_size x image_size, which would give no image",
        ),
        (  # before: trained on 4x4 images
            "image size 4",
            ["--image_size", "4"],
            ValueError,
            r"--image_size 4 is invalid: .* 4x4-pixel images, too small to classify. Use at least 8",
        ),
        (
            "shot metrics without an eval split",
            ["--shot_metrics", "--eval_split", ""],
            ValueError,
            r"--shot_metrics groups the classes by their images in the training split, .* and an --eval_split",
        ),
    ],
)
def test_bad_input_fails_before_training_with_the_fix_in_the_message(data, tmp_path, case, args, error, message):
    torch.save({"weights": torch.zeros(1)}, tmp_path / "pickle.pt")
    paths = {**{name: str(path) for name, path in data.items()}, "tmp": str(tmp_path)}
    args = [
        str(Path(paths[arg[1:].split("/")[0]], *arg[1:].split("/")[1:])) if arg.startswith("@") else arg for arg in args
    ]
    dataset = {"labels missing": "wds", "label out of range": "parquet_int", "stream without max_steps": "wds"}
    with pytest.raises(error, match=message):
        run_in_process(data, tmp_path, *args, dataset=dataset.get(case, "imagefolder"))


def labelled_parquet(data, folder: Path, split: str, label: int) -> Path:
    """The parquet dataset of `data` with the first label of `split` replaced by `label`."""
    folder.mkdir()
    for name in ("train", "test"):
        dataset = Dataset.from_parquet(str(data["parquet"] / f"{name}.parquet"))
        if name == split:
            labels = [label, *dataset["fine_label"][1:]]
            feature = dataset.features["fine_label"]
            dataset = dataset.remove_columns("fine_label").add_column("fine_label", labels, feature=feature)
        dataset.to_parquet(folder / f"{name}.parquet")
    return folder


@pytest.mark.parametrize("split, name", [("train", "train"), ("test", "eval")])
def test_a_label_outside_the_classes_is_named_before_training_in_every_split(data, tmp_path, split, name):
    """Label -1 (ClassLabel's "no label"). Before: in the train split it failed when its batch came; in the evaluation
    split after training, with no model saved."""
    parquet = labelled_parquet(data, tmp_path / "labels", split, -1)

    class NoStep(TrainerCallback):
        def on_step_begin(self, *args, **kwargs):
            raise AssertionError("a training step ran")

    data = {**data, "bad": parquet}
    message = rf"The {name} dataset has label -1 but the teacher has 6 classes \(0\.\.5\); a negative label usually"
    with pytest.raises(ValueError, match=message):
        run_in_process(
            data, tmp_path, "--label_column", "fine_label", "--eval_split", "test", dataset="bad", callbacks=[NoStep()]
        )
    if split == "train":  # an unsupervised method never reads the training labels
        run_in_process(
            data, tmp_path, "--label_column", "fine_label", "--eval_split", "", "--method", "gendd_unsup", dataset="bad"
        )


def test_a_failure_after_training_leaves_the_model_saved_and_says_where(data, tmp_path, capsys):
    """Before: the model was saved after evaluation, card and push; a failing evaluation lost it."""

    class FailingEvaluation(TrainerCallback):
        def on_evaluate(self, *args, **kwargs):
            raise RuntimeError("the evaluation broke")

    with pytest.raises(RuntimeError, match="the evaluation broke"):
        run_in_process(data, tmp_path, callbacks=[FailingEvaluation()])
    out = tmp_path / "out"
    assert (out / "model.safetensors").is_file() and (out / "config.json").is_file()
    assert f"The trained model is saved in {out} (model.safetensors" in capsys.readouterr().err
    assert not (out / LOCK_NAME).exists()  # released on the error too
    AutoModelForImageClassification.from_pretrained(out)


def test_a_second_run_into_a_folder_in_use_is_refused_unless_overwrite(data, tmp_path):
    """Before: two runs wrote into one output_dir at once. The lock names a live process (here `sleep`); once that
    process is dead, its lock is taken over; `--overwrite_output_dir` takes it while it lives."""
    out = tmp_path / "out"
    holder = subprocess.Popen(["sleep", "60"])
    try:
        with OutputDirLock(out):  # written as the holder's
            (out / LOCK_NAME).write_text(json.dumps({"pid": holder.pid, "host": socket.gethostname(), "started": 0}))
            with pytest.raises(
                RuntimeError, match=rf"output_dir '{out}' is in use by another run: process {holder.pid}"
            ):
                run_in_process(data, tmp_path)
            with OutputDirLock(out, overwrite=True):
                assert json.loads((out / LOCK_NAME).read_text())["pid"] == os.getpid()
    finally:
        holder.kill()
        holder.wait()
    (out / LOCK_NAME).write_text(json.dumps({"pid": holder.pid, "host": socket.gethostname(), "started": 0}))
    with OutputDirLock(out):  # the dead process's lock is taken over
        assert json.loads((out / LOCK_NAME).read_text())["pid"] == os.getpid()
    assert not (out / LOCK_NAME).exists()
    (out / LOCK_NAME).write_text(json.dumps({"pid": 1, "host": "another-machine", "started": 0}))
    with pytest.raises(RuntimeError, match="process 1 on host 'another-machine'.* delete the lock file"):
        OutputDirLock(out).__enter__()


def test_images_below_the_students_stride_or_tiny_are_warned_with_the_reason(data):
    args, _ = parse_recipe_args(["--output_dir", "out", "--dataset_name", "d", *teacher_args(data), *TINY])
    model = args.build_model(TimmTeacher.from_timm("test_resnet", pretrained=False, num_classes=6))
    with pytest.warns(UserWarning, match="--image_size 16 is below the total stride 32 of the student 'test_resnet'"):
        warn_on_small_images(model, 16, Dataset.from_dict({"label": [0]}))
    tiny = Dataset.from_dict({"image": [PILImage.new("RGB", (1, 1))]}).cast_column("image", Image())
    with pytest.warns(UserWarning, match="training images are 1x1 pixels .* resized to 32 pixels"):
        warn_on_small_images(model, 32, tiny)


def test_resume_from_checkpoint_true_resumes_from_the_latest_checkpoint(data, tmp_path):
    """The command line passes strings only: `true` (or `latest`) stands for the Trainer's `True`."""
    run_in_process(
        data, tmp_path, "--max_steps", "2", "--save_strategy", "steps", "--save_steps", "1", "--eval_split", ""
    )
    assert {"checkpoint-1", "checkpoint-2"} <= set(os.listdir(tmp_path / "out"))

    class RecordSteps(TrainerCallback):
        steps = []

        def on_step_end(self, args, state, control, **kwargs):
            self.steps.append(state.global_step)

    run_in_process(
        data,
        tmp_path,
        "--max_steps",
        "3",
        "--resume_from_checkpoint",
        "true",
        "--eval_split",
        "",
        callbacks=[RecordSteps()],
    )
    assert RecordSteps.steps == [3]  # steps 1 and 2 came from checkpoint-2


def test_the_hub_flow_as_typed_pushes_checkpoints_and_resumes_from_the_hub(data, tmp_path, fake_hub):
    """`--push_to_hub --hub_model_id ID --hub_strategy checkpoint` pushes the model folder and `last-checkpoint/` at
    each save, then the final model with its card (`--license`); `--resume_from_checkpoint hub` with the same
    `--hub_model_id`, in another output folder (another machine), continues from the pushed checkpoint."""
    hub = ["--hub_model_id", "gendd/recipe-flow"]
    run_in_process(
        data,
        tmp_path,
        "--max_steps",
        "2",
        "--save_strategy",
        "steps",
        "--save_steps",
        "1",
        "--eval_split",
        "",
        "--push_to_hub",
        "--hub_strategy",
        "checkpoint",
        "--hub_always_push",
        "true",
        "--license",
        "mit",
        *hub,
    )
    repo = fake_hub.repo("gendd/recipe-flow")
    assert json.loads(repo.files["last-checkpoint/trainer_state.json"])["global_step"] == 2
    assert {"last-checkpoint/optimizer.pt", "last-checkpoint/rng_state.pth", "model.safetensors"} <= set(repo.files)
    assert not any(name.endswith("training_args.bin") or name.startswith("checkpoint-") for name in repo.files)
    assert repo.commits[-1]["summary"] == "GenDD gendd: end of training" and len(repo.commits) == 5
    card = repo.files["README.md"].decode()
    assert "license: mit" in card and "| GenDD optimizer steps | 2 |" in card

    class RecordSteps(TrainerCallback):
        steps = []

        def on_step_end(self, args, state, control, **kwargs):
            self.steps.append(state.global_step)

    run_in_process(
        data,
        tmp_path / "elsewhere",
        "--max_steps",
        "3",
        "--eval_split",
        "",
        "--resume_from_checkpoint",
        "hub",
        *hub,
        callbacks=[RecordSteps()],
    )
    assert RecordSteps.steps == [3]  # steps 1 and 2 came from the Hub's last-checkpoint/
    assert len(repo.commits) == 5  # without --push_to_hub, the resumed run only read the Hub


def test_shot_metrics_group_classes_by_their_training_images(data, tmp_path):
    """4 training images per class: every class is few-shot, so on the balanced eval split (2 images per class) the
    few-shot top-1 (a mean of per-class accuracies) is the top-1, and the many and medium groups are empty (NaN)."""
    metrics = run_in_process(data, tmp_path, "--shot_metrics", "--max_steps", "2")
    for path in ("sampled", "probe"):
        assert metrics[f"eval_{path}_few_top1"] == pytest.approx(metrics[f"eval_{path}_top1"])
        assert np.isnan(metrics[f"eval_{path}_many_top1"]) and np.isnan(metrics[f"eval_{path}_medium_top1"])


def test_training_from_stored_teacher_outputs_never_runs_the_teacher(data, tmp_path, monkeypatch):
    teacher = TimmTeacher.from_timm("test_resnet", checkpoint_path=data["teacher"], num_classes=len(NAMES))
    view_config = ViewConfig.from_data_config(teacher.data_config(SIZE), preset="regular")
    precompute_teacher_outputs(
        load_image_dataset(data["imagefolder"], split="train"),
        teacher,
        tmp_path / "outputs",
        TeacherOutputsSettings(view_config, num_views=2, shard_size=12),
        "test_resnet",
        batch_size=8,
        progress=False,
    )
    finalize_teacher_outputs(tmp_path / "outputs")

    def no_teacher(self, pixel_values):
        raise AssertionError("the teacher ran although its outputs are stored")

    monkeypatch.setattr(TimmTeacher, "forward", no_teacher)
    run_in_process(
        data, tmp_path, "--teacher_outputs", str(tmp_path / "outputs"), "--eval_split", "", "--max_steps", "3"
    )
    weights = load_file(tmp_path / "out" / "model.safetensors")
    assert torch.equal(weights["teacher_weight"], teacher.classifier_weight)
    with pytest.raises(TeacherOutputsMismatchError, match="computed with another transform: preset='a2'"):
        run_in_process(
            data, tmp_path, "--teacher_outputs", str(tmp_path / "outputs"), "--eval_split", "", "--augmentation", "a2"
        )


def test_a_recipe_with_bad_input_exits_non_zero_with_the_message(data, tmp_path):
    result = run_script(
        python(
            "train_imagenet.py",
            "--dataset_name",
            str(data["imagefolder"]),
            *teacher_args(data),
            *TINY,
            "--student_kwargs",
            '{"in_chans": 1}',
            *QUIET,
            "--output_dir",
            str(tmp_path / "out"),
        ),
        recipe_env(tmp_path),
        check=False,
    )
    assert result.returncode == 1
    assert "ValueError: The teacher 'test_resnet' takes 3-channel images but the student is built with in_chans=1" in (
        result.stderr
    )
    assert not (tmp_path / "out").exists()
