"""The format of stored teacher outputs, locally and on the Hub: parquet shards, a JSON record, the teacher's classifier
and a dataset card.

A folder (or Hub dataset repository) holds, per split:

- `data/{split}-{index:05d}.parquet`: one row per image, in the image dataset's order, `shard_size` images per shard.
  Columns: `id` (the image's id, or its row index), `image_digest` (of the encoded image), `view_crop` (K, 4)
  `[top, left, height, width]`, `view_hflip` (K,), `view_aug_seed` (K,), `teacher_features` (K, d_t) float16 and,
  as configured, `teacher_logits` (K, C) float16, or `teacher_logits_topk_values` (K, k) float16 with
  `teacher_logits_topk_indices` (K, k) and `teacher_logits_logsumexp` (K,). Each shard's parquet metadata records
  the settings it was computed with, which makes precomputation resumable shard by shard.
- `teacher_outputs.json`: the teacher (name, weights fingerprint, feature width, class count) and, per split, the
  settings (`ViewConfig`, K, seed, logits, shard size, id column), the image count and the shard list.
- `teacher_classifier.safetensors`: the teacher's linear classifier (`weight`, `bias`), which GenDD needs (class
  centres, inference) and which training loads instead of building the teacher.
- `README.md`: a dataset card with a `configs` section, so `load_dataset(repo_id, split=...)` reads the shards.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote

import fsspec
import pyarrow.parquet as pq
import torch
from datasets import Dataset, Features, IterableDataset, List, Value, load_dataset
from huggingface_hub import DatasetCard, DatasetCardData, HfApi, hf_hub_download
from safetensors.torch import load_file, save_file
from torch import nn

from ..teacher import TimmTeacher
from .images import as_image_id
from .views import ViewConfig


FORMAT_VERSION = 1
RECORD_NAME = "teacher_outputs.json"
CLASSIFIER_NAME = "teacher_classifier.safetensors"
CARD_NAME = "README.md"
SHARD_RECORD_KEY = b"gendd_teacher_outputs"
LOGITS_MODES = ("full", "topk", "none")
"""`full`: all C logits per view (float16); `topk`: the k largest with their indices and the log-sum-exp of all C,
enough to rebuild a distribution with the exact top-k probabilities (see [`dense_logits`]); `none`: no logits, the
model's copy of the teacher classifier recomputes them from the stored feature (exact up to float16)."""
LogitsMode = Literal["full", "topk", "none"]
TAGS = ["gendd", "knowledge-distillation", "teacher-outputs", "timm"]


class TeacherOutputsMismatchError(ValueError):
    """Stored teacher outputs do not belong to the images, teacher, transform or model they are used with."""


def teacher_fingerprint(teacher: nn.Module) -> str:
    """SHA-256 (first 16 hex digits) of the teacher's state dict: names, dtypes, shapes and values of every weight and
    buffer. A `TimmTeacher` and the timm model it wraps have the same fingerprint."""
    model = teacher.model if isinstance(teacher, TimmTeacher) else teacher
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        tensor = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]


@dataclass(frozen=True)
class TeacherRecord:
    """The teacher that computed stored outputs.

    Args:
        name (`str`): what the teacher is called, e.g. its timm name or Hub id (`"resnet34.a1_in1k"`).
        fingerprint (`str`): [`teacher_fingerprint`] of its weights.
        feature_dim (`int`): width d_t of its pooled feature.
        num_classes (`int`): number of classes C of its classifier.
    """

    name: str
    fingerprint: str
    feature_dim: int
    num_classes: int

    @classmethod
    def from_teacher(cls, teacher: TimmTeacher, name: str) -> TeacherRecord:
        return cls(name, teacher_fingerprint(teacher), teacher.feature_dim, teacher.num_classes)


