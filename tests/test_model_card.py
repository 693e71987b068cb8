import dataclasses

import pytest
import timm
from huggingface_hub import ModelCard, metadata_load
from safetensors.torch import save_file
from timm.models import save_for_hf

from gendd_hf.model_card import ModelCardInfo, describe_teacher, hub_dataset_id, render_model_card, write_model_card
from gendd_hf.teacher import TimmTeacher, pretrained_weights_source
from helpers import tiny_model


INFO = dict(
    model_name="gendd-resnet18-fashion-mnist",
    teacher="timm resnet34 trained on Fashion-MNIST",
    student="resnet18",
    dataset="zalando-datasets/fashion_mnist",
    dataset_name="Fashion-MNIST",
    repo_id="someone/gendd-resnet18-fashion-mnist",
    base_model="timm/resnet18.a1_in1k",
    sampled_accuracy={"top1": 0.91234, "top5": 0.9987},
    probe_accuracy={"top1": 0.9101, "top5": 0.998},
    sampler="ddim",
    num_inference_steps=8,
    guidance_scale=1.5,
    num_samples=3,
    epochs=12,
    stage1_epochs=2,
    learning_rate=0.001,
    batch_size=256,
    notes="Trained on 2 CPU cores.",
)


def test_card_parses_with_huggingface_hub_and_carries_the_metadata(tmp_path):
    path = write_model_card(tmp_path / "model", INFO)
    assert path == tmp_path / "model" / "README.md"

    metadata = metadata_load(path)
    assert metadata["library_name"] == "transformers"
    assert metadata["pipeline_tag"] == "image-classification"
    assert metadata["tags"] == ["gendd", "knowledge-distillation", "image-classification", "timm"]
    assert metadata["datasets"] == ["zalando-datasets/fashion_mnist"]
    assert metadata["metrics"] == ["accuracy"]
    assert metadata["base_model"] == "timm/resnet18.a1_in1k"
    assert "license" not in metadata  # no licence is claimed unless one is given

    card = ModelCard.load(path, ignore_metadata_errors=False)
    results = {(r.metric_config, r.metric_args["k"]): r for r in card.data.eval_results}
    assert {key: r.metric_value for key, r in results.items()} == {
        ("sampled", 1): 91.23,
        ("sampled", 5): 99.87,
        ("probe", 1): 91.01,
        ("probe", 5): 99.8,
    }
    for result in results.values():
        assert result.task_type == "image-classification"
        assert result.dataset_type == "zalando-datasets/fashion_mnist"
        assert result.dataset_name == "Fashion-MNIST"
        assert result.dataset_split == "test"
        assert result.metric_type == "accuracy"
    assert card.data.model_name == "gendd-resnet18-fashion-mnist"


def test_card_text_reports_method_schedule_results_and_usage():
    text = render_model_card(INFO).split("\n---\n", 1)[1]
    for expected in [
        "# gendd-resnet18-fashion-mnist",
        "https://arxiv.org/abs/2507.14503",
        "timm resnet34 trained on Fashion-MNIST",
        "`resnet18`",
        "tokens of 64 dimensions",
        "**lambda = 0.9**",
        "`ddim` sampler, 8 steps, classifier-free guidance\n  scale 1.5, 3 samples averaged per image",
        "| stage 1 (cross-entropy warm start) epochs | 2 |",
        "| GenDD epochs | 12 |",
        "| optimizer | AdamW |",
        "| learning rate | 0.001 (cosine schedule) |",
        "| batch size | 256 |",
        "Trained on 2 CPU cores.",
        "diffusion head | 91.23 | 99.87 |",
        "no sampling) | 91.01 | 99.80 |",
        'from_pretrained("someone/gendd-resnet18-fashion-mnist").eval()',
        'from_pretrained("someone/gendd-resnet18-fashion-mnist", trust_remote_code=True)',
        'pipeline("image-classification", model="someone/gendd-resnet18-fashion-mnist", trust_remote_code=True)',
        "trust_remote_code=True runs this\n# repo's Python files on your machine",
        "import gendd_hf",
        "@misc{cui2025gendd,",
        "eprint        = {2507.14503}",
    ]:
        assert expected in text, expected


def test_dict_and_dataclass_render_the_same():
    assert render_model_card(INFO) == render_model_card(ModelCardInfo(**INFO))


def test_card_without_results_has_no_model_index():
    info = {key: value for key, value in INFO.items() if not key.endswith("accuracy")}
    content = render_model_card({**info, "contraction": 0.0, "base_model": None})
    card = ModelCard(content, ignore_metadata_errors=False)
    assert card.data.eval_results is None and "model-index" not in card.data.to_dict()
    assert "base_model" not in card.data.to_dict()
    assert "No accuracy has been measured" in card.text
    assert "**lambda = 0.0** (unsupervised: no labels)" in card.text


