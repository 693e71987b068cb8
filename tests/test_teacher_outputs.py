"""Teacher outputs as a dataset: replayable views, precomputation, streaming, training without a teacher.

Everything runs on tiny generated 1-channel images (3 classes: a bright band whose row is the class) with timm's
`test_resnet` as teacher and student, on the CPU.
"""

import dataclasses
import json
import math
import random
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import timm
import torch
import yaml
from PIL import Image
from torchvision import transforms

from gendd_hf import GenDDConfig, GenDDForImageClassification, GenDDTrainer, GenDDTrainingArguments, TimmTeacher
from gendd_hf.data import build_transforms, dataset_from_arrays
from gendd_hf.teacher_outputs import (
    RandomViewTransform,
    TeacherOutputs,
    TeacherOutputsMismatchError,
    TeacherOutputsSettings,
    View,
    ViewConfig,
    apply_view,
    dense_logits,
    draw_view,
    epoch_view_index,
    finalize_teacher_outputs,
    precompute_teacher_outputs,
    push_teacher_outputs,
    teacher_fingerprint,
    teacher_outputs_dataset,
)
from gendd_hf.teacher_outputs.images import decode_image


NUM_IMAGES, NUM_CLASSES, NUM_VIEWS = 12, 3, 3
DATA_CONFIG = {"input_size": (1, 16, 16), "mean": (0.5,), "std": (0.5,), "interpolation": "bilinear"}
VIEW_CONFIG = ViewConfig.from_data_config(DATA_CONFIG, preset="regular")
FP16 = dict(rtol=2e-3, atol=2e-3)  # float16 storage: 11-bit mantissa


def toy_images(n=NUM_IMAGES, seed=0):
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % NUM_CLASSES
    images = rng.integers(0, 60, (n, 20, 24)).astype(np.uint8)
    for image, label in zip(images, labels):
        image[6 * label : 6 * label + 6] += 150
    return dataset_from_arrays(images, labels, [f"class_{c}" for c in range(NUM_CLASSES)])


def toy_teacher(seed=1):
    torch.manual_seed(seed)
    return TimmTeacher(timm.create_model("test_resnet", in_chans=1, num_classes=NUM_CLASSES))


def precompute(folder, images=None, teacher=None, split="train", name="test_resnet", **settings):
    settings = TeacherOutputsSettings(
        **{"view_config": VIEW_CONFIG, "num_views": NUM_VIEWS, "shard_size": 5, **settings}
    )
    precompute_teacher_outputs(
        toy_images() if images is None else images,
        teacher or toy_teacher(),
        folder,
        settings,
        name,
        split=split,
        batch_size=8,
        progress=False,
    )
    return finalize_teacher_outputs(folder, split)


# `datasets` pauses 5 s after iterating a shuffled stream; these tests iterate such streams often (conftest.py).
pytestmark = pytest.mark.usefixtures("no_pause_after_shuffled_streams")


@pytest.fixture(scope="module")
def stored(tmp_path_factory):
    """Outputs of the toy teacher: 12 images x 3 views, full logits, shards of 5 images."""
    folder = tmp_path_factory.mktemp("teacher_outputs")
    return precompute(folder)


def rows(outputs):
    return {row["id"]: row for row in outputs.stream()}