@dataclass(frozen=True)
class TeacherOutputsSettings:
    """What a precomputation stores per image, recorded with the outputs.

    Args:
        view_config ([`ViewConfig`]): the transform whose views are stored.
        num_views (`int`, *optional*, defaults to 4): views K per image (1 for the evaluation transform).
        seed (`int`, *optional*, defaults to 0): seed of the views (see `views.view_seed`).
        logits (`str`, *optional*, defaults to `"full"`): one of `LOGITS_MODES`.
        logits_top_k (`int`, *optional*): k of `logits="topk"`; only used in that mode.
        shard_size (`int`, *optional*, defaults to 5000): images per parquet shard, the unit of resumption.
        id_column (`str`, *optional*): column of the image dataset holding a unique id per image; without it the
            id is the row index, so training needs the same image dataset in the same order.
    """

    view_config: ViewConfig
    num_views: int = 4
    seed: int = 0
    logits: LogitsMode = "full"
    logits_top_k: int | None = None
    shard_size: int = 5000
    id_column: str | None = None

    def __post_init__(self):
        if self.num_views < 1:
            raise ValueError(f"num_views must be >= 1, got {self.num_views}.")
        if not self.view_config.is_training and self.num_views != 1:
            raise ValueError(
                f"num_views={self.num_views} with the evaluation transform, which has one view per image: use "
                "num_views=1, or a training ViewConfig (is_training=True)."
            )
        if self.logits not in LOGITS_MODES:
            raise ValueError(f"logits must be one of {list(LOGITS_MODES)}, got {self.logits!r}.")
        if self.logits == "topk" and (self.logits_top_k is None or self.logits_top_k < 1):
            raise ValueError(f"logits='topk' needs logits_top_k >= 1, got {self.logits_top_k}.")
        if self.logits != "topk" and self.logits_top_k is not None:
            raise ValueError(
                f"logits_top_k={self.logits_top_k} is only used with logits='topk' (got logits={self.logits!r})."
            )
        if self.shard_size < 1:
            raise ValueError(f"shard_size must be >= 1, got {self.shard_size}.")

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "view_config": self.view_config.to_dict()}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TeacherOutputsSettings:
        names = cls.__dataclass_fields__
        values = {key: value for key, value in values.items() if key in names}
        return cls(**{**values, "view_config": ViewConfig.from_dict(values["view_config"])})


