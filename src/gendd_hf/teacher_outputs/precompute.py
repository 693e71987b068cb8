"""Compute a teacher's outputs once: K replayable views per image, teacher features and logits, parquet shards.

Shard i holds images `[i * shard_size, (i + 1) * shard_size)` of the image dataset and belongs to process
`i % num_processes`, so processes (`accelerate launch`) split the work without talking to each other. A shard is
written atomically; a rerun skips the shards already written with the same settings and refuses a folder written with
others. Once every process is done, one of them calls `finalize_teacher_outputs`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from datasets import IterableDataset

from ..progress import progress_bar
from ..teacher import TimmTeacher
from .images import as_image_id, decode_image, image_digest, undecoded
from .store import (
    TeacherOutputsMismatchError,
    TeacherOutputsSettings,
    TeacherRecord,
    read_shard_record,
    shard_features,
    shard_path,
    shard_record,
    topk_logits,
    write_classifier,
    write_shard,
)
from .views import apply_view, draw_view, view_seed


class _ShardViews(torch.utils.data.Dataset):
    """The K views of each image of one shard, drawn and applied in DataLoader workers."""

    def __init__(self, rows, start: int, settings: TeacherOutputsSettings, image_column: str):
        self.rows, self.start, self.settings, self.image_column = rows, start, settings, image_column

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, position: int):
        settings = self.settings
        example = self.rows[position]
        image_id = self.start + position if settings.id_column is None else as_image_id(example[settings.id_column])
        value = example[self.image_column]
        image = decode_image(value)
        views = [
            draw_view(image, settings.view_config, view_seed(settings.seed, image_id, k))
            for k in range(settings.num_views)
        ]
        pixels = torch.stack([apply_view(image, view, settings.view_config) for view in views])
        return image_id, image_digest(value), views, pixels


def _collate(items):
    ids, digests, views, pixels = zip(*items)
    return list(ids), list(digests), list(views), torch.cat(pixels)


def _owned_shards(images, shard_size: int, process_index: int, num_processes: int) -> Iterator[tuple[int, int, object]]:
    """`(shard index, first row, rows)` of the shards of this process. A map-style dataset is sliced; a stream is
    read once, keeping (undecoded) only the rows of this process's shards."""
    if not isinstance(images, IterableDataset):
        for index in range(process_index, math.ceil(len(images) / shard_size), num_processes):
            start = index * shard_size
            yield index, start, images.select(range(start, min(start + shard_size, len(images))))
        return
    current, rows = None, []
    for position, example in enumerate(images):
        index = position // shard_size
        if index % num_processes != process_index:
            continue
        if index != current and rows:
            yield current, current * shard_size, rows
            rows = []
        current = index
        rows.append(example)
    if rows:
        yield current, current * shard_size, rows