# ---- views --------------------------------------------------------------------------------------------------------
def test_views_replay_the_library_and_torchvision_transforms():
    image = decode_image(toy_images()[0]["image"])
    small = ViewConfig.from_data_config(DATA_CONFIG, preset="small")
    torchvision_regular = transforms.Compose(
        [
            transforms.RandomResizedCrop(16, scale=(0.08, 1.0)),
            transforms.RandomHorizontalFlip(),
            transforms.ToTensor(),
            transforms.Normalize((0.5,), (0.5,)),
        ]
    )
    for seed in range(6):
        # gendd_hf's own "small" training transform (pad-and-crop + flip) draws the same view from the same seed.
        torch.manual_seed(seed)
        expected = build_transforms(DATA_CONFIG, True, "small")(image)
        assert torch.equal(apply_view(image, draw_view(image, small, seed), small), expected)
        torch.manual_seed(seed)
        expected = torchvision_regular(image)
        assert torch.equal(apply_view(image, draw_view(image, VIEW_CONFIG, seed), VIEW_CONFIG), expected)
    # The online transform is the same code: its view seed comes from torch's global generator.
    torch.manual_seed(5)
    online = RandomViewTransform(VIEW_CONFIG)(image)
    torch.manual_seed(5)
    seed = int(torch.randint(2**62, ()))
    assert torch.equal(online, apply_view(image, draw_view(image, VIEW_CONFIG, seed), VIEW_CONFIG))
    # The evaluation configs are gendd_hf's evaluation transforms, with one fixed view.
    for preset in ("small", "regular"):
        config = ViewConfig.from_data_config(DATA_CONFIG, preset=preset, is_training=False)
        view = draw_view(image, config, 0)
        assert view == draw_view(image, config, 1)
        assert torch.equal(apply_view(image, view, config), build_transforms(DATA_CONFIG, False, preset)(image))


def test_randaugment_is_replayed_from_the_view_seed_and_leaves_global_generators_alone():
    config = ViewConfig.from_data_config({"input_size": (3, 32, 32)}, preset="a1")
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 36, 3), dtype=np.uint8))
    random.seed(1), np.random.seed(1), torch.manual_seed(1)
    view = draw_view(image, config, 7)
    first = apply_view(image, view, config)
    # Neither function drew from Python's, numpy's or torch's global generators (timm's RandAugment uses the first two).
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == (
        random.seed(1) or random.random(),
        np.random.seed(1) or np.random.rand(),
        torch.manual_seed(1) and torch.rand(1).item(),
    )
    assert torch.equal(apply_view(image, view, config), first)  # the generators have moved on: same pixels
    replays = [apply_view(image, dataclasses.replace(view, aug_seed=view.aug_seed + i), config) for i in range(1, 6)]
    assert any(not torch.equal(replay, first) for replay in replays)  # the seed does drive RandAugment


def test_each_view_is_used_once_per_block_of_num_views_epochs():
    orders = {image_id: [epoch_view_index(0, epoch, image_id, 3) for epoch in range(6)] for image_id in range(10)}
    for order in orders.values():
        assert sorted(order[:3]) == sorted(order[3:]) == [0, 1, 2]
    assert len({tuple(order[:3]) for order in orders.values()}) > 1  # the order depends on the image
    assert orders[4] == [epoch_view_index(0, epoch, 4, 3) for epoch in range(6)]  # and on nothing else
    assert [epoch_view_index(0, epoch, "a", 1) for epoch in range(3)] == [0, 0, 0]


def test_dense_logits_from_top_k_hand_computed():
    logits = torch.tensor([[2.0, 1.0, 0.0, -1.0]])
    values, indices = torch.tensor([[2.0, 1.0]]), torch.tensor([[0, 1]])
    dense = dense_logits(values, indices, logits.logsumexp(-1), num_classes=4)
    # Outside the top 2 the mass 1 - (e^2 + e) / (e^2 + e + 1 + e^-1) is spread over 2 classes:
    # lse + log(r / 2) = log((1 + e^-1) / 2) = -0.379885.
    torch.testing.assert_close(dense, torch.tensor([[2.0, 1.0, -0.379885, -0.379885]]))
    torch.testing.assert_close(dense.softmax(-1)[:, :2], logits.softmax(-1)[:, :2])
    torch.testing.assert_close(dense.logsumexp(-1), logits.logsumexp(-1))
    full = dense_logits(torch.tensor([[1.0, 3.0]]), torch.tensor([[1, 0]]), torch.tensor([0.0]), num_classes=2)
    assert full.tolist() == [[3.0, 1.0]]