# ---- logits ------------------------------------------------------------------------------------------------------
def topk_logits(logits: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """`(values, indices, logsumexp)` of the k largest logits of each row, what `logits="topk"` stores."""
    values, indices = logits.float().topk(k, dim=-1)
    return values, indices, logits.float().logsumexp(dim=-1)


def dense_logits(values: torch.Tensor, indices: torch.Tensor, logsumexp: torch.Tensor, num_classes: int):
    """Logits of C classes from the stored top k: the k stored logits in place, every other class at
    `lse + log(r / (C - k))` with `r = 1 - sum_topk exp(v - lse)` the probability mass outside the top k.

    Their softmax gives every top-k class its exact probability and spreads the rest evenly over the other classes,
    and their log-sum-exp is the stored one.
    """
    values, logsumexp = values.float(), logsumexp.float()
    num_rest = num_classes - values.shape[-1]
    logits = torch.empty((*values.shape[:-1], num_classes), dtype=torch.float32)
    if num_rest:
        rest = (1 - (values - logsumexp[..., None]).exp().sum(-1)).clamp_min(torch.finfo(torch.float32).tiny)
        logits[:] = (logsumexp + (rest / num_rest).log())[..., None]
    return logits.scatter_(-1, indices.long(), values)


# ---- shards ------------------------------------------------------------------------------------------------------
def shard_path(split: str, index: int) -> str:
    """Path of shard `index` of `split`, relative to the folder."""
    return f"data/{split}-{index:05d}.parquet"


def shard_features(settings: TeacherOutputsSettings, id_dtype: str) -> Features:
    """Column types of a shard; `id_dtype` is `"int64"` or `"string"`."""
    matrix = lambda dtype: List(List(Value(dtype)))  # noqa: E731
    columns = {
        "id": Value(id_dtype),
        "image_digest": Value("string"),
        "view_crop": matrix("int32"),
        "view_hflip": List(Value("bool")),
        "view_aug_seed": List(Value("int64")),
        "teacher_features": matrix("float16"),
    }
    if settings.logits == "full":
        columns["teacher_logits"] = matrix("float16")
    elif settings.logits == "topk":
        columns["teacher_logits_topk_values"] = matrix("float16")
        columns["teacher_logits_topk_indices"] = matrix("int32")
        columns["teacher_logits_logsumexp"] = List(Value("float32"))
    return Features(columns)


def shard_record(
    teacher: TeacherRecord, settings: TeacherOutputsSettings, split: str, num_images: int | None
) -> dict[str, Any]:
    """What every shard of a run records in its parquet metadata; equal records mean interchangeable shards.
    `num_images` is the size of the image dataset (`None` for a stream, whose length is not known in advance)."""
    return {
        "format_version": FORMAT_VERSION,
        "teacher": asdict(teacher),
        "split": split,
        "settings": settings.to_dict(),
        "num_images": num_images,
    }


def write_shard(path: Path, columns: dict[str, Any], features: Features, record: dict[str, Any]) -> None:
    """Write one shard atomically (a temporary file renamed into place), so a file that exists is complete."""
    table = Dataset.from_dict(columns, features=features).data.table
    metadata = {**(table.schema.metadata or {}), SHARD_RECORD_KEY: json.dumps(record, sort_keys=True).encode()}
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    pq.write_table(table.replace_schema_metadata(metadata), temporary)
    os.replace(temporary, path)


def read_shard_record(path: Path) -> dict[str, Any] | None:
    """The record of an existing shard, `None` when the file does not exist."""
    if not path.is_file():
        return None
    metadata = pq.read_schema(path).metadata or {}
    if SHARD_RECORD_KEY not in metadata:
        raise TeacherOutputsMismatchError(f"{path} is not a shard of teacher outputs (no {SHARD_RECORD_KEY!r}).")
    return json.loads(metadata[SHARD_RECORD_KEY])


def write_classifier(folder: Path, teacher: TimmTeacher) -> None:
    """Save the teacher's classifier, or check that the one already saved is the same."""
    path = folder / CLASSIFIER_NAME
    weights = {"weight": teacher.classifier_weight.cpu().contiguous(), "bias": teacher.classifier_bias.cpu()}
    if path.is_file():
        saved = load_file(path)
        if saved.keys() != weights.keys() or not all(torch.equal(saved[k], v) for k, v in weights.items()):
            raise TeacherOutputsMismatchError(
                f"{path} holds the classifier of another teacher; write these outputs to another folder."
            )
        return
    folder.mkdir(parents=True, exist_ok=True)
    save_file(weights, path)


def _write_json(path: Path, payload: dict) -> None:
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")
    os.replace(temporary, path)


def finalize_teacher_outputs(output_dir: str | os.PathLike, split: str = "train") -> TeacherOutputs:
    """After every process has written its shards: check that `split` is complete and consistent, then write
    `teacher_outputs.json` (other splits already recorded are kept) and the dataset card. Run it on one process.

    Returns:
        The finished [`TeacherOutputs`] of `split`.
    """
    folder = Path(output_dir)
    pattern = re.compile(rf"{re.escape(split)}-(\d{{5}})\.parquet")
    names = sorted(os.listdir(folder / "data")) if (folder / "data").is_dir() else []
    matches = [match for match in map(pattern.fullmatch, names) if match]
    paths = [folder / "data" / match.group(0) for match in matches]
    indices = [int(match.group(1)) for match in matches]
    missing = sorted(set(range(max(indices, default=-1) + 1)) - set(indices))
    if not paths or missing:
        raise ValueError(
            f"{folder} has no complete '{split}' teacher outputs (missing shards {missing or 'all'}); run "
            "precompute_teacher_outputs on every process first (it skips the shards already written)."
        )
    records = [read_shard_record(path) for path in paths]
    if any(record != records[0] for record in records):
        raise TeacherOutputsMismatchError(f"The '{split}' shards in {folder} were computed with different settings.")
    record = records[0]
    num_rows = [pq.ParquetFile(path).metadata.num_rows for path in paths]
    if record["num_images"] not in (None, sum(num_rows)):
        raise ValueError(
            f"{folder} holds {sum(num_rows)} of the {record['num_images']} images of '{split}' (missing shards after "
            f"shard {indices[-1]}); run precompute_teacher_outputs on every process first."
        )
    path = folder / RECORD_NAME
    payload = json.loads(path.read_text()) if path.is_file() else {"format_version": FORMAT_VERSION, "splits": {}}
    if payload.get("teacher", record["teacher"]) != record["teacher"]:
        raise TeacherOutputsMismatchError(
            f"{folder} holds outputs of teacher {payload['teacher']} but the '{split}' shards are of "
            f"{record['teacher']}; keep one teacher per folder."
        )
    payload["teacher"] = record["teacher"]
    payload["splits"][split] = {
        **record["settings"],
        "num_images": sum(num_rows),
        "shards": [{"path": shard_path(split, i), "num_rows": n} for i, n in zip(indices, num_rows)],
    }
    _write_json(path, payload)
    write_dataset_card(folder, payload)
    return TeacherOutputs.load(folder, split)


CARD_TEMPLATE = """---
{{ card_data }}
---

# Teacher outputs of `{{ teacher.name }}`

Precomputed outputs of the frozen teacher `{{ teacher.name }}` (weights fingerprint `{{ teacher.fingerprint }}`,
{{ teacher.feature_dim }}-d pooled feature, {{ teacher.num_classes }} classes) for distillation with
[`gendd_hf`](https://arxiv.org/abs/2507.14503): for each image and each of K augmented views, the view's parameters,
the teacher's pooled feature and its logits. Training replays the stored view on the image and never runs the teacher.

| split | images | views per image (K) | transform | input size | logits | dtype | shards |
|---|---|---|---|---|---|---|---|
{% for name, split in splits.items() -%}
| {{ name }} | {{ split.num_images }} | {{ split.num_views }} | {{ split.view_config.preset }}{% if not split.view_config.is_training %} (evaluation){% endif %} | {{ split.view_config.input_size | join("x") }} | {{ split.logits }}{% if split.logits_top_k %} (k={{ split.logits_top_k }}){% endif %} | float16 | {{ split.shards | length }} |
{% endfor %}

## Use

```python
from gendd_hf.teacher_outputs import teacher_outputs_dataset

# `images`: the image dataset the outputs were computed from (same split; same order unless an id column is used).
train_dataset = teacher_outputs_dataset(images, "{{ source }}", split="train")
```

`teacher_outputs.json` records the teacher and, per split, the transform (`view_config`), K, the view seed, the logits
mode, the id column and the shards; `teacher_classifier.safetensors` holds the teacher's linear classifier.

## Columns

- `id`: the image's id (its row index when no id column was given); `image_digest`: 64-bit BLAKE2b of the encoded image.
- `view_crop` (K, 4): crop box `[top, left, height, width]`; `view_hflip` (K,): horizontal flip; `view_aug_seed` (K,):
  seed of any further augmentation (RandAugment).
- `teacher_features` (K, {{ teacher.feature_dim }}): the teacher's pooled penultimate feature, float16.
- `teacher_logits` (K, {{ teacher.num_classes }}) float16 (`logits: full`); or `teacher_logits_topk_values`,
  `teacher_logits_topk_indices` (K, k) and `teacher_logits_logsumexp` (K,) (`logits: topk`); none with `logits: none`.

## Transform settings

{% for name, split in splits.items() -%}
- {{ name }}: `{{ split.view_config | tojson }}`, seed {{ split.seed }}, id column `{{ split.id_column }}`
{% endfor %}
"""


def write_dataset_card(folder: Path, payload: dict[str, Any], source: str | None = None) -> None:
    """Render `README.md` from `CARD_TEMPLATE`: front matter with tags and one `configs` entry per split."""
    splits = payload["splits"]
    card_data = DatasetCardData(
        tags=TAGS,
        configs=[
            {
                "config_name": "default",
                "data_files": [{"split": name, "path": f"data/{name}-*.parquet"} for name in sorted(splits)],
            }
        ],
    )
    card = DatasetCard.from_template(
        card_data,
        template_str=CARD_TEMPLATE,
        teacher=payload["teacher"],
        splits=splits,
        source=source or folder.name,
    )
    card.save(folder / CARD_NAME)


def push_teacher_outputs(
    output_dir: str | os.PathLike, repo_id: str, private: bool | None = None, token: str | None = None
) -> str:
    """Upload a finished teacher-outputs folder to the Hub dataset repository `repo_id` (created if needed); the card
    is rendered again with `repo_id` in its example. Returns the commit URL."""
    folder = Path(output_dir)
    write_dataset_card(folder, json.loads((folder / RECORD_NAME).read_text()), source=repo_id)
    api = HfApi(token=token)
    api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
    commit = api.upload_folder(
        folder_path=folder,
        repo_id=repo_id,
        repo_type="dataset",
        commit_message="Add teacher outputs",
        allow_patterns=[RECORD_NAME, CLASSIFIER_NAME, CARD_NAME, "data/*.parquet"],
    )
    return commit.commit_url


# ---- reading -----------------------------------------------------------------------------------------------------
@dataclass
class TeacherOutputs:
    """One split of stored teacher outputs, local or on the Hub: what was recorded, and its shards as a stream.

    Load it with [`TeacherOutputs.load`].
    """

    source: str
    split: str
    teacher: TeacherRecord
    settings: TeacherOutputsSettings
    num_images: int
    shards: list[dict[str, Any]]
    classifier_weight: torch.Tensor = field(repr=False)
    classifier_bias: torch.Tensor = field(repr=False)
    base_url: str = field(repr=False, default="")
    token: str | None = field(repr=False, default=None)

    @classmethod
    def load(
        cls, source: str | os.PathLike, split: str = "train", revision: str | None = None, token: str | None = None
    ) -> TeacherOutputs:
        """Read the record and the classifier of a folder written by [`finalize_teacher_outputs`], or of a Hub
        dataset repository it was pushed to (`source` is then the repo id; the shards stream from the Hub)."""
        folder = Path(source)
        if folder.is_dir():
            if not (folder / RECORD_NAME).is_file():
                raise FileNotFoundError(
                    f"{folder} has no {RECORD_NAME}: it is not a teacher-outputs folder, or its precomputation has "
                    "not been finalized (run finalize_teacher_outputs, or rerun recipes/precompute_teacher.py)."
                )
            record_path, classifier_path = folder / RECORD_NAME, folder / CLASSIFIER_NAME
            base_url = folder.resolve().as_posix()
        elif str(source).startswith(("/", ".", "~")):
            raise FileNotFoundError(f"Teacher outputs folder {source} does not exist.")
        else:
            download = lambda name: hf_hub_download(  # noqa: E731
                str(source), name, repo_type="dataset", revision=revision, token=token
            )
            record_path, classifier_path = download(RECORD_NAME), download(CLASSIFIER_NAME)
            base_url = f"hf://datasets/{source}@{quote(revision or 'main', safe='')}"
        payload = json.loads(Path(record_path).read_text())
        if payload.get("format_version") != FORMAT_VERSION:
            raise ValueError(
                f"{source}: teacher outputs format {payload.get('format_version')} is not supported "
                f"(this gendd_hf reads format {FORMAT_VERSION})."
            )
        if split not in payload["splits"]:
            raise ValueError(f"{source} holds teacher outputs for splits {sorted(payload['splits'])}, not {split!r}.")
        entry = payload["splits"][split]
        classifier = load_file(classifier_path)
        return cls(
            source=str(source),
            split=split,
            teacher=TeacherRecord(**payload["teacher"]),
            settings=TeacherOutputsSettings.from_dict(entry),
            num_images=entry["num_images"],
            shards=entry["shards"],
            classifier_weight=classifier["weight"],
            classifier_bias=classifier["bias"],
            base_url=base_url,
            token=token,
        )

    @property
    def data_files(self) -> list[str]:
        """The shards, in order: local paths or `hf://` URLs."""
        return [f"{self.base_url}/{shard['path']}" for shard in self.shards]

    def stream(self) -> IterableDataset:
        """The rows as a `datasets.IterableDataset` (`streaming=True`), one stream shard per parquet file."""
        return load_dataset("parquet", data_files=self.data_files, split="train", streaming=True, token=self.token)

    def check(self, view_config: ViewConfig | None = None, teacher: str | nn.Module | None = None) -> None:
        """Raise [`TeacherOutputsMismatchError`] when `teacher` (a name, or the model itself: its architecture and
        weights fingerprint are compared) is not the recorded teacher, or `view_config` is not the recorded transform.
        The teacher is checked first: another teacher usually has another data config too, and the teacher is then
        the difference to name."""
        if isinstance(teacher, str) and teacher != self.teacher.name:
            raise TeacherOutputsMismatchError(
                f"The teacher outputs in {self.source} are of teacher {self.teacher.name!r}, not {teacher!r}."
            )
        if isinstance(teacher, nn.Module):
            self._check_teacher_model(teacher)
        recorded = self.settings.view_config
        if view_config is not None and view_config != recorded:
            ours, theirs = view_config.to_dict(), recorded.to_dict()
            differences = ", ".join(
                f"{key}={ours[key]!r} (recorded {theirs[key]!r})" for key in ours if ours[key] != theirs[key]
            )
            raise TeacherOutputsMismatchError(
                f"The teacher outputs in {self.source} were computed with another transform: {differences}. Train "
                "with the recorded transform (view_config=None uses it) or precompute outputs for this one."
            )

    def _check_teacher_model(self, teacher: nn.Module) -> None:
        recorded = self.teacher
        fix = (
            f"train with the teacher that computed them ({recorded.name!r}), or precompute outputs with this one "
            "(recipes/precompute_teacher.py)"
        )
        shape = (teacher.feature_dim, teacher.num_classes) if isinstance(teacher, TimmTeacher) else None
        if shape not in (None, (recorded.feature_dim, recorded.num_classes)):
            raise TeacherOutputsMismatchError(
                f"The teacher differs: the outputs in {self.source} were computed by teacher {recorded.name!r} "
                f"({recorded.feature_dim}-dim features, {recorded.num_classes} classes), but the given teacher has "
                f"{shape[0]}-dim features and {shape[1]} classes: {fix}."
            )
        if teacher_fingerprint(teacher) != recorded.fingerprint:
            raise TeacherOutputsMismatchError(
                f"The teacher differs: the given teacher's weights (fingerprint {teacher_fingerprint(teacher)}) are "
                f"not those of the teacher {recorded.name!r} that computed the outputs in {self.source} "
                f"(fingerprint {recorded.fingerprint}): {fix}."
            )

    def check_ids(self) -> None:
        """Raise [`TeacherOutputsMismatchError`] unless every image has exactly one row across the shards (ids
        `0 .. num_images - 1` without an id column): a shard overwritten with a copy of another passes every row's
        own check, yet trains on some images twice and never on others. Reads only the `id` column of each shard."""
        shard_of_id, problems = {}, []
        expected = None if self.settings.id_column else range(self.num_images)
        for shard, url in zip(self.shards, self.data_files):
            filesystem, path = fsspec.core.url_to_fs(url, token=self.token)
            ids = [
                as_image_id(value)
                for value in pq.read_table(path, columns=["id"], filesystem=filesystem).column("id").to_pylist()
            ]
            repeated = [image_id for image_id, count in Counter(ids).items() if count > 1 or image_id in shard_of_id]
            foreign = [image_id for image_id in ids if image_id not in expected] if expected is not None else []
            if repeated:
                owners = sorted({shard_of_id.get(image_id, shard["path"]) for image_id in repeated})
                problems.append(
                    f"shard {shard['path']} repeats {len(repeated)} image ids already in "
                    f"{', '.join(owners)} ({_few(repeated)})"
                )
            if foreign:
                problems.append(
                    f"shard {shard['path']} holds {len(foreign)} ids outside 0..{self.num_images - 1} ({_few(foreign)})"
                )
            for image_id in ids:
                shard_of_id.setdefault(image_id, shard["path"])
        missing = [image_id for image_id in expected if image_id not in shard_of_id] if expected is not None else []
        if missing:
            problems.append(f"{len(missing)} images have no row ({_few(missing)})")
        elif len(shard_of_id) != self.num_images:
            problems.append(f"the shards hold {len(shard_of_id)} image ids, not the recorded {self.num_images}")
        if problems:
            raise TeacherOutputsMismatchError(
                f"The '{self.split}' teacher outputs in {self.source} do not hold one row per image: "
                f"{'; '.join(problems)}. Training would see some images twice and others never: delete the damaged "
                "shards, rerun the precomputation (it computes only missing shards) and finalize_teacher_outputs."
            )

    def load_teacher_classifier(self, model) -> None:
        """Give a `GenDDForImageClassification` the recorded teacher classifier; a model that already holds a
        different one (e.g. from stage 1 with another teacher) is refused."""
        weight = model.teacher_weight
        if not weight.any():
            model.set_teacher_classifier(self.classifier_weight, self.classifier_bias)
        elif weight.shape != self.classifier_weight.shape or not torch.equal(
            weight.cpu(), self.classifier_weight.to(weight.dtype)
        ):
            raise TeacherOutputsMismatchError(
                f"The model already holds a teacher classifier that differs from that of teacher "
                f"{self.teacher.name!r} recorded in {self.source}: the model was prepared for another teacher."
            )


def _few(ids: list, count: int = 5) -> str:
    """The first `count` of `ids`, for an error message."""
    return ", ".join(map(repr, ids[:count])) + (", ..." if len(ids) > count else "")


__all__ = [
    "LOGITS_MODES",
    "TeacherOutputs",
    "TeacherOutputsMismatchError",
    "TeacherOutputsSettings",
    "TeacherRecord",
    "dense_logits",
    "finalize_teacher_outputs",
    "push_teacher_outputs",
    "shard_features",
    "shard_path",
    "teacher_fingerprint",
    "topk_logits",
    "write_shard",
]