@torch.no_grad()
def precompute_teacher_outputs(
    images,
    teacher: TimmTeacher,
    output_dir: str | os.PathLike,
    settings: TeacherOutputsSettings,
    teacher_name: str,
    split: str = "train",
    batch_size: int = 256,
    num_workers: int = 0,
    image_column: str = "image",
    process_index: int = 0,
    num_processes: int = 1,
    progress: bool = True,
) -> list[Path]:
    """Compute and write this process's shards of teacher outputs for `images` (see the module docstring).

    Args:
        images (`datasets.Dataset` or `datasets.IterableDataset`): the images, with an `image_column` (and
            `settings.id_column` when set). A stream is read once per process.
        teacher ([`TimmTeacher`]): the frozen teacher, already on its device; inputs are moved there.
        output_dir (`str` or `os.PathLike`): the folder of the outputs.
        settings ([`TeacherOutputsSettings`]): views, seed, logits and sharding.
        teacher_name (`str`): the teacher's name (timm name or Hub id), recorded and checked at training time.
        split (`str`, *optional*, defaults to `"train"`): split name used in shard file names and the record.
        batch_size (`int`, *optional*, defaults to 256): images (views) per teacher forward.
        num_workers (`int`, *optional*, defaults to 0): DataLoader workers decoding and augmenting images.
        process_index / num_processes (`int`, *optional*): this process and the process count (`accelerate`'s).
        progress (`bool`, *optional*, defaults to `True`): show the progress in images (a tqdm bar on a terminal, a
            line now and then in a log file: `gendd_hf.progress.progress_bar`).

    Returns:
        The shard files this call wrote (not those skipped because they were already complete).
    """
    if settings.logits == "topk" and settings.logits_top_k > teacher.num_classes:
        raise ValueError(f"logits_top_k={settings.logits_top_k} exceeds the teacher's {teacher.num_classes} classes.")
    folder = Path(output_dir)
    if process_index == 0:
        write_classifier(folder, teacher)
    device = teacher.classifier_weight.device
    images = undecoded(images, image_column)
    num_images = total = None
    if not isinstance(images, IterableDataset):
        num_images = len(images)
        owned = range(process_index, math.ceil(num_images / settings.shard_size), num_processes)
        total = sum(min(settings.shard_size, num_images - i * settings.shard_size) for i in owned)
    record = shard_record(TeacherRecord.from_teacher(teacher, teacher_name), settings, split, num_images)
    written = []
    with progress_bar(total, f"{split} teacher outputs [{process_index}]", "img", disable=not progress) as bar:
        for index, start, rows in _owned_shards(images, settings.shard_size, process_index, num_processes):
            path = folder / shard_path(split, index)
            existing = read_shard_record(path)
            if existing is not None:
                if existing != record:
                    raise TeacherOutputsMismatchError(
                        f"{path} was computed with other settings or another teacher ({existing}); write these "
                        "outputs to a new output_dir (or delete the old one)."
                    )
                bar.update(len(rows))
                continue
            loader = torch.utils.data.DataLoader(
                _ShardViews(rows, start, settings, image_column),
                batch_size=max(1, batch_size // settings.num_views),
                num_workers=num_workers,
                collate_fn=_collate,
            )
            columns: dict[str, list] = {}
            for ids, digests, views, pixels in loader:
                output = teacher(pixels.to(device))
                for name, value in _batch_columns(ids, digests, views, output, settings).items():
                    columns.setdefault(name, []).append(value)
                bar.update(len(ids))
            columns = {name: _concatenate(parts) for name, parts in columns.items()}
            id_dtype = "string" if isinstance(columns["id"][0], str) else "int64"
            write_shard(path, columns, shard_features(settings, id_dtype), record)
            written.append(path)
    return written


def _concatenate(parts: list):
    return np.concatenate(parts) if isinstance(parts[0], np.ndarray) else [item for part in parts for item in part]


def _batch_columns(ids, digests, views, output, settings: TeacherOutputsSettings) -> dict[str, object]:
    """One batch as shard columns: views as arrays, outputs reshaped to (images, K, ...) on the CPU."""
    per_image = lambda tensor: tensor.reshape(len(ids), settings.num_views, *tensor.shape[1:]).cpu().numpy()  # noqa
    columns = {
        "id": ids,
        "image_digest": digests,
        "view_crop": np.array([[view.box for view in image_views] for image_views in views], dtype=np.int32),
        "view_hflip": np.array([[view.hflip for view in image_views] for image_views in views], dtype=bool),
        "view_aug_seed": np.array([[view.aug_seed for view in image_views] for image_views in views], dtype=np.int64),
        "teacher_features": per_image(output.features.half()),
    }
    if settings.logits == "full":
        columns["teacher_logits"] = per_image(output.logits.half())
    elif settings.logits == "topk":
        values, indices, logsumexp = topk_logits(output.logits, settings.logits_top_k)
        columns["teacher_logits_topk_values"] = per_image(values.half())
        columns["teacher_logits_topk_indices"] = per_image(indices.int())
        columns["teacher_logits_logsumexp"] = per_image(logsumexp)
    return columns


__all__ = ["precompute_teacher_outputs"]