# ---- precomputation -----------------------------------------------------------------------------------------------
def test_stored_features_are_the_teacher_on_the_replayed_view(stored):
    teacher = toy_teacher()
    assert (stored.num_images, [s["num_rows"] for s in stored.shards]) == (NUM_IMAGES, [5, 5, 2])
    assert stored.teacher.fingerprint == teacher_fingerprint(teacher) == teacher_fingerprint(teacher.model)
    assert torch.equal(stored.classifier_weight, teacher.classifier_weight)
    images = toy_images()
    stream = rows(stored)
    assert sorted(stream) == list(range(NUM_IMAGES))
    for image_id, row in stream.items():
        image = decode_image(images[image_id]["image"])
        views = [
            View(*crop, hflip=hflip, aug_seed=seed)
            for crop, hflip, seed in zip(row["view_crop"], row["view_hflip"], row["view_aug_seed"])
        ]
        assert len(set(views)) == NUM_VIEWS
        with torch.no_grad():
            output = teacher(torch.stack([apply_view(image, view, VIEW_CONFIG) for view in views]))
        torch.testing.assert_close(torch.tensor(row["teacher_features"]), output.features, **FP16)
        torch.testing.assert_close(torch.tensor(row["teacher_logits"]), output.logits, **FP16)


def test_the_training_stream_replays_the_view_of_each_epoch(stored):
    dataset = teacher_outputs_dataset(
        toy_images(), stored.source, view_config=VIEW_CONFIG, teacher="test_resnet", seed=3, shuffle_buffer_size=None
    )
    assert len(dataset) == NUM_IMAGES
    stream, images, teacher = rows(stored), toy_images(), toy_teacher()
    used = {image_id: set() for image_id in stream}
    for epoch in range(NUM_VIEWS):
        dataset.set_epoch(epoch)
        examples = list(dataset)
        assert len(examples) == NUM_IMAGES and set(examples[0]) == {
            "pixel_values",
            "labels",
            "teacher_features",
            "teacher_logits",
        }
        for image_id, example in enumerate(examples):  # unshuffled: the stored order
            k = epoch_view_index(3, epoch, image_id, NUM_VIEWS)
            used[image_id].add(k)
            row = stream[image_id]
            view = View(*row["view_crop"][k], hflip=row["view_hflip"][k], aug_seed=row["view_aug_seed"][k])
            image = decode_image(images[image_id]["image"])
            assert torch.equal(example["pixel_values"], apply_view(image, view, VIEW_CONFIG))
            assert example["labels"].item() == image_id % NUM_CLASSES
            assert example["teacher_features"].dtype == torch.float16
            assert example["teacher_features"].tolist() == row["teacher_features"][k]
            with torch.no_grad():
                online = teacher(example["pixel_values"][None])
            torch.testing.assert_close(example["teacher_features"].float(), online.features[0], **FP16)
    assert all(views == set(range(NUM_VIEWS)) for views in used.values())  # every view once in K epochs


def test_precomputation_resumes_shard_by_shard_and_refuses_other_settings(tmp_path):
    precompute(tmp_path)
    shard_files = sorted((tmp_path / "data").glob("*.parquet"))
    kept = {path: path.read_bytes() for path in shard_files}
    settings = TeacherOutputsSettings(VIEW_CONFIG, num_views=NUM_VIEWS, shard_size=5)
    for lost, message in ((1, r"missing shards \[1\]"), (2, "holds 10 of the 12 images of 'train'")):
        shard_files[lost].unlink()
        with pytest.raises(ValueError, match=message):
            finalize_teacher_outputs(tmp_path)
        written = precompute_teacher_outputs(
            toy_images(), toy_teacher(), tmp_path, settings, "test_resnet", progress=False
        )
        assert written == [shard_files[lost]]
    assert all(path.read_bytes() == content for path, content in kept.items())  # bit-identical recomputation
    with pytest.raises(TeacherOutputsMismatchError, match="computed with other settings"):
        precompute_teacher_outputs(
            toy_images(), toy_teacher(), tmp_path, dataclasses.replace(settings, seed=1), "test_resnet", progress=False
        )
    with pytest.raises(TeacherOutputsMismatchError, match="classifier of another teacher"):
        precompute_teacher_outputs(toy_images(), toy_teacher(seed=2), tmp_path, settings, "test_resnet", progress=False)