def test_from_model_copies_student_method_and_sampling_settings():
    model = tiny_model(
        student_name="resnet10t",
        student_kwargs={},
        contraction=0.5,
        inference_path="probe",
        sampling=dict(num_inference_steps=16, guidance_scale=1.0, num_samples=2, sampler="ddim", seed=7),
    )
    info = ModelCardInfo.from_model(model, model_name="m", teacher="t", dataset="d", num_samples=4)
    assert (info.student, info.contraction, info.token_dim) == ("resnet10t", 0.5, 8)
    assert (info.sampler, info.num_inference_steps, info.guidance_scale, info.seed) == ("ddim", 16, 1.0, 7)
    assert info.num_samples == 4 and info.inference_path == "probe"
    text = render_model_card(dataclasses.asdict(info))
    assert "returns the **probe** path's logits" in text
    assert "twice per step" not in text  # guidance_scale 1.0 means no guidance pass
    assert "seeded with `sampling_config.seed` (7)" in text and "alone or\nin any batch" in text


def test_a_fast_default_and_the_inference_cost_table_are_reported():
    costs = [
        {"setting": "probe", "head_evaluations_per_image": 0, "top1": 80.0, "images_per_second": 9000.0},
        {"setting": "ddpm 64 steps g2 x5", "head_evaluations_per_image": 5120, "top1": 84.25, "images_per_second": 9.5},
        {"setting": "mean g2", "head_evaluations_per_image": 16, "top1": 84.3, "images_per_second": 4321.04},
    ]
    text = render_model_card(
        {
            **INFO,
            "sampler": "mean",
            "guidance_scale": 2.0,
            "inference_costs": costs,
            "inference_costs_note": "First 1000 test images.",
        }
    )
    assert "- **Sampling**: `mean` sampler (one head call per token" in text
    assert "The sampled path used the `mean` sampler" in text
    assert "First 1000 test images." in text
    assert "| ddpm 64 steps g2 x5 | 5120 | 84.25 | 9.5 |" in text and "| mean g2 | 16 | 84.30 | 4321.0 |" in text
    assert 'sampler="ddpm", num_inference_steps=64, guidance_scale=2.0, num_samples=5' in text
    assert "runs the diffusion head once per token and guidance branch" in text and "8 steps" not in text
    assert "Accuracy against inference cost" not in render_model_card(INFO)


def test_training_data_is_named_apart_from_the_evaluation_data_and_local_paths_are_never_links(tmp_path):
    """An unsupervised run streamed from local webdataset shards and evaluated on a Hub dataset: the card names both,
    links the Hub id only, and lists only it in the `datasets` metadata and `model-index`."""
    shards = tmp_path / "cc3m-wds"
    shards.mkdir()
    info = {
        **INFO,
        "dataset": str(shards),
        "dataset_name": None,
        "train_split": "train",
        "streaming": True,
        "method": "gendd_unsup",
        "contraction": 0.0,
        "eval_dataset": "ILSVRC/imagenet-1k",
        "eval_dataset_name": "ImageNet-1k",
        "eval_split": "validation",
    }
    card = ModelCard(render_model_card(info), ignore_metadata_errors=False)
    assert card.data.datasets == ["ILSVRC/imagenet-1k"]
    assert {(r.dataset_type, r.dataset_name, r.dataset_split) for r in card.data.eval_results} == {
        ("ILSVRC/imagenet-1k", "ImageNet-1k", "validation")
    }
    assert (
        "- **Training data**: `cc3m-wds` (local files, not on the Hub), split `train`, streamed, used without its "
        "labels"
    ) in card.text
    assert (
        "- **Evaluation data**: [ImageNet-1k](https://huggingface.co/datasets/ILSVRC/imagenet-1k), split `validation`"
    ) in card.text
    assert "Measured on the `validation` split of [ImageNet-1k]" in card.text
    assert str(tmp_path) not in card.content and card.content.count("huggingface.co/datasets/") == 2  # eval, twice

    # Evaluated on local data too: no Hub dataset at all, so no `datasets` and no `model-index`.
    local = ModelCard(render_model_card({**info, "eval_dataset": str(shards)}), ignore_metadata_errors=False)
    assert local.data.datasets is None and local.data.eval_results is None
    assert "huggingface.co/datasets/" not in local.content and "diffusion head | 91.23 | 99.87 |" in local.text
    # Not evaluated.
    text = render_model_card({**info, "eval_split": None, "sampled_accuracy": None, "probe_accuracy": None})
    assert "- **Evaluation data**: none (the model was not evaluated)" in text and "Measured on" not in text


def test_hub_dataset_ids_are_valid_repo_ids_that_are_not_local_paths(tmp_path):
    assert hub_dataset_id("ILSVRC/imagenet-1k") == "ILSVRC/imagenet-1k" and hub_dataset_id("cifar100") == "cifar100"
    (tmp_path / "data").mkdir()
    for name in (str(tmp_path / "data"), "/data/cc3m/{00000..00331}.tar", "pipe:curl -s x", "not recorded", None):
        assert hub_dataset_id(name) is None, name