def test_two_processes_split_precomputation_and_streaming(tmp_path, stored):
    settings = TeacherOutputsSettings(VIEW_CONFIG, num_views=NUM_VIEWS, shard_size=5)
    written = [
        precompute_teacher_outputs(
            toy_images(),
            toy_teacher(),
            tmp_path,
            settings,
            "test_resnet",
            process_index=rank,
            num_processes=2,
            progress=False,
        )
        for rank in (0, 1)
    ]
    assert [[path.name for path in paths] for paths in written] == [
        ["train-00000.parquet", "train-00002.parquet"],
        ["train-00001.parquet"],
    ]
    outputs = finalize_teacher_outputs(tmp_path)
    for name in ("train-00000.parquet", "train-00001.parquet", "train-00002.parquet"):
        assert pq.read_table(tmp_path / "data" / name).equals(pq.read_table(Path(stored.source) / "data" / name))
    key = lambda features: tuple(features.tolist())  # noqa: E731
    expected = sorted(key(example["teacher_features"]) for example in teacher_outputs_dataset(toy_images(), outputs))
    parts = []
    for rank in (0, 1):
        dataset = teacher_outputs_dataset(toy_images(), outputs, process_index=rank, num_processes=2, seed=0)
        with pytest.raises(TypeError):
            len(dataset)
        # Each process reads its part with two DataLoader workers, which split it again.
        loader = torch.utils.data.DataLoader(dataset, batch_size=4, num_workers=2)
        parts.append([key(features) for batch in loader for features in batch["teacher_features"]])
    assert parts[0] and parts[1] and sorted(parts[0] + parts[1]) == expected


def test_streamed_images_are_zipped_in_order_and_checked(stored):
    images = toy_images()
    expected = list(teacher_outputs_dataset(images, stored, shuffle_buffer_size=None))
    streamed = list(teacher_outputs_dataset(images.to_iterable_dataset(num_shards=2), stored, shuffle_buffer_size=None))
    assert all(
        torch.equal(a["pixel_values"], b["pixel_values"]) and torch.equal(a["teacher_features"], b["teacher_features"])
        for a, b in zip(expected, streamed, strict=True)
    )
    shuffled = list(teacher_outputs_dataset(images.to_iterable_dataset(), stored, shuffle_buffer_size=4))
    key = lambda example: tuple(example["teacher_features"].tolist())  # noqa: E731
    assert [key(example) for example in shuffled] != [key(example) for example in expected]
    assert sorted(map(key, shuffled)) == sorted(map(key, expected))
    with pytest.raises(TeacherOutputsMismatchError, match="not the one the teacher outputs .* were computed from"):
        list(teacher_outputs_dataset(images.select(range(NUM_IMAGES)[::-1]).to_iterable_dataset(), stored))
    with pytest.raises(TeacherOutputsMismatchError, match="different lengths"):
        list(
            teacher_outputs_dataset(
                images.select(range(NUM_IMAGES - 1)).to_iterable_dataset(), stored, shuffle_buffer_size=None
            )
        )


def test_precomputing_from_a_stream_writes_the_same_shards(tmp_path, stored):
    precompute(tmp_path, images=toy_images().to_iterable_dataset(num_shards=3))
    for shard in stored.shards:
        assert pq.read_table(tmp_path / shard["path"]).equals(pq.read_table(f"{stored.source}/{shard['path']}"))


def test_id_column_joins_images_in_any_order(tmp_path):
    images = toy_images().add_column("key", [f"img-{i}" for i in range(NUM_IMAGES)])
    outputs = precompute(tmp_path, images=images, id_column="key")
    by_key = {row["id"]: row["teacher_features"] for row in outputs.stream()}
    assert sorted(by_key) == sorted(f"img-{i}" for i in range(NUM_IMAGES))
    reordered = images.shuffle(seed=0)
    dataset = teacher_outputs_dataset(reordered, outputs, shuffle_buffer_size=None)
    key = lambda features: tuple(np.float16(features).tolist())  # noqa: E731
    expected = sorted(
        key(features[epoch_view_index(0, 0, image_id, NUM_VIEWS)]) for image_id, features in by_key.items()
    )
    assert sorted(key(example["teacher_features"]) for example in dataset) == expected
    with pytest.raises(TeacherOutputsMismatchError, match="image id 'img-11', which is not in .* 'key' column"):
        list(teacher_outputs_dataset(images.select(range(NUM_IMAGES - 1)), outputs, shuffle_buffer_size=None))


@pytest.mark.parametrize("logits", ["topk", "none"])
def test_top_k_and_no_logits(tmp_path, logits):
    outputs = precompute(tmp_path, logits=logits, logits_top_k=2 if logits == "topk" else None, num_views=1)
    teacher = toy_teacher()
    for example in teacher_outputs_dataset(toy_images(), outputs, shuffle_buffer_size=None):
        if logits == "none":
            assert "teacher_logits" not in example
            continue
        with torch.no_grad():
            online = teacher(example["pixel_values"][None]).logits[0]
        top2 = online.topk(2).indices
        torch.testing.assert_close(example["teacher_logits"][top2], online[top2], **FP16)
        torch.testing.assert_close(example["teacher_logits"].softmax(-1)[top2], online.softmax(-1)[top2], **FP16)


def test_evaluation_outputs_replay_the_evaluation_transform_and_give_an_eval_loss(tmp_path):
    config = ViewConfig.from_data_config(DATA_CONFIG, preset="regular", is_training=False)
    with pytest.raises(ValueError, match="num_views=3 with the evaluation transform"):
        TeacherOutputsSettings(config, num_views=3)
    precompute(tmp_path, split="test", view_config=config, num_views=1)
    evaluation = build_transforms(DATA_CONFIG, False, "regular")
    images = toy_images()
    dataset = teacher_outputs_dataset(images, tmp_path, split="test", shuffle_buffer_size=None)
    for image_id, example in enumerate(dataset):
        assert torch.equal(example["pixel_values"], evaluation(decode_image(images[image_id]["image"])))
    # The evaluation loss needs teacher outputs too: stored ones let GenDDTrainer evaluate without a teacher.
    model = toy_student()
    dataset.outputs.load_teacher_classifier(model)
    args = GenDDTrainingArguments(
        output_dir=str(tmp_path / "run"),
        use_cpu=True,
        report_to="none",
        per_device_eval_batch_size=5,
        eval_inference_paths=["probe"],
    )
    metrics = GenDDTrainer(model, args, eval_dataset=dataset).evaluate()
    assert math.isfinite(metrics["eval_loss"]) and 0 <= metrics["eval_probe_top1"] <= 1


# ---- training -----------------------------------------------------------------------------------------------------
class WithoutTeacherOutputs(torch.utils.data.IterableDataset):
    """The same examples (same replayed views) without the stored outputs: the trainer then runs the teacher."""

    def __init__(self, dataset):
        self.dataset = dataset

    def set_epoch(self, epoch):
        self.dataset.set_epoch(epoch)

    def __len__(self):
        return len(self.dataset)

    def __iter__(self):
        for example in self.dataset:
            yield {key: value for key, value in example.items() if not key.startswith("teacher_")}


def toy_student():
    torch.manual_seed(0)
    config = GenDDConfig(
        student_name="test_resnet",
        student_kwargs={"in_chans": 1},
        teacher_feature_dim=96,
        token_dim=32,
        head_width=32,
        head_depth=1,
        diffusion_batch_mul=2,
        num_labels=NUM_CLASSES,
    )
    model = GenDDForImageClassification(config)
    model.sampling_config = model.sampling_config.update(num_inference_steps=4, num_samples=1)
    return model