def test_step_based_runs_report_steps_not_epochs():
    text = render_model_card({**INFO, "epochs": 0.02, "steps": 20, "stage1_epochs": None})
    assert "| GenDD optimizer steps | 20 |" in text and "epochs |" not in text
    assert "| kd optimizer steps | 3 |" in render_model_card({**INFO, "method": "kd", "steps": 3})


def test_the_licence_comes_from_the_caller_and_is_checked():
    card = ModelCard(render_model_card({**INFO, "license": "cc-by-nc-4.0"}), ignore_metadata_errors=False)
    assert card.data.license == "cc-by-nc-4.0" and "released under `cc-by-nc-4.0`" in card.text
    assert "No licence was stated for these weights" in render_model_card(INFO)
    with pytest.raises(ValueError, match=r"license='Apache 2.0' is not a Hub licence identifier: use one such as"):
        ModelCardInfo(**{**INFO, "license": "Apache 2.0"})


def test_the_teacher_is_named_with_the_source_of_its_weights(tmp_path):
    assert describe_teacher("resnet34.tv_in1k", "hf-hub:timm/resnet34.tv_in1k") == (
        "timm `resnet34.tv_in1k`, pretrained weights "
        "[timm/resnet34.tv_in1k](https://huggingface.co/timm/resnet34.tv_in1k)"
    )
    url = "https://example.com/x.pth"
    assert describe_teacher("x", url) == f"timm `x`, pretrained weights from <{url}>"
    assert describe_teacher("x", None) == "timm `x` (weights not recorded)"
    # timm's pretrained weights of a name with a tag come from the Hub (read from the config, nothing downloaded).
    assert pretrained_weights_source(timm.create_model("test_resnet.r160_in1k")) == "hf-hub:timm/test_resnet.r160_in1k"
    save_file(timm.create_model("test_resnet", num_classes=3).state_dict(), tmp_path / "teacher.safetensors")
    teacher = TimmTeacher.from_timm("test_resnet", checkpoint_path=tmp_path / "teacher.safetensors", num_classes=3)
    assert (teacher.name, teacher.weights) == ("test_resnet", str(tmp_path / "teacher.safetensors"))
    described = describe_teacher(teacher.name, teacher.weights)
    assert described == "timm `test_resnet`, weights from the local file `teacher.safetensors` (not on the Hub)"
    assert TimmTeacher(timm.create_model("test_resnet")).name == "test_resnet"
    # A timm model folder (`local-dir:`, as train_teacher.py writes): the architecture, and the folder by its name.
    save_for_hf(timm.create_model("test_resnet", num_classes=3), tmp_path / "my-teacher")
    folder = TimmTeacher.from_timm(f"local-dir:{tmp_path / 'my-teacher'}")
    assert describe_teacher(folder.name, folder.weights) == (
        "timm `test_resnet`, weights from the local folder `my-teacher` (not on the Hub)"
    )


def test_the_card_says_how_to_reproduce_the_sampled_predictions():
    text = " ".join(render_model_card({**INFO, "seed": 3}).split())
    for expected in [
        "**Reproducible predictions.**",
        "seeded with `sampling_config.seed` (3)",
        "measured with this repository's `sampling_config.json` and the evaluation transform in its `config.json`",
        "no `sampling_config` override, no `generator`",
    ]:
        assert expected in text, expected


@pytest.mark.parametrize(
    "override, message",
    [
        ({"sampled_accuracy": {"top1": 72.4}}, "not a fraction"),
        ({"probe_accuracy": {"top3": 0.5}}, "'top3'"),
        ({"contraction": 1.5}, "contraction"),
        ({"inference_path": "teacher"}, "inference_path"),
        ({"teacher": ""}, "teacher"),
    ],
)
def test_bad_info_raises(override, message):
    with pytest.raises(ValueError, match=message):
        ModelCardInfo(**{**INFO, **override})


def test_missing_template_raises(tmp_path):
    with pytest.raises(FileNotFoundError, match="template_path"):
        render_model_card(INFO, template_path=tmp_path / "missing.md")


@pytest.mark.parametrize(
    "steps, says",
    [
        (64, "the official ImageNet evaluation (sh/imagenet_eval_*.sh: 64 steps, 5 samples)"),
        (100, "the official CIFAR evaluation (sh/evaluate.sh: the CIFAR model's 100 steps, 5 samples)"),
        (8, None),
    ],
)
def test_the_card_names_the_official_sampling_setting_it_uses(steps, says):
    text = render_model_card(
        {**INFO, "sampler": "ddpm", "guidance_scale": 2.0, "num_samples": 5, "num_inference_steps": steps}
    )
    if says is None:
        assert "samples averaged per image." in text and "the official" not in text
    else:
        assert f"samples averaged per image: {says}." in text