def test_training_from_stored_outputs_follows_the_online_loss_curve(tmp_path, stored):
    losses = {}
    for mode in ("online", "stored"):
        dataset = teacher_outputs_dataset(toy_images(), stored.source, seed=0, shuffle_buffer_size=6)
        model = toy_student()
        if mode == "stored":
            dataset.outputs.load_teacher_classifier(model)
        args = GenDDTrainingArguments(
            output_dir=str(tmp_path / mode),
            use_cpu=True,
            report_to="none",
            disable_tqdm=True,
            method="gendd",
            per_device_train_batch_size=6,
            learning_rate=3e-3,
            max_steps=4,
            logging_steps=1,
            save_strategy="no",
            seed=0,
        )
        trainer = GenDDTrainer(
            model,
            args,
            teacher=toy_teacher() if mode == "online" else None,
            train_dataset=WithoutTeacherOutputs(dataset) if mode == "online" else dataset,
        )
        trainer.train()
        assert dataset.epoch == 1  # 12 images in batches of 6: steps 3-4 are the second epoch, with its own views
        losses[mode] = [
            (entry["loss"], entry["diffusion_loss"]) for entry in trainer.state.log_history if "loss" in entry
        ]
    assert len(losses["stored"]) == 4
    # Same views, same order, same seeds (timesteps, noise, mixup): the runs differ only by the float16 rounding of
    # the stored teacher features. A wrong view would change the diffusion loss by far more than 0.1%.
    for stored_losses, online_losses in zip(losses["stored"], losses["online"], strict=True):
        assert stored_losses == pytest.approx(online_losses, rel=1e-3)


# ---- mismatches ---------------------------------------------------------------------------------------------------
def test_mismatched_transform_teacher_images_views_and_model_are_errors(stored):
    images = toy_images()
    small = ViewConfig.from_data_config(DATA_CONFIG, preset="small")
    with pytest.raises(TeacherOutputsMismatchError, match="another transform: preset='small' .recorded 'regular'."):
        teacher_outputs_dataset(images, stored, view_config=small)
    with pytest.raises(TeacherOutputsMismatchError, match="are of teacher 'test_resnet', not 'resnet18'"):
        teacher_outputs_dataset(images, stored, teacher="resnet18")
    with pytest.raises(TeacherOutputsMismatchError, match="given teacher's weights .fingerprint [0-9a-f]{16}. are not"):
        teacher_outputs_dataset(images, stored, teacher=toy_teacher(seed=2))
    teacher_outputs_dataset(images, stored, teacher=toy_teacher())  # the recorded teacher passes
    with pytest.raises(TeacherOutputsMismatchError, match="image dataset has 11 rows but .* 12 images"):
        teacher_outputs_dataset(images.select(range(11)), stored)
    other = toy_images(seed=1)
    with pytest.raises(TeacherOutputsMismatchError, match="image with id 0 is not the one .* computed from"):
        next(iter(teacher_outputs_dataset(other, stored, shuffle_buffer_size=None)))
    damaged = dataclasses.replace(stored, settings=dataclasses.replace(stored.settings, num_views=4))
    with pytest.raises(TeacherOutputsMismatchError, match="hold 3 views, but .* records num_views=4"):
        next(iter(teacher_outputs_dataset(images, damaged)))
    with pytest.raises(ValueError, match=r"splits \['train'\], not 'validation'"):
        TeacherOutputs.load(stored.source, split="validation")
    model = toy_student()
    model.set_teacher_classifier(torch.ones(NUM_CLASSES, 96), torch.zeros(NUM_CLASSES))
    with pytest.raises(TeacherOutputsMismatchError, match="model already holds a teacher classifier that differs"):
        stored.load_teacher_classifier(model)


def test_outputs_of_another_teacher_name_the_teacher_not_only_the_transform(stored):
    """Another architecture comes with another data config: the error must say that the teacher differs (before,
    it named only the transform)."""
    torch.manual_seed(0)
    other = TimmTeacher(timm.create_model("test_vit", in_chans=1, num_classes=NUM_CLASSES, img_size=24))
    view_config = ViewConfig.from_data_config(other.data_config(24), preset="regular")
    assert view_config != stored.settings.view_config and other.feature_dim != 96
    message = (
        r"teacher differs: .* computed by teacher 'test_resnet' \(96-dim features, 3 classes\), but the given "
        rf"teacher has {other.feature_dim}-dim"
    )
    with pytest.raises(TeacherOutputsMismatchError, match=message):
        teacher_outputs_dataset(toy_images(), stored, view_config=view_config, teacher=other)


def test_a_shard_overwritten_with_a_copy_of_another_is_refused_before_training(tmp_path):
    outputs = precompute(tmp_path)  # shards of 5, 5 and 2 images
    data = tmp_path / "data"
    (data / "train-00001.parquet").write_bytes((data / "train-00000.parquet").read_bytes())
    # Images 0-4 now come twice and 5-9 never, yet each row still matches its image (id and digest).
    assert [row["id"] for row in outputs.stream()] == [0, 1, 2, 3, 4, 0, 1, 2, 3, 4, 10, 11]
    message = (
        r"shard data/train-00001.parquet repeats 5 image ids already in data/train-00000.parquet "
        r"\(0, 1, 2, 3, 4\); 5 images have no row \(5, 6, 7, 8, 9\)"
    )
    with pytest.raises(TeacherOutputsMismatchError, match=message):
        teacher_outputs_dataset(toy_images(), tmp_path)


def test_folders_that_are_not_teacher_outputs(tmp_path):
    with pytest.raises(FileNotFoundError, match="has no teacher_outputs.json"):
        TeacherOutputs.load(tmp_path)
    with pytest.raises(ValueError, match="no complete 'train' teacher outputs"):
        finalize_teacher_outputs(tmp_path)
    with pytest.raises(ValueError, match="logits_top_k=2 is only used with logits='topk'"):
        TeacherOutputsSettings(VIEW_CONFIG, logits_top_k=2)


# ---- card and Hub -------------------------------------------------------------------------------------------------
def test_card_records_everything_and_the_folder_goes_to_the_hub(fake_hub, tmp_path, stored):
    folder = Path(stored.source)
    card = (folder / "README.md").read_text()
    front = yaml.safe_load(card.split("---")[1])
    assert front["configs"] == [
        {"config_name": "default", "data_files": [{"split": "train", "path": "data/train-*.parquet"}]}
    ]
    assert "teacher-outputs" in front["tags"]
    assert "| train | 12 | 3 | regular | 1x16x16 | full | float16 | 3 |" in card
    record = json.loads((folder / "teacher_outputs.json").read_text())
    assert record["teacher"]["name"] == "test_resnet" and record["splits"]["train"]["num_views"] == NUM_VIEWS
    assert ViewConfig.from_dict(record["splits"]["train"]["view_config"]) == VIEW_CONFIG

    url = push_teacher_outputs(folder, "gendd/toy-teacher-outputs")
    repo = fake_hub.repo("gendd/toy-teacher-outputs", repo_type="dataset")
    assert url and set(repo.files) == {
        "README.md",
        "teacher_outputs.json",
        "teacher_classifier.safetensors",
        "data/train-00000.parquet",
        "data/train-00001.parquet",
        "data/train-00002.parquet",
    }
    assert "gendd/toy-teacher-outputs" in repo.files["README.md"].decode()
    from_hub = TeacherOutputs.load("gendd/toy-teacher-outputs")
    assert (from_hub.teacher, from_hub.settings) == (stored.teacher, stored.settings)
    assert from_hub.data_files[0] == "hf://datasets/gendd/toy-teacher-outputs@main/data/train-00000.parquet"
    assert math.isclose(from_hub.classifier_bias.sum().item(), stored.classifier_bias.sum().item())
